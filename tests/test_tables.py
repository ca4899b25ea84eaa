"""SSTables, flush and the version set: data lands in tables and reads back, flush() is durable, newer
tables shadow older ones, damaged tables give CorruptionError (never a wrong value), background
compaction can be turned off, readers during flushes, and kill -9 / kill points during flushes.

Layout offsets come from tests/helpers_tables.py's own reader of docs/format.md, "SSTable".
"""
from __future__ import annotations

import os
import random
import re
import threading
import time

import pytest

import helpers_tables
import pylsm
from helpers_tables import (
    ChildWriter,
    Model,
    check_recovered,
    db_state,
    level_files,
    parse_round_value,
    round_value,
    sst_files,
    table_layout,
)
from lsmtest import key_of

KiB = 1024
MiB = 1024 * KiB


def fill(db, n, vsize=100, r=0):
    for i in range(n):
        db.put(key_of(i), round_value(r, i, vsize))


# ---------------------------------------------------------------------------------------------
# Scale: data lands in tables and reads back after reopen.

def _scale(path, n):
    opts = dict(memtable_bytes=256 * KiB)
    with pylsm.open(path, **opts) as db:
        fill(db, n)
        st = db.stats()
        assert st["flushes"] > 0, st
        assert st["sstables"] > 0, st
        assert sum(lv["files"] for lv in st["levels"]) == st["sstables"]
        # reads before close, through memtable and tables
        for i in range(0, n, 997):
            assert db.get(key_of(i)) == round_value(0, i)
    with pylsm.open(path, background_compaction=False, **opts) as db:  # no table comes or goes meanwhile
        st = db.stats()
        assert st["sstables"] > 0, st
        assert st["sstables"] == len(sst_files(path))
        for i in range(n):
            v = db.get(key_of(i))
            assert v == round_value(0, i), (i, v and v[:40])
        assert db.get(key_of(n)) is None
        # a full scan sees every key once, in order
        count = 0
        for k, v in db.items():
            assert k == key_of(count), (count, k)
            assert v == round_value(0, count)
            count += 1
        assert count == n


def test_200k_keys_land_in_tables_and_read_back_after_reopen(db_path):
    _scale(db_path, 200_000)


@pytest.mark.slow
def test_2m_keys_land_in_tables_and_read_back_after_reopen(db_path):
    _scale(db_path, 2_000_000)


# ---------------------------------------------------------------------------------------------
# flush() is durable: after kill -9 the data comes from tables, not from the WAL.

@pytest.mark.parametrize("flush", [True, False])
def test_flush_makes_the_memtable_durable_across_kill9(tmp_path, flush):
    path = str(tmp_path / "db")
    n = 3000
    with ChildWriter({"path": path, "n": n, "flush": flush}, command="flush_then_hold") as c:
        assert c.wait_ready(60), c.stderr
        assert c.messages and c.messages[0].startswith("flushed"), (c.messages, c.stderr)
        assert int(c.messages[0].split()[1]) == (1 if flush else 0)
        c.kill()
        c.wait()
    with pylsm.open(path, background_compaction=False) as db:
        st = db.stats()
        for i in range(n):
            assert db.get(key_of(i)) == round_value(0, i), i
        if flush:
            # everything is in a table: nothing had to be replayed from a WAL
            assert st["sstables"] >= 1, st
            assert st["recovered_records"] == 0, st
        else:
            # the control: without flush() the same data came back from the WAL
            assert st["recovered_records"] == n, st


def test_flush_of_an_empty_memtable_is_a_no_op(db_path):
    with pylsm.open(db_path, background_compaction=False) as db:
        db.flush()
        assert db.stats()["sstables"] == 0
        db[b"a"] = b"1"
        db.flush()
        db.flush()
        assert db.stats()["sstables"] == 1
        assert db.stats()["flushes"] == 1
        assert db[b"a"] == b"1"


def test_flush_concurrent_with_writers(db_path):
    """db.flush() (and so db.compact(), which flushes first) from one thread while others write: no
    write fails, every acknowledged write is readable, and the database reopens with exactly them."""
    duration = 2.0
    db = pylsm.open(db_path, memtable_bytes=1 * MiB)
    stop = threading.Event()
    errors = []
    written = [0, 0]
    flushes = [0]

    def flusher():
        try:
            while not stop.is_set():
                db.flush()
                flushes[0] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(("flush", repr(e)))
            stop.set()

    def writer(t):
        try:
            while not stop.is_set():
                i = written[t]
                db.put(b"w%d-" % t + key_of(i), round_value(t, i))
                written[t] = i + 1
        except BaseException as e:  # noqa: BLE001
            errors.append((f"writer {t} at {written[t]}", repr(e)))
            stop.set()

    threads = [threading.Thread(target=flusher)] + [threading.Thread(target=writer, args=(t,)) for t in (0, 1)]
    try:
        for th in threads:
            th.start()
        stop.wait(duration)
        stop.set()
        for th in threads:
            th.join(60)
    finally:
        db.close()
    acked = {b"w%d-" % t + key_of(i): round_value(t, i) for t in (0, 1) for i in range(written[t])}
    # a failed write must not come back either: the state is exactly the acknowledged writes
    try:
        with pylsm.open(db_path) as db:
            state = db_state(db)
    except pylsm.Error as e:
        raise AssertionError(f"reopen failed: {e!r}; errors during the run: {errors}") from e
    assert not errors, errors
    assert flushes[0] > 10 and min(written) > 100, (flushes, written)
    assert state == acked, f"{len(state)} keys after reopen, {len(acked)} acknowledged"


