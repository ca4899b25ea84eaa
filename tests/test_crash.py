"""Process crashes: real child processes, killed with SIGKILL or ended by the engine's kill points.

Each child reports a write on stdout only after the call returned (one os.write per line), so every
line the parent read is an acknowledged write.  After the kill the parent reopens the database and
checks: every acknowledged write is there, and the state is a prefix of the write order (nothing
after a hole, nothing half-applied).  Seeds are in the test ids; a failure reproduces with the same id.
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

import lsmtest
from lsmtest import AckReader, batch_value, put_key, put_value, thread_key
import pylsm

KILLED = -signal.SIGKILL
KILL_EXIT = 137


def prefix_length(db, first_absent_at_most: int) -> int:
    """The number of leading keys present (put_key order), checked to be a clean prefix."""
    m = db.stats()["lsn"]  # one LSN per put: a prefix of length m has LSN m
    keys = [put_key(i) for i in range(m + 50)]
    vals = db.get_many(keys)
    assert vals[:m] == [put_value(i) for i in range(m)], "a hole or a wrong value inside the prefix"
    assert vals[m:] == [None] * 50, "writes beyond the LSN"
    assert m <= first_absent_at_most
    return m


def kill_after_random_delay(proc, reader, rng, lo=0.02, hi=0.3, min_acks=1):
    assert reader.wait_for(lambda ls: len(ls) > min_acks, 60), proc.stderr.read().decode()[-3000:]
    time.sleep(rng.uniform(lo, hi))
    os.kill(proc.pid, signal.SIGKILL)
    rc = proc.wait(timeout=60)
    reader.join(timeout=60)
    return rc


def acked_ints(reader):
    acks = [int(a) for a in reader.acks()]
    assert acks == list(range(len(acks))), "acknowledgements out of order"
    return len(acks)


def run_put_kill(path, spawn, sync, seed, options=""):
    rng = random.Random(seed)
    p = spawn("puts", path, sync, 10**7, options) if options else spawn("puts", path, sync, 10**7)
    reader = AckReader(p)
    rc = kill_after_random_delay(p, reader, rng)
    assert rc == KILLED, p.stderr.read().decode()[-3000:]
    acked = acked_ints(reader)
    with pylsm.open(path) as db:
        m = prefix_length(db, first_absent_at_most=acked + 1)  # at most the one put in flight
    assert m >= acked, f"lost acknowledged writes: {acked} acknowledged, {m} recovered"
    return acked, m


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill9_every_write_loses_no_acknowledged_put(tmp_path, spawn, seed):
    acked, m = run_put_kill(str(tmp_path / "db"), spawn, "every_write", seed)
    assert acked > 0


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_kill9_no_sync_loses_no_acknowledged_put(tmp_path, spawn, seed):
    acked, m = run_put_kill(str(tmp_path / "db"), spawn, "none", seed)
    assert acked > 0


@pytest.mark.parametrize("sync", ["n:7", "t:5", "h:5:5"])
def test_kill9_other_strategies_lose_no_acknowledged_put(tmp_path, spawn, sync):
    acked, m = run_put_kill(str(tmp_path / "db"), spawn, sync, seed=hash(sync) % 1000)
    assert acked > 0


def test_kill9_repeatedly_on_the_same_db(tmp_path, spawn):
    """Each round carries on from the recovered state: the log of many crashed sessions stays a prefix."""
    path = str(tmp_path / "db")
    total = 0
    for rnd in range(3):
        rng = random.Random(100 + rnd)
        p = spawn("puts", path, "none", 10**7)
        reader = AckReader(p)
        rc = kill_after_random_delay(p, reader, rng, 0.01, 0.1)
        assert rc == KILLED
        acked = acked_ints(reader)
        # this session rewrote keys 0..acked-1 with the same values; the prefix only grows
        with pylsm.open(path) as db:
            m_keys = db.get_many([put_key(i) for i in range(max(total, acked) + 50)])
            assert all(v == put_value(i) for i, v in enumerate(m_keys[:max(total, acked)]))
            present = sum(v is not None for v in m_keys)
        assert present >= max(total, acked)
        total = present


# ---------------------------------------------------------------------------------------------
# big batches


def check_batches(path, acked, nops):
    """All-or-nothing: every key holds the value of the same batch B, batches 0..B are marked."""
    with pylsm.open(path) as db:
        vals = db.get_many([b"b%06d" % j for j in range(nops)])
        if vals[0] is None:
            assert vals == [None] * nops
            B = -1
        else:
            B = int(vals[0].split(b":")[0])
            assert vals == [batch_value(B, j) for j in range(nops)], "a batch was applied in part"
        markers = db.get_many([b"marker%06d" % b for b in range(B + 3)])
        assert markers == [b"done"] * (B + 1) + [None, None]
        assert db.stats()["lsn"] == (B + 1) * (nops + 1)
    assert B >= acked - 1, f"acknowledged batch lost: {acked} acknowledged, {B + 1} recovered"
    assert B <= acked, "more than the one batch in flight recovered"
    return B


@pytest.mark.parametrize("sync,seed", [("none", 21), ("none", 22), ("every_write", 23), ("n:3", 24)])
def test_kill9_mid_batch_is_all_or_nothing(tmp_path, spawn, sync, seed):
    path = str(tmp_path / "db")
    nops = 2000
    rng = random.Random(seed)
    p = spawn("batches", path, sync, nops)
    reader = AckReader(p)
    rc = kill_after_random_delay(p, reader, rng, 0.05, 0.4)
    assert rc == KILLED, p.stderr.read().decode()[-3000:]
    acked = acked_ints(reader)
    assert acked > 0
    check_batches(path, acked, nops)


# ---------------------------------------------------------------------------------------------
# kill points inside the engine


@pytest.mark.parametrize("sync", ["none", "every_write"])
@pytest.mark.parametrize("n", [1, 2, 17, 60])
def test_kill_point_in_wal_append(tmp_path, spawn, sync, n):
    path = str(tmp_path / "db")
    p = spawn("puts", path, sync, 1000, env={"PYLSM_KILL_POINT": f"wal_append:{n}"})
    reader = AckReader(p)
    rc = p.wait(timeout=60)
    reader.join(timeout=60)
    assert rc == KILL_EXIT, p.stderr.read().decode()[-3000:]
    acked = acked_ints(reader)
    assert acked == n - 1  # it died inside the nth record append
    with pylsm.open(path) as db:
        m = prefix_length(db, first_absent_at_most=n)
    assert m >= acked
    with pylsm.open(path, wal_recovery="absolute") as db:  # the torn record was cut by the recovery
        assert db.stats()["lsn"] == m


@pytest.mark.parametrize("n", [1, 3, 40])
def test_kill_point_before_wal_sync(tmp_path, spawn, n):
    path = str(tmp_path / "db")
    p = spawn("puts", path, "every_write", 1000, env={"PYLSM_KILL_POINT": f"wal_sync:{n}"})
    reader = AckReader(p)
    rc = p.wait(timeout=60)
    reader.join(timeout=60)
    assert rc == KILL_EXIT, p.stderr.read().decode()[-3000:]
    acked = acked_ints(reader)
    assert acked == n - 1  # every_write: one fsync per put, it died before the nth
    with pylsm.open(path) as db:
        m = prefix_length(db, first_absent_at_most=n)
    assert m >= acked


def test_kill_point_is_not_reached_without_syncs(tmp_path, spawn):
    # sync="none" never calls fsync while writing: the same kill point lets it finish (control)
    path = str(tmp_path / "db")
    p = spawn("puts", path, "none", 200, env={"PYLSM_KILL_POINT": "wal_sync:1"})
    reader = AckReader(p)
    rc = p.wait(timeout=60)
    reader.join(timeout=60)
    assert rc == 0, p.stderr.read().decode()[-3000:]
    assert reader.lines[-1] == "done" and acked_ints(reader) == 200


@pytest.mark.parametrize("n", [1, 4])
def test_kill_point_in_a_batch_append(tmp_path, spawn, n):
    path = str(tmp_path / "db")
    nops = 2000
    p = spawn("batches", path, "none", nops, env={"PYLSM_KILL_POINT": f"wal_append:{n}"})
    reader = AckReader(p)
    rc = p.wait(timeout=60)
    reader.join(timeout=60)
    assert rc == KILL_EXIT, p.stderr.read().decode()[-3000:]
    acked = acked_ints(reader)
    assert acked == n - 1
    check_batches(path, acked, nops)


# ---------------------------------------------------------------------------------------------
# threads and group commit


def test_group_commit_eight_threads_every_write(tmp_path):
    path = str(tmp_path / "db")
    nthreads, per = 8, 150
    db = pylsm.open(path, sync="every_write")
    errors = []
    start = threading.Barrier(nthreads)

    def work(t):
        try:
            start.wait()
            for i in range(per):
                db.put(thread_key(t, i), b"v%d" % i)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    st = db.stats()
    writes = nthreads * per
    assert st["wal_records"] == writes
    assert 1 <= st["wal_syncs"] < writes, st  # concurrent writers shared fsyncs
    assert st["lsn"] == writes
    db.close()
    with pylsm.open(path) as db:
        for t in range(nthreads):
            assert db.get_many([thread_key(t, i) for i in range(per)]) == [b"v%d" % i for i in range(per)]


@pytest.mark.parametrize("seed", [31, 32])
def test_kill9_eight_threads_every_write(tmp_path, spawn, seed):
    path = str(tmp_path / "db")
    nthreads = 8
    rng = random.Random(seed)
    p = spawn("threads", path, "every_write", nthreads, 10**7)
    reader = AckReader(p)
    rc = kill_after_random_delay(p, reader, rng, 0.05, 0.3, min_acks=8)
    assert rc == KILLED, p.stderr.read().decode()[-3000:]
    per_thread = {t: [] for t in range(nthreads)}
    for line in reader.acks():
        t, i = map(int, line.split())
        per_thread[t].append(i)
    with pylsm.open(path) as db:
        total = 0
        for t, acks in per_thread.items():
            assert acks == list(range(len(acks)))
            a = len(acks)
            vals = db.get_many([thread_key(t, i) for i in range(a + 20)])
            m = 0
            while m < len(vals) and vals[m] is not None:
                m += 1
            assert vals[:m] == [b"v%d" % i for i in range(m)]
            assert vals[m:] == [None] * (a + 20 - m), f"thread {t}: a hole"
            assert a <= m <= a + 1, f"thread {t}: {a} acknowledged, {m} recovered"
            total += m
        assert db.stats()["lsn"] == total  # nothing else got in


# ---------------------------------------------------------------------------------------------
# kill during recovery


def test_kill9_during_recovery_several_times(tmp_path, spawn):
    path = str(tmp_path / "db")
    n = 3000
    with pylsm.open(path) as db:
        for i in range(n):
            db.put(put_key(i), put_value(i) * 100)
    wal = lsmtest.find_wal(path)
    with open(wal, "ab") as f:  # a torn tail for the recovery to cut
        f.write(b"\x01torn tail" * 10)
    rng = random.Random(41)
    for rnd in range(4):
        p = spawn("reopen", path)
        reader = AckReader(p)
        assert reader.wait_for(lambda ls: "ready" in ls, 60)
        time.sleep(rng.uniform(0, 0.05))
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
        reader.join(timeout=60)
        opened = [l for l in reader.lines if l.startswith("opened")]
        if opened:
            assert opened == ["opened %d" % n]
    for _ in range(2):
        with pylsm.open(path) as db:
            assert db.stats()["lsn"] == n
            vals = db.get_many([put_key(i) for i in range(n + 5)])
            assert vals[:n] == [put_value(i) * 100 for i in range(n)]
            assert vals[n:] == [None] * 5


# ---------------------------------------------------------------------------------------------
# the long variant (make stress)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1200))
def test_stress_random_kills(tmp_path, spawn, seed):
    rng = random.Random(seed)
    kind = rng.choice(["puts", "puts", "batches"])
    sync = rng.choice(["none", "every_write", "n:5", "t:2", "h:3:2"])
    path = str(tmp_path / "db")
    if kind == "puts":
        run_put_kill(path, spawn, sync, seed)
    else:
        nops = rng.choice([10, 500, 3000])
        p = spawn("batches", path, sync, nops)
        reader = AckReader(p)
        rc = kill_after_random_delay(p, reader, rng, 0.01, 0.5)
        assert rc == KILLED
        check_batches(path, acked_ints(reader), nops)
