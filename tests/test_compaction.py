"""Compaction: bounded table counts and space under overwrites, space reclaimed after deletes, readers
during compactions, compact(start, stop), the statistics, and kill -9 while compactions run."""
from __future__ import annotations

import os
import random
import threading
import time

import pytest

import pylsm
from helpers_tables import (
    ChildWriter,
    Model,
    check_recovered,
    dir_bytes,
    level_files,
    parse_round_value,
    round_value,
    sst_files,
)
from lsmtest import key_of, wal_names

KiB = 1024
MiB = 1024 * KiB
L0_STOP = 20  # csrc/compaction.h


# ---------------------------------------------------------------------------------------------
# Overwrites: the table count stays bounded and compact() leaves about the live data on disk.

def _overwrite(path, rounds, nkeys=100_000, vsize=100):
    live = nkeys * (len(key_of(0)) + vsize)
    max_tables = max_l0 = 0
    samples = 0
    with pylsm.open(path, memtable_bytes=1 * MiB) as db:
        for r in range(rounds):
            for i in range(nkeys):
                db.put(key_of(i), round_value(r, i, vsize))
                if i % 2000 == 0:
                    st = db.stats()
                    samples += 1
                    max_tables = max(max_tables, st["sstables"])
                    max_l0 = max(max_l0, level_files(st, 0))
                    assert level_files(st, 0) < L0_STOP + 3, (r, i, st["levels"])
                    # everything ever written is ~ (r + 1) * live; the tables must stay near live
                    assert st["sstables"] <= 40, (r, i, st["sstables"], st["levels"])
            sst = dir_bytes(path, ".sst")
            assert sst <= 4 * live, f"round {r}: {sst} bytes of tables for {live} live bytes"
        st = db.stats()
        assert st["compactions"] > 0, st
        db.compact()
        st = db.stats()
        assert level_files(st, 0) == 0, st["levels"]
        # every key once, newest round
        for i in range(0, nkeys, 101):
            assert db[key_of(i)] == round_value(rounds - 1, i, vsize)
        sst = dir_bytes(path, ".sst")
        wal = dir_bytes(path, ".wal")
        other = dir_bytes(path) - sst - wal
        assert sst == sum(lv["bytes"] for lv in st["levels"]), (sst, st["levels"])
        # bytes written into each level since open: every table there now was written in this session,
        # level 0 took every flush, and the tables' share of all writes leaves at least the WAL's
        written = [lv["bytes_written"] for lv in st["levels"]]
        assert all(lv["bytes_written"] >= lv["bytes"] for lv in st["levels"]), st["levels"]
        assert written[0] >= (rounds * live) // 2 and sum(written[1:]) > 0, st["levels"]
        assert sum(written) <= st["disk_bytes_written"] - st["user_bytes_written"], (written, st)
        assert sst <= 1.5 * live, f"after compact(): {sst} table bytes for {live} live bytes"
        # the WAL is a fresh, preallocated file (1 MiB chunks); the manifest holds one edit per change
        assert wal <= 1 * MiB + 64 * KiB, (wal, wal_names(path))
        assert other <= 256 * KiB, other
        assert dir_bytes(path) <= 1.5 * live + 1 * MiB + 256 * KiB
    assert samples > 0
    return max_tables, max_l0


def test_overwrites_keep_table_count_and_space_bounded(db_path):
    _overwrite(db_path, rounds=5)
    with pylsm.open(db_path) as db:
        assert db[key_of(0)] == round_value(4, 0)
        assert db[key_of(99_999)] == round_value(4, 99_999)


@pytest.mark.slow
def test_overwrites_keep_table_count_and_space_bounded_20_rounds(db_path):
    _overwrite(db_path, rounds=20)


def test_delete_everything_then_compact_leaves_the_directory_near_empty(db_path):
    n = 100_000
    with pylsm.open(db_path, memtable_bytes=1 * MiB) as db:
        for i in range(n):
            db.put(key_of(i), round_value(0, i))
        db.compact()
        assert dir_bytes(db_path) > 10 * MiB
        for i in range(n):
            db.delete(key_of(i))
        db.compact()
        st = db.stats()
        assert st["sstables"] == 0, st["levels"]
        assert dir_bytes(db_path) < 2 * MiB, sorted(os.listdir(db_path))
        assert len(db) == 0
        assert list(db.items()) == []
        assert db.get(key_of(5)) is None
    with pylsm.open(db_path) as db:
        assert len(db) == 0
        assert dir_bytes(db_path) < 2 * MiB


