"""Regression tests of the outside audit's reliability bugs (issue 9), each failing before its fix:
Python code that the binding calls back (generators, __bool__, __buffer__, finalizers) closing what
the call uses; snapshots closed by another thread mid-call; iterators and snapshots used in a forked
child; the per-thread read buffer of short-lived threads; the errno of a failed background flush.
The crash cases run in a child process, so that a crash is a failed test and not a dead test run."""
from __future__ import annotations

import errno
import gc
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

import lsmtest
import pylsm


def run_child(code: str, timeout: float = 120) -> str:
    """Run code in a fresh interpreter with this pylsm; returns its stdout; fails on a crash."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, timeout=timeout,
                       env=lsmtest.child_env())
    assert p.returncode == 0, f"child died with {p.returncode}: {p.stderr.decode()[-3000:]}"
    return p.stdout.decode()


PRELUDE = """
import os, sys, tempfile, threading, gc
import pylsm
d = tempfile.mkdtemp()
def fresh(n=50, flush=False):
    db = pylsm.open(os.path.join(d, "db%d" % len(os.listdir(d))))
    for i in range(n):
        db[b"k%03d" % i] = b"v" * 100
    if flush:
        db.flush()
    return db
def expect_closed(fn):
    try:
        fn()
    except pylsm.ClosedError:
        print("closed")
    else:
        print("no error")
"""


def test_get_many_with_a_generator_that_closes_the_database():
    out = run_child(PRELUDE + """
for flush in (False, True):
    db = fresh(flush=flush)
    def keys():
        yield b"k001"
        db.close()
        yield b"k002"
    expect_closed(lambda: db.get_many(keys()))
""")
    assert out.split() == ["closed", "closed"]


def test_sync_objects_whose_bool_closes_the_database():
    out = run_child(PRELUDE + """
class Closer:
    def __init__(self, db): self.db = db
    def __bool__(self):
        self.db.close()
        return True
db = fresh()
b = pylsm.WriteBatch(); b.put(b"a", b"1")
expect_closed(lambda: db.write(b, sync=Closer(db)))
db = fresh()
expect_closed(lambda: db.update({b"a": b"1"}, sync=Closer(db)))
db = fresh()
expect_closed(lambda: db.put(b"a", b"1", sync=Closer(db)))
db = fresh()
expect_closed(lambda: db.delete(b"k001", sync=Closer(db)))
""")
    assert out.split() == ["closed"] * 4


def test_snapshot_get_many_with_a_generator_that_closes_the_snapshot_or_the_database():
    out = run_child(PRELUDE + """
for what in ("snapshot", "db"):
    for flush in (False, True):
        db = fresh(flush=flush)
        snap = db.snapshot()
        def keys():
            yield b"k001"
            (snap if what == "snapshot" else db).close()
            yield b"k002"
        expect_closed(lambda: snap.get_many(keys()))
        # and the snapshot still behaves: closed, idempotent close
        snap.close(); snap.close()
        expect_closed(lambda: snap.get(b"k001"))
""")
    assert out.split() == ["closed"] * 8


def test_snapshot_closed_by_another_thread_during_get_many():
    """Reads from tables release the GIL: another thread closes the snapshot meanwhile."""
    out = run_child(PRELUDE + """
db = pylsm.open(os.path.join(d, "t"), block_cache_bytes=0)
for i in range(3000):
    db[b"k%05d" % i] = os.urandom(200)
db.flush()
keys = [b"k%05d" % i for i in range(3000)] * 3
outcomes = set()
for round in range(40):
    snap = db.snapshot()
    t = threading.Thread(target=snap.close)
    def reader():
        try:
            r = snap.get_many(keys)
            outcomes.add("ok" if len(r) == len(keys) and all(r) else "bad")
        except pylsm.ClosedError:
            outcomes.add("closed")
    r = threading.Thread(target=reader)
    r.start(); t.start(); r.join(); t.join()
    try:
        snap.get(b"k00001")
        outcomes.add("open after close")
    except pylsm.ClosedError:
        pass