@pytest.mark.parametrize("memtable_bytes", [4096, 16 * KiB, 64 * KiB])
def test_small_memtable_holds_many_small_writes(db_path, memtable_bytes):
    """memtable_bytes is the size that triggers a flush: writes far smaller than it share a table
    instead of getting one table (and one WAL switch) each."""
    n = 100
    payload = n * (len(key_of(0)) + 8)  # 1.6 KB of keys and values in all
    assert payload < memtable_bytes / 2
    with pylsm.open(db_path, memtable_bytes=memtable_bytes, background_compaction=False) as db:
        empty = db.stats()["memtable_bytes"]
        for i in range(n):
            db.put(key_of(i), b"%08d" % i)
        st = db.stats()
        assert st["flushes"] <= 2, f"{st['flushes']} flushes for {n} writes of {payload} bytes in all " \
                                   f"with memtable_bytes={memtable_bytes} (an empty memtable counts " \
                                   f"{empty} bytes)"
        assert st["sstables"] <= 2
        for i in range(n):
            assert db[key_of(i)] == b"%08d" % i


# ---------------------------------------------------------------------------------------------
# Newer tables shadow older ones.

def test_delete_in_newer_table_shadows_value_in_older_table(db_path):
    n = 2000
    gone = {key_of(i) for i in range(0, n, 3)}
    with pylsm.open(db_path, background_compaction=False) as db:
        fill(db, n)
        db.flush()
        for k in sorted(gone):
            db.delete(k)
        db.flush()
        st = db.stats()
        assert level_files(st, 0) == 2, st["levels"]

        def check(db, where):
            for i in range(n):
                k = key_of(i)
                want = None if k in gone else round_value(0, i)
                assert db.get(k) == want, (where, k)
                assert (k in db) == (want is not None), (where, k)
            keys = list(db.keys())
            assert keys == [key_of(i) for i in range(n) if key_of(i) not in gone], where
            assert list(db.keys(reverse=True)) == keys[::-1], where
            assert len(db) == n - len(gone), where

        check(db, "two tables")
    with pylsm.open(db_path, background_compaction=False) as db:
        assert level_files(db.stats(), 0) == 2
        check(db, "after reopen")
        db.compact()
        st = db.stats()
        assert level_files(st, 0) == 0, st["levels"]
        check(db, "after compact")
        # nothing deeper holds the keys: the tombstones are gone too
        assert sum(lv["files"] for lv in st["levels"]) >= 1
    with pylsm.open(db_path, background_compaction=False) as db:
        check(db, "after compact and reopen")


def test_newer_value_in_l0_shadows_older_value_in_a_deeper_level(db_path):
    n = 3000
    with pylsm.open(db_path, background_compaction=False) as db:
        fill(db, n, r=0)
        db.compact()  # round 0 now lives below L0
        st = db.stats()
        assert level_files(st, 0) == 0 and st["sstables"] >= 1, st["levels"]
        for i in range(0, n, 2):
            db.put(key_of(i), round_value(1, i))
        for i in range(1, n, 4):
            db.delete(key_of(i))
        db.flush()
        assert level_files(db.stats(), 0) == 1

        def want(i):
            if i % 2 == 0:
                return round_value(1, i)
            if i % 4 == 1:
                return None
            return round_value(0, i)

        for stage in ("L0 over deeper level", "after compact"):
            for i in range(n):
                assert db.get(key_of(i)) == want(i), (stage, i)
            assert db_state(db) == {key_of(i): want(i) for i in range(n) if want(i) is not None}, stage
            db.compact()


# ---------------------------------------------------------------------------------------------
# Corruption of a table: CorruptionError naming the file, never a wrong value.

N_PER_TABLE = 3000


def _two_tables(path):
    """Table A holds a-keys, table B b-keys (both L0, compaction off).  Returns (expected, table of
    a-keys name, its layout)."""
    expected = {}
    with pylsm.open(path, background_compaction=False) as db:
        for prefix in (b"a", b"b"):
            for i in range(N_PER_TABLE):
                k = prefix + key_of(i)
                v = round_value(0, i)
                db.put(k, v)
                expected[k] = v
            db.flush()
        assert db.stats()["sstables"] == 2
    names = sst_files(path)
    assert len(names) == 2
    for name in names:
        with open(os.path.join(path, name), "rb") as f:
            data = f.read()
        layout = table_layout(data)
        first = layout["data_blocks"][0]["user_keys"][0]
        if first.startswith(b"a"):
            assert len(layout["data_blocks"]) >= 8, len(layout["data_blocks"])
            return expected, name, layout
    raise AssertionError("no table of a-keys")


def _flip(path, offset, mask=0x10):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def _check_reads(path, name, expected, damaged_keys, must_open, scan_reads_damage=True):
    """Open and read every key: the right value, or CorruptionError naming the table (for a key of
    damaged_keys only, when it is given).  Returns the number of keys that raised, or None when the
    open itself raised CorruptionError.  scan_reads_damage=False: the damage is in a part of the table
    only point reads use (the point index), so a scan may pass it."""
    try:
        db = pylsm.open(path, background_compaction=False)
    except pylsm.CorruptionError as e:
        assert not must_open, f"open failed for local damage: {e}"
        assert name in str(e), str(e)
        return None
    raised = 0
    try:
        for k, v in expected.items():
            try:
                got = db.get(k)
            except pylsm.CorruptionError as e:
                assert name in str(e), str(e)
                if damaged_keys is not None:
                    assert k in damaged_keys, f"{k} outside the damaged block raised: {e}"
                raised += 1
                continue
            assert got == v, f"wrong value for {k}: {got[:40] if got else got}"
            if damaged_keys is not None:
                assert k not in damaged_keys, f"{k} in the damaged block read without an error"
        # a scan yields right values up to the damage, then raises
        seen = 0
        try:
            for k, v in db.items():
                assert expected[k] == v, k
                seen += 1
            assert raised == 0 or not scan_reads_damage, "a full scan passed over a damaged block without an error"
        except pylsm.CorruptionError as e:
            assert name in str(e), str(e)
            assert raised > 0 or damaged_keys is None
        # the damage is still reported the second time (not cached as good)
        if damaged_keys:
            k = sorted(damaged_keys)[0]
            with pytest.raises(pylsm.CorruptionError):
                db.get(k)
    finally:
        db.close()
    return raised