def test_delete_half_then_compact_reclaims_half(db_path):
    n = 60_000
    with pylsm.open(db_path, memtable_bytes=1 * MiB) as db:
        for i in range(n):
            db.put(key_of(i), round_value(0, i))
        db.compact()
        full = dir_bytes(db_path, ".sst")
        for i in range(0, n, 2):
            db.delete(key_of(i))
        db.compact()
        half = dir_bytes(db_path, ".sst")
        assert half <= 0.6 * full, (half, full)
        assert len(db) == n // 2
        assert db.get(key_of(2)) is None and db[key_of(3)] == round_value(0, 3)


# ---------------------------------------------------------------------------------------------
# Readers during compactions.

def test_readers_see_every_key_with_a_valid_value_during_compactions(db_path):
    nkeys = 5000
    duration = 3.0
    db = pylsm.open(db_path, memtable_bytes=64 * KiB)
    try:
        for i in range(nkeys):
            db.put(key_of(i), round_value(0, i))
        db.compact()
        done = [0] * nkeys
        stop = threading.Event()
        errors = []
        counts = {"gets": 0, "scans": 0, "compacts": 0, "rounds": 0}

        def writer():
            r = 0
            try:
                while not stop.is_set():
                    r += 1
                    for i in range(nkeys):
                        db.put(key_of(i), round_value(r, i))
                        done[i] = r
                    counts["rounds"] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append(("writer", repr(e)))

        def compactor():
            try:
                while not stop.is_set():
                    db.compact()
                    counts["compacts"] += 1
                    time.sleep(0.05)
            except BaseException as e:  # noqa: BLE001
                errors.append(("compactor", repr(e)))

        def getter(t):
            rng = random.Random(t)
            try:
                while not stop.is_set():
                    i = rng.randrange(nkeys)
                    lo = done[i]
                    v = db.get(key_of(i))
                    hi = done[i] + 1
                    assert v is not None, f"key {i} missing"
                    r = parse_round_value(v, i)
                    assert lo <= r <= hi, (i, r, lo, hi)
                    counts["gets"] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append((f"getter {t}", repr(e)))
                stop.set()

        def scanner(t):
            try:
                while not stop.is_set():
                    reverse = bool(t % 2)
                    before = list(done)
                    rounds = []
                    for n, (k, v) in enumerate(db.items(reverse=reverse)):
                        i = nkeys - 1 - n if reverse else n
                        assert k == key_of(i), (n, k, reverse)
                        r = parse_round_value(v, i)
                        assert r >= before[i], (i, r, before[i])
                        rounds.append(r)
                    assert len(rounds) == nkeys, len(rounds)
                    if reverse:
                        rounds.reverse()
                    # one consistent view of a writer that goes through the keys in order each round:
                    # rounds are non-increasing along the keys and span at most two rounds
                    assert all(a >= b for a, b in zip(rounds, rounds[1:])), "not a point-in-time view"
                    assert rounds[0] - rounds[-1] <= 1, (rounds[0], rounds[-1])
                    counts["scans"] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append((f"scanner {t}", repr(e)))
                stop.set()

        threads = [threading.Thread(target=writer), threading.Thread(target=compactor)]
        threads += [threading.Thread(target=getter, args=(t,)) for t in range(2)]
        threads += [threading.Thread(target=scanner, args=(t,)) for t in range(2)]
        c0 = db.stats()["compactions"]
        for th in threads:
            th.start()
        time.sleep(duration)
        stop.set()
        for th in threads:
            th.join(60)
        assert not errors, errors
        assert counts["scans"] >= 2 and counts["gets"] > 100 and counts["compacts"] >= 2, counts
        assert db.stats()["compactions"] > c0
        for i in range(nkeys):
            assert parse_round_value(db[key_of(i)], i) == done[i]
    finally:
        db.close()


