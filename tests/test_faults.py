"""Injected I/O failures (pylsm._pylsm._test_fault; csrc/env.h): a failed write or fsync raises
StorageError, turns the database read-only (reads go on, every write raises until it is reopened, fsync
is never retried), and a reopen with the faults off gives a prefix holding every acknowledged write.

The `faults` fixture clears the process-wide fault state before and after each test.
"""
from __future__ import annotations

import errno
import functools
import os
import shutil
import threading
import time

import pytest

from lsmtest import key_of
import pylsm
from pylsm import _pylsm


key = functools.partial(key_of, width=6)  # k000000: the keys these tests were written with


def val(i: int) -> bytes:
    return b"v%d" % i


def check_prefix(path, acked: int, total: int):
    """Keys 0..m-1 present with their values and nothing after, m >= acked."""
    with pylsm.open(path) as db:
        vals = db.get_many([key(i) for i in range(total + 10)])
        m = 0
        while m < len(vals) and vals[m] is not None:
            m += 1
        assert vals[:m] == [val(i) for i in range(m)]
        assert vals[m:] == [None] * (total + 10 - m), "a hole: a later write without an earlier one"
        assert m >= acked, f"{acked} acknowledged, {m} recovered"
        db.put(b"after-reopen", b"1", sync=True)  # writable again
        assert db[b"after-reopen"] == b"1"
    return m


def assert_readonly(db):
    calls = [
        lambda: db.put(b"x", b"1"),
        lambda: db.put(b"x", b"1", sync=True),
        lambda: db.delete(key(0)),
        lambda: db.__setitem__(b"x", b"1"),
        lambda: db.update({b"x": b"1"}),
        lambda: db.sync(),
    ]
    b = pylsm.WriteBatch()
    b.put(b"x", b"1")
    calls.append(lambda: db.write(b))
    for call in calls:
        with pytest.raises(pylsm.StorageError) as ei:
            call()
        assert ei.value.errno is not None


def test_fsync_eio_during_put_sync(db_path, faults):
    db = pylsm.open(db_path)
    for i in range(10):
        db.put(key(i), val(i))
    db.put(key(10), val(10), sync=True)
    faults("sync", 1)
    with pytest.raises(pylsm.StorageError) as ei:
        db.put(key(11), val(11), sync=True)
    e = ei.value
    assert e.errno == errno.EIO
    assert isinstance(e, OSError) and isinstance(e, pylsm.Error)
    _pylsm._test_fault_clear()
    # sticky: every later write fails although the device "works" again; fsync is not retried
    assert_readonly(db)
    assert_readonly(db)
    # reads go on, and see exactly what was acknowledged
    assert db.get_many([key(i) for i in range(11)]) == [val(i) for i in range(11)]
    assert db.get(key(11)) is None
    assert key(5) in db and db[key(10)] == val(10)
    with db.snapshot() as s:
        assert s[key(3)] == val(3)
    assert db.stats()["lsn"] == 11
    db.close()
    m = check_prefix(db_path, acked=11, total=12)
    assert m in (11, 12)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_fault_errno_is_reported(db_path, faults, err):
    with pylsm.open(db_path) as db:
        db.put(key(0), val(0))
        faults("sync", 1, err)
        with pytest.raises(pylsm.StorageError) as ei:
            db.sync()
        assert ei.value.errno == err
        assert os.strerror(err) in str(ei.value) or "injected" in str(ei.value)
        with pytest.raises(pylsm.StorageError):
            db.put(key(1), val(1))
        assert db[key(0)] == val(0)
    _pylsm._test_fault_clear()
    check_prefix(db_path, acked=1, total=2)


def test_fsync_failure_every_write(db_path, faults):
    db = pylsm.open(db_path, sync="every_write")
    db.put(key(0), val(0))
    faults("sync", 3)  # the third fsync from now
    acked = 1
    with pytest.raises(pylsm.StorageError):
        for i in range(1, 10):
            db.put(key(i), val(i))
            acked += 1
    assert acked == 3
    assert_readonly(db)
    assert db.get_many([key(i) for i in range(acked)]) == [val(i) for i in range(acked)]
    db.close()
    _pylsm._test_fault_clear()
    check_prefix(db_path, acked=acked, total=10)


