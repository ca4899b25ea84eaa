"""The WAL and its recovery (docs/api.md, "Sync strategies"; docs/format.md).

The expected outcome of every reopen is computed from an independent model of the WAL layout
(tests/lsmtest.py): file header, then records u64 lsn | u32 crc32c | u32 len | [u64 timestamp] | payload.
Sweeps reopen thousands of mutated copies; they run in worker processes on tmpfs (see lsmtest.run_sweep).
"""
from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
import time

import pytest

import lsmtest
from lsmtest import encode_batch, find_wal, record_size
import pylsm


def lsn(db) -> int:
    return db.stats()["lsn"]


def build(path, writes, **opts):
    """Write each op list as one write (put/delete for one op, a WriteBatch for more); close."""
    with pylsm.open(path, **opts) as db:
        for ops in writes:
            if len(ops) == 1 and ops[0][0] == "put":
                db.put(ops[0][1], ops[0][2])
            elif len(ops) == 1:
                db.delete(ops[0][1])
            else:
                b = pylsm.WriteBatch()
                for op in ops:
                    b.put(op[1], op[2]) if op[0] == "put" else b.delete(op[1])
                db.write(b)


def workload(n, seed, nkeys):
    """n writes over nkeys keys: overwrites, deletes, empty values, some multi-op batches."""
    rng = random.Random(seed)
    writes = []
    for i in range(n):
        r = rng.random()
        if r < 0.1 and i:
            writes.append([("delete", b"k%d" % rng.randrange(nkeys))])
        elif r < 0.2:
            writes.append([("put", b"k%d" % rng.randrange(nkeys), b"b%d" % i),
                           ("delete", b"k%d" % rng.randrange(nkeys)),
                           ("put", b"k%d" % rng.randrange(nkeys), b"c%d" % i)])
        else:
            writes.append([("put", b"k%d" % rng.randrange(nkeys), (b"%d" % i) * rng.randrange(0, 3))])
    return writes


def model(writes, keys):
    """(lsn after r whole records for r = 0..n, {lsn: tuple of values of keys})."""
    state: dict = {}
    lsns = [0]
    expected = {0: tuple(None for _ in keys)}
    for ops in writes:
        lsmtest.apply_ops(state, ops)
        lsns.append(lsns[-1] + len(ops))
        expected[lsns[-1]] = tuple(state.get(k) for k in keys)
    return lsns, expected


def files_of(path):
    out = {}
    for name in os.listdir(path):
        with open(os.path.join(path, name), "rb") as f:
            out[name] = f.read()
    return out


def state_of(db, keys):
    return tuple(db.get_many(keys))


@pytest.fixture
def small_db(tmp_path):
    """A closed database of 30 writes (20 keys) and its model."""
    path = str(tmp_path / "small")
    writes = workload(30, seed=7, nkeys=20)
    build(path, writes)
    keys = [b"k%d" % i for i in range(20)]
    lsns, expected = model(writes, keys)
    wal = find_wal(path)
    data = open(wal, "rb").read()
    sizes = [record_size(len(encode_batch(ops))) for ops in writes]
    offsets = [16 + sum(sizes[:i]) for i in range(len(sizes))]
    return dict(path=path, writes=writes, keys=keys, lsns=lsns, expected=expected, wal=wal, data=data,
                sizes=sizes, offsets=offsets)


def copy_db(src, dst, wal_data=None, wal_name=None):
    shutil.copytree(src, dst)
    if wal_data is not None:
        with open(os.path.join(dst, wal_name), "wb") as f:
            f.write(wal_data)
    return dst


# ---------------------------------------------------------------------------------------------
# The layout


def test_wal_bytes_are_exactly_the_documented_format(db_path):
    writes = [[("put", b"a", b"1")], [("put", b"", b"")], [("delete", b"a")],
              [("put", b"k" * 200, b"v" * 20000)],
              [("put", b"x", b"1"), ("delete", b"y"), ("put", b"x", b"2")]]
    build(db_path, writes)
    data = open(find_wal(db_path), "rb").read()
    want, _ = lsmtest.encode_wal(writes)
    assert data == want  # header, LSNs (one per op), CRCs, lengths, payloads; cut to length on close
    recs = lsmtest.parse_wal(data)
    assert [r["lsn"] for r in recs] == [1, 2, 3, 4, 5, 8]  # five records, then the closing sync mark
    assert [r["mark"] for r in recs] == [None] * 5 + [recs[-1]["offset"]]
    assert all(r["crc_ok"] for r in recs)