def test_iterator_and_snapshot_survive_compaction_of_their_tables(db_path):
    n = 5000
    with pylsm.open(db_path, memtable_bytes=64 * KiB, background_compaction=False) as db:
        for i in range(n):
            db.put(key_of(i), round_value(0, i))
        db.flush()
        snap = db.snapshot()
        it = db.items()
        first = next(it)
        old_tables = set(sst_files(db_path))
        for i in range(n):
            db.put(key_of(i), round_value(1, i))
        for i in range(0, n, 3):
            db.delete(key_of(i))
        db.compact()
        # the old tables are obsolete now but still read by the iterator and the snapshot
        assert first == (key_of(0), round_value(0, 0))
        rest = list(it)
        assert rest == [(key_of(i), round_value(0, i)) for i in range(1, n)]
        for i in range(0, n, 7):
            assert snap[key_of(i)] == round_value(0, i)
        assert len(list(snap.items())) == n
        snap.close()
        it.close()
        del it, snap
        import gc

        gc.collect()
        # once released, the obsolete tables go
        assert not (old_tables & set(sst_files(db_path))), (old_tables, sst_files(db_path))
        assert len(sst_files(db_path)) == db.stats()["sstables"]


# ---------------------------------------------------------------------------------------------
# compact(start, stop).

def _spread(db, n):
    for i in range(n):
        db.put(key_of(i), round_value(0, i))


def test_compact_range_touches_only_overlapping_tables(db_path):
    n = 60_000
    with pylsm.open(db_path, memtable_bytes=1 * MiB, background_compaction=False) as db:
        _spread(db, n)
        db.compact()
        st = db.stats()
        base = sorted(sst_files(db_path))
        assert level_files(st, 0) == 0 and len(base) >= 3, (st["levels"], base)
        # new data only in [k0010000, k0011000): one L0 table
        lo, hi = key_of(10_000), key_of(11_000)
        for i in range(10_000, 11_000):
            if i % 2:
                db.delete(key_of(i))
            else:
                db.put(key_of(i), round_value(1, i))
        db.flush()
        assert level_files(db.stats(), 0) == 1
        before = set(sst_files(db_path))
        db.compact(lo, hi)
        st = db.stats()
        after = set(sst_files(db_path))
        assert level_files(st, 0) == 0, st["levels"]
        # the L0 table and the one or two deeper tables it overlaps were rewritten; the others not
        untouched = set(base) & after
        assert len(untouched) >= len(base) - 2, (base, sorted(after))
        assert len(after) == st["sstables"]
        assert before != after

        def want(i):
            if 10_000 <= i < 11_000:
                return None if i % 2 else round_value(1, i)
            return round_value(0, i)

        for i in range(0, n, 7):
            assert db.get(key_of(i)) == want(i), i
        for i in range(10_000, 11_000):
            assert db.get(key_of(i)) == want(i), i
        assert len(db) == n - 500
    with pylsm.open(db_path, background_compaction=False) as db:
        assert len(db) == n - 500
        assert db.get(key_of(10_001)) is None and db[key_of(10_002)] == round_value(1, 10_002)


def test_compact_range_without_overlapping_l0_leaves_l0_alone(db_path):
    with pylsm.open(db_path, memtable_bytes=1 * MiB, background_compaction=False) as db:
        _spread(db, 20_000)
        db.compact()
        deeper = set(sst_files(db_path))
        for i in range(15_000, 16_000):
            db.put(key_of(i), round_value(1, i))
        db.flush()
        assert level_files(db.stats(), 0) == 1
        l0 = set(sst_files(db_path)) - deeper
        assert len(l0) == 1
        db.compact(key_of(100), key_of(200))
        assert level_files(db.stats(), 0) == 1, db.stats()["levels"]
        db.compact(stop=key_of(1000))
        db.compact(start=key_of(19_500))
        assert level_files(db.stats(), 0) == 1, db.stats()["levels"]
        assert set(sst_files(db_path)) == deeper | l0, "a compaction of a disjoint range rewrote tables"
        db.compact(start=key_of(15_500))
        assert level_files(db.stats(), 0) == 0
        for i in range(0, 20_000, 11):
            assert db[key_of(i)] == round_value(1 if 15_000 <= i < 16_000 else 0, i)


