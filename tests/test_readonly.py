"""read_only=True: open beside a writer (another process or another handle here) without its lock and
without writing a byte; a consistent state as of the open; refresh() catches up; writes raise
ReadOnlyError; several readers at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import lsmtest
import pylsm


tree = lsmtest.dir_snapshot


def settled(path):
    """The directory once the writer's background thread has stopped changing it."""
    prev = tree(path)
    for _ in range(100):
        time.sleep(0.1)
        now = tree(path)
        if now == prev:
            return now
        prev = now
    raise AssertionError("the writer kept changing the directory")


def fill(db, lo, hi, value=b"v"):
    db.update((b"k%06d" % i, value * 50) for i in range(lo, hi))


def test_reads_write_nothing(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path, memtable_bytes=256 * 1024) as w:
        fill(w, 0, 20_000)
        w.flush()
        fill(w, 20_000, 21_000, b"w")  # in the WAL only
        w.delete(b"k000005")
        before = settled(path)  # the writer's background work (an old log's removal) is done
        with pylsm.open(path, read_only=True) as r:
            assert r.read_only and not w.read_only
            assert r[b"k020500"] == b"w" * 50 and b"k000005" not in r
            assert len(r) == 20_999
            assert sum(1 for _ in r.items(prefix=b"k01")) == 10_000
            with r.iterator(reverse=True) as it:
                assert it.next()[0] == b"k020999"
            with r.snapshot() as s:
                assert s.get_many([b"k000001", b"nope"]) == [b"v" * 50, None]
            r.refresh()
            r.stats()
            repr(r)
        assert tree(path) == before
    # and beside no writer at all: still not a byte
    before = tree(path)
    with pylsm.open(path, read_only=True) as r:
        assert len(r) == 20_999
        r.refresh()
    assert tree(path) == before


def test_every_write_raises_read_only_error(tmp_path):
    path = tmp_path / "db"
    with pylsm.open(path) as w:
        w[b"a"] = b"1"
    before = tree(path)
    with pylsm.open(path, read_only=True) as r:
        b = pylsm.WriteBatch()
        b.put(b"x", b"y")
        attempts = [
            lambda: r.put(b"a", b"2"), lambda: r.__setitem__(b"a", b"2"), lambda: r.delete(b"a"),
            lambda: r.__delitem__(b"a"), lambda: r.write(b), lambda: r.write(pylsm.WriteBatch()),
            lambda: r.update({b"a": b"2"}), lambda: r.flush(), lambda: r.compact(), lambda: r.sync(),
            lambda: r.pop(b"a"), lambda: r.popitem(), lambda: r.setdefault(b"new", b"v"), lambda: r.clear(),
            lambda: r.put(b"a", b"2", sync=True),
        ]
        for attempt in attempts:
            with pytest.raises(pylsm.ReadOnlyError):
                attempt()
        with pytest.raises(pylsm.ReadOnlyError):
            with r.batch() as bb:
                bb.put(b"z", b"z")
        assert issubclass(pylsm.ReadOnlyError, pylsm.Error)
        assert dict(r) == {b"a": b"1"}
    assert tree(path) == before


def test_missing_database_creates_nothing(tmp_path):
    with pytest.raises(pylsm.NotFoundError) as e:
        pylsm.open(tmp_path / "nope" / "db", read_only=True)
    assert isinstance(e.value, FileNotFoundError)
    assert not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        pylsm.open(tmp_path / "empty", read_only=True)
    assert os.listdir(tmp_path / "empty") == []


def test_refresh_catches_up_and_snapshots_keep_their_view(tmp_path):
    path = tmp_path / "db"
    with pylsm.open(path, memtable_bytes=128 * 1024) as w:
        fill(w, 0, 1000)
        r = pylsm.open(path, read_only=True)
        it = r.items()
        snap = r.snapshot()
        fill(w, 1000, 30_000)
        for i in range(0, 1000, 2):
            del w[b"k%06d" % i]
        w.flush()
        w.compact()  # the versions snap needs are gone from the writer's tables
        assert len(r) == 1000  # as of the open
        assert r.get(b"k020000") is None
        r.refresh()
        assert len(r) == 29_500 and r.get(b"k000000") is None and r[b"k020000"]
        assert len(snap) == 1000 and snap[b"k000000"] == b"v" * 50  # pinned across the refresh
        assert sum(1 for _ in it) == 1000
        snap.close()
        w[b"late"] = b"1"
        assert b"late" not in r
        r.refresh()
        assert r[b"late"] == b"1"
        r.close()


