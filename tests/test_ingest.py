"""db.ingest(pairs, *, progress=False): bulk load of pairs in ascending key order straight into tables,
made visible at once.  Ordering and argument errors leave nothing behind, ingested pairs are the newest
version of their keys, snapshots taken before do not see them, Python code run by the iterable cannot
crash the interpreter, and a kill -9 at any point leaves the database as before or with all of it."""
from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time

import pytest

import lsmtest
from lsmtest import AckReader, ingest_key, ingest_value
import pylsm
from pylsm import _pylsm

KILLED = -signal.SIGKILL
KILL_EXIT = 137


def sst_files(path):
    return sorted(f for f in os.listdir(path) if f.endswith(".sst"))


def kv(i, tag=b"v"):
    return b"k%08d" % i, tag + b"%d" % i


def levels(db):
    return [lv["files"] for lv in db.stats()["levels"]]


def test_basic_list_generator_mapping_and_buffers(tmp_path):
    with pylsm.open(str(tmp_path / "db")) as db:
        assert db.ingest([kv(i) for i in range(1000)]) == 1000
        assert db[b"k00000007"] == b"v7" and len(db) == 1000
        assert db.ingest(kv(i, b"g") for i in range(2000, 5000)) == 3000
        assert db.ingest({b"m1": b"a", b"m2": b"b"}) == 2
        assert db.ingest([(bytearray(b"n1"), memoryview(b"x1")), [b"n2", b"x2"]]) == 2
        assert db.ingest([]) == 0 and db.ingest(iter(())) == 0
        assert db[b"k00004999"] == b"g4999" and db[b"m2"] == b"b" and db[b"n1"] == b"x1" and db[b"n2"] == b"x2"
        assert len(db) == 4004
        assert db.stats()["ingested"] == 4004
        # Values larger than a chunk's byte budget, and empty ones.
        big = os.urandom(3 << 20)
        assert db.ingest([(b"z1", big), (b"z2", b""), (b"z3", big[:100])]) == 3
        assert db[b"z1"] == big and db[b"z2"] == b"" and db[b"z3"] == big[:100]


@pytest.mark.parametrize("dup", [False, True])
def test_out_of_order_key_raises_with_its_position_and_writes_nothing(tmp_path, dup):
    path = str(tmp_path / "db")
    with pylsm.open(path, memtable_bytes=1 << 20) as db:
        db.update(kv(i, b"old") for i in range(10))
        db.flush()
        before = sst_files(path)
        bad = 60_000  # after two tables were cut (the 2 MiB target of a 1 MiB memtable)

        def pairs():
            for i in range(100_000):
                j = (i - 1 if dup else 5) if i == bad else i
                yield b"k%08d" % j, b"n" * 100

        with pytest.raises(ValueError, match=f"position {bad} is {'equal to' if dup else 'less than'}"):
            db.ingest(pairs())
        assert sst_files(path) == before  # the partial tables were removed
        assert db[b"k00000003"] == b"old3" and db.get(b"k00000020") is None and len(db) == 10
        assert db.stats()["ingested"] == 0
    with pylsm.open(path) as db:
        assert len(db) == 10 and sst_files(path) == before


def test_bad_pairs_get_the_errors_of_update_and_write_nothing(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path) as db:
        db[b"a"] = b"1"
        cases = [
            ([(b"b", b"1"), ("c", b"2")], TypeError),
            ([(b"b", b"1"), (b"c", 2)], TypeError),
            ([(b"b", b"1"), (b"c", b"2", b"3")], pylsm.PairError),
            ([(b"b", b"1"), 5], TypeError),
            ([(b"b", b"1"), (b"c" * (64 * 1024 + 1), b"2")], ValueError),
        ]
        for pairs, exc in cases:
            with pytest.raises(exc):
                db.update(pairs)  # what update says...
            with pytest.raises(exc):
                db.ingest(pairs)  # ...ingest says too
            assert db.get(b"b") is None and len(db) == 1
        with pytest.raises(TypeError):
            db.ingest(42)
        with pytest.raises(TypeError):
            db.ingest([], progress="yes")
        assert sst_files(path) == [] and db.stats()["ingested"] == 0