# ---------------------------------------------------------------------------------------------
# Truncation at every byte offset


@pytest.mark.engine
def test_truncate_at_every_offset_gives_exactly_the_whole_records_before_the_cut(tmp_path, fast_dir):
    path = str(tmp_path / "db")
    writes = workload(200, seed=1, nkeys=60)
    build(path, writes)
    keys = [b"k%d" % i for i in range(60)]
    lsns, expected = model(writes, keys)
    wal = find_wal(path)
    data = open(wal, "rb").read()
    sizes = [record_size(len(encode_batch(ops))) for ops in writes]
    assert len(data) == 16 + sum(sizes) + record_size(lsmtest.WAL_MARK_LEN)
    data = data[: 16 + sum(sizes)]  # the image a crash leaves: no closing sync mark
    ends = [16 + sum(sizes[: i + 1]) for i in range(len(sizes))]

    variants = [("cut", c) for c in range(len(data) + 1)]
    job = dict(files=files_of(path), wal=os.path.basename(wal), variants=variants, keys=keys, options={},
               expected=expected, workdir=os.path.join(fast_dir, "w"))
    results = lsmtest.run_sweep(job)
    bad = []
    for (_, cut), res in zip(variants, results):
        whole = sum(1 for e in ends if e <= cut)
        want = ("ok", lsns[whole], True)
        if res[:3] != want:
            bad.append((cut, whole, res))
    assert not bad, f"{len(bad)} cuts wrong, first: {bad[:5]}"


def test_torn_tail_is_cut_and_reopen_twice_gives_same_state(small_db, tmp_path):
    s = small_db
    for k in (3, 17, len(s["writes"]) - 1):
        cut = s["offsets"][k] + s["sizes"][k] // 2  # in the middle of record k
        p = copy_db(s["path"], str(tmp_path / f"c{k}"), s["data"][:cut], os.path.basename(s["wal"]))
        with pylsm.open(p) as db:
            first = (lsn(db), state_of(db, s["keys"]))
        assert first == (s["lsns"][k], s["expected"][s["lsns"][k]])
        assert os.path.getsize(os.path.join(p, os.path.basename(s["wal"]))) == s["offsets"][k]
        with pylsm.open(p) as db:
            assert (lsn(db), state_of(db, s["keys"])) == first
            db[b"after"] = b"1"
        with pylsm.open(p, wal_recovery="absolute") as db:  # the repaired log is clean now
            assert (lsn(db), state_of(db, s["keys"])) == (first[0] + 1, first[1])
            assert db[b"after"] == b"1"
        pylsm.verify(p)


# ---------------------------------------------------------------------------------------------
# Tails


@pytest.mark.parametrize("mode", ["tolerate_tail", "absolute", "salvage"])
@pytest.mark.parametrize("zeros", [1, 7, 15, 16, 17, 40, 4096, 1 << 20])
def test_zero_filled_tail_is_the_end_of_the_log(small_db, tmp_path, mode, zeros):
    s = small_db
    p = copy_db(s["path"], str(tmp_path / "z"), s["data"] + bytes(zeros), os.path.basename(s["wal"]))
    with pylsm.open(p, wal_recovery=mode) as db:
        n = s["lsns"][-1]
        assert (lsn(db), state_of(db, s["keys"])) == (n, s["expected"][n])
        assert db.stats()["wal_dropped_bytes"] == 0  # zeros are the clean end, not dropped data


@pytest.mark.parametrize("room_left", [1, 9, 15])
def test_preallocated_wal_filled_to_within_a_header_then_killed(tmp_path, spawn, room_left):
    """The engine itself leaves a zero tail shorter than a record header: it preallocates the WAL ahead
    of the writer in zero-filled chunks (cut only on a clean close), so a process that dies after
    filling a chunk to within a few bytes leaves those bytes as zeros."""
    path = str(tmp_path / "db")
    p = spawn("fill_window", path, room_left)
    out, err = p.communicate(timeout=120)
    assert p.returncode == -9, err.decode()[-2000:]
    n, child_lsn, name, alloc = out.split()
    n, child_lsn, alloc = int(n), int(child_lsn), int(alloc)
    wal = os.path.join(path, name.decode())
    assert os.path.getsize(wal) == alloc  # the situation is as intended: the chunk was not extended
    data = open(wal, "rb").read()
    assert data[-room_left:] == bytes(room_left) and data[-room_left - 1] != 0
    for mode in ("absolute", "tolerate_tail", "salvage"):
        cp = str(tmp_path / mode)
        shutil.copytree(path, cp)
        with pylsm.open(cp, wal_recovery=mode) as db:
            assert lsn(db) == child_lsn == n
            assert db.stats()["wal_dropped_bytes"] == 0
            assert db.get(b"last%04d" % (n - 1)) is not None