def test_compact_merges_every_level_in_one_pass(db_path):
    """compact() writes the data once: one merge from level 0 into the deepest level that holds
    anything, not one merge per level the data passes through."""
    n = 150_000
    with pylsm.open(db_path, memtable_bytes=1 * MiB) as db:
        for i in random.Random(5).sample(range(n), n):
            db.put(key_of(i), round_value(0, i))
        db.flush()
    # reopened without background compaction: the levels stay as the load left them, and the bytes
    # written into each level count from zero
    with pylsm.open(db_path, memtable_bytes=1 * MiB, background_compaction=False) as db:
        for i in range(0, n, 3):
            db.put(key_of(i), round_value(1, i))
        db.flush()
        st = db.stats()
        deepest = max(lv["level"] for lv in st["levels"] if lv["files"])
        filled = [lv["level"] for lv in st["levels"] if lv["files"]]
        assert 0 in filled and len(filled) >= 3 and deepest >= 2, st["levels"]
        flushed = st["levels"][0]["bytes_written"]
        db.compact()
        st = db.stats()
        assert [lv["level"] for lv in st["levels"] if lv["files"]] == [deepest], st["levels"]
        written = [lv["bytes_written"] for lv in st["levels"]]
        assert written[0] == flushed, st["levels"]
        assert all(w == 0 for lv, w in enumerate(written) if lv not in (0, deepest)), st["levels"]
        assert written[deepest] == st["levels"][deepest]["bytes"], st["levels"]
        for i in range(0, n, 7):
            assert db[key_of(i)] == round_value(1 if i % 3 == 0 else 0, i), i
        assert len(db) == n


@pytest.mark.parametrize("bounds", [(None, None), (b"", None), (None, b""), (b"k0000500", b"k0000400"),
                                    (b"\xff", None), (b"a", b"b")])
def test_compact_with_odd_ranges(db_path, bounds):
    with pylsm.open(db_path, memtable_bytes=64 * KiB) as db:
        _spread(db, 3000)
        for i in range(0, 3000, 5):
            db.delete(key_of(i))
        db.compact(*bounds)
        assert len(db) == 3000 - 600
        for i in range(0, 3000, 13):
            assert db.get(key_of(i)) == (None if i % 5 == 0 else round_value(0, i))
        with pytest.raises(TypeError):
            db.compact("a", None)


# ---------------------------------------------------------------------------------------------
# Statistics.

def test_stats_levels_and_amplification(db_path):
    with pylsm.open(db_path, memtable_bytes=256 * KiB) as db:
        st0 = db.stats()
        for key in ("levels", "compactions", "user_bytes_written", "disk_bytes_written", "live_bytes",
                    "sstables", "flushes", "lsn", "memtable_bytes", "wal_bytes", "wal_dropped_bytes"):
            assert key in st0, key
        assert st0["user_bytes_written"] == 0 and st0["compactions"] == 0
        n = 50_000
        for r in range(3):
            for i in range(n):
                db.put(key_of(i), round_value(r, i))
        db.compact()
        st = db.stats()
        levels = st["levels"]
        assert isinstance(levels, list) and levels
        assert [lv["level"] for lv in levels] == list(range(len(levels)))
        for lv in levels:
            assert set(lv) >= {"level", "files", "bytes"}
            assert (lv["files"] == 0) == (lv["bytes"] == 0), lv
        assert sum(lv["files"] for lv in levels) == st["sstables"] == len(sst_files(db_path))
        assert sum(lv["bytes"] for lv in levels) == dir_bytes(db_path, ".sst")
        assert st["compactions"] > 0
        user = 3 * n * (len(key_of(0)) + 100)
        assert st["user_bytes_written"] == user, (st["user_bytes_written"], user)
        assert st["disk_bytes_written"] > st["user_bytes_written"]
        assert st["live_bytes"] >= sum(lv["bytes"] for lv in levels)
        assert st["live_bytes"] <= 2 * n * (len(key_of(0)) + 100)
        assert st["lsn"] == 3 * n
        assert "write_amplification" in st, f"stats() lacks write_amplification: {sorted(st)}"
        wa = st["write_amplification"]
        assert isinstance(wa, (int, float))
        assert abs(wa - st["disk_bytes_written"] / st["user_bytes_written"]) < 0.01, wa


# ---------------------------------------------------------------------------------------------
# kill -9 while compactions run in a loop.