def _check_verify(path, name):
    with pytest.raises(pylsm.CorruptionError) as ei:
        pylsm.verify(path)
    assert name in str(ei.value), str(ei.value)


def test_undamaged_tables_verify_clean(db_path):
    expected, name, layout = _two_tables(db_path)
    pylsm.verify(db_path)
    assert _check_reads(db_path, name, expected, set(), must_open=True) == 0


@pytest.mark.parametrize("where", ["block_start", "block_middle", "block_trailer_type", "block_crc"])
def test_damaged_data_block_fails_only_its_keys(db_path, where):
    expected, name, layout = _two_tables(db_path)
    blk = layout["data_blocks"][3]
    off = {"block_start": blk["offset"], "block_middle": blk["offset"] + blk["size"] // 2,
           "block_trailer_type": blk["offset"] + blk["size"],
           "block_crc": blk["offset"] + blk["size"] + 2}[where]
    _flip(os.path.join(db_path, name), off)
    damaged = set(blk["user_keys"])
    assert damaged and all(k in expected for k in damaged)
    raised = _check_reads(db_path, name, expected, damaged, must_open=True)
    assert raised == len(damaged)
    _check_verify(db_path, name)


def test_damaged_last_data_block_fails_only_its_keys(db_path):
    expected, name, layout = _two_tables(db_path)
    blk = layout["data_blocks"][-1]
    _flip(os.path.join(db_path, name), blk["offset"] + 1)
    damaged = set(blk["user_keys"])
    assert _check_reads(db_path, name, expected, damaged, must_open=True) == len(damaged)
    _check_verify(db_path, name)


@pytest.mark.parametrize("where", ["index_start", "index_middle", "index_crc", "filter_middle",
                                   "filter_k", "filter_crc"])
