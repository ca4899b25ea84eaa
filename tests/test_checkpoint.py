"""Checkpoints, backups and the filter/index answers: DB.checkpoint, pylsm.backup / restore / backups /
delete_backup, DB.key_may_exist, DB.approximate_size.

A checkpoint opens to exactly the state at the call, also with writer threads going on and with a
process killed (SIGKILL) mid-checkpoint; backups share tables, restore checks every byte; key_may_exist
never says False for a present key; approximate_size adds up over the tables.
"""
from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import pytest

import pylsm
from lsmtest import AckReader, put_key, put_value


def fill(db, lo, hi, tag=b"v"):
    with db.batch() as b:
        for i in range(lo, hi):
            b.put(b"k%08d" % i, tag + b"%d" % i)


def contents(path):
    with pylsm.open(path) as db:
        return dict(db.items())


# ---- checkpoint -------------------------------------------------------------------------------


def test_checkpoint_holds_exactly_the_state_at_the_call(tmp_path):
    db = pylsm.open(tmp_path / "db", memtable_bytes=256 * 1024)
    fill(db, 0, 20000)
    db.flush()
    fill(db, 5000, 6000, b"new")
    for i in range(100):
        del db[b"k%08d" % i]
    expected = dict(db.items())
    lsn = db.checkpoint(tmp_path / "cp")
    assert lsn == db.stats()["lsn"]
    fill(db, 20000, 21000)
    db[b"k%08d" % 0] = b"after"
    assert contents(tmp_path / "cp") == expected
    pylsm.verify(tmp_path / "cp")
    with pylsm.open(tmp_path / "cp") as cp:  # a database of its own from now on
        assert cp.stats()["lsn"] == lsn
        cp[b"only-in-copy"] = b"1"
    assert b"only-in-copy" not in db
    db.compact()  # the source drops its old tables; the copy keeps its links
    assert contents(tmp_path / "cp")[b"k%08d" % 5000] == b"new5000"
    db.close()


def test_checkpoint_refuses_what_it_cannot_do(tmp_path):
    db = pylsm.open(tmp_path / "db")
    db[b"a"] = b"1"
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        db.checkpoint(tmp_path / "taken")
    with pytest.raises(FileExistsError):
        db.checkpoint(tmp_path / "db")
    with pytest.raises(TypeError):
        db.checkpoint(42)
    ro = pylsm.open(tmp_path / "db", read_only=True)
    with pytest.raises(pylsm.ReadOnlyError):
        ro.checkpoint(tmp_path / "ro")
    assert not os.path.exists(tmp_path / "ro") and not os.path.exists(tmp_path / "ro.tmp")
    ro.close()
    db.close()
    with pytest.raises(pylsm.ClosedError):
        db.checkpoint(tmp_path / "closed")


def test_checkpoint_with_codecs_and_into_new_parents(tmp_path):
    db = pylsm.open(tmp_path / "db", key_codec="str", value_codec="json")
    db["a"] = {"x": 1}
    db.checkpoint(tmp_path / "deep" / "er" / "cp")
    db.close()
    with pylsm.open(tmp_path / "deep" / "er" / "cp", key_codec="str", value_codec="json") as cp:
        assert cp["a"] == {"x": 1}


def test_checkpoints_beside_writer_threads(tmp_path):
    """Each copy holds, for every writer thread, a prefix of its puts: at least those acknowledged
    before the call, at most those acknowledged when it returned (and the one then returning)."""
    db = pylsm.open(tmp_path / "db", memtable_bytes=64 * 1024)  # flushes and WAL switches all along
    acked = [0, 0]
    stop = threading.Event()

    def writer(t):
        i = 0
        while not stop.is_set():
            db.put(b"t%d-%08d" % (t, i), b"x" * 100)
            i += 1
            acked[t] = i

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    bounds = []
    try:
        for r in range(6):
            time.sleep(0.02)
            lo = list(acked)
            db.checkpoint(tmp_path / ("cp%d" % r))
            bounds.append((lo, list(acked)))
    finally:
        stop.set()
        for t in threads:
            t.join()
    db.close()
    assert min(acked) > 100
    for r, (lo, hi) in enumerate(bounds):
        with pylsm.open(tmp_path / ("cp%d" % r)) as cp:
            for t in range(2):
                n = sum(1 for _ in cp.keys(prefix=b"t%d-" % t))
                assert lo[t] <= n <= hi[t] + 1  # (+1: a put that returned before its thread counted it)
                assert [k for k in cp.keys(prefix=b"t%d-" % t)] == [b"t%d-%08d" % (t, i) for i in range(n)]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.engine  # (the engine's behaviour: make test runs it once, test-pythons skips it)