def test_overwrites_memtable_l0_and_deeper_keys_and_snapshots_do_not_see_it(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path, background_compaction=False) as db:
        db.update(kv(i, b"deep") for i in range(0, 100))
        db.compact()
        db.update(kv(i, b"l0") for i in range(100, 200))
        db.flush()
        db.update(kv(i, b"mem") for i in range(200, 300))
        assert db.stats()["memtable_entries"] == 100
        snap = db.snapshot()
        it = db.items()  # an iterator made before the ingest: its view too
        lsn = db.stats()["lsn"]
        assert db.ingest(kv(i, b"new") for i in range(50, 250)) == 200
        assert db.stats()["lsn"] > lsn
        want = {k: v for k, v in (kv(i, b"deep") for i in range(50))}
        want.update(kv(i, b"new") for i in range(50, 250))
        want.update(kv(i, b"mem") for i in range(250, 300))
        old = dict(kv(i, b"deep") for i in range(100))
        old.update(kv(i, b"l0") for i in range(100, 200))
        old.update(kv(i, b"mem") for i in range(200, 300))
        assert dict(db.items()) == want
        assert dict(snap.items()) == old and snap[b"k00000060"] == b"deep60"
        assert dict(it) == old
        assert list(db.keys(reverse=True)) == sorted(want, reverse=True)
        db.compact()  # compaction keeps the snapshot's versions and the newest of the rest
        assert dict(db.items()) == want and dict(snap.items()) == old
        snap.close()
        db[b"k00000060"] = b"after"  # a write after the ingest is newer
        assert db[b"k00000060"] == b"after"
    with pylsm.open(path) as db:
        want[b"k00000060"] = b"after"
        assert dict(db.items()) == want


def test_placement_deepest_free_level_or_l0(tmp_path):
    with pylsm.open(str(tmp_path / "db"), background_compaction=False) as db:
        db.ingest(kv(i) for i in range(1000, 2000))
        assert levels(db) == [0, 0, 0, 0, 0, 0, 1]  # an empty database: the bottom level
        db[b"k00000005"] = b"w"
        db.ingest(kv(i) for i in range(3000, 4000))  # the memtable is flushed first (to L0)
        assert levels(db) == [1, 0, 0, 0, 0, 0, 2]
        db.ingest(kv(i, b"c") for i in range(0, 10))  # overlaps that L0 table
        assert levels(db) == [2, 0, 0, 0, 0, 0, 2]
        assert db[b"k00000005"] == b"c5"
        db.compact()
        assert db[b"k00000005"] == b"c5" and len(db) == 2010


def test_codecs_encode_and_order_is_of_the_encoded_keys(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path, key_codec="tuple", value_codec="json") as db:
        db[("user", 5, "name")] = "old"
        pairs = [(("user", i, "name"), {"n": i}) for i in range(20)]
        assert db.ingest(pairs) == 20
        assert db[("user", 5, "name")] == {"n": 5}
        assert [k for k, _ in db.items(prefix=("user",))] == [p[0] for p in pairs]
        with pytest.raises(ValueError, match="position 1"):
            db.ingest([(("user", 30), 1), (("user", 25), 2)])
        with pytest.raises(pylsm.PairError):
            db.ingest([(("user", 40), 1, 2)])
        assert db.get(("user", 25)) is None and db.get(("user", 40)) is None
    with pylsm.open(str(tmp_path / "s"), key_codec="str") as db:
        # Ascending in Python's str order is not always ascending in UTF-8 byte order: "\uffff" < "\U00010000"
        # as str and as UTF-8 too, but "\ue000" < "\U00010000" in both while surrogate-free code points
        # above U+FFFF sort after every BMP one.  Encoded order is what counts.
        assert db.ingest([("a", b"1"), ("b", b"2"), ("\ue000", b"3"), ("\U00010000", b"4")]) == 4
        assert list(db.keys()) == ["a", "b", "\ue000", "\U00010000"]


def test_read_only_handle_raises(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path) as db:
        db[b"a"] = b"1"
        with pylsm.open(path, read_only=True) as ro:
            with pytest.raises(pylsm.ReadOnlyError):
                ro.ingest([(b"b", b"2")])
        assert db.get(b"b") is None


def test_progress_with_tqdm_draws_a_bar(tmp_path, capsys):
    pytest.importorskip("tqdm")
    with pylsm.open(str(tmp_path / "db")) as db:
        assert db.ingest([kv(i) for i in range(5000)], progress=True) == 5000
        assert db.ingest((kv(i) for i in range(6000, 9000)), progress=True) == 3000  # no len: no total
    err = capsys.readouterr().err
    assert "ingest" in err and "100%" in err and "5.00k/5.00k" in err and "3.00k" in err


def test_progress_without_tqdm_is_no_bar_and_no_error(tmp_path, monkeypatch, capsys):
    """tqdm is optional: without it progress=True draws nothing and raises nothing, for ingest and for
    the other calls that take it (compact, verify, repair)."""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    path = str(tmp_path / "db")
    with pylsm.open(path) as db:
        assert db.ingest([kv(i) for i in range(3000)], progress=True) == 3000
        assert len(db) == 3000
        db.compact(progress=True)
    pylsm.verify(path, progress=True)
    assert pylsm.repair(path, progress=True)["tables_kept"] >= 1
    err = capsys.readouterr().err
    assert not any(w in err for w in ("ingest", "compact", "verify", "repair", "%|"))