def test_damaged_index_or_filter_gives_corruption_error(db_path, where):
    expected, name, layout = _two_tables(db_path)
    io, isz = layout["index_offset"], layout["index_size"]
    fo, fsz = layout["filter_offset"], layout["filter_size"]
    assert fsz > 2, "the table should have a filter block (its point index)"
    off = {"index_start": io, "index_middle": io + isz // 2, "index_crc": io + isz + 1,
           "filter_middle": fo + fsz // 2, "filter_k": fo + fsz - 1, "filter_crc": fo + fsz + 3}[where]
    _flip(os.path.join(db_path, name), off)
    _check_reads(db_path, name, expected, None, must_open=False, scan_reads_damage=not where.startswith("filter"))
    _check_verify(db_path, name)


@pytest.mark.parametrize("field,at", [("filter_offset", 0), ("filter_size", 8), ("index_offset", 16),
                                      ("index_size", 24), ("version", 32), ("crc", 36), ("magic", 40),
                                      ("magic_last", 47)])
def test_damaged_footer_gives_corruption_error(db_path, field, at):
    expected, name, layout = _two_tables(db_path)
    _flip(os.path.join(db_path, name), layout["footer_offset"] + at, mask=0x01)
    _check_reads(db_path, name, expected, None, must_open=False)
    _check_verify(db_path, name)


def test_zero_length_table_gives_corruption_error_at_open(db_path):
    expected, name, layout = _two_tables(db_path)
    os.truncate(os.path.join(db_path, name), 0)
    with pytest.raises(pylsm.CorruptionError) as ei:
        pylsm.open(db_path)
    assert name in str(ei.value), str(ei.value)
    _check_verify(db_path, name)


def test_truncated_table_gives_corruption_error_at_open(db_path):
    expected, name, layout = _two_tables(db_path)
    p = os.path.join(db_path, name)
    os.truncate(p, os.path.getsize(p) - 100)
    with pytest.raises(pylsm.CorruptionError) as ei:
        pylsm.open(db_path)
    assert name in str(ei.value), str(ei.value)
    _check_verify(db_path, name)


def test_missing_table_is_an_error_at_open(db_path):
    expected, name, layout = _two_tables(db_path)
    os.unlink(os.path.join(db_path, name))
    with pytest.raises(pylsm.Error) as ei:
        pylsm.open(db_path)
    assert name in str(ei.value), str(ei.value)


def test_current_full_of_nul_bytes_gives_corruption_error_at_open(db_path):
    with pylsm.open(db_path) as db:
        fill(db, 100)
        db.flush()
    cur = os.path.join(db_path, "CURRENT")
    size = os.path.getsize(cur)
    assert size > 0
    with open(cur, "wb") as f:
        f.write(b"\0" * size)
    with pytest.raises(pylsm.CorruptionError) as ei:
        pylsm.open(db_path)
    assert "CURRENT" in str(ei.value), str(ei.value)
    with pytest.raises(pylsm.CorruptionError):
        pylsm.verify(db_path)
    # and nothing was "repaired" into an empty database behind our back
    with open(cur, "rb") as f:
        assert f.read() == b"\0" * size


# ---------------------------------------------------------------------------------------------
# The version set across reopen: no files pile up.

@pytest.mark.parametrize("with_data", [False, True])
def test_reopen_cycles_do_not_pile_up_files(fast_dir, with_data):
    """docs/format.md: opening removes WALs below the log number, tables no version names and stale
    manifests.  Reopening a database again and again (with or without a write in between) must not
    leave one more file behind each time, nor make open slower and slower."""
    path = os.path.join(fast_dir, "db")
    with pylsm.open(path) as db:
        fill(db, 100)
        db.flush()
        db[b"memtable only"] = b"1"
    start = sorted(os.listdir(path))
    for cycle in range(60):
        with pylsm.open(path) as db:
            if with_data:
                db[b"cycle%03d" % cycle] = b"x"
    files = sorted(os.listdir(path))
    # with a write per cycle the recovered data may go to an L0 table (compacted as usual) at open
    slack = 8 if with_data else 2
    assert len(files) <= len(start) + slack, \
        f"{len(start)} files before 60 reopens, {len(files)} after: {files}"
    with pylsm.open(path) as db:
        assert db[b"memtable only"] == b"1"
        assert db[key_of(99)] == round_value(0, 99)
        if with_data:
            assert len(list(db.keys(prefix=b"cycle"))) == 60


# ---------------------------------------------------------------------------------------------
# background_compaction=False keeps tables where flush put them.

def test_background_compaction_off_keeps_tables_in_l0(db_path):
    nflush = 20  # more than the L0 stop trigger: writes must not stall without compaction
    with pylsm.open(db_path, background_compaction=False, memtable_bytes=64 * KiB) as db:
        for r in range(nflush):
            for i in range(200):
                db.put(key_of(i), round_value(r, i))
            db.flush()
        st = db.stats()
        assert level_files(st, 0) == nflush, st["levels"]
        assert st["sstables"] == nflush
        assert st["compactions"] == 0
        assert st["write_stalls"] == 0
    with pylsm.open(db_path, background_compaction=False) as db:
        st = db.stats()
        assert level_files(st, 0) == nflush, st["levels"]
        for i in range(200):
            assert db[key_of(i)] == round_value(nflush - 1, i)
        time.sleep(0.2)  # nothing runs behind our back
        assert db.stats()["compactions"] == 0
        assert len(sst_files(db_path)) == nflush
        db.compact()
        st = db.stats()
        assert level_files(st, 0) == 0 and st["compactions"] >= 1, st
        for i in range(200):
            assert db[key_of(i)] == round_value(nflush - 1, i)


def test_background_compaction_on_compacts_l0(db_path):
    with pylsm.open(db_path, memtable_bytes=64 * KiB) as db:
        for r in range(20):
            for i in range(200):
                db.put(key_of(i), round_value(r, i))
            db.flush()
        deadline = time.monotonic() + 10
        while db.stats()["compactions"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        st = db.stats()
        assert st["compactions"] > 0, st
        assert level_files(st, 0) < 20, st["levels"]


# ---------------------------------------------------------------------------------------------
# Readers during flushes.

def test_readers_see_old_or_new_value_during_flushes(db_path):
    nkeys = 2000
    duration = 3.0
    db = pylsm.open(db_path, memtable_bytes=32 * KiB)
    try:
        fill(db, nkeys, r=0)
        done = [0] * nkeys  # the last round whose put of key i returned
        stop = threading.Event()
        errors = []
        checks = [0] * 4

        def writer():
            r = 0
            try:
                while not stop.is_set():
                    r += 1
                    for i in range(nkeys):
                        db.put(key_of(i), round_value(r, i))
                        done[i] = r
            except BaseException as e:  # noqa: BLE001
                errors.append(("writer", repr(e)))

        def reader(t):
            rng = random.Random(t)
            try:
                while not stop.is_set():
                    i = rng.randrange(nkeys)
                    lo = done[i]
                    v = db.get(key_of(i))
                    hi = done[i] + 1  # a put in flight may already be visible
                    assert v is not None, f"key {i} missing (written in round {lo})"
                    r = parse_round_value(v, i)
                    assert lo <= r <= hi, f"key {i}: round {r} outside [{lo}, {hi}]"
                    checks[t] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append((f"reader {t}", repr(e)))
                stop.set()

        threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(t,))
                                                      for t in range(4)]
        f0 = db.stats()["flushes"]
        for th in threads:
            th.start()
        time.sleep(duration)
        stop.set()
        for th in threads:
            th.join(60)
        assert not errors, errors
        assert min(checks) > 100, checks
        assert db.stats()["flushes"] - f0 >= 3, "the test did not overlap flushes"
        for i in range(nkeys):
            assert parse_round_value(db[key_of(i)], i) == done[i]
    finally:
        db.close()


# ---------------------------------------------------------------------------------------------
# kill -9 of a writer during flushes.

def _random_kills(path, iterations, seed):
    rng = random.Random(seed)
    spec = {"path": path, "keys": 5000, "vsize": 100, "total": 10_000_000, "memtable_bytes": 32 * KiB,
            "delete_every": 9}
    model = Model(spec)
    m = 0
    for it in range(iterations):
        with ChildWriter(dict(spec, start=m)) as c:
            assert c.wait_ready(60), c.stderr
            assert c.start_m == m
            time.sleep(rng.uniform(0.05, 1.0))
            c.kill()
            rc = c.wait()
            assert rc == -9, (rc, c.stderr)
            acked = c.acked_length()
        m = check_recovered(path, model, acked, open_kwargs={"memtable_bytes": 32 * KiB})
    assert m > 0
    return m


