"""The changes feed (DB.changes, wal_retention_bytes / wal_retention_seconds) and point-in-time restore
(pylsm.restore_to).

The feed yields every write batch once and in order across WAL switches, flushes and reopens; a start
the kept logs no longer cover is an error, never a silent hole; a read-only follower tails a live
writer and knows how far behind it is.  restore_to rebuilds exactly the batches up to a time.
"""
from __future__ import annotations

import os
import random
import threading
import time

import pytest

import pylsm


def model_batches(db, rng, n, keys=300):
    """Write n random batches (puts and deletes); return them as the feed should show them."""
    out = []
    for _ in range(n):
        ops = []
        with db.batch() as b:
            for _ in range(rng.randint(1, 4)):
                k = b"k%04d" % rng.randrange(keys)
                if rng.random() < 0.2:
                    b.delete(k)
                    ops.append(("delete", k, None))
                else:
                    v = bytes([rng.randrange(256)]) * rng.randint(0, 300)
                    b.put(k, v)
                    ops.append(("put", k, v))
        out.append(ops)
    return out


@pytest.mark.engine  # (the engine's behaviour: make test runs it once, test-pythons skips it)
def test_feed_yields_every_batch_once_in_order_across_switches_flushes_and_reopen(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "db"
    opts = dict(memtable_bytes=32 * 1024, wal_retention_bytes=1 << 30, wal_timestamp=True)
    db = pylsm.open(path, **opts)
    want = model_batches(db, rng, 400)
    db.flush()
    want += model_batches(db, rng, 300)
    db.close()
    db = pylsm.open(path, **opts)  # reopened: its WALs were flushed and archived
    want += model_batches(db, rng, 300)
    assert os.listdir(path / "archive")
    got = list(db.changes())
    assert [ops for _, _, ops in got] == want
    lsns = [lsn for lsn, _, _ in got]
    assert lsns[0] == 1 and all(b == a + len(ops) for (a, _, ops), b in zip(got, lsns[1:]))
    assert lsns[-1] + len(got[-1][2]) - 1 == db.stats()["lsn"]
    times = [ts for _, ts, _ in got]
    assert all(isinstance(t, float) for t in times) and times == sorted(times)
    assert abs(times[-1] - time.time()) < 60
    # Resuming from any position yields the rest; from the end, nothing.
    for i in (0, 1, 500, len(got) - 1):
        lsn, _, ops = got[i]
        assert list(db.changes(lsn + len(ops) - 1)) == got[i + 1:]
    assert list(db.changes(db.stats()["lsn"])) == []
    # A start inside a batch yields that whole batch (batches are atomic).
    lsn, _, ops = next(b for b in got if len(b[2]) > 1)
    assert next(iter(db.changes(lsn)))[0] == lsn
    db.close()


def test_a_start_no_kept_log_covers_is_an_error(tmp_path):
    db = pylsm.open(tmp_path / "db", memtable_bytes=32 * 1024)  # no retention: flushed logs are deleted
    for i in range(2000):
        db[b"k%05d" % i] = b"x" * 50
    db.flush()
    with pytest.raises(pylsm.Error, match="in no kept WAL"):
        list(db.changes(0))
    lsn = db.stats()["lsn"]
    db[b"after"] = b"1"
    assert [ops for _, _, ops in db.changes(lsn)] == [[("put", b"after", b"1")]]
    assert list(db.changes(lsn + 1)) == []
    with pytest.raises(TypeError):
        db.changes("0")
    with pytest.raises(ValueError):
        db.changes(-1)
    db.close()


def test_an_ingest_is_a_gap_in_the_feed(tmp_path):
    db = pylsm.open(tmp_path / "db", wal_retention_bytes=1 << 30)
    db[b"a"] = b"1"
    db.ingest([(b"i%03d" % i, b"v") for i in range(10)])
    db[b"b"] = b"2"
    with pytest.raises(pylsm.Error, match="ingest"):
        list(db.changes(0))
    db.close()


@pytest.mark.engine  # (the engine's behaviour: make test runs it once, test-pythons skips it)
def test_retention_by_bytes_and_by_age(tmp_path):
    db = pylsm.open(tmp_path / "db", memtable_bytes=32 * 1024, wal_retention_bytes=200 * 1024)
    for r in range(12):
        for i in range(300):
            db[b"k%05d" % i] = b"x" * 100
        db.flush()
    # What is kept still reads as a feed from its oldest batch on.
    with pytest.raises(pylsm.Error, match="in no kept WAL"):
        list(db.changes(0))
    db.close()  # (the background thread archives and trims after each flush: done by now)
    arch = tmp_path / "db" / "archive"
    sizes = [os.path.getsize(arch / n) for n in os.listdir(arch)]
    assert len(sizes) > 3 and 0 < sum(sizes) <= 200 * 1024
    db = pylsm.open(tmp_path / "db", memtable_bytes=32 * 1024, wal_retention_seconds=60)
    past = time.time() - 3600
    for n in os.listdir(arch):
        os.utime(arch / n, (past, past))
    for i in range(300):
        db[b"k%05d" % i] = b"y" * 100
    db.flush()  # archives the newest log, and trims the hour-old ones (at the open already)
    db.close()
    names = os.listdir(arch)
    assert names and all(os.path.getmtime(arch / n) > past + 1 for n in names)
    pylsm.destroy(tmp_path / "db")
    assert not os.path.exists(tmp_path / "db")


def test_timestamps_are_on_by_default_when_logs_are_kept(tmp_path):
    with pylsm.open(tmp_path / "kept", wal_retention_seconds=60) as db:
        db[b"a"] = b"1"
        (lsn, ts, ops), = db.changes()
        assert abs(ts - time.time()) < 60
    with pylsm.open(tmp_path / "plain") as db:
        db[b"a"] = b"1"
        assert [ts for _, ts, _ in db.changes()] == [None]


def test_feed_decodes_with_the_codecs(tmp_path):
    db = pylsm.open(tmp_path / "db", key_codec="str", value_codec="json")
    db["a"] = {"x": 1}
    del db["a"]
    assert [ops for _, _, ops in db.changes()] == [[("put", "a", {"x": 1})], [("delete", "a", None)]]
    assert [ts for _, ts, _ in db.changes()] == [None, None]
    db.close()


def test_a_read_only_follower_tails_a_live_writer(tmp_path):
    """A follower (read-only handle) applies the feed to its own copy, resuming where it stopped;
    its lag shrinks to zero and the copy equals the writer's data."""
    path = tmp_path / "db"
    w = pylsm.open(path, memtable_bytes=32 * 1024, wal_retention_bytes=1 << 30)
    w[b"first"] = b"0"
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 5000:
            with w.batch() as b:
                b.put(b"k%05d" % (i % 700), b"%d" % i)
                if i % 5 == 0:
                    b.delete(b"k%05d" % ((i * 7) % 700))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    follower = pylsm.open(path, read_only=True)
    copy, pos, lags = {}, 0, []
    try:
        while True:
            done = not t.is_alive()
            for lsn, _, ops in follower.changes(pos):
                for op, k, v in ops:
                    if op == "put":
                        copy[k] = v
                    else:
                        copy.pop(k, None)
                pos = lsn + len(ops) - 1
            follower.refresh()
            lags.append(follower.stats()["lsn"] - pos)  # how far behind the follower is
            if done:
                break
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    for lsn, _, ops in follower.changes(pos):  # the last batches after the writer stopped
        for op, k, v in ops:
            copy[k] = v if op == "put" else copy.pop(k, None)
        pos = lsn + len(ops) - 1
    copy = {k: v for k, v in copy.items() if v is not None}
    assert pos == w.stats()["lsn"]
    assert copy == dict(w.items())
    assert lags and min(lags) >= 0
    follower.close()
    w.close()


# ---- point-in-time restore --------------------------------------------------------------------


def timed_batches(db, rng, rounds, model):
    """Rounds of batches with a time mark between rounds; model (a dict) follows the writes; returns
    (marks, model state at each mark)."""
    marks, states = [], []
    for _ in range(rounds):
        for ops in model_batches(db, rng, rng.randint(20, 60)):
            for op, k, v in ops:
                if op == "put":
                    model[k] = v
                else:
                    model.pop(k, None)
        time.sleep(0.002)
        marks.append(time.time())
        states.append(dict(model))
        time.sleep(0.002)
    return marks, states


@pytest.mark.parametrize("base", ["checkpoint", "backup"])
@pytest.mark.engine  # (the engine's behaviour: make test runs it once, test-pythons skips it)
def test_restore_to_yields_exactly_the_writes_up_to_the_time(tmp_path, base):
    rng = random.Random(3)
    path = tmp_path / "db"
    db = pylsm.open(path, memtable_bytes=32 * 1024, wal_retention_bytes=1 << 30, wal_timestamp=True)
    model = {}
    m0, s0 = timed_batches(db, rng, 2, model)
    if base == "checkpoint":
        db.checkpoint(tmp_path / "cp")
        src = tmp_path / "cp"
    else:
        pylsm.backup(db, tmp_path / "bk")
        src = tmp_path / "bk"
    marks, states = timed_batches(db, rng, 6, model)
    db.flush()  # the logs after the base are archived now, not live
    if base == "backup":
        marks2, states2 = timed_batches(db, rng, 2, model)
        pylsm.backup(db, tmp_path / "bk")
        marks, states = marks + marks2, states + states2
        db.close()
        pylsm.destroy(path)  # the backups alone hold what it takes: the base and the logs after it
    for i in sorted(rng.sample(range(len(marks)), 4)):
        out = tmp_path / ("r%d" % i)
        lsn = pylsm.restore_to(out, src, marks[i])
        with pylsm.open(out) as r:
            assert dict(r.items()) == states[i]
            assert r.stats()["lsn"] == lsn
    # Before the base: refused; the target must be new.
    with pytest.raises(ValueError):
        pylsm.restore_to(tmp_path / "early", src, m0[0] - 3600)
    assert not os.path.exists(tmp_path / "early")
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        pylsm.restore_to(tmp_path / "taken", src, marks[-1])
    db.close()


def test_restore_to_needs_timestamps_and_a_base(tmp_path):
    db = pylsm.open(tmp_path / "db", wal_retention_bytes=1 << 30, wal_timestamp=False)
    db[b"a"] = b"1"
    db.checkpoint(tmp_path / "cp")
    db[b"b"] = b"2"
    with pytest.raises(ValueError, match="timestamps"):
        pylsm.restore_to(tmp_path / "r", tmp_path / "cp", time.time() + 10)
    assert not os.path.exists(tmp_path / "r") and not os.path.exists(tmp_path / "r.pitr")
    with pytest.raises(ValueError, match="neither"):
        pylsm.restore_to(tmp_path / "r", tmp_path, time.time())
    with pytest.raises(TypeError):
        pylsm.restore_to(tmp_path / "r", tmp_path / "cp", "yesterday")
    db.close()