def test_progress_callback_gets_counts_and_its_failure_stops_nothing(tmp_path, monkeypatch):
    seen, raised = [], []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(u.exc_value))
    with pylsm.open(str(tmp_path / "db")) as db:
        _pylsm.DB.ingest(db, [kv(i) for i in range(5000)], progress=seen.append)
        assert seen == sorted(seen) and seen[-1] == 5000 and len(seen) >= 4

        def boom(done):
            raise RuntimeError("display broke")

        assert _pylsm.DB.ingest(db, [kv(i, b"b") for i in range(5000)], progress=boom) == 5000
        assert len(raised) == 1 and db[b"k00004999"] == b"b4999"


def test_an_iterable_that_closes_the_database_gets_a_clean_error(tmp_path):
    path = str(tmp_path / "db")
    db = pylsm.open(path)
    db[b"a"] = b"1"
    before = sst_files(path)

    def pairs():
        for i in range(50_000):
            if i == 30_000:
                db.close()
            yield kv(i)

    with pytest.raises(pylsm.ClosedError):
        db.ingest(pairs())
    with pytest.raises(pylsm.ClosedError):
        db.ingest([kv(1)])
    with pylsm.open(path) as db2:
        assert dict(db2.items()) == {b"a": b"1"}
        assert sst_files(path) == before  # what the ingest wrote is gone


def test_a_progress_callback_that_closes_the_database(tmp_path):
    path = str(tmp_path / "db")
    db = pylsm.open(path)

    def close_at(done):
        if done >= 2048:
            db.close()

    with pytest.raises(pylsm.ClosedError):
        _pylsm.DB.ingest(db, [kv(i) for i in range(5000)], progress=close_at)
    with pylsm.open(path) as db2:
        assert len(db2) == 0 and sst_files(path) == []


class KeyClosing:
    """A key whose buffer export closes the database (the binding re-checks before the core)."""

    def __init__(self, db):
        self.db = db

    def __buffer__(self, flags):
        self.db.close()
        return memoryview(b"k")


def test_a_key_buffer_that_closes_the_database(tmp_path):
    if sys.version_info < (3, 12):
        pytest.skip("__buffer__ is Python 3.12's")
    path = str(tmp_path / "db")
    db = pylsm.open(path)
    with pytest.raises(pylsm.ClosedError):
        db.ingest([(b"a", b"1"), (KeyClosing(db), b"2")])
    with pylsm.open(path) as db2:
        assert len(db2) == 0


def test_an_iterable_that_raises_or_writes_or_ingests(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path) as db:
        def failing():
            yield kv(1)
            raise KeyError("source broke")

        with pytest.raises(KeyError, match="source broke"):
            db.ingest(failing())
        assert len(db) == 0 and sst_files(path) == []

        def writing():  # writes from the iterable are older than the ingest: it wins
            for i in range(100):
                db[b"k%08d" % (i + 1)] = b"written"
                yield kv(i, b"ing")

        assert db.ingest(writing()) == 100
        assert db[b"k00000050"] == b"ing50" and db[b"k00000100"] == b"written"

        def nested():
            yield kv(1)
            db.ingest([kv(2)])

        with pytest.raises(pylsm.LockError, match="another ingest"):
            db.ingest(nested())
        assert db[b"k00000001"] == b"ing1"


def test_writers_in_other_threads_go_on_during_an_ingest(tmp_path):
    with pylsm.open(str(tmp_path / "db")) as db:
        started, wrote = threading.Event(), []

        def writer():
            started.wait()
            for i in range(2000):
                db[b"w%05d" % i] = b"x"
                wrote.append(i)

        t = threading.Thread(target=writer)
        t.start()

        def pairs():
            for i in range(200_000):
                if i == 1000:
                    started.set()
                yield kv(i)

        assert db.ingest(pairs()) == 200_000
        t.join()
        assert len(wrote) == 2000 and len(db) == 202_000