def test_kill9_during_checkpoints(tmp_path, spawn, seed):
    """A process making checkpoints beside a writer is killed: every checkpoint it reported opens to
    a clean prefix of the writes with its LSN; the one in flight is absent or complete as well; the
    source opens with every acknowledged write; a new checkpoint to the interrupted path works."""
    rng = random.Random(seed)
    src, out = str(tmp_path / "db"), str(tmp_path / "out")
    os.mkdir(out)
    p = spawn("checkpoints", src, out)
    reader = AckReader(p)
    assert reader.wait_for(lambda ls: len(ls) >= 2, 60), p.stderr.read().decode()[-3000:]
    time.sleep(rng.uniform(0.0, 0.2))
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait(timeout=60) == -signal.SIGKILL
    reader.join(timeout=60)
    done = {int(l.split()[1]): int(l.split()[2]) for l in reader.acks()}
    assert sorted(done) == list(range(len(done)))
    for n in range(len(done) + 1):
        cp = os.path.join(out, "cp%d" % n)
        if n == len(done) and not os.path.exists(cp):
            continue  # the one in flight, not made
        with pylsm.open(cp) as db:
            m = db.stats()["lsn"]
            if n in done:
                assert m == done[n]
            assert db.get_many([put_key(i) for i in range(m + 5)]) == [put_value(i) for i in range(m)] + [None] * 5
    with pylsm.open(src) as db:
        assert db.stats()["lsn"] >= max(done.values())
        again = os.path.join(out, "cp%d" % (len(done) + 1))
        db.checkpoint(again)  # a stale staging directory of the same name would be cleared
    assert not os.path.exists(again + ".tmp")


# ---- backups ----------------------------------------------------------------------------------


@pytest.mark.engine  # (the engine's behaviour: make test runs it once, test-pythons skips it)
def test_incremental_backups_share_tables_and_restore_exactly(tmp_path):
    bk = tmp_path / "bk"
    db = pylsm.open(tmp_path / "db", memtable_bytes=256 * 1024)
    fill(db, 0, 10000)
    db.flush()
    state1 = dict(db.items())
    assert pylsm.backup(db, bk) == 1
    shared1 = set(os.listdir(bk / "shared"))
    fill(db, 10000, 12000)
    db.flush()
    db[b"in-memtable"] = b"1"
    state2 = dict(db.items())
    assert pylsm.backup(db, bk) == 2
    shared2 = set(os.listdir(bk / "shared"))
    assert shared1 < shared2  # the first backup's tables are stored once
    infos = pylsm.backups(bk)
    assert [b["id"] for b in infos] == [1, 2]
    assert infos[1]["lsn"] == db.stats()["lsn"] and infos[1]["bytes"] > infos[0]["bytes"]
    # Shared tables are copies of their own, not links to the database's files.
    for name in shared2:
        assert os.stat(bk / "shared" / name).st_nlink == 1
    pylsm.restore(bk, tmp_path / "r1", 1)
    pylsm.restore(bk, tmp_path / "r2")  # the newest
    assert contents(tmp_path / "r1") == state1
    assert contents(tmp_path / "r2") == state2
    with pytest.raises(FileExistsError):
        pylsm.restore(bk, tmp_path / "r2")
    with pytest.raises(ValueError):
        pylsm.restore(bk, tmp_path / "r3", 7)
    db.close()

    pylsm.delete_backup(bk, 1)  # its tables stay: backup 2 holds them too
    assert set(os.listdir(bk / "shared")) == shared2
    db = pylsm.open(tmp_path / "db")
    db.compact()
    db.close()
    assert pylsm.backup(tmp_path / "db", bk) == 3  # a closed database, by path
    pylsm.delete_backup(bk, 2)
    left = {f["shared"] for b in pylsm.backups(bk) for f in b["files"] if "shared" in f}
    assert set(os.listdir(bk / "shared")) == left  # nothing no backup needs
    pylsm.restore(bk, tmp_path / "r3")
    assert contents(tmp_path / "r3") == state2