def _kill_during_compactions(path, iterations, seed, knobs=None):
    rng = random.Random(seed)
    spec = {"path": path, "keys": 4000, "vsize": 100, "total": 10_000_000, "memtable_bytes": 32 * KiB,
            "compact_loop": True, "compact_pause": 0.005, "test_knobs": knobs or {}}
    model = Model(spec)
    m = 0
    for it in range(iterations):
        with ChildWriter(dict(spec, start=m)) as c:
            assert c.wait_ready(60), c.stderr
            assert c.start_m == m, (c.start_m, m)
            time.sleep(rng.uniform(0.1, 1.2))
            c.kill()
            assert c.wait() == -9, c.stderr
            acked = c.acked_length()
        m = check_recovered(path, model, acked, open_kwargs={"memtable_bytes": 32 * KiB})
    with pylsm.open(path) as db:
        assert db.stats()["sstables"] > 0
    pylsm.verify(path)
    return m


def test_kill9_during_compactions_keeps_the_model(tmp_path):
    m = _kill_during_compactions(str(tmp_path / "db"), 3, 7)
    assert m > 0


def test_kill9_during_split_compactions_keeps_the_model(tmp_path):
    """Every compaction with two or more output tables split over two threads (subcompactions): a kill
    while both halves write leaves the database as before the compaction or after it."""
    m = _kill_during_compactions(str(tmp_path / "db"), 3, 11, {"subcompaction_min_bytes": 0})
    assert m > 0


@pytest.fixture
def split_everything():
    """Compactions split over two threads whatever their size (the engine splits those of 64 MiB up)."""
    pylsm._pylsm._test_set("subcompaction_min_bytes", 0)
    yield
    pylsm._pylsm._test_set("subcompaction_min_bytes", 64 * MiB)


def test_split_compactions_keep_every_key_version_and_tombstone(db_path, split_everything):
    """A compaction split in two at a key of its output level: each half merges and writes its own key
    range on its own thread, and together they give what one merge gives -- newest values, deletes
    that hide older values below, and the versions an open snapshot still needs."""
    rnd = random.Random(5)
    model, snap_model = {}, None
    with pylsm.open(db_path, memtable_bytes=256 * KiB) as db:
        snap = None
        for i in range(120_000):
            k = key_of(rnd.randrange(30_000))
            if rnd.random() < 0.15:
                db.delete(k)
                model.pop(k, None)
            else:
                v = os.urandom(rnd.randrange(1, 300))
                db.put(k, v)
                model[k] = v
            if i == 60_000:
                snap, snap_model = db.snapshot(), dict(model)
        db.compact()
        st = db.stats()
        assert st["subcompactions"] > 0, st
        assert dict(db.items()) == model
        assert all(db.get(k) == v for k, v in model.items())
        assert dict(snap.items()) == snap_model
        assert all(snap.get(k) == v for k, v in list(snap_model.items())[::5])
        snap.close()
    pylsm.verify(db_path)
    with pylsm.open(db_path) as db:
        assert dict(db.items()) == model


@pytest.mark.parametrize("keys", ["random", "sequential"])
def test_level0_into_an_empty_level_is_split_at_the_inputs_middle_keys(db_path, split_everything, keys):
    """A compaction into a level holding none of its inputs' range (the first compaction of a load, a
    manual compaction into an empty bottom level) has no output table to split at: it splits at the
    median of its inputs' middle index keys, and the halves give what one merge gives."""
    rnd = random.Random(7)
    model = {}
    with pylsm.open(db_path, memtable_bytes=256 * KiB, background_compaction=False) as db:
        for t in range(6):
            for i in range(3_000):
                n = rnd.randrange(100_000) if keys == "random" else t * 3_000 + i
                k, v = key_of(n), os.urandom(rnd.randrange(50, 200))
                db.put(k, v)
                model[k] = v
            if keys == "random":
                victim = key_of(rnd.randrange(100_000))
                db.delete(victim)
                model.pop(victim, None)
            db.flush()
        assert db.stats()["levels"][0]["files"] >= 6
        assert sum(lv["files"] for lv in db.stats()["levels"][1:]) == 0
        db.compact()
        st = db.stats()
        assert st["subcompactions"] > 0, st
        assert st["levels"][0]["files"] == 0
        assert dict(db.items()) == model
        assert all(db.get(k) == v for k, v in list(model.items())[::7])
    pylsm.verify(db_path)
    with pylsm.open(db_path) as db:
        assert dict(db.items()) == model


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
def test_kill9_during_compactions_stress(tmp_path, seed):
    _kill_during_compactions(str(tmp_path / "db"), 30, 1000 + seed)