@pytest.mark.parametrize("length", [1, 5, 16, 40, 1000])
def test_garbage_tail(small_db, tmp_path, length):
    s = small_db
    rng = random.Random(length)
    garbage = bytes([rng.randrange(1, 256)]) + bytes(rng.randrange(256) for _ in range(length - 1))
    name = os.path.basename(s["wal"])
    n = s["lsns"][-1]
    # tolerate_tail (the default): the end of the log; the tail is cut
    p = copy_db(s["path"], str(tmp_path / "t"), s["data"] + garbage, name)
    with pylsm.open(p) as db:
        assert (lsn(db), state_of(db, s["keys"])) == (n, s["expected"][n])
        db[b"more"] = b"1"
    assert os.path.getsize(os.path.join(p, name)) == len(s["data"])
    with pylsm.open(p) as db:
        assert (lsn(db), state_of(db, s["keys"])) == (n + 1, s["expected"][n])
    # absolute: corruption
    p = copy_db(s["path"], str(tmp_path / "a"), s["data"] + garbage, name)
    with pytest.raises(pylsm.CorruptionError):
        pylsm.open(p, wal_recovery="absolute")
    # salvage: opens, reports the garbage as dropped
    p = copy_db(s["path"], str(tmp_path / "s"), s["data"] + garbage, name)
    with pylsm.open(p, wal_recovery="salvage") as db:
        assert (lsn(db), state_of(db, s["keys"])) == (n, s["expected"][n])
        assert db.stats()["wal_dropped_bytes"] == length


# ---------------------------------------------------------------------------------------------
# Damage in the middle


@pytest.mark.parametrize("field,delta", [("lsn", 0), ("lsn", 7), ("crc", 9), ("len", 12), ("len", 13),
                                         ("payload", 16), ("payload", -1)])
def test_damaged_middle_record(small_db, tmp_path, field, delta):
    s = small_db
    k = 12  # a record with intact records after it
    off = s["offsets"][k] + (delta if delta >= 0 else s["sizes"][k] + delta)
    data = bytearray(s["data"])
    data[off] ^= 0x40
    name = os.path.basename(s["wal"])
    for mode in ("tolerate_tail", "absolute"):
        p = copy_db(s["path"], str(tmp_path / mode), bytes(data), name)
        with pytest.raises(pylsm.CorruptionError) as ei:
            pylsm.open(p, **({} if mode == "tolerate_tail" else {"wal_recovery": mode}))
        assert name in str(ei.value)
        assert open(os.path.join(p, name), "rb").read() == bytes(data)  # a failed open changes nothing
    # salvage: everything but record k
    p = copy_db(s["path"], str(tmp_path / "salvage"), bytes(data), name)
    want = {}
    for i, ops in enumerate(s["writes"]):
        if i != k:
            lsmtest.apply_ops(want, ops)
    with pylsm.open(p, wal_recovery="salvage") as db:
        assert state_of(db, s["keys"]) == tuple(want.get(key) for key in s["keys"])
        assert db.stats()["wal_dropped_bytes"] == s["sizes"][k]
        assert lsn(db) == s["lsns"][-1]
        db[b"new"] = b"1"
    with pylsm.open(p, wal_recovery="salvage") as db:  # and again: the same, plus the new write
        assert state_of(db, s["keys"]) == tuple(want.get(key) for key in s["keys"])
        assert db[b"new"] == b"1"
        assert lsn(db) == s["lsns"][-1] + 1