def test_fsync_failure_every_n_entries(db_path, faults):
    db = pylsm.open(db_path, sync=pylsm.EveryNEntries(5))
    faults("sync", 2)
    acked = 0
    with pytest.raises(pylsm.StorageError):
        for i in range(100):
            db.put(key(i), val(i))
            acked += 1
    assert 4 <= acked < 10  # the second fsync (at about 10 entries) failed
    assert_readonly(db)
    db.close()
    _pylsm._test_fault_clear()
    check_prefix(db_path, acked=acked, total=100)


def test_background_fsync_failure_turns_readonly(db_path, faults):
    db = pylsm.open(db_path, sync=pylsm.TimeBasedBackground(5))
    faults("sync", 1)
    acked = 0
    deadline = time.monotonic() + 10
    failed = None
    while time.monotonic() < deadline:
        try:
            db.put(key(acked), val(acked))
        except pylsm.StorageError as e:
            failed = e
            break
        acked += 1
        time.sleep(0.001)
    assert failed is not None, "the background thread's failed fsync never reached the writers"
    _pylsm._test_fault_clear()
    assert_readonly(db)
    assert db.get(key(0)) == val(0)
    assert db.get(key(acked - 1)) == val(acked - 1)
    db.close()
    check_prefix(db_path, acked=acked, total=acked + 1)


def test_db_sync_failure(db_path, faults):
    db = pylsm.open(db_path)
    for i in range(5):
        db.put(key(i), val(i))
    faults("sync", 1)
    with pytest.raises(pylsm.StorageError):
        db.sync()
    _pylsm._test_fault_clear()
    assert_readonly(db)
    assert db.get_many([key(i) for i in range(5)]) == [val(i) for i in range(5)]
    db.close()
    check_prefix(db_path, acked=5, total=5)


def test_group_commit_fsync_failure(db_path, faults):
    db = pylsm.open(db_path, sync="every_write")
    nthreads = 4
    acked = {t: 0 for t in range(nthreads)}
    errors = {t: None for t in range(nthreads)}
    go = threading.Barrier(nthreads + 1)

    def work(t):
        go.wait()
        try:
            for i in range(10_000):
                db.put(b"t%d-%06d" % (t, i), b"v")
                acked[t] += 1
        except pylsm.StorageError as e:
            errors[t] = e

    threads = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    faults("sync", 20)
    go.wait()
    for th in threads:
        th.join(timeout=60)
    assert all(isinstance(e, pylsm.StorageError) for e in errors.values()), errors
    assert sum(acked.values()) < nthreads * 10_000
    db.close()
    _pylsm._test_fault_clear()
    with pylsm.open(db_path) as db:
        total = 0
        for t in range(nthreads):
            vals = db.get_many([b"t%d-%06d" % (t, i) for i in range(acked[t] + 5)])
            m = 0
            while m < len(vals) and vals[m] is not None:
                m += 1
            assert acked[t] <= m <= acked[t] + 1
            assert vals[m:] == [None] * (len(vals) - m)
            total += m
        assert db.stats()["lsn"] == total


@pytest.mark.parametrize("cls,nth,err,size,count", [
    # The first file extension (the WAL grows in chunks of a few MiB).  Records under 4 KiB are
    # written through the WAL's mapping, so the extension is the first write-class call.
    ("write", 1, errno.EIO, 3_000, 4000),
    # Records of 4 KiB and more go out with pwrite: a failed one, even cut short, is not in the log.
    ("short_write", 5, errno.ENOSPC, 50_000, 100),
])
def test_write_failure_while_growing_the_wal(db_path, faults, cls, nth, err, size, count):
    db = pylsm.open(db_path)
    faults(cls, nth, err)
    big = b"x" * size
    acked = 0
    with pytest.raises(pylsm.StorageError) as ei:
        for i in range(count):
            db.put(key(i), big + val(i))
            acked += 1
    assert ei.value.errno == err
    assert 0 < acked < count
    _pylsm._test_fault_clear()
    assert_readonly(db)
    assert db.get(key(acked - 1)) == big + val(acked - 1)
    assert db.get(key(acked)) is None
    db.close()
    with pylsm.open(db_path) as db:
        vals = db.get_many([key(i) for i in range(acked + 2)])
        assert vals[:acked] == [big + val(i) for i in range(acked)]
        assert vals[acked:] == [None, None]  # nothing of a write whose append failed
        assert db.stats()["lsn"] == acked