@pytest.mark.parametrize("seed", [1, 2])
def test_kill9_during_flushes_loses_no_acknowledged_write(tmp_path, seed):
    _random_kills(str(tmp_path / "db"), 3, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_kill9_during_flushes_stress(tmp_path, seed):
    _random_kills(str(tmp_path / "db"), 20, 100 + seed)


# ---------------------------------------------------------------------------------------------
# Kill points inside the flush / version machinery.

KILL_CASES = [
    ("sstable_write", 1), ("sstable_write", 3), ("sstable_write", 9),
    ("sstable_sync", 1), ("sstable_sync", 4), ("sstable_sync", 11),
    ("manifest_append", 1), ("manifest_append", 2), ("manifest_append", 5), ("manifest_append", 14),
    ("current_rename", 1), ("current_rename", 2), ("current_rename", 4),
    ("file_delete", 1), ("file_delete", 3), ("file_delete", 10),
]
KILL_CASES_SLOW = [(p, n) for p in ("sstable_write", "sstable_sync", "manifest_append", "current_rename",
                                    "file_delete") for n in (2, 6, 17, 25)]


def _kill_point(path, point, n, then_continue=True):
    spec = {"path": path, "keys": 3000, "vsize": 100, "total": 60_000, "memtable_bytes": 16 * KiB,
            "delete_every": 7, "reopen_every": 1500}
    model = Model(spec)
    with ChildWriter(dict(spec, start=0), env={"PYLSM_KILL_POINT": f"{point}:{n}"}) as c:
        rc = c.wait(120)
        assert rc == 137, f"{point}:{n}: the child ended with {rc} (finished={c.finished}), " \
                          f"not at the kill point: {c.stderr}"
        acked = c.acked_length()
    m = check_recovered(path, model, acked, open_kwargs={"memtable_bytes": 16 * KiB})
    if then_continue:
        # the recovered database goes on working: more writes, flushes, compactions, a clean reopen
        with ChildWriter(dict(spec, start=m, total=3000, reopen_every=0)) as c:
            assert c.wait(120) == 0, c.stderr
            assert c.finished
            acked = c.acked_length()
        assert acked == m + 3000
        check_recovered(path, model, acked, in_flight=0)
        pylsm.verify(path)
    return m


@pytest.mark.parametrize("point,n", KILL_CASES)
def test_kill_point_recovers_a_prefix_and_leaks_no_table(tmp_path, point, n):
    _kill_point(str(tmp_path / "db"), point, n)


@pytest.mark.slow
@pytest.mark.parametrize("point,n", KILL_CASES_SLOW)
def test_kill_point_stress(tmp_path, point, n):
    _kill_point(str(tmp_path / "db"), point, n)


# ---------------------------------------------------------------------------------------------
# Format version 2: the data blocks' hash index, read here by the format document's rules alone; and
# tables of version 1 (no hash index), written by an earlier pylsm, still read.

def _entry_offsets(block: bytes, end: int):
    """(offset, key) of each entry of a block, by the format document."""
    pos, prev, out = 0, b"", []
    while pos < end:
        start = pos
        shared, pos = helpers_tables.get_varint(block, pos)
        non_shared, pos = helpers_tables.get_varint(block, pos)
        vlen, pos = helpers_tables.get_varint(block, pos)
        key = prev[:shared] + block[pos:pos + non_shared]
        pos += non_shared + vlen
        out.append((start, key))
        prev = key
    return out


def test_bloom_hash_check_values_of_the_format_document():
    assert helpers_tables.bloom_hash(b"") == 0x3F177186
    assert helpers_tables.bloom_hash(b"hello") == 0x2D20A3BD


def test_data_blocks_carry_a_hash_index_that_finds_every_key(db_path):
    """Tables without a point index (point_index=False) give each data block a hash index."""
    db = pylsm.open(db_path, background_compaction=False, point_index=False)
    r = random.Random(5)
    keys = sorted({r.randbytes(r.randrange(1, 40)) for _ in range(4000)})
    for k in keys:
        db.put(k, r.randbytes(r.randrange(0, 120)))
    snap = db.snapshot()  # keeps the older versions through the flush: several entries per key
    for k in keys[::3]:
        db.put(k, b"newer")
    db.flush()
    [name] = sst_files(db_path)
    data = open(os.path.join(db_path, name), "rb").read()
    layout = table_layout(data)
    assert layout["version"] == 2
    blocks = absent_at_once = 0
    checked = set()  # a key whose versions straddle two blocks is indexed in both
    for b in layout["data_blocks"]:
        block = data[b["offset"]: b["offset"] + b["size"]]
        parts = helpers_tables.block_parts(block)
        assert parts["slots"] is not None, "a data block of a version 2 table without a hash index"
        blocks += 1
        restarts = parts["restarts"]
        seen = set()
        for off, key in _entry_offsets(block, parts["end"]):
            ukey = key[:-8]
            if ukey in seen:
                continue
            seen.add(ukey)
            region = max(i for i, r0 in enumerate(restarts) if r0 <= off)
            assert region in helpers_tables.hash_lookup_region(parts["slots"], ukey), (b["offset"], ukey)
            checked.add(ukey)
        for k in (r.randbytes(20) for _ in range(50)):
            absent_at_once += not helpers_tables.hash_lookup_region(parts["slots"], k)
    assert checked == set(keys) and blocks > 10
    assert absent_at_once > 0.8 * 50 * blocks  # most absent keys stop at a free slot
    # the engine reads through the same index: every version, at both views
    for k in keys[::7]:
        assert db.get(k) == (b"newer" if keys.index(k) % 3 == 0 else snap.get(k))
    snap.close()
    db.close()
    pylsm.verify(db_path)


def test_point_indexed_tables_have_no_block_hash_index_and_read_old_versions(db_path):
    """A table with a point index (the default) leaves the blocks' own hash index out: the point index
    leads a get to its entry, and a read at an older snapshot searches the block's restarts."""
    db = pylsm.open(db_path, background_compaction=False)
    r = random.Random(6)
    keys = sorted({r.randbytes(r.randrange(1, 40)) for _ in range(4000)})
    present = set(keys)
    for k in keys:
        db.put(k, b"old:" + k)
    snap = db.snapshot()
    for k in keys[::3]:
        db.put(k, b"newer")
    for k in keys[1::3]:
        db.delete(k)
    db.flush()
    [name] = sst_files(db_path)
    data = open(os.path.join(db_path, name), "rb").read()
    layout = table_layout(data)
    assert layout["data_blocks"] and len(layout["data_blocks"]) > 10
    for b in layout["data_blocks"]:
        parts = helpers_tables.block_parts(data[b["offset"]: b["offset"] + b["size"]])
        assert parts["slots"] is None, b
    for i, k in enumerate(keys):
        assert db.get(k) == (b"newer" if i % 3 == 0 else None if i % 3 == 1 else b"old:" + k), k
        assert snap.get(k) == b"old:" + k, k
        if k + b"\x00" not in present:
            assert db.get(k + b"\x00") is None and snap.get(k + b"\x00") is None
    assert snap.get_many(keys[:500]) == [b"old:" + k for k in keys[:500]]
    snap.close()
    db.close()
    pylsm.verify(db_path)


def test_tables_of_format_version_1_still_read(tmp_path):
    import shutil
    path = str(tmp_path / "v1")
    shutil.copytree(os.path.join(os.path.dirname(__file__), "data", "format_v1"), path)
    versions = {helpers_tables.parse_footer(open(os.path.join(path, f), "rb").read())["version"]
                for f in sst_files(path)}
    assert versions == {1}
    want = {b"key%05d" % i: b"value-%05d-" % i + b"x" * 40 for i in range(600) if i % 7}
    want[b"key00001"] = b"newer"
    pylsm.verify(path)
    with pylsm.open(path) as db:
        assert dict(db.items()) == want
        assert all(db.get(k) == v for k, v in want.items())
        assert db.get(b"key00007") is None and db.get(b"nope") is None
        db.compact()
        assert dict(db.items()) == want
    versions = {helpers_tables.parse_footer(open(os.path.join(path, f), "rb").read())["version"]
                for f in sst_files(path)}
    assert versions == {2}
    pylsm.verify(path)
    with pylsm.open(path) as db:
        assert all(db.get(k) == v for k, v in want.items())


# ---------------------------------------------------------------------------------------------
# The point index (docs/format.md, "Point index"): on by default, off with point_index=False.

def _filter_tags(path):
    """The last byte of each table's filter block: 0xC2 a point index, 0xB1 a bloom filter."""
    tags = []
    for name in sst_files(path):
        with open(os.path.join(path, name), "rb") as f:
            data = f.read()
        lay = table_layout(data)
        assert lay["filter_size"] > 2
        tags.append(data[lay["filter_offset"] + lay["filter_size"] - 1])
    return tags


def test_point_index_is_the_default_and_point_index_false_writes_bloom_filters(tmp_path):
    rnd = random.Random(7)
    expected = {}
    for point_index, sub in ((None, "default"), (True, "on"), (False, "off")):
        path = str(tmp_path / sub)
        opts = {} if point_index is None else {"point_index": point_index}
        with pylsm.open(path, **opts) as db:
            for i in range(20000):
                k = b"k%07d" % rnd.randrange(100000)
                v = round_value(0, i)
                db[k] = v
                expected.setdefault(sub, {})[k] = v
                if i % 7 == 0:
                    del db[k]
                    expected[sub][k] = None
            db.flush()
            assert set(_filter_tags(path)) == ({0xB1} if point_index is False else {0xC2})
        with pylsm.open(path, **opts) as db:
            for k, v in expected[sub].items():
                assert db.get(k) == v
            for i in range(0, 100000, 3):  # absent and present keys alike
                k = b"k%07d" % i
                assert db.get(k) == expected[sub].get(k)
            keys = sorted(expected[sub])[:500]
            assert db.get_many(keys) == [expected[sub][k] for k in keys]
        pylsm.verify(path)  # raises on any damage


def test_tables_of_both_kinds_read_together_and_compaction_rewrites_them(tmp_path):
    path = str(tmp_path / "mixed")
    expected = {}
    with pylsm.open(path, point_index=False, background_compaction=False) as db:
        for i in range(5000):
            expected[b"a%05d" % i] = db[b"a%05d" % i] = round_value(1, i)
        db.flush()
    old = dict(expected)
    with pylsm.open(path, background_compaction=False) as db:
        snap = db.snapshot()  # older than every entry of the next table: its reads search the blocks
        for i in range(0, 5000, 2):  # newer versions in a table with a point index
            expected[b"a%05d" % i] = db[b"a%05d" % i] = round_value(2, i)
        db.flush()
        assert sorted(_filter_tags(path)) == [0xB1, 0xC2]
        for k, v in expected.items():
            assert db[k] == v
            assert snap[k] == old[k]
        db.compact()  # keeps both versions of the even keys for the snapshot
        assert set(_filter_tags(path)) == {0xC2}
        for k, v in expected.items():
            assert db[k] == v
            assert snap[k] == old[k]
        snap.close()


def test_point_index_option_is_checked():
    with pytest.raises(TypeError):
        pylsm.open("/nonexistent/never/created", point_index="yes")
    assert not os.path.exists("/nonexistent/never/created")


def _table_mappings_random(db_dir):
    """{table file name: whether its mapping is advised random ('rr' in smaps' VmFlags)} of this process."""
    out, name = {}, None
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", parts[0]):  # a mapping's first line (5 fields if anonymous)
                path = parts[5] if len(parts) >= 6 else ""
                inside = os.path.dirname(path) == os.path.realpath(db_dir) and path.endswith(".sst")
                name = os.path.basename(path) if inside else None
            elif name and line.startswith("VmFlags:"):
                out[name] = "rr" in parts[1:]
    return out


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps")
def test_tables_past_the_read_around_limit_are_mapped_for_random_reads(db_path):
    """Small databases keep the kernel's read-around (a restart warms them in a few faults); past the limit
    (a sixteenth of memory; lowered here) every table's mapping is advised random, a scan asks for its
    own read-ahead, and reads and scans give the same answers."""
    vals = {key_of(i): os.urandom(100) for i in range(30000)}
    with pylsm.open(db_path) as db:
        db.update(vals)
        db.flush()
        advice = _table_mappings_random(db.path)
        assert advice and not any(advice.values())
    pylsm._pylsm._test_set("read_around_bytes", 1)
    try:
        with pylsm.open(db_path) as db:
            advice = _table_mappings_random(db.path)
            assert advice and all(advice.values())
            assert dict(db.items()) == vals
            assert list(db.keys(reverse=True)) == sorted(vals, reverse=True)
            assert all(db[k] == v for k, v in vals.items())
            db.update({key_of(i): b"new" for i in range(0, 30000, 3)})
            db.flush()  # a table added later is advised too
            advice = _table_mappings_random(db.path)
            assert len(advice) > 1 and all(advice.values())
    finally:
        pylsm._pylsm._test_set("read_around_bytes", 0)


def _table_mappings_rss(db_dir, field="Rss"):
    """The bytes of this process's table mappings that are mapped into its page tables (smaps' Rss; with
    field="FilePmdMapped", those mapped as huge pages)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", parts[0]):
                path = parts[5] if len(parts) >= 6 else ""
                inside = os.path.dirname(path) == os.path.realpath(db_dir) and path.endswith(".sst")
            elif inside and parts[0] == field + ":":
                total += int(parts[1]) * 1024
    return total


def _huge_folios_from_aligned_writes(tmp_dir):
    """Whether this kernel and filesystem keep a file written 2 MiB at a time in 2 MiB folios that a
    mapping maps as huge pages (ext4 and XFS on Linux 6.16 and later with transparent huge pages)."""
    import mmap
    probe, size = os.path.join(tmp_dir, "probe"), 4 << 20
    with open(probe, "wb", buffering=0) as f:
        f.write(os.urandom(2 << 20))
        f.write(os.urandom(2 << 20))
    try:
        with open(probe, "rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as m:
            for off in range(0, size, 4096):
                m[off]
            with open("/proc/self/smaps") as s:
                return any(line.startswith("FilePmdMapped:") and int(line.split()[1]) > 0 for line in s)
    finally:
        os.unlink(probe)


def _kernel_populates():
    """Whether the kernel has madvise(MADV_POPULATE_READ) (Linux 5.14): without it the warmer only checks."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (5, 14)


needs_populate = pytest.mark.skipif(not _kernel_populates(), reason="needs Linux 5.14 (MADV_POPULATE_READ)")


def _on_tmpfs(path):
    """Whether path is on tmpfs, whose pages POSIX_FADV_DONTNEED cannot evict."""
    best, fstype = "", ""
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1]
            if os.path.realpath(path).startswith(mnt.rstrip("/") + "/") and len(mnt) > len(best):
                best, fstype = mnt, parts[2]
    return fstype in ("tmpfs", "ramfs")