db.close()
print(" ".join(sorted(outcomes)))
""")
    assert set(out.split()) <= {"ok", "closed"}


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ in Python classes needs 3.12")
def test_buffer_export_that_closes_the_database():
    out = run_child(PRELUDE + """
class Key:
    def __init__(self, db): self.db = db
    def __buffer__(self, flags):
        self.db.close()
        return memoryview(b"k001")
for call in ("get", "put", "contains", "delete", "items", "compact", "snap_get", "get_many", "snap_get_many"):
    db = fresh(flush=True)
    snap = db.snapshot()
    k = Key(db)
    f = {"get": lambda: db.get(k), "put": lambda: db.put(k, b"x"), "contains": lambda: k in db,
         "delete": lambda: db.delete(k), "items": lambda: list(db.items(start=k)),
         "compact": lambda: db.compact(k), "snap_get": lambda: snap.get(k),
         "get_many": lambda: db.get_many([b"k002", k, b"k003"]),
         "snap_get_many": lambda: snap.get_many([b"k002", k])}[call]
    expect_closed(f)
""")
    assert out.split() == ["closed"] * 9


def test_finalizers_that_close_the_database_during_calls():
    """A cycle collected by the GC in the middle of a call (at an allocation) whose __del__ closes the
    database: every call raises ClosedError or completes; none crashes."""
    out = run_child(PRELUDE + """
gc.set_threshold(1, 1, 1)
class Bomb:
    def __init__(self, db):
        self.db = db; self.me = self
    def __del__(self):
        self.db.close()
results = set()
calls = [lambda db: db.get_many([b"k%03d" % i for i in range(50)]), lambda db: list(db.items()),
         lambda db: db.snapshot().get_many([b"k001", b"k002"]), lambda db: db.stats(),
         lambda db: [db.get(b"k%03d" % i) for i in range(50)], lambda db: len(db)]
for flush in (False, True):
    for call in calls:
        for _ in range(5):
            db = fresh(flush=flush)
            Bomb(db)
            try:
                call(db)
                results.add("ok")
            except pylsm.ClosedError:
                results.add("closed")
print(" ".join(sorted(results)))
""")
    assert set(out.split()) <= {"ok", "closed"} and out.split()


def test_batch_changed_by_sync_bool_and_by_another_thread():
    out = run_child(PRELUDE + """
db = fresh(0)
b = pylsm.WriteBatch()
for i in range(1000):
    b.put(b"b%04d" % i, b"x" * 1000)
class Clear:
    def __bool__(self):
        b.clear(); b.put(b"only", b"1")
        return False
db.write(b, sync=Clear())           # the batch as it is after __bool__: one put
print(sorted(db.keys()) == [b"only"])
# Another thread changing the batch while a synced write of it runs without the GIL: refused.
errors = []
def mutate():
    for _ in range(2000):
        try:
            b.put(b"late", b"2")
        except pylsm.Error:
            errors.append(1)
big = pylsm.WriteBatch()
b.clear()
for i in range(3000):
    b.put(b"c%04d" % i, b"y" * 500)
n = len(b)
t = threading.Thread(target=mutate); t.start()
for _ in range(20):
    db.write(b, sync=True)
t.join()
got = len([k for k in db.keys() if k.startswith(b"c")])
print(got == 3000)
""")
    assert out.split() == ["True", "True"]


def test_snapshot_and_iterator_made_before_fork_in_the_child():
    """A child forked while another thread writes (so the database lock is often held at the fork):
    closing a parent-made snapshot or iterator never hangs, and using one raises pylsm.Error."""
    out = run_child(PRELUDE + """
import warnings, signal
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, on purpose
db = fresh(200, flush=True)
stop = False
def writer():
    i = 0
    while not stop:
        db[b"w%d" % (i % 1000)] = b"z" * 50
        i += 1