def test_restore_reports_a_damaged_backup_and_leaves_nothing(tmp_path):
    bk = tmp_path / "bk"
    with pylsm.open(tmp_path / "db") as db:
        fill(db, 0, 5000)
        db.flush()
        pylsm.backup(db, bk)
    name = sorted(os.listdir(bk / "shared"))[0]
    with open(bk / "shared" / name, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(pylsm.CorruptionError, match="damaged"):
        pylsm.restore(bk, tmp_path / "r")
    assert not os.path.exists(tmp_path / "r") and not os.path.exists(tmp_path / "r.tmp")


def test_a_backup_cut_short_is_cleared_by_the_next(tmp_path):
    bk = tmp_path / "bk"
    with pylsm.open(tmp_path / "db") as db:
        fill(db, 0, 3000)
        db.flush()
        pylsm.backup(db, bk)
        # What a crash after the checkpoint and before the meta leaves: a private dir, a shared table.
        os.makedirs(bk / "private" / "2")
        (bk / "private" / "2" / "CURRENT").write_bytes(b"x")
        (bk / "shared" / "000099_1_00000000.sst").write_bytes(b"partial")
        assert pylsm.backup(db, bk) == 2
    assert not os.path.exists(bk / "shared" / "000099_1_00000000.sst")
    meta = json.loads((bk / "meta" / "2.json").read_bytes())
    assert {f["name"] for f in meta["files"]} == set(os.listdir(bk / "private" / "2")) | {
        f["name"] for f in meta["files"] if "shared" in f}
    pylsm.restore(bk, tmp_path / "r")
    assert len(contents(tmp_path / "r")) == 3000


def test_backup_of_a_missing_database_fails_cleanly(tmp_path):
    with pytest.raises(pylsm.NotFoundError):
        pylsm.backup(tmp_path / "nothing", tmp_path / "bk")
    with pytest.raises(ValueError):
        pylsm.restore(tmp_path / "bk", tmp_path / "r")


# ---- key_may_exist, approximate_size ---------------------------------------------------------


def test_key_may_exist_never_denies_a_present_key(tmp_path):
    db = pylsm.open(tmp_path / "db", memtable_bytes=256 * 1024)
    fill(db, 0, 20000)
    db.flush()
    fill(db, 20000, 21000)  # in the memtable
    present = [b"k%08d" % i for i in range(0, 21000, 7)]
    assert all(db.key_may_exist(k) for k in present)
    absent = [b"x%08d" % i for i in range(5000)]  # outside every table's key range
    assert not any(db.key_may_exist(k) for k in absent)
    inside = [b"k%08d!" % i for i in range(5000)]  # inside the ranges: only the filters answer
    false_pos = sum(db.key_may_exist(k) for k in inside)
    assert false_pos < 5000 * 0.05
    db.delete(b"k%08d" % 3)
    assert not db.key_may_exist(b"k%08d" % 3)  # a delete in the memtable is certain
    db.close()
    db = pylsm.open(tmp_path / "db", key_codec="str")
    assert db.key_may_exist("k%08d" % 7) and not db.key_may_exist(123456)
    db.close()


def test_approximate_size_adds_up(tmp_path):
    db = pylsm.open(tmp_path / "db", memtable_bytes=256 * 1024)
    assert db.approximate_size() == 0
    fill(db, 0, 50000)
    assert db.approximate_size() == 0  # the memtable is not counted
    db.flush()
    db.compact()
    total = db.approximate_size()
    files = sum(os.path.getsize(os.path.join(db.path, f)) for f in os.listdir(db.path) if f.endswith(".sst"))
    assert total == files
    halves = db.approximate_size(None, b"k%08d" % 25000) + db.approximate_size(b"k%08d" % 25000, None)
    assert halves == total
    quarter = db.approximate_size(b"k%08d" % 10000, b"k%08d" % 20000)
    assert total * 0.1 < quarter < total * 0.3
    assert db.approximate_size(b"k%08d" % 20000, b"k%08d" % 10000) == 0
    assert db.approximate_size(b"z", None) == 0 and db.approximate_size(None, b"a") == 0
    with pytest.raises(TypeError):
        db.approximate_size(1, 2)
    db.close()


# ---- delete_range -----------------------------------------------------------------------------


def test_delete_range_deletes_exactly_the_range_across_layers(tmp_path):
    db = pylsm.open(tmp_path / "db", memtable_bytes=64 * 1024)
    fill(db, 0, 6000)
    db.flush()
    fill(db, 3000, 7000, b"w")  # some in a newer table, some in the memtable
    with db.snapshot() as snap:
        n = db.delete_range(b"k%08d" % 1000, b"k%08d" % 6500)
        assert n == 5500
        assert list(db.keys()) == [b"k%08d" % i for i in list(range(1000)) + list(range(6500, 7000))]
        assert len(snap) == 7000  # a snapshot from before still sees them
        db.compact()
        assert len(snap) == 7000 and snap[b"k%08d" % 2000] == b"v2000"
    assert db.get(b"k%08d" % 2000) is None and db.get(b"k%08d" % 999) == b"v999"
    assert db.delete_range(b"k%08d" % 1000, b"k%08d" % 6500) == 0  # nothing left there
    assert db.delete_range(b"z", b"a") == 0
    db.close()
    with pylsm.open(tmp_path / "db") as db:  # durable like any write, and compacted away
        assert len(db) == 1500
        assert db.delete_range(None, b"k%08d" % 500, sync=True) == 500
        assert len(db) == 1000
    with pylsm.open(tmp_path / "c", key_codec="str") as db:
        for w in ("apple", "banana", "cherry", "date"):
            db[w] = b"1"
        assert db.delete_range("b", "d") == 2 and list(db.keys()) == ["apple", "date"]


def test_delete_range_is_one_write_beside_writers(tmp_path):
    """A writer thread appends r-000000, r-000001, ... while delete_range(r-, r.) runs again and again:
    each leaves a clean suffix of the writer's keys (everything present at its LSN went; everything
    written after it stays), never a hole."""
    db = pylsm.open(tmp_path / "db", memtable_bytes=64 * 1024)
    acked, stop = [0], threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            db.put(b"r-%06d" % i, b"x" * 50)
            i += 1
            acked[0] = i

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(20):
            time.sleep(0.005)
            lo = acked[0]  # every put acknowledged before the call is in the range it deletes
            db.delete_range(b"r-", b"r.")
            left = [int(k[2:]) for k in db.keys(b"r-", b"r.")]
            hi = acked[0]  # (read after the listing: puts listed were made by then, one may be in flight)
            if left:  # (the writer may have written nothing since)
                assert left == list(range(left[0], left[0] + len(left)))
                assert lo <= left[0] and left[-1] <= hi
    finally:
        stop.set()
        t.join()
    db.delete_range(b"r-", b"r.")
    assert list(db.keys()) == []
    assert db.stats()["deletes"] >= acked[0]
    db.close()


@pytest.mark.engine  # (the engine's behaviour: make test runs it once, test-pythons skips it)
def test_delete_range_refuses_what_it_cannot_do(tmp_path):
    db = pylsm.open(tmp_path / "db", memtable_bytes=64 * 1024)
    fill(db, 0, 100000)  # more deletes than one write may hold (1 MiB: 14 bytes each here)
    with pytest.raises(ValueError, match="in parts"):
        db.delete_range(None, None)
    assert len(db) == 100000  # nothing of it happened
    assert db.delete_range(None, b"k%08d" % 50000) == 50000
    with pytest.raises(TypeError):
        db.delete_range(1, 2)
    ro = pylsm.open(tmp_path / "db", read_only=True)
    with pytest.raises(pylsm.ReadOnlyError):
        ro.delete_range(None, None)
    ro.close()
    db.close()
    with pytest.raises(pylsm.ClosedError):
        db.delete_range(None, None)