def _wait_warmed(db, timeout=60.0):
    deadline = time.monotonic() + timeout
    while db.stats()["warming"]:
        assert time.monotonic() < deadline, "the warmer did not finish"
        time.sleep(0.01)
    return db.stats()["warmed_bytes"]


def _read_bytes():
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("read_bytes:")).split()[1])


def _pindex_buckets(data):
    """(offset, length) of a table's point index buckets, from the filter block's tail."""
    f = helpers_tables.parse_footer(data)
    block = data[f["filter_offset"]: f["filter_offset"] + f["filter_size"]]
    assert block[-1] == 0xC2, "no point index"
    nbuckets, pad = int.from_bytes(block[-10:-6], "little"), block[-6]
    return f["filter_offset"] + pad, 64 * nbuckets


@needs_populate
@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps")
def test_a_warm_database_past_the_read_around_limit_is_mapped_after_open(db_path):
    """Past the read-around limit a page fault maps one page (or a few), so a new process would fault
    on most pages its first gets touch; the open starts a warmer that maps every table page the page cache
    holds and checks the blocks and index chunks on them, and reads give the same answers."""
    vals = {key_of(i): os.urandom(100) for i in range(40000)}
    with pylsm.open(db_path) as db:
        db.update(vals)
        db.compact()
        assert db.stats()["warmed_bytes"] == 0 and not db.stats()["warming"]  # under the limit: no warmer
    size = helpers_tables.dir_bytes(db_path, ".sst")
    pylsm._pylsm._test_set("read_around_bytes", 1)
    try:
        with pylsm.open(db_path) as db:
            warmed = _wait_warmed(db)
            assert warmed >= size * 0.9, (warmed, size)  # just written: in the page cache
            assert _table_mappings_rss(db_path) >= size * 0.9
            assert all(db[k] == v for k, v in vals.items())
            assert db.get_many(list(vals)[::7]) == list(vals.values())[::7]
            assert db.get(key_of(40000)) is None
            assert dict(db.items()) == vals
        for _ in range(5):  # closed while it maps: it stops within a few MiB, nothing leaks or crashes
            with pylsm.open(db_path) as db:
                assert db[key_of(5)] == vals[key_of(5)]
    finally:
        pylsm._pylsm._test_set("read_around_bytes", 0)


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps")
def test_just_written_tables_of_the_last_level_are_mapped_as_huge_pages(db_path, tmp_path):
    """A table of the last level is written 2 MiB at a time at multiples of 2 MiB, so the page cache
    holds it in 2 MiB folios and a reader maps it with one page-table entry per 2 MiB (a random read
    then rarely misses the TLB).  Where the kernel or filesystem does not keep large folios, the probe
    says so and the test skips: the tables read the same, with 4 KiB pages."""
    if not _huge_folios_from_aligned_writes(str(tmp_path)):
        pytest.skip("this kernel and filesystem keep no 2 MiB folios for a file written 2 MiB at a time")
    vals = {key_of(i): os.urandom(100) for i in range(80000)}  # a table of about 12 MiB
    with pylsm.open(db_path) as db:
        db.update(vals)
        db.compact()  # into the last level
    size = helpers_tables.dir_bytes(db_path, ".sst")
    with pylsm.open(db_path) as db:
        assert all(db[k] == v for k, v in vals.items())
        huge = _table_mappings_rss(db_path, "FilePmdMapped")
        # the whole 2 MiB pieces (the table's tail is a smaller write), one spared for the page cache
        assert huge >= (size // (2 << 20) - 1) * (2 << 20) > 0, (huge, size)


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io")
def test_the_warmer_reads_nothing_of_a_cold_database(db_path):
    """Files evicted from the page cache: the warmer maps nothing and starts no reads (a cold database
    larger than memory must not be streamed in behind the user's back); gets then read what they need."""
    if _on_tmpfs(db_path):
        pytest.skip("tmpfs pages cannot be evicted")
    vals = {key_of(i): os.urandom(100) for i in range(40000)}
    with pylsm.open(db_path) as db:
        db.update(vals)
        db.compact()
    size = helpers_tables.dir_bytes(db_path, ".sst")
    for name in helpers_tables.sst_files(db_path):
        fd = os.open(os.path.join(db_path, name), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    pylsm._pylsm._test_set("read_around_bytes", 1)
    try:
        before = _read_bytes()
        with pylsm.open(db_path) as db:
            warmed = _wait_warmed(db)
            read = _read_bytes() - before
            assert warmed < size * 0.25, (warmed, size)
            assert read < size * 0.25, (read, size)  # the open's own reads (footers, filters), not the data
            assert all(db[k] == v for k, v in list(vals.items())[::97])
    finally:
        pylsm._pylsm._test_set("read_around_bytes", 0)


def test_the_warmer_lets_replaced_tables_go(db_path):
    """The warmer holds the tables of the version it warms only while it warms them: a table that a
    compaction replaces afterwards is deleted then, not at close."""
    with pylsm.open(db_path) as db:
        db.update({key_of(i): os.urandom(100) for i in range(20000)})
        db.compact()
    old = set(helpers_tables.sst_files(db_path))
    pylsm._pylsm._test_set("read_around_bytes", 1)
    try:
        with pylsm.open(db_path) as db:
            _wait_warmed(db)
            db.update({key_of(i): b"new" for i in range(20000)})
            db.compact()
            assert not old & set(helpers_tables.sst_files(db_path))
            assert db[key_of(7)] == b"new"
    finally:
        pylsm._pylsm._test_set("read_around_bytes", 0)


@needs_populate
@pytest.mark.parametrize("where", ["data block", "point index"])
def test_the_warmer_does_not_pass_a_damaged_block(db_path, where):
    """The warmer checks what it maps as a first read would; what fails its check is left unchecked, so
    the gets that need it still raise CorruptionError naming the table, and the others still answer."""
    vals = {key_of(i): os.urandom(100) for i in range(40000)}
    with pylsm.open(db_path) as db:
        db.update(vals)
        db.compact()
    names = helpers_tables.sst_files(db_path)
    assert len(names) == 1
    path = os.path.join(db_path, names[0])
    with open(path, "rb") as f:
        data = f.read()
    if where == "data block":
        block = table_layout(data)["data_blocks"][10]
        pos, hit = block["offset"] + 100, set(block["user_keys"])
    else:
        off, length = _pindex_buckets(data)
        pos, hit = off + length // 2, None
    with open(path, "r+b") as f:  # through the page cache: the damaged page stays resident
        f.seek(pos)
        f.write(bytes([data[pos] ^ 0x40]))
    pylsm._pylsm._test_set("read_around_bytes", 1)
    try:
        with pylsm.open(db_path) as db:
            assert _wait_warmed(db) > 0
            errors = set()
            for k, v in vals.items():
                try:
                    assert db[k] == v
                except pylsm.CorruptionError as e:
                    assert names[0] in str(e)
                    errors.add(k)
            assert errors
            if hit is not None:
                assert errors <= hit
            assert len(errors) < len(vals) // 10
    finally:
        pylsm._pylsm._test_set("read_around_bytes", 0)


def test_tables_past_the_read_around_limit_keep_no_heap_per_block(db_path):
    """Past the read-around limit the tables opened are lean: nothing per data block on the heap (the
    point index finds a block's place in the index block, read in place), and every read, old snapshot,
    scan and batch gives the same answers as from tables with fences."""
    vals = {key_of(i): os.urandom(100) for i in range(40000)}
    with pylsm.open(db_path) as db:
        db.update(vals)
        db.compact()
        fat = db.stats()["table_heap_bytes"]
        assert fat > 0
    pylsm._pylsm._test_set("read_around_bytes", 1)
    try:
        with pylsm.open(db_path) as db:
            lean = db.stats()["table_heap_bytes"]
            blocks = sum(lv["bytes"] for lv in db.stats()["levels"]) // 4096
            assert lean + 12 * blocks // 2 < fat, (lean, fat, blocks)
            snap = db.snapshot()
            assert all(db[k] == v for k, v in vals.items())
            assert db.get_many(list(vals)[:3000]) == list(vals.values())[:3000]
            assert db.get(b"absent") is None and db.get(key_of(40000)) is None
            db.update({key_of(i): b"new" for i in range(0, 40000, 3)})
            db.compact()  # the new tables open lean too
            assert db.stats()["table_heap_bytes"] < fat
            assert all(snap[k] == v for k, v in list(vals.items())[::7])  # older versions: the blocks searched
            assert all(db[key_of(i)] == (b"new" if i % 3 == 0 else vals[key_of(i)]) for i in range(0, 40000, 5))
            assert list(db.keys(start=key_of(100), stop=key_of(200))) == [key_of(i) for i in range(100, 200)]
            snap.close()
        pylsm.verify(db_path)
    finally:
        pylsm._pylsm._test_set("read_around_bytes", 0)