t = threading.Thread(target=writer); t.start()
hung = bad = 0
for _ in range(30):
    snap = db.snapshot()
    it = db.items()
    next(it)
    it2 = snap.keys()
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)  # a hang ends the child with SIGALRM
        code = 0
        try:
            next(it)
            code = 3
        except pylsm.Error:
            pass
        try:
            snap.get(b"k001")
            code = 4
        except pylsm.Error:
            pass
        it.close(); it2.close(); snap.close()
        del it, it2, snap
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        hung += 1
    elif os.WEXITSTATUS(status):
        bad += 1
    it.close(); it2.close(); snap.close()
stop = True
t.join()
db.close()
print(hung, bad)
""", timeout=300)
    assert out.split() == ["0", "0"]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_short_lived_threads_do_not_leak_their_read_buffers(db_path):
    big = os.urandom(700 << 10)
    with pylsm.open(db_path) as db:
        db[b"big"] = big

        def read():
            assert db[b"big"] == big

        for _ in range(20):  # warm up: allocator arenas, thread stacks
            t = threading.Thread(target=read)
            t.start()
            t.join()
        gc.collect()
        before = _rss_bytes()
        for _ in range(1000):
            t = threading.Thread(target=read)
            t.start()
            t.join()
        gc.collect()
        grown = _rss_bytes() - before
    # before the fix: 700 KiB per thread (about 690 MiB)
    assert grown < 150 << 20, f"RSS grew by {grown >> 20} MiB over 1,000 threads"


def test_enospc_in_a_background_flush_reaches_flush_as_enospc(db_path, faults):
    with pylsm.open(db_path) as db:
        for i in range(1000):
            db[b"k%04d" % i] = b"v" * 100
        faults("write", 1, errno.ENOSPC, True)
        with pytest.raises(pylsm.StorageError) as ei:
            db.flush()
        assert ei.value.errno == errno.ENOSPC, ei.value
        with pytest.raises(pylsm.StorageError) as ei:  # later writes: read-only, same cause
            db[b"x"] = b"1"
        assert ei.value.errno == errno.ENOSPC
        faults("write", 0)
        assert db[b"k0001"] == b"v" * 100  # reads go on


def _numbers(path):
    """File number -> the names that use it (NNNNNN.wal/.sst, MANIFEST-NNNNNN)."""
    out = {}
    for name in os.listdir(path):
        if name.startswith("MANIFEST-"):
            n = int(name[9:])
        elif name[:6].isdigit() and name.endswith((".wal", ".sst")):
            n = int(name[:6])
        else:
            continue
        out.setdefault(n, []).append(name)
    return out


def test_file_numbers_are_never_reused_after_a_crash(db_path):
    """Issue 9, bug 8: the manifest written at open takes its number after recovery has seen every WAL,
    not from the old manifest's stale next-file counter."""
    for round in range(4):
        run_child(f"""
import os, pylsm
db = pylsm.open({db_path!r}, memtable_bytes=64 << 10)
for i in range(300):
    db[b"r{round}-%04d" % i] = b"v" * 100
os._exit(0)  # as kill -9 would: no close
""")
        with pylsm.open(db_path, memtable_bytes=64 << 10) as db:
            for r in range(round + 1):
                assert db[b"r%d-0299" % r] == b"v" * 100
            reused = {n: names for n, names in _numbers(db_path).items() if len(names) > 1}
            assert not reused, f"one number, two files: {reused}"


