"""WAL sync strategies: stats()["wal_syncs"] counts the fsyncs (docs/api.md, "Sync strategies").

Counts, not timings: background syncs are polled for with a generous bound.
"""
from __future__ import annotations

import time

import pytest

import pylsm


def syncs(db) -> int:
    return db.stats()["wal_syncs"]


def poll(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_no_sync_never_fsyncs_on_its_own(db_path):
    with pylsm.open(db_path, sync="none") as db:
        s0 = syncs(db)
        for i in range(200):
            db.put(b"k%d" % i, b"v")
        db.update({b"a": b"1", b"b": b"2"})
        db.delete(b"k1")
        assert syncs(db) == s0
        assert db.stats()["wal_unsynced_records"] == 202  # records (200 puts, 1 update, 1 delete)


@pytest.mark.parametrize("strategy", ["none", pylsm.NoSync(), pylsm.EveryNEntries(10 ** 6),
                                      pylsm.TimeBasedBackground(60_000), pylsm.Hybrid(10 ** 6, 60_000)], ids=repr)
def test_put_sync_true_and_db_sync_fsync_under_every_strategy(db_path, strategy):
    with pylsm.open(db_path, sync=strategy) as db:
        db.put(b"a", b"1")
        s = syncs(db)
        db.put(b"b", b"2", sync=True)
        assert syncs(db) == s + 1
        assert db.stats()["wal_unsynced_records"] == 0
        db.put(b"c", b"3")
        assert db.stats()["wal_unsynced_records"] == 1
        db.sync()
        assert syncs(db) == s + 2
        assert db.stats()["wal_unsynced_records"] == 0
        db.delete(b"a", sync=True)
        assert syncs(db) == s + 3
        b = pylsm.WriteBatch()
        b.put(b"d", b"4")
        db.write(b, sync=True)
        assert syncs(db) == s + 4
        db.update({b"e": b"5"}, sync=True)
        assert syncs(db) == s + 5
        with db.batch(sync=True) as wb:
            wb.put(b"f", b"6")
        assert syncs(db) == s + 6
        db.put(b"g", b"7", sync=False)
        assert syncs(db) == s + 6
        assert db.get_many([b"a", b"b", b"c", b"d", b"e", b"f", b"g"]) == [None, b"2", b"3", b"4", b"5", b"6", b"7"]


@pytest.mark.parametrize("strategy", ["every_write", pylsm.EveryWrite()], ids=repr)
def test_every_write_fsyncs_each_write(db_path, strategy):
    with pylsm.open(db_path, sync=strategy) as db:
        s0 = syncs(db)
        for i in range(30):
            db.put(b"k%d" % i, b"v")
        for i in range(10):
            db.delete(b"k%d" % i)
        for i in range(5):
            db.update({b"u%d" % i: b"1", b"w%d" % i: b"2"})
        assert syncs(db) - s0 >= 45
        assert db.stats()["wal_unsynced_records"] == 0


@pytest.mark.parametrize("n", [1, 10, 33])
def test_every_n_entries(db_path, n):
    with pylsm.open(db_path, sync=pylsm.EveryNEntries(n)) as db:
        s0 = syncs(db)
        for i in range(100):
            db.put(b"k%d" % i, b"v")
            # never more than n entries written without an fsync
            assert db.stats()["wal_unsynced_records"] < n
        assert syncs(db) - s0 >= 100 // n
        assert syncs(db) - s0 <= 100  # and not one per write when n > 1
        if n > 1:
            assert syncs(db) - s0 < 100


def test_time_based_background_syncs_without_writers_waiting(db_path):
    # a long interval: the writes themselves never fsync
    with pylsm.open(db_path, sync=pylsm.TimeBasedBackground(60_000)) as db:
        for i in range(100):
            db.put(b"k%d" % i, b"v")
        assert syncs(db) == 0
        assert db.stats()["wal_unsynced_records"] == 100
    # a short one: the background thread catches up on its own
    with pylsm.open(db_path, sync=pylsm.TimeBasedBackground(20)) as db:
        s0 = syncs(db)
        for i in range(100):
            db.put(b"j%d" % i, b"v")
        assert poll(lambda: syncs(db) > s0 and db.stats()["wal_unsynced_records"] == 0)
        s1 = syncs(db)
        db.put(b"later", b"1")
        assert poll(lambda: syncs(db) > s1 and db.stats()["wal_unsynced_records"] == 0)
        # and it does not fsync when nothing is pending
        s2 = syncs(db)
        time.sleep(0.2)
        assert syncs(db) == s2


def test_hybrid_count_trigger(db_path):
    with pylsm.open(db_path, sync=pylsm.Hybrid(10, 60_000)) as db:
        s0 = syncs(db)
        for i in range(100):
            db.put(b"k%d" % i, b"v")
            assert db.stats()["wal_unsynced_records"] < 10
        assert syncs(db) - s0 >= 10


def test_hybrid_delay_trigger(db_path):
    with pylsm.open(db_path, sync=pylsm.Hybrid(10 ** 6, 20)) as db:
        s0 = syncs(db)
        for i in range(5):
            db.put(b"k%d" % i, b"v")
        assert poll(lambda: syncs(db) > s0 and db.stats()["wal_unsynced_records"] == 0)
        s1 = syncs(db)
        time.sleep(0.2)  # nothing pending: no more fsyncs
        assert syncs(db) == s1
        db.put(b"again", b"1")  # a new pending write starts the clock again
        assert poll(lambda: syncs(db) > s1 and db.stats()["wal_unsynced_records"] == 0)


_THREADS_CHILD = r"""
import os, sys, time, pylsm
path = sys.argv[1]
def n():
    return len(os.listdir("/proc/self/task"))
out = [n()]
db = pylsm.open(path, sync="every_write"); out.append(n()); db.close(); out.append(n())
db = pylsm.open(path, sync=pylsm.TimeBasedBackground(1)); out.append(n()); db.close(); out.append(n())
db = pylsm.open(path, sync=pylsm.Hybrid(5, 1)); out.append(n()); db.close(); out.append(n())
t0 = time.monotonic()
for i in range(50):
    db = pylsm.open(path, sync=pylsm.TimeBasedBackground(1))
    db.put(b"k%d" % i, b"v")
    if i % 2:
        time.sleep(0.002)  # sometimes while the thread is syncing
    db.close()
for i in range(20):
    db = pylsm.open(path, sync=pylsm.Hybrid(2, 1))
    db.put(b"h%d" % i, b"v")
    db.close()
out.append(n())
print(" ".join(map(str, out)), round(time.monotonic() - t0, 3))
"""


def test_close_stops_the_background_thread(db_path):
    # in a fresh process, so that no other thread of the test run comes or goes while counting
    import subprocess
    import sys

    import lsmtest

    p = subprocess.run([sys.executable, "-c", _THREADS_CHILD, db_path], capture_output=True,
                       env=lsmtest.child_env(), timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    *counts, secs = p.stdout.decode().split()
    base, ew_open, ew_closed, tb_open, tb_closed, hy_open, hy_closed, after_loop = map(int, counts)
    # every_write needs no sync thread; whatever threads the engine always runs are the baseline
    assert ew_closed == base
    assert (tb_open, tb_closed) == (ew_open + 1, base)  # one sync thread while open, gone after close
    assert (hy_open, hy_closed) == (ew_open + 1, base)
    assert after_loop == base  # 70 quick open/close cycles: no hang, no leaked thread
    assert float(secs) < 60
    with pylsm.open(db_path) as db:
        assert db.get_many([b"k0", b"k49", b"h19"]) == [b"v", b"v", b"v"]


def test_sync_strategy_survives_reopen_with_another(db_path):
    with pylsm.open(db_path, sync=pylsm.EveryNEntries(3)) as db:
        for i in range(10):
            db.put(b"k%d" % i, b"v%d" % i)
    with pylsm.open(db_path, sync=pylsm.TimeBasedBackground(5)) as db:
        assert db.get_many([b"k0", b"k9"]) == [b"v0", b"v9"]
        db.put(b"x", b"y")
    with pylsm.open(db_path, sync="every_write") as db:
        assert db[b"x"] == b"y"