def test_iterators_scans_and_compaction_afterwards(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path, memtable_bytes=1 << 20) as db:
        db.update(kv(i, b"old") for i in range(0, 100_000, 3))
        n = db.ingest(kv(i) for i in range(0, 100_000, 2))
        assert n == 50_000
        want = {k: v for k, v in (kv(i, b"old") for i in range(0, 100_000, 3))}
        want.update(kv(i) for i in range(0, 100_000, 2))
        keys = sorted(want)
        assert list(db.keys()) == keys
        assert list(db.keys(reverse=True)) == keys[::-1]
        assert list(db.items(b"k00050000", b"k00050010")) == [(k, want[k]) for k in keys if b"k00050000" <= k < b"k00050010"]
        it = db.iterator()
        it.seek(b"k00099997")
        assert next(it) == (b"k00099998", b"v99998") and next(it) == (b"k00099999", b"old99999")
        db.compact()
        assert dict(db.items()) == want and len(db) == len(want)
    pylsm.verify(path)
    with pylsm.open(path) as db:
        assert len(db) == len(want) and db[b"k00000006"] == b"v6"


# ---- kill -9 ----

BASE = 3000  # keys 0..BASE-1 "old" (in a table and in the WAL), overwritten by the ingest
OTHER = [b"zz%04d" % i for i in range(200)]  # outside the ingested range: untouched


def make_base(path):
    with pylsm.open(path, memtable_bytes=1 << 20) as db:
        db.update((ingest_key(i), b"old%d" % i) for i in range(0, BASE, 2))
        db.flush()
        db.update((ingest_key(i), b"old%d" % i) for i in range(1, BASE, 2))
        db.update((k, b"other") for k in OTHER)


def all_or_nothing(path, n):
    """Reopen: the earlier data intact and the ingest there in full or not at all; no orphan table."""
    with pylsm.open(path, background_compaction=False) as db:  # no table written while they are counted
        got = db.get_many([ingest_key(i) for i in range(n)])
        assert db.get_many(OTHER) == [b"other"] * len(OTHER)
        new = sum(1 for i, v in enumerate(got) if v == ingest_value(i))
        if new:
            assert new == n, f"{new} of {n} ingested pairs visible"
        else:
            assert got[:BASE] == [b"old%d" % i for i in range(BASE)] and got[BASE:] == [None] * (n - BASE)
        assert db.stats()["sstables"] == len(sst_files(path))
        return new == n


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_kill9_at_a_random_point_of_a_large_ingest(tmp_path, spawn, seed):
    """Seeds 1, 4, 7: while tables are written; 2, 5, 8: around the last pair and the commit (random
    time after the last report); 3, 6, 9: after ingest() returned."""
    rng = random.Random(seed)
    path = str(tmp_path / "db")
    make_base(path)
    n, every = 400_000, 20_000
    p = spawn("ingest", path, n, every)
    reader = AckReader(p)
    assert reader.wait_for(lambda ls: "ready" in ls, 60), p.stderr.read().decode()[-3000:]
    phase = seed % 3
    if phase == 1:
        at = rng.randrange(every, n - every, every)
        assert reader.wait_for(lambda ls: f"p {at}" in ls, 60)
        time.sleep(rng.uniform(0, 0.01))
    elif phase == 2:
        assert reader.wait_for(lambda ls: f"p {n - every}" in ls, 60)
        time.sleep(rng.uniform(0, 0.15))
    else:
        assert reader.wait_for(lambda ls: any(l.startswith("done") for l in ls), 60)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=60)
    reader.join(timeout=60)
    done = any(l.startswith("done") for l in reader.lines)
    has_all = all_or_nothing(path, n)
    if done:
        assert has_all, "ingest() returned but its pairs are gone"
    if phase == 1:
        assert not has_all and not done
    if phase == 0:
        assert done and has_all


# The kill points an ingest of three tables passes, in order: at open, the new manifest
# (manifest_append:1); per table, compaction_output_finish then the footer (sstable_write, twice) and
# the sync (sstable_sync); at the commit, the memtable's flush (a table and manifest_append:2), then
# ingest_commit and the ingest's record (manifest_append:3); the flush's WAL goes (file_delete) in the
# background meanwhile.
@pytest.mark.parametrize("point, outcome", [
    ("sstable_write:1", "none"), ("sstable_write:4", "none"), ("sstable_sync:2", "none"),
    ("manifest_append:2", "none"), ("ingest_commit", "none"),
    ("manifest_append:3", "all"),  # written, not synced: the process died, the page cache did not
    ("file_delete", "either"),
])
def test_kill_point_during_an_ingest(tmp_path, spawn, point, outcome):
    path = str(tmp_path / "db")
    make_base(path)
    n = 150_000  # about 6 MB: three tables
    p = spawn("ingest", path, n, env={"PYLSM_KILL_POINT": point})
    out, err = p.communicate(timeout=120)
    assert p.returncode == KILL_EXIT, (point, p.returncode, err.decode()[-2000:])
    assert "done" not in out.decode()
    has_all = all_or_nothing(path, n)
    if outcome != "either":
        assert has_all == (outcome == "all")