def test_an_open_that_fails_leaves_the_directory_as_it_found_it(db_path):
    with pylsm.open(db_path, sync=pylsm.EveryNEntries(4)) as db:
        for i in range(200):
            db[b"k%04d" % i] = b"v" * 100
    wal = lsmtest.find_wal(db_path)
    data = bytearray(open(wal, "rb").read())
    data[len(data) // 2] ^= 0xFF  # damage a closed (so durable) WAL: corruption, not a torn tail
    open(wal, "wb").write(bytes(data))

    def snapshot():
        return {n: open(os.path.join(db_path, n), "rb").read() for n in sorted(os.listdir(db_path))}

    before = snapshot()
    for _ in range(3):
        with pytest.raises(pylsm.CorruptionError):
            pylsm.open(db_path)
    assert snapshot() == before  # no new MANIFEST, CURRENT unchanged, no WAL cut or created


def test_short_writes_during_flush_and_compaction_never_leave_it_unopenable(tmp_path, faults):
    """Issue 9, bug 2: ENOSPC part-way through any write of a flush (tables, manifest) while compactions
    run: the database turns read-only, and reopens with every acknowledged write."""
    outcomes = set()
    for nth in range(1, 40, 3):
        path = str(tmp_path / f"db{nth}")
        model = {}
        with pylsm.open(path, memtable_bytes=32 << 10, block_bytes=1024) as db:
            for i in range(2500):  # L0 tables up to the compaction trigger
                k = b"k%05d" % (i % 1500)
                model[k] = b"%d" % i + b"v" * 60
                db[k] = model[k]
            faults("short_write", nth, errno.ENOSPC)
            try:
                for i in range(2500, 5000):
                    k = b"k%05d" % (i % 1500)
                    db[k] = b"%d" % i + b"v" * 60
                    model[k] = b"%d" % i + b"v" * 60
                db.flush()
                outcomes.add("no fault hit")
            except pylsm.StorageError as e:
                assert e.errno == errno.ENOSPC, e
                outcomes.add("enospc")
            faults("write", 0)
            pylsm._pylsm._test_fault_clear()
        with pylsm.open(path) as db:  # reopens: the torn record (if any) is the manifest's tail
            assert dict(db.items()) == model
    assert "enospc" in outcomes


def test_snapshot_closed_by_another_thread_while_an_iterator_is_made():
    out = run_child(PRELUDE + """
db = fresh(3000, flush=True)
outcomes = set()
for round in range(60):
    snap = db.snapshot()
    def make():
        try:
            it = snap.items(b"k0", b"k9")
            outcomes.add("ok" if len(list(it)) == 2900 else "bad")  # k900..k999 are past k9
        except pylsm.ClosedError:
            outcomes.add("closed")
    a = threading.Thread(target=make); b = threading.Thread(target=snap.close)
    a.start(); b.start(); a.join(); b.join()
print(" ".join(sorted(outcomes)))
""")
    assert set(out.split()) <= {"ok", "closed"}


def test_a_table_cut_short_under_readers_is_an_error_not_a_crash():
    """Tables are read in place from a mapping: a page the disk cannot deliver (here: the file cut short
    behind the engine's back) raises SIGBUS, which the engine turns into StorageError."""
    out = run_child(PRELUDE + """
db = pylsm.open(os.path.join(d, "cut"))
vals = {}
for i in range(20000):
    vals[b"k%06d" % i] = db[b"k%06d" % i] = os.urandom(100)
db.flush()
ssts = [f for f in os.listdir(db.path) if f.endswith(".sst")]
p = os.path.join(db.path, max(ssts, key=lambda f: os.path.getsize(os.path.join(db.path, f))))
os.truncate(p, os.path.getsize(p) // 3)
errors = wrong = 0
# pages past the end raise SIGBUS (StorageError); the zeros after the end in its last page fail a
# checksum (CorruptionError).  The index, filter and point index are read in place at the table's end,
# so gets and scans of the cut table fail; what a read does return is right.
for i in range(0, 20000, 7):
    k = b"k%06d" % i
    try:
        wrong += db.get(k) != vals[k]
    except (pylsm.StorageError, pylsm.CorruptionError):
        errors += 1
try:
    for k, v in db.items():
        wrong += v != vals[k]
except (pylsm.StorageError, pylsm.CorruptionError):
    errors += 1
print(errors > 0, wrong == 0)
""")
    assert out.split() == ["True", "True"]