@pytest.mark.engine
def test_flip_every_bit_gives_corruption_or_a_prefix(small_db, fast_dir):
    s = small_db
    data = s["data"]
    variants = [("flip", i, b) for i in range(len(data)) for b in range(8)]
    job = dict(files=files_of(s["path"]), wal=os.path.basename(s["wal"]), variants=variants, keys=s["keys"],
               options={}, expected=s["expected"], workdir=os.path.join(fast_dir, "w"))
    t0 = time.monotonic()
    results = lsmtest.run_sweep(job)
    bad, corrupt, prefix = [], 0, 0
    last = s["offsets"][-1]
    for (_, i, b), res in zip(variants, results):
        if res[0] == "exc" and res[1] == "CorruptionError":
            corrupt += 1
        elif res[0] == "ok" and res[2]:
            prefix += 1
            # only damage to the last record may read as a torn tail
            if i < last:
                bad.append(((i, b), "prefix from damage before the last record", res))
        else:
            bad.append(((i, b), res))
    assert not bad, f"{len(bad)} of {len(variants)} flips wrong, first: {bad[:5]}"
    assert corrupt > 0 and prefix > 0
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("length", [0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, "past_end_by_1"])
@pytest.mark.parametrize("where", ["middle", "last"])
def test_huge_length_field_is_corruption_or_end_no_huge_allocation(small_db, tmp_path, spawn, length, where):
    s = small_db
    k = 10 if where == "middle" else len(s["writes"]) - 1
    data = bytearray(s["data"])
    if where == "last":  # the image a crash leaves: no closing sync mark after the last record
        data = data[: s["offsets"][-1] + s["sizes"][-1]]
    if length == "past_end_by_1":
        length = len(data) - s["offsets"][k] - 16 + 1
    struct.pack_into("<I", data, s["offsets"][k] + 12, length)
    p = copy_db(s["path"], str(tmp_path / "db"), bytes(data), os.path.basename(s["wal"]))
    # opened by a child whose address space is capped: a length-sized allocation cannot succeed
    proc = spawn("open_limited", p, 768 << 20)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    res = out.decode().split()
    if where == "middle":
        assert res[0] == "CorruptionError", res
    else:
        assert res[0] == "ok", res
        assert int(res[1]) == s["lsns"][k]


# ---------------------------------------------------------------------------------------------
# Stale records: LSNs must follow on


def _write_wal(tmp_path, name, records):
    """An empty database made by the engine (whatever metadata files it keeps), its WAL replaced by
    a hand-made one."""
    path = str(tmp_path / name)
    pylsm.open(path).close()
    assert not lsmtest.wal_names(path)  # a WAL that got no record is not kept at close
    wal = os.path.join(path, "000099.wal")
    with open(wal, "wb") as f:
        f.write(lsmtest.file_header() + b"".join(records))
    return path


def test_engine_accepts_a_wal_built_by_the_model(tmp_path):
    # the control for the stale-record tests below: a well-formed hand-made WAL is read as written
    rec = lsmtest.encode_record
    p = _write_wal(tmp_path, "ok", [rec(1, encode_batch([("put", b"k", b"v1")])),
                                    rec(2, encode_batch([("put", b"k", b"v2"), ("put", b"j", b"x")])),
                                    rec(4, encode_batch([("delete", b"j")]))])
    with pylsm.open(p, wal_recovery="absolute") as db:
        assert db.get_many([b"k", b"j"]) == [b"v2", None]
        assert lsn(db) == 4


@pytest.mark.parametrize("mode", ["tolerate_tail", "absolute", "salvage"])
def test_stale_record_at_the_end_is_not_applied(tmp_path, mode):
    rec = lsmtest.encode_record
    r1 = rec(1, encode_batch([("put", b"k", b"old")]))
    r2 = rec(2, encode_batch([("put", b"k", b"new")]))
    cases = {
        "duplicate_first": [r1, r2, r1],
        "duplicate_last": [r1, r2, r2],
        "lsn_goes_back": [r1, r2, rec(2, encode_batch([("put", b"k", b"stale")]))],
        "lsn_gap": [r1, r2, rec(4, encode_batch([("put", b"k", b"gap")]))],
        "lsn_zero": [r1, r2, rec(0, encode_batch([("put", b"k", b"zero")]))],
    }
    for name, recs in cases.items():
        p = _write_wal(tmp_path, f"{mode}-{name}", recs)
        if mode == "absolute":
            with pytest.raises(pylsm.CorruptionError):
                pylsm.open(p, wal_recovery=mode)
            continue
        with pylsm.open(p, wal_recovery=mode) as db:
            assert db[b"k"] == b"new", name
            assert lsn(db) == 2, name