@pytest.mark.parametrize("op", ["open", "read", "sync"])
def test_failed_open_raises_storage_error_and_releases_everything(db_path, faults, op):
    with pylsm.open(db_path) as db:
        for i in range(5):
            db.put(key(i), val(i))
    faults(op, 1)
    with pytest.raises(pylsm.StorageError) as ei:
        pylsm.open(db_path)
    assert ei.value.errno == errno.EIO
    _pylsm._test_fault_clear()
    check_prefix(db_path, acked=5, total=5)  # the lock was released, nothing was damaged


def test_unknown_fault_class_is_rejected(faults):
    with pytest.raises(ValueError):
        faults("bogus", 1)


def _scripted_workload(path, n_writes):
    """Writes key(i) in order through every write path; returns how many were acknowledged."""
    acked = 0
    try:
        db = pylsm.open(path, sync="every_write" if n_writes % 2 else "none")
    except pylsm.StorageError:
        return 0
    try:
        i = 0
        while i < n_writes:
            kind = i % 4
            if kind == 0:
                db.put(key(i), val(i), sync=True)
                i += 1
            elif kind == 1:
                b = pylsm.WriteBatch()
                b.put(key(i), val(i))
                b.put(key(i + 1), val(i + 1))
                db.write(b)
                i += 2
            else:
                db.put(key(i), val(i))
                db.sync()
                i += 1
            acked = i
    except pylsm.StorageError:
        pass
    finally:
        try:
            db.close()
        except pylsm.StorageError:
            pass
    return acked


@pytest.mark.parametrize("persistent", [False, True])
def test_fail_nth_io_call(tmp_path, faults, persistent):
    base = str(tmp_path / "base")
    with pylsm.open(base) as db:
        db.put(b"base", b"1")
    hit = 0
    for nth in range(1, 31):
        path = str(tmp_path / f"n{nth}")
        shutil.copytree(base, path)
        faults("all", nth, errno.EIO, persistent)
        n_writes = 12
        acked = _scripted_workload(path, n_writes)
        _pylsm._test_fault_clear()
        if acked < n_writes:
            hit += 1
        m = check_prefix(path, acked=acked, total=n_writes)
        with pylsm.open(path) as db:
            assert db[b"base"] == b"1"
    assert hit >= 10  # the fault really landed inside the workload for many N


@pytest.mark.parametrize("op", ["open", "sync", "write"])
def test_fault_while_switching_to_a_new_wal(db_path, faults, op):
    """A tiny memtable makes the engine switch WAL files (and write tables) every few puts; the first
    failing open/fsync/write on that path, in a writer or in a background thread, turns the database
    read-only and a reopen keeps every acknowledged put."""
    db = pylsm.open(db_path, memtable_bytes=4096)
    big = b"y" * 3000
    faults(op, 1)
    acked = 0
    failed = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and acked < 5000:
        try:
            db.put(key(acked), big + val(acked))
        except pylsm.StorageError:
            failed = True
            break
        acked += 1
    assert failed, "the injected failure never surfaced as a StorageError"
    _pylsm._test_fault_clear()
    assert_readonly(db)
    assert db.stats()["lsn"] >= acked  # stats still work
    if acked:
        assert db.get(key(acked - 1)) == big + val(acked - 1)
        assert db.get(key(0)) == big + val(0)
    db.close()
    with pylsm.open(db_path, memtable_bytes=4096) as db:
        vals = db.get_many([key(i) for i in range(acked + 3)])
        m = 0
        while m < len(vals) and vals[m] is not None:
            m += 1
        assert vals[:m] == [big + val(i) for i in range(m)]
        assert acked <= m <= acked + 1
        assert vals[m:] == [None] * (len(vals) - m)
        for i in range(acked + 3, acked + 60):  # switching works again
            db.put(key(i), big + val(i))
    with pylsm.open(db_path) as db:
        assert db.get(key(acked + 59)) == big + val(acked + 59)


@pytest.fixture
def table_db(tmp_path):
    """A closed database whose data went through the engine's whole write path: with a tiny memtable,
    most of it has left the WAL for other files."""
    path = str(tmp_path / "tables")
    with pylsm.open(path, memtable_bytes=4096) as db:
        for i in range(300):
            db.put(key(i), val(i) * 20)
    return path