def test_refresh_on_a_writer_is_an_error(tmp_path):
    with pylsm.open(tmp_path / "db") as w:
        with pytest.raises(pylsm.Error, match="read_only"):
            w.refresh()


def test_reader_does_not_block_the_writer_and_writers_still_exclude(tmp_path):
    path = tmp_path / "db"
    with pylsm.open(path) as w:
        w[b"a"] = b"1"
    r = pylsm.open(path, read_only=True)  # no writer: the reader takes no lock either
    with pylsm.open(path) as w:  # so a writer can open beside it
        w[b"b"] = b"2"
        with pytest.raises(pylsm.LockError, match="this process"):
            pylsm.open(path)
        r.refresh()
        assert dict(r) == {b"a": b"1", b"b": b"2"}
    r.close()


WRITER = textwrap.dedent("""
    import sys, pylsm
    # Each batch sets k0..k9 to the same counter: a consistent view sees them all equal.
    db = pylsm.open(sys.argv[1], memtable_bytes=64 * 1024)
    n = 0
    print("ready", flush=True)
    while True:
        n += 1
        v = b"%012d" % n + b"x" * 200
        db.update({b"k%d" % i: v for i in range(10)})
        if n % 50 == 0:
            db[b"filler%08d" % n] = b"y" * 4000
""")

READER = textwrap.dedent("""
    import sys, time, pylsm
    path, seconds = sys.argv[1], float(sys.argv[2])
    db = pylsm.open(path, read_only=True)
    last, views, end = 0, 0, time.time() + seconds
    while time.time() < end:
        db.refresh()
        with db.snapshot() as s:
            vals = s.get_many([b"k%d" % i for i in range(10)])
            scanned = [v for _, v in s.items(b"k0", b"k9\\x00")]
        assert len(set(vals)) == 1, vals
        assert scanned == vals, "a scan and get_many of one snapshot disagree"
        n = int(vals[0][:12]) if vals[0] else 0
        assert n >= last, (n, last)
        last, views = n, views + 1
    db.close()
    print(views, last)
""")


def test_several_reader_processes_beside_a_live_writer(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path) as w:
        w.update({b"k%d" % i: b"%012d" % 0 for i in range(10)})
    writer = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        readers = [subprocess.Popen([sys.executable, "-c", READER, path, "4"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(3)]
        results = []
        for p in readers:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            views, last = map(int, out.split())
            results.append((views, last))
        assert all(views > 5 and last > 0 for views, last in results), results
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    # after kill -9 of the writer: a reader opens the torn state without repairing it
    before = tree(path)
    with pylsm.open(path, read_only=True) as r:
        vals = r.get_many([b"k%d" % i for i in range(10)])
        assert len(set(vals)) == 1
    assert tree(path) == before
    with pylsm.open(path) as w:  # and the writer's own recovery agrees
        assert w.get_many([b"k%d" % i for i in range(10)]) == vals


def test_corruption_is_reported_not_hidden(tmp_path):
    path = tmp_path / "db"
    with pylsm.open(path) as w:
        fill(w, 0, 2000)
        w.flush()
    sst = next(p for p in path.iterdir() if p.suffix == ".sst")
    data = bytearray(sst.read_bytes())
    data[100] ^= 0x40  # inside the first data block
    sst.write_bytes(bytes(data))
    with pylsm.open(path, read_only=True) as r:
        with pytest.raises(pylsm.CorruptionError):
            list(r.items())
    manifest = next(p for p in path.iterdir() if p.name.startswith("MANIFEST-"))
    data = bytearray(manifest.read_bytes())
    data[20] ^= 0xFF
    manifest.write_bytes(bytes(data))
    t0 = time.monotonic()
    with pytest.raises(pylsm.CorruptionError):
        pylsm.open(path, read_only=True)
    assert time.monotonic() - t0 < 30  # re-read a few times, then reported