@pytest.mark.parametrize("mode", ["tolerate_tail", "absolute"])
def test_stale_record_in_the_middle_is_corruption(tmp_path, mode):
    rec = lsmtest.encode_record
    r1 = rec(1, encode_batch([("put", b"k", b"1")]))
    r2 = rec(2, encode_batch([("put", b"k", b"2")]))
    r3 = rec(3, encode_batch([("put", b"k", b"3")]))
    for name, recs in {"duplicate": [r1, r2, r2, r3], "replayed_old": [r1, r2, r1, r3],
                       "gap": [r1, r2, rec(5, encode_batch([("put", b"k", b"5")])),
                               rec(6, encode_batch([("put", b"k", b"6")]))]}.items():
        # as a clean close leaves the file: a last sync mark declares every record durable
        end = 16 + sum(map(len, recs))
        p = _write_wal(tmp_path, f"{mode}-{name}", recs + [lsmtest.encode_mark(10, end)])
        with pytest.raises(pylsm.CorruptionError):
            pylsm.open(p, wal_recovery=mode)
        if mode == "tolerate_tail":
            # never synced (a crash image with no mark): the log ends where it stops following on
            p = _write_wal(tmp_path, f"{mode}-{name}-unsynced", recs)
            with pylsm.open(p) as db:
                assert db[b"k"] == b"2" and lsn(db) == 2, name


def test_old_wal_copied_back_is_rejected(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path) as db:
        for i in range(10):
            db[b"k%d" % i] = b"old%d" % i
    with pylsm.open(path) as db:
        for i in range(10):
            db[b"k%d" % i] = b"new%d" % i
    keys = [b"k%d" % i for i in range(10)]
    want = [b"new%d" % i for i in range(10)]
    names = lsmtest.wal_names(path)
    assert len(names) == 2
    # as the newest WAL: never applied (the end of the log, or corruption)
    for mode in ("tolerate_tail", "salvage", "absolute"):
        newest = str(tmp_path / ("newest-" + mode))
        shutil.copytree(path, newest)
        shutil.copy(os.path.join(newest, names[0]), os.path.join(newest, "000099.wal"))
        if mode == "absolute":
            with pytest.raises(pylsm.CorruptionError):
                pylsm.open(newest, wal_recovery=mode)
            continue
        try:
            with pylsm.open(newest, wal_recovery=mode) as db:
                assert db.get_many(keys) == want
                assert lsn(db) == 20
                db[b"k0"] = b"newer"
            with pylsm.open(newest, wal_recovery=mode) as db:  # and it stays rejected
                assert db.get_many(keys) == [b"newer"] + want[1:]
                assert lsn(db) == 21
        except pylsm.CorruptionError:
            pass
    # in place of the second WAL (not the last one after a reopen adds a third): corruption
    middle = str(tmp_path / "middle")
    shutil.copytree(path, middle)
    with pylsm.open(middle) as db:
        db[b"third"] = b"wal"  # a WAL that got no record would not be kept
    names = lsmtest.wal_names(middle)
    assert len(names) == 3
    shutil.copy(os.path.join(middle, names[0]), os.path.join(middle, names[1]))
    with pytest.raises(pylsm.CorruptionError):
        pylsm.open(middle)


# ---------------------------------------------------------------------------------------------
# Timestamps, verify, repair


def test_wal_timestamp_round_trip(db_path):
    t0 = time.time_ns() // 1000
    writes = [[("put", b"a%d" % i, b"v%d" % i)] for i in range(20)] + [[("delete", b"a3")]]
    build(db_path, writes, wal_timestamp=True)
    t1 = time.time_ns() // 1000
    data = open(find_wal(db_path), "rb").read()
    assert data[:16] == lsmtest.file_header(timestamps=True)
    recs = lsmtest.parse_wal(data)
    assert len(recs) == 22 and recs[-1]["mark"] == recs[-1]["offset"]  # 21 records, the closing mark
    recs = recs[:21]
    assert len(data) == 16 + sum(record_size(len(encode_batch(w)), timestamps=True) for w in writes) + \
        record_size(lsmtest.WAL_MARK_LEN, timestamps=True)
    for i, (r, w) in enumerate(zip(recs, writes)):
        assert r["crc_ok"] and r["lsn"] == i + 1
        assert r["payload"] == encode_batch(w)
        assert t0 <= r["timestamp"] <= t1
    assert [r["timestamp"] for r in recs] == sorted(r["timestamp"] for r in recs)
    for opt in (True, False):  # the reader follows the file's flag, whatever the option says now
        with pylsm.open(db_path, wal_timestamp=opt) as db:
            assert db.get(b"a3") is None
            assert db.get_many([b"a0", b"a19"]) == [b"v0", b"v19"]
            db.put(b"ts%d" % opt, b"1")
    with pylsm.open(db_path, wal_recovery="absolute") as db:
        assert db.get_many([b"ts1", b"ts0", b"a5"]) == [b"1", b"1", b"v5"]
        assert lsn(db) == 23
    pylsm.verify(db_path)