@pytest.mark.parametrize("op", ["open", "read"])
def test_transient_failure_during_open_never_loses_data(table_db, tmp_path, faults, op):
    want = [val(i) * 20 for i in range(300)]
    outcomes = set()
    for nth in range(1, 9):
        p = str(tmp_path / f"{op}{nth}")
        shutil.copytree(table_db, p)
        faults(op, nth)
        try:
            db = pylsm.open(p)
        except pylsm.StorageError:
            outcomes.add("StorageError")  # the right answer to an I/O error
        else:
            outcomes.add("opened")  # the fault hit something optional; then everything must be there
            _pylsm._test_fault_clear()  # (a fault still armed would rightly fail a later read)
            try:
                assert db.get_many([key(i) for i in range(300)]) == want, f"{op}:{nth}: data lost"
            finally:
                db.close()
        finally:
            _pylsm._test_fault_clear()
        with pylsm.open(p) as db:  # and with the device healthy again, nothing is lost
            assert db.get_many([key(i) for i in range(300)]) == want, f"after {op}:{nth}: data lost"
    assert "StorageError" in outcomes


# ---------------------------------------------------------------------------------------------
# Every N: the Nth I/O call fails, for every N from the open to the close of a workload that
# flushes, compacts, ingests, reopens and rolls the manifest over (tests/lsmtest.py powerloss_ops).

SWEEP_OPS = 40


@pytest.fixture
def small_manifest():
    _pylsm._test_set("manifest_roll_bytes", 2048)
    yield
    _pylsm._test_set("manifest_roll_bytes", 64 << 20)


def _sweep_run(path, ops, sync):
    """Run ops; returns (ops that returned, the StorageError that stopped them or None)."""
    from lsmtest import powerloss_do

    done, db, op = 0, None, None
    try:
        db = pylsm.open(path, sync=sync, memtable_bytes=16 << 10)
        for op in ops:
            if op[0] == "reopen":
                db.close()
                db = None
                db = pylsm.open(path, sync=sync, memtable_bytes=16 << 10)
            else:
                powerloss_do(db, op)
            done += 1
        op = ("close",)
        db.close()
        db = None
        return done, None
    except pylsm.StorageError as e:
        if db is not None:
            if op[0] in ("put", "del", "batch"):
                # The rules after a failed write: every write raises until the database is reopened.
                # (A failed ingest, flush or compaction that committed nothing leaves it writable.)
                with pytest.raises(pylsm.StorageError):
                    db.put(b"after-failure", b"1")
            try:
                db.close()
            except pylsm.StorageError:
                pass
        return done, e


@pytest.mark.engine
@pytest.mark.parametrize("cls,err,persistent", [("all", errno.EIO, False), ("all", errno.EIO, True),
                                                ("short_write", errno.ENOSPC, True)])
def test_fail_every_nth_io_call_of_a_whole_workload(fast_dir, faults, small_manifest, cls, err, persistent):
    from lsmtest import closest_prefix, powerloss_ops, prefixes_matching

    ops = powerloss_ops(9, SWEEP_OPS)
    kinds = {op[0] for op in ops}
    assert {"put", "del", "batch", "ingest", "flush", "compact", "reopen"} <= kinds, kinds
    faults(cls, 1 << 40, err, persistent)  # count the calls of a clean run
    assert _sweep_run(os.path.join(fast_dir, "clean"), ops, "every_write") == (len(ops), None)
    total = _pylsm._test_fault_calls()
    assert total > 80, total
    failed = 0
    for nth in range(1, total + 1):
        path = os.path.join(fast_dir, f"n{nth}")
        faults(cls, nth, err, persistent)
        done, e = _sweep_run(path, ops, "every_write" if nth % 2 else "none")
        _pylsm._test_fault_clear()
        if e is not None:
            failed += 1
            assert e.errno == err, (nth, e)
            assert "injected" in str(e), (nth, e)
        with pylsm.open(path) as db:
            state = dict(db.items())
        ks = prefixes_matching(ops, state)
        assert ks, f"N={nth}: not a prefix: {closest_prefix(ops, state)}"
        assert max(ks) >= done, f"N={nth}: {done} ops returned, only {max(ks)} survived"
        shutil.rmtree(path)
    # Most N land on a call whose failure the caller sees (some are in the background and retried
    # by nothing, but surface at the next write).
    assert failed > total // 2, (failed, total)