def test_wal_timestamp_torn_tail(tmp_path):
    path = str(tmp_path / "db")
    writes = [[("put", b"a%d" % i, b"v%d" % i)] for i in range(10)]
    build(path, writes, wal_timestamp=True)
    wal = find_wal(path)
    data = open(wal, "rb").read()
    size = record_size(len(encode_batch(writes[0])), timestamps=True)
    for cut in (16 + 5 * size, 16 + 5 * size + 3, 16 + 5 * size + 20, 16 + 6 * size - 1):
        p = copy_db(path, str(tmp_path / f"c{cut}"), data[:cut], os.path.basename(wal))
        with pylsm.open(p) as db:
            assert lsn(db) == 5
            assert db.get(b"a4") == b"v4" and db.get(b"a5") is None


def test_verify_good_and_damaged(small_db, tmp_path):
    s = small_db
    assert pylsm.verify(s["path"]) is None
    before = files_of(s["path"])
    k = 9
    data = bytearray(s["data"])
    data[s["offsets"][k] + 20] ^= 1
    name = os.path.basename(s["wal"])
    p = copy_db(s["path"], str(tmp_path / "bad"), bytes(data), name)
    with pytest.raises(pylsm.CorruptionError) as ei:
        pylsm.verify(p)
    msg = str(ei.value)
    assert name in msg
    assert re.search(r"offset %d\b" % s["offsets"][k], msg), msg
    assert files_of(s["path"]) == before  # verify changes nothing
    assert open(os.path.join(p, name), "rb").read() == bytes(data)
    with pytest.raises(pylsm.Error):
        pylsm.verify(str(tmp_path / "nothing-here"))
    # a database reopened several times (several WALs) verifies too
    for _ in range(3):
        with pylsm.open(s["path"]) as db:
            db[b"x"] = b"y"
    pylsm.verify(s["path"])


def test_repair_makes_a_damaged_db_consistent(small_db, tmp_path):
    s = small_db
    k = 12
    data = bytearray(s["data"])
    data[s["offsets"][k] + 18] ^= 0x10
    p = copy_db(s["path"], str(tmp_path / "bad"), bytes(data), os.path.basename(s["wal"]))
    want = {}
    for i, ops in enumerate(s["writes"]):
        if i != k:
            lsmtest.apply_ops(want, ops)
    with pytest.raises(pylsm.CorruptionError):
        pylsm.open(p)
    pylsm.repair(p)
    # "salvage a damaged database into a consistent one, keeping every record whose checksum is intact"
    with pylsm.open(p) as db:
        assert state_of(db, s["keys"]) == tuple(want.get(key) for key in s["keys"])
    pylsm.verify(p)


def test_torn_large_first_record_is_scanned_promptly(tmp_path, spawn):
    """A process dies after copying a 4 MiB first record (numeric data) into the WAL but before storing
    its CRC (the last store of an append; the preallocated file reads zero there).  Recovery must find
    the end of the log in time linear in the WAL, not CRC up to `len` bytes at every payload offset."""
    path = str(tmp_path / "db")
    p = spawn("put_big_then_die", path, "00001000", 4 << 20)
    out, err = p.communicate(timeout=60)
    assert p.returncode == -9, err.decode()[-2000:]
    wal = os.path.join(path, out.decode().split()[0])
    with open(wal, "r+b") as f:
        head = f.read(16 + 16)
        lsn_, crc, ln = struct.unpack_from("<QII", head, 16)
        assert lsn_ == 1 and crc != 0 and ln > 4 << 20
        f.seek(16 + 8)
        f.write(bytes(4))  # the CRC field as it was before the append's last store
    # pylsm.verify reads the same log (a torn tail of the last WAL is no corruption), then recovery
    for command, want in (("verify", "ok"), ("reopen", "opened 0")):
        r = spawn(command, path)
        try:
            out, err = r.communicate(timeout=5)  # a healthy scan of this WAL takes milliseconds
        except subprocess.TimeoutExpired:
            r.kill()
            r.communicate()
            pytest.fail(f"{command} of a WAL with a torn 4 MiB first record took over 5 s")
        assert r.returncode == 0, err.decode()[-2000:]
        assert want in out.decode().splitlines()
    with pylsm.open(path) as db:
        assert db.get(b"big") is None and db.stats()["lsn"] == 0
