"""The Python API surface that exists today (docs/api.md), checked call by call.

Not covered here (being built elsewhere): items()/keys()/values()/len()/iter(), flush(), compact().
"""
from __future__ import annotations

import array
import errno
import os
import pathlib
import signal
import sys

import pytest

import lsmtest
import pylsm


def lsn(db) -> int:
    return db.stats()["lsn"]


@pytest.fixture
def db(db_path):
    d = pylsm.open(db_path)
    yield d
    d.close()


# ---------------------------------------------------------------------------------------------
# Opening, paths, reopening


def test_open_creates_the_directory_and_DB_is_the_same(tmp_path):
    p = tmp_path / "a" / "b"
    p.parent.mkdir()
    db = pylsm.open(str(p))
    assert os.path.isdir(p)
    assert isinstance(db, pylsm.DB)
    db[b"k"] = b"v"
    db.close()
    db2 = pylsm.DB(p)  # os.PathLike works too
    assert db2[b"k"] == b"v"
    assert db2.path == str(p)
    db2.close()


def test_db_path(db_path):
    with pylsm.open(pathlib.Path(db_path)) as db:
        assert db.path == db_path
        assert isinstance(db.path, str)


def test_reopen_keeps_data_including_deletes_and_overwrites(db_path):
    with pylsm.open(db_path) as db:
        db[b"a"] = b"1"
        db[b"b"] = b"2"
        db[b"a"] = b"3"
        del db[b"b"]
        db.put(b"c", b"4", sync=True)
        n = lsn(db)
    for _ in range(2):
        with pylsm.open(db_path) as db:
            assert db[b"a"] == b"3"
            assert b"b" not in db
            assert db[b"c"] == b"4"
            assert lsn(db) == n
    with pylsm.open(db_path) as db:  # writes after a reopen carry on the LSN sequence and survive
        db[b"d"] = b"5"
        assert lsn(db) == n + 1
    with pylsm.open(db_path) as db:
        assert db[b"d"] == b"5" and db[b"a"] == b"3"
        assert lsn(db) == n + 1


def test_error_if_exists(db_path):
    db = pylsm.open(db_path, error_if_exists=True)  # nothing there yet: fine
    db[b"k"] = b"v"
    db.close()
    with pytest.raises(pylsm.Error) as ei:
        pylsm.open(db_path, error_if_exists=True)
    assert not isinstance(ei.value, pylsm.LockError)
    with pylsm.open(db_path) as db:
        assert db[b"k"] == b"v"


def test_create_if_missing_false_on_missing_path(tmp_path):
    p = tmp_path / "missing"
    with pytest.raises(pylsm.Error):
        pylsm.open(str(p), create_if_missing=False)
    assert not p.exists()
    # and on an existing database it opens
    pylsm.open(str(p)).close()
    pylsm.open(str(p), create_if_missing=False).close()


# ---------------------------------------------------------------------------------------------
# put / get / delete and the dict protocol


def test_put_get_delete(db):
    assert db.get(b"k") is None
    assert db.get(b"k", b"dflt") == b"dflt"
    sentinel = object()
    assert db.get(b"k", sentinel) is sentinel
    assert db.put(b"k", b"v") is None
    assert db.get(b"k") == b"v"
    assert db.get(b"k", b"dflt") == b"v"
    db.put(b"k", b"w")
    assert db.get(b"k") == b"w"
    assert db.delete(b"k") is None
    assert db.get(b"k") is None
    n = lsn(db)
    db.delete(b"never-there")  # no error if absent (a tombstone is written)
    assert db.get(b"never-there") is None
    assert lsn(db) == n + 1


def test_dict_protocol(db):
    db[b"a"] = b"1"
    assert db[b"a"] == b"1"
    assert b"a" in db
    assert b"b" not in db
    with pytest.raises(KeyError) as ei:
        db[b"b"]
    assert ei.value.args[0] == b"b"
    del db[b"a"]
    assert b"a" not in db
    n = lsn(db)
    with pytest.raises(KeyError):
        del db[b"a"]
    with pytest.raises(KeyError):
        del db[b"zzz"]
    assert lsn(db) == n  # a failed del writes nothing


def test_reads_return_bytes(db):
    db[bytearray(b"k")] = bytearray(b"v")
    v = db[b"k"]
    assert type(v) is bytes and v == b"v"
    assert type(db.get(b"k")) is bytes
    assert type(db.get_many([b"k"])[0]) is bytes


def test_get_many_from_tables_matches_get(tmp_path):
    """get_many reads tables several keys at a time (their memory reads overlapped): key for key it
    answers as get does, across the memtable, L0 over L1, deletes, absent keys and a snapshot."""
    import random
    r = random.Random(3)
    with pylsm.open(str(tmp_path / "db"), background_compaction=False) as db:
        keys = [b"k%06d" % i for i in range(0, 20000, 2)]
        db.update((k, r.randbytes(r.randrange(0, 300))) for k in keys)
        db.flush()
        db.compact()
        for k in keys[::3]:
            db.put(k, b"newer")
        for k in keys[::5]:
            db.delete(k)
        db.flush()
        snap = db.snapshot()
        for k in keys[::7]:
            db.put(k, b"memtable")
        probe = [b"k%06d" % r.randrange(0, 20100) for _ in range(5000)]
        assert db.get_many(probe) == [db.get(k) for k in probe]
        assert snap.get_many(probe) == [snap.get(k) for k in probe]
        snap.close()


def test_get_many_while_another_thread_changes_the_key_list(db):
    """The keys are taken from the caller's list once; a thread changing that list meanwhile changes
    nothing (and frees no key under the read)."""
    import threading
    for i in range(2000):
        db.put(b"k%05d" % i, b"v%05d" % i)
    db.flush()
    keys = [b"k%05d" % i for i in range(2000)]
    want = [b"v%05d" % i for i in range(2000)]
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            keys.reverse()
            keys.reverse()
    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(50):
            got = db.get_many(keys)
            assert sorted(got) == want
    finally:
        stop.set()
        t.join()


def test_get_many_order_and_missing(db):
    db.update({b"a": b"1", b"c": b"3", b"e": b"5"})
    assert db.get_many([b"e", b"x", b"a", b"c", b"a", b""]) == [b"5", None, b"1", b"3", b"1", None]
    assert db.get_many([]) == []
    assert db.get_many(k for k in [b"c", b"b"]) == [b"3", None]  # any iterable
    assert db.get_many((bytearray(b"a"), memoryview(b"e"))) == [b"1", b"5"]
    with pytest.raises(TypeError):
        db.get_many([b"a", "c"])
    with pytest.raises(TypeError):
        db.get_many(5)


def test_update_mapping_pairs_and_atomic(db):
    w0 = db.stats()["wal_records"]
    db.update({b"a": b"1", b"b": b"2", b"c": b"3"})
    assert db.get_many([b"a", b"b", b"c"]) == [b"1", b"2", b"3"]
    assert db.stats()["wal_records"] == w0 + 1  # one batch, one WAL record
    assert lsn(db) == 3
    db.update([(b"a", b"10"), (b"d", b"4"), (b"a", b"11")])  # pairs; the later pair wins
    assert db[b"a"] == b"11" and db[b"d"] == b"4"
    db.update((bytes([65 + i]), b"x") for i in range(3))  # a generator of pairs
    assert db[b"A"] == db[b"C"] == b"x"
    db.update({})
    db.update()
    n = lsn(db)
    # a bad pair anywhere: nothing of the update is written
    with pytest.raises(TypeError):
        db.update([(b"p", b"1"), (b"q", "not bytes"), (b"r", b"3")])
    with pytest.raises(TypeError):
        db.update([(b"p", b"1"), (b"q",)])
    with pytest.raises(ValueError):
        db.update([(b"p", b"1"), (b"q" * (pylsm.MAX_KEY + 1), b"2")])
    assert lsn(db) == n
    assert db.get_many([b"p", b"q", b"r"]) == [None, None, None]
    db.update({b"s": b"1"}, sync=True)
    assert db[b"s"] == b"1"


def test_batch_context_manager_applies_on_clean_exit(db):
    db[b"gone"] = b"x"
    with db.batch() as b:
        assert isinstance(b, pylsm.WriteBatch)
        b.put(b"a", b"1")
        b.put(b"b", b"2")
        b.delete(b"gone")
        assert len(b) == 3
        assert db.get(b"a") is None  # not applied before the block ends
    assert db.get_many([b"a", b"b", b"gone"]) == [b"1", b"2", None]
    assert len(b) == 0


def test_batch_context_manager_discarded_when_block_raises(db):
    n = lsn(db)
    with pytest.raises(RuntimeError, match="boom"):
        with db.batch() as b:
            b.put(b"a", b"1")
            b.delete(b"b")
            raise RuntimeError("boom")
    assert lsn(db) == n
    assert db.get(b"a") is None


def test_batch_sync_forces_an_fsync(db):
    s0 = db.stats()["wal_syncs"]
    with db.batch(sync=True) as b:
        b.put(b"a", b"1")
    assert db.stats()["wal_syncs"] > s0
    assert db[b"a"] == b"1"


def test_write_batch_later_ops_win(db):
    db[b"y"] = b"old"
    b = pylsm.WriteBatch()
    assert len(b) == 0
    b.put(b"k", b"1")
    b.put(b"k", b"2")
    b.put(b"x", b"1")
    b.delete(b"x")
    b.delete(b"y")
    b.put(b"y", b"3")
    b.put(b"z", b"1")
    b.delete(b"z")
    b.put(b"z", b"4")
    assert len(b) == 9
    w0 = db.stats()["wal_records"]
    n = lsn(db)
    assert db.write(b) is None
    assert lsn(db) == n + 9  # one LSN per operation
    assert db.stats()["wal_records"] == w0 + 1
    assert db.get_many([b"k", b"x", b"y", b"z"]) == [b"2", None, b"3", b"4"]
    db.close()
    with pylsm.open(db.path) as db2:  # the same after replay
        assert db2.get_many([b"k", b"x", b"y", b"z"]) == [b"2", None, b"3", b"4"]


def test_write_batch_clear_and_len(db):
    b = pylsm.WriteBatch()
    for i in range(10):
        b.put(b"k%d" % i, b"v")
    b.delete(b"k0")
    assert len(b) == 11
    b.clear()
    assert len(b) == 0
    n = lsn(db)
    db.write(b)  # an empty batch writes nothing
    assert lsn(db) == n
    assert db.get(b"k1") is None
    b.put(b"again", b"1")
    assert len(b) == 1
    db.write(b, sync=True)
    assert db[b"again"] == b"1"
    with pytest.raises(TypeError):
        db.write({b"a": b"1"})
    with pytest.raises(TypeError):
        pylsm.WriteBatch(1)


def test_write_batch_bad_arguments_leave_it_unchanged(db):
    b = pylsm.WriteBatch()
    b.put(b"a", b"1")
    for bad in ("str", 1, None, [1]):
        with pytest.raises(TypeError):
            b.put(bad, b"v")
        with pytest.raises(TypeError):
            b.put(b"k", bad)
        with pytest.raises(TypeError):
            b.delete(bad)
    with pytest.raises(ValueError):
        b.put(b"k" * (pylsm.MAX_KEY + 1), b"v")
    with pytest.raises(ValueError):
        b.delete(b"k" * (pylsm.MAX_KEY + 1))
    assert len(b) == 1
    db.write(b)
    assert lsn(db) == 1 and db[b"a"] == b"1"


def test_sync_returns_and_keeps_data(db):
    db[b"a"] = b"1"
    assert db.sync() is None
    assert db[b"a"] == b"1"


# ---------------------------------------------------------------------------------------------
# close


def _calls_after_close(db, snap, batch):
    return {
        "put": lambda: db.put(b"a", b"1"),
        "put_sync": lambda: db.put(b"a", b"1", sync=True),
        "get": lambda: db.get(b"a"),
        "get_default": lambda: db.get(b"a", b"d"),
        "delete": lambda: db.delete(b"a"),
        "getitem": lambda: db[b"a"],
        "setitem": lambda: db.__setitem__(b"a", b"1"),
        "delitem": lambda: db.__delitem__(b"a"),
        "contains": lambda: b"a" in db,
        "get_many": lambda: db.get_many([b"a"]),
        "update": lambda: db.update({b"a": b"1"}),
        "update_empty": lambda: db.update({}),
        "batch": lambda: db.batch(),
        "write": lambda: db.write(batch),
        "sync": lambda: db.sync(),
        "stats": lambda: db.stats(),
        "snapshot": lambda: db.snapshot(),
        "enter": lambda: db.__enter__(),
        "snap_get": lambda: snap.get(b"a"),
        "snap_getitem": lambda: snap[b"a"],
        "snap_contains": lambda: b"a" in snap,
        "snap_get_many": lambda: snap.get_many([b"a"]),
    }


def test_close_idempotent_and_every_call_after_raises_closed(db_path):
    db = pylsm.open(db_path)
    db[b"a"] = b"1"
    snap = db.snapshot()
    batch = pylsm.WriteBatch()
    batch.put(b"b", b"2")
    assert db.close() is None
    assert db.close() is None
    assert db.closed
    for name, call in _calls_after_close(db, snap, batch).items():
        with pytest.raises(pylsm.ClosedError):
            call()
    e = pylsm.ClosedError("x")
    assert isinstance(e, ValueError) and isinstance(e, pylsm.Error)
    snap.close()
    snap.close()
    with pylsm.open(db_path) as db2:  # nothing was written after close
        assert db2[b"a"] == b"1" and b"b" not in db2
        assert lsn(db2) == 1


def test_context_manager_closes(db_path):
    with pylsm.open(db_path) as db:
        db[b"a"] = b"1"
        assert not db.closed
    assert db.closed
    with pytest.raises(pylsm.ClosedError):
        db.get(b"a")
    with pytest.raises(pylsm.ClosedError):
        with db:
            pass
    # the lock was released: a new handle opens
    with pylsm.open(db_path) as db2:
        assert db2[b"a"] == b"1"


def test_context_manager_closes_on_exception(db_path):
    with pytest.raises(KeyError):
        with pylsm.open(db_path) as db:
            db[b"a"] = b"1"
            db[b"missing"]
    assert db.closed
    pylsm.open(db_path).close()


# ---------------------------------------------------------------------------------------------
# keys and values: types, sizes


def _bytes_likes(data: bytes):
    return {
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "memoryview_slice": memoryview(b"##" + data + b"##")[2:2 + len(data)],
        "array_B": array.array("B", data),
    }


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "memoryview_slice", "array_B"])
def test_bytes_like_keys_and_values(db, kind):
    key = _bytes_likes(b"key-\x00\xff")[kind]
    val = _bytes_likes(b"value\x00\x01\x02")[kind]
    db.put(key, val)
    assert db.get(b"key-\x00\xff") == b"value\x00\x01\x02"
    assert db.get(key) == b"value\x00\x01\x02"
    assert db[key] == b"value\x00\x01\x02"
    assert key in db
    assert db.get_many([key]) == [b"value\x00\x01\x02"]
    b = pylsm.WriteBatch()
    k2 = _bytes_likes(b"k2")[kind]
    b.put(k2, val)
    db.write(b)
    assert db[b"k2"] == b"value\x00\x01\x02"
    db.update([(_bytes_likes(b"k3")[kind], val)])
    assert db[b"k3"] == b"value\x00\x01\x02"
    del db[key]
    assert db.get(b"key-\x00\xff") is None
    db.delete(k2)
    assert b"k2" not in db


def test_wider_buffers_are_their_bytes(db):
    a = array.array("I", [1, 2])
    db.put(b"k", a)
    assert db[b"k"] == a.tobytes()


def test_empty_key_and_value_and_nul_bytes(db_path):
    with pylsm.open(db_path) as db:
        db[b""] = b"empty key"
        db[b"e"] = b""
        db[b"\x00"] = b"nul"
        db[b"\x00\x00"] = b"nulnul"
        db[b"a\x00b"] = b"\x00\x00\x00"
        db[b"a"] = b"plain a"
        assert db[b""] == b"empty key"
        assert db[b"e"] == b""
        assert db.get(b"e", b"default") == b""  # an empty value is a value
        assert b"e" in db and b"" in db
        assert db[b"\x00"] == b"nul" and db[b"\x00\x00"] == b"nulnul"
        assert db[b"a\x00b"] == b"\x00\x00\x00" and db[b"a"] == b"plain a"
        assert db.get(b"a\x00") is None
    with pylsm.open(db_path) as db:
        assert db.get_many([b"", b"e", b"\x00", b"\x00\x00", b"a\x00b", b"a"]) == [
            b"empty key", b"", b"nul", b"nulnul", b"\x00\x00\x00", b"plain a"]
        del db[b""]
        assert b"" not in db


def test_limits_are_the_documented_minimums():
    assert pylsm.MAX_KEY >= 64 * 1024
    assert pylsm.MAX_VALUE >= 64 * 1024 * 1024


def test_key_at_max_works_one_over_raises_nothing_written(db_path):
    with pylsm.open(db_path) as db:
        k = b"k" * pylsm.MAX_KEY
        db.put(k, b"v")
        assert db[k] == b"v"
        st = db.stats()
        over = b"k" * (pylsm.MAX_KEY + 1)
        with pytest.raises(ValueError):
            db.put(over, b"v")
        with pytest.raises(ValueError):
            db[over] = b"v"
        with pytest.raises(ValueError):
            db.delete(over)
        st2 = db.stats()
        assert (st2["lsn"], st2["wal_bytes"]) == (st["lsn"], st["wal_bytes"])
    with pylsm.open(db_path) as db:
        assert db[b"k" * pylsm.MAX_KEY] == b"v"
        assert lsn(db) == 1


def test_value_at_max_works_one_over_raises_nothing_written(db_path):
    big = bytes(range(256)) * (pylsm.MAX_VALUE // 256)
    assert len(big) == pylsm.MAX_VALUE
    with pylsm.open(db_path) as db:
        db.put(b"big", big)
        assert db[b"big"] == big
        st = db.stats()
        over = bytearray(pylsm.MAX_VALUE + 1)
        with pytest.raises(ValueError):
            db.put(b"over", over)
        b = pylsm.WriteBatch()
        with pytest.raises(ValueError):
            b.put(b"over", over)
        assert len(b) == 0
        st2 = db.stats()
        assert (st2["lsn"], st2["wal_bytes"]) == (st["lsn"], st["wal_bytes"])
        assert b"over" not in db
    with pylsm.open(db_path) as db:
        assert db[b"big"] == big
        assert lsn(db) == 1


NON_BYTES = {
    "str": "text",
    "int": 5,
    "None": None,
    "list": [1, 2],
    "float": 1.5,
    "noncontiguous_memoryview": memoryview(b"abcdefgh")[::2],
}


@pytest.mark.parametrize("name", list(NON_BYTES))
def test_non_bytes_raise_type_error_nothing_written(db, name):
    bad = NON_BYTES[name]
    db[b"ok"] = b"1"
    st = db.stats()
    calls = [
        lambda: db.put(bad, b"v"),
        lambda: db.put(b"k", bad),
        lambda: db.put(b"k", bad, sync=True),
        lambda: db.__setitem__(bad, b"v"),
        lambda: db.__setitem__(b"k", bad),
        lambda: db.delete(bad),
        lambda: db.__delitem__(bad),
        lambda: db.get(bad),
        lambda: db[bad],
        lambda: bad in db,
        lambda: db.get_many([b"ok", bad]),
        lambda: db.update({b"k": bad}),
        lambda: db.update([(bad, b"v")]),
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()
    st2 = db.stats()
    assert st2["lsn"] == st["lsn"]
    assert st2["wal_bytes"] == st["wal_bytes"]
    assert db.get(b"k") is None


# ---------------------------------------------------------------------------------------------
# options


def test_unknown_option_raises_type_error(db_path):
    with pytest.raises(TypeError):
        pylsm.open(db_path, bogus_option=1)
    with pytest.raises(TypeError):
        pylsm.open(db_path, syncc="none")
    with pytest.raises(TypeError):
        pylsm.DB(db_path, "positional")


@pytest.mark.parametrize("opt,value", [
    ("memtable_bytes", 1),
    ("memtable_bytes", 4095),
    ("memtable_bytes", -1),
    ("memtable_bytes", (1 << 40) + 1),
    ("block_bytes", 1),
    ("block_bytes", 255),
    ("block_bytes", (64 << 20) + 1),
    ("bloom_bits_per_key", -1),
    ("bloom_bits_per_key", 65),
    ("block_cache_bytes", -1),
    ("wal_recovery", "bogus"),
    ("wal_recovery", "TOLERATE_TAIL"),
    ("sync", "bogus"),
    ("sync", "every-write"),
    ("sync", ""),
])
def test_out_of_range_options_raise_value_error_naming_it(db_path, opt, value):
    with pytest.raises(ValueError) as ei:
        pylsm.open(db_path, **{opt: value})
    assert opt in str(ei.value)


@pytest.mark.parametrize("make", [
    lambda: pylsm.EveryNEntries(0),
    lambda: pylsm.EveryNEntries(-3),
    lambda: pylsm.TimeBasedBackground(0),
    lambda: pylsm.Hybrid(0, 10),
    lambda: pylsm.Hybrid(10, 0),
])
def test_bad_strategy_objects_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("make", [
    lambda: pylsm.EveryNEntries("10"),
    lambda: pylsm.EveryNEntries(1.5),
    lambda: pylsm.TimeBasedBackground(None),
    lambda: pylsm.Hybrid(True, 10),
])
def test_strategy_objects_of_the_wrong_type_raise_type_error(make):
    with pytest.raises(TypeError):
        make()


@pytest.mark.parametrize("strategy", [
    "TimeBasedBackground(86_400_001)",  # over one day
    "Hybrid(10, 86_400_001)",
    "EveryNEntries(2**64 + 5)",          # does not fit the engine's u64: must not wrap to 5
    "TimeBasedBackground(2**64 + 1)",    # must not wrap to 1 ms
    "Hybrid(2**64 + 1, 10)",
    "Hybrid(10, 2**64 + 20)",
])
def test_out_of_range_strategy_values_rejected(db_path, strategy):
    # rejected when the strategy object is made or when the database is opened with it
    with pytest.raises(ValueError) as ei:
        s = eval("pylsm." + strategy)
        db = pylsm.open(db_path, sync=s)
        db.close()
    msg = str(ei.value)
    assert "sync" in msg or strategy.split("(")[0] in msg, msg


@pytest.mark.parametrize("opt,value", [
    ("sync", 5),
    ("sync", None),
    ("memtable_bytes", "big"),
    ("memtable_bytes", 1.5),
    ("block_bytes", None),
    ("create_if_missing", "yes"),
])
def test_options_of_the_wrong_type_raise_type_error(db_path, opt, value):
    with pytest.raises(TypeError):
        pylsm.open(db_path, **{opt: value})


@pytest.mark.parametrize("strategy", [
    "none", "every_write", pylsm.NoSync(), pylsm.EveryWrite(), pylsm.EveryNEntries(1), pylsm.EveryNEntries(1000),
    pylsm.TimeBasedBackground(1), pylsm.TimeBasedBackground(86_400_000), pylsm.Hybrid(1, 1),
    pylsm.Hybrid(100, 50),
], ids=repr)
def test_every_sync_strategy_accepted(db_path, strategy):
    with pylsm.open(db_path, sync=strategy) as db:
        db[b"k"] = b"v"
        db.put(b"s", b"1", sync=True)
        assert db[b"k"] == b"v"
    with pylsm.open(db_path, sync=strategy) as db:
        assert db.get_many([b"k", b"s"]) == [b"v", b"1"]


def test_strategy_objects_are_frozen_values():
    assert pylsm.EveryNEntries(5) == pylsm.EveryNEntries(5)
    assert pylsm.Hybrid(1, 2) != pylsm.Hybrid(2, 1)
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        pylsm.EveryNEntries(5).count = 6


@pytest.mark.parametrize("opt,value", [
    ("memtable_bytes", 4096), ("memtable_bytes", 1 << 30), ("block_bytes", 256), ("block_bytes", 64 << 20),
    ("bloom_bits_per_key", 0), ("bloom_bits_per_key", 64), ("block_cache_bytes", 0),
    ("wal_recovery", "tolerate_tail"), ("wal_recovery", "absolute"), ("wal_recovery", "salvage"),
    ("wal_timestamp", True), ("background_compaction", False), ("create_if_missing", True),
])
def test_in_range_options_accepted(db_path, opt, value):
    with pylsm.open(db_path, **{opt: value}) as db:
        db[b"k"] = b"v"
        assert db[b"k"] == b"v"


def test_destroy(tmp_path):
    p = str(tmp_path / "db")
    with pylsm.open(p) as db:
        db[b"k"] = b"v"
        with pytest.raises(pylsm.LockError):
            pylsm.destroy(p)  # not while it is open
        assert db[b"k"] == b"v"
    pylsm.open(p).close()  # a second WAL
    pylsm.destroy(p)
    assert not os.path.exists(p)
    pylsm.destroy(p)  # nothing there: no error
    # only files pylsm made: a foreign file survives, and so does the directory holding it
    with pylsm.open(p) as db:
        db[b"k"] = b"v"
    with open(os.path.join(p, "notes.txt"), "w") as f:
        f.write("mine")
    pylsm.destroy(p)
    assert os.listdir(p) == ["notes.txt"]
    with pylsm.open(p) as db:
        assert db.get(b"k") is None


# ---------------------------------------------------------------------------------------------
# errors, locking, fork


def test_exception_hierarchy():
    for cls in (pylsm.CorruptionError, pylsm.LockError, pylsm.ClosedError, pylsm.StorageError):
        assert issubclass(cls, pylsm.Error)
    assert issubclass(pylsm.Error, Exception)
    assert issubclass(pylsm.ClosedError, ValueError)
    assert issubclass(pylsm.StorageError, OSError)
    e = pylsm.StorageError(errno.EIO, "boom")
    assert e.errno == errno.EIO
    assert not issubclass(pylsm.CorruptionError, (ValueError, OSError))
    assert not issubclass(pylsm.LockError, OSError)


def test_second_open_in_same_process_raises_lock_error(db_path):
    db = pylsm.open(db_path)
    db[b"a"] = b"1"
    with pytest.raises(pylsm.LockError):
        pylsm.open(db_path)
    with pytest.raises(pylsm.LockError):
        pylsm.DB(db_path, sync="every_write")
    db[b"b"] = b"2"  # the first handle is unharmed
    assert db[b"a"] == b"1"
    db.close()
    with pylsm.open(db_path) as db2:  # released by close
        assert db2.get_many([b"a", b"b"]) == [b"1", b"2"]


def test_second_process_gets_lock_error(db_path, spawn):
    db = pylsm.open(db_path)
    db[b"a"] = b"1"
    p = spawn("open", db_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    assert out.decode().split() == ["LockError"]
    db.close()
    p = spawn("open", db_path)
    out, err = p.communicate(timeout=60)
    assert out.decode().split() == ["opened"], err.decode()


def test_lock_is_free_after_holder_is_killed(db_path, spawn):
    p = spawn("hold", db_path)
    reader = lsmtest.AckReader(p)
    assert reader.wait_for(lambda ls: "ready" in ls, 60), p.stderr.read().decode()
    with pytest.raises(pylsm.LockError):
        pylsm.open(db_path)
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL
    with pylsm.open(db_path) as db:
        assert db[b"held"] == b"1"  # its write survived the kill -9 too


def test_db_used_in_forked_child_raises_error(db_path):
    db = pylsm.open(db_path)
    db[b"a"] = b"1"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report each call's outcome over the pipe, never run pytest code
        try:
            os.close(r)
            out = []
            calls = [
                ("get", lambda: db.get(b"a")),
                ("getitem", lambda: db[b"a"]),
                ("contains", lambda: b"a" in db),
                ("get_many", lambda: db.get_many([b"a"])),
                ("put", lambda: db.put(b"child", b"1")),
                ("put_sync", lambda: db.put(b"child", b"1", sync=True)),
                ("delete", lambda: db.delete(b"a")),
                ("write", lambda: db.write(pylsm.WriteBatch())),
                ("update", lambda: db.update({b"child": b"2"})),
                ("sync", lambda: db.sync()),
                ("stats", lambda: db.stats()),
                ("snapshot", lambda: db.snapshot()),
            ]
            for name, call in calls:
                try:
                    call()
                    out.append(f"{name}=returned")
                except pylsm.Error as e:
                    out.append(f"{name}=pylsm.Error")
                except BaseException as e:  # noqa: BLE001
                    out.append(f"{name}={type(e).__name__}")
            os.write(w, ";".join(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        c = os.read(r, 65536)
        if not c:
            break
        chunks.append(c)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    report = dict(item.split("=") for item in b"".join(chunks).decode().split(";"))
    assert len(report) == 12
    assert all(v == "pylsm.Error" for v in report.values()), report
    # the parent's handle is untouched and nothing of the child's got in
    assert db[b"a"] == b"1"
    assert db.get(b"child") is None
    db[b"b"] = b"2"
    db.close()
    with pylsm.open(db_path) as db2:
        assert db2.get_many([b"a", b"b", b"child"]) == [b"1", b"2", None]


# ---------------------------------------------------------------------------------------------
# stats, repr, snapshots


def test_stats_keys_and_values(db):
    st = db.stats()
    assert isinstance(st, dict)
    for key in ("lsn", "memtable_bytes", "wal_bytes", "sstables", "live_bytes", "user_bytes_written",
                "disk_bytes_written", "flushes", "compactions", "wal_dropped_bytes", "wal_syncs"):
        assert key in st, key
        assert isinstance(st[key], int) and st[key] >= 0, (key, st[key])
    assert isinstance(st["levels"], list)
    for lv in st["levels"]:
        assert set(lv) >= {"level", "files", "bytes", "bytes_written"}
        assert lv["bytes_written"] == 0
    assert st["lsn"] == 0
    assert st["user_bytes_written"] == 0
    assert st["wal_dropped_bytes"] == 0
    wal0, mem0 = st["wal_bytes"], st["memtable_bytes"]

    db.put(b"abc", b"defgh")
    st = db.stats()
    assert st["lsn"] == 1
    assert st["user_bytes_written"] == 8
    assert st["wal_bytes"] == wal0 + lsmtest.record_size(len(lsmtest.encode_batch([("put", b"abc", b"defgh")])))
    assert st["memtable_bytes"] >= mem0
    assert st["disk_bytes_written"] >= st["user_bytes_written"]

    b = pylsm.WriteBatch()
    b.put(b"x", b"1")
    b.put(b"y", b"22")
    b.delete(b"abc")
    db.write(b)
    st2 = db.stats()
    assert st2["lsn"] == 4
    assert st2["user_bytes_written"] == 8 + 2 + 3 + 3
    assert st2["wal_bytes"] == st["wal_bytes"] + lsmtest.record_size(
        len(lsmtest.encode_batch([("put", b"x", b"1"), ("put", b"y", b"22"), ("delete", b"abc")])))
    # memtable_bytes is the memtable's memory (arena blocks), so it covers at least the data it holds
    for i in range(20):
        db.put(b"mem%d" % i, b"m" * 100_000)
    assert db.stats()["memtable_bytes"] >= 20 * 100_000


def test_stats_lsn_survives_reopen(db_path):
    with pylsm.open(db_path) as db:
        for i in range(10):
            db.put(b"k%d" % i, b"v")
    with pylsm.open(db_path) as db:
        st = db.stats()
        assert st["lsn"] == 10
        assert st["user_bytes_written"] == 0  # counts this session's writes


def test_repr_and_repr_html(db_path):
    db = pylsm.open(db_path, sync="every_write")
    db[b"a"] = b"1"
    r = repr(db)
    assert r.startswith("<pylsm.DB") and db_path in r and "lsn=1" in r
    assert "\n" not in r
    h = db._repr_html_()
    assert "pylsm.DB" in h and "keys" in h and "on disk" in h and "sync=every_write" in h
    assert "no tables yet" in h  # the LSM tree, before the first flush
    assert "<details" in h and "wal_bytes" in h  # every statistic, folded away
    db.flush()
    h = db._repr_html_()
    assert ">L0<" in h and "1 of 8 tables" in h
    db.close()
    r = repr(db)
    assert "closed" in r and db_path in r
    assert "closed" in db._repr_html_()


def test_repr_html_escapes_path(tmp_path):
    p = str(tmp_path / "<b>&x")
    with pylsm.open(p) as db:
        h = db._repr_html_()
        assert "<b>&x" not in h and "&lt;b&gt;&amp;x" in h


def test_snapshot_sees_the_old_state(db):
    db.update({b"a": b"1", b"b": b"2", b"c": b"3"})
    snap = db.snapshot()
    db[b"a"] = b"changed"
    del db[b"b"]
    db[b"d"] = b"new"
    with db.batch() as wb:
        wb.put(b"c", b"batched")
    # the live view
    assert db.get_many([b"a", b"b", b"c", b"d"]) == [b"changed", None, b"batched", b"new"]
    # the snapshot
    assert snap.get(b"a") == b"1"
    assert snap[b"b"] == b"2"
    assert snap.get(b"d") is None
    assert snap.get(b"d", b"dflt") == b"dflt"
    assert b"b" in snap and b"d" not in snap
    with pytest.raises(KeyError):
        snap[b"d"]
    assert snap.get_many([b"d", b"c", b"b", b"a"]) == [None, b"3", b"2", b"1"]
    with pytest.raises(TypeError):
        snap.get("a")
    snap2 = db.snapshot()
    db[b"a"] = b"third"
    assert snap2[b"a"] == b"changed" and snap[b"a"] == b"1"
    snap.close()
    with pytest.raises(pylsm.ClosedError):
        snap.get(b"a")
    with snap2 as s:
        assert s is snap2
        assert s[b"d"] == b"new"
    with pytest.raises(pylsm.ClosedError):
        snap2[b"a"]
    assert db[b"a"] == b"third"


def test_snapshot_of_empty_db_and_many_snapshots(db):
    empty = db.snapshot()
    snaps = []
    for i in range(50):
        db[b"k"] = b"%d" % i
        snaps.append(db.snapshot())
    assert empty.get(b"k") is None
    for i, s in enumerate(snaps):
        assert s[b"k"] == b"%d" % i
    for s in snaps[::2]:
        s.close()
    for i, s in enumerate(snaps):
        if i % 2:
            assert s[b"k"] == b"%d" % i
    del snaps, empty
    assert db[b"k"] == b"49"


# ---------------------------------------------------------------------------------------------
# objects whose open failed (reachable from the exception's traceback, as debuggers, IPython and
# pytest itself show them) must raise, never crash the interpreter

_FAILED_OPEN_CHILD = r'''
import sys, pylsm
path = sys.argv[1]
held = pylsm.open(path)
objs = {}
try:
    pylsm.open(path)  # LockError
except pylsm.LockError as e:
    tb = e.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    objs["failed_open"] = tb.tb_frame.f_locals["self"]
objs["never_opened"] = pylsm.DB.__new__(pylsm.DB)
calls = {
    "repr": repr, "html": lambda d: d._repr_html_(), "get": lambda d: d.get(b"a"),
    "getitem": lambda d: d[b"a"], "contains": lambda d: b"a" in d, "put": lambda d: d.put(b"a", b"1"),
    "delete": lambda d: d.delete(b"a"), "get_many": lambda d: d.get_many([b"a"]),
    "write": lambda d: d.write(pylsm.WriteBatch()), "sync": lambda d: d.sync(), "stats": lambda d: d.stats(),
    "snapshot": lambda d: d.snapshot(), "close": lambda d: d.close(),
}
for oname, obj in objs.items():
    for cname, call in calls.items():
        print(oname, cname, flush=True)   # the last line names the call that crashed, if one does
        try:
            r = call(obj)
            print("  returned", type(r).__name__, flush=True)
        except pylsm.Error as e:
            print("  raised pylsm", type(e).__name__, flush=True)
        except Exception as e:
            print("  raised other", type(e).__name__, e, flush=True)
held.close()
print("END")
'''


def test_db_whose_open_failed_raises_instead_of_crashing(db_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", _FAILED_OPEN_CHILD, db_path], capture_output=True,
                       env=lsmtest.child_env(), timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 0, f"child died with {p.returncode}; its last lines:\n{out[-400:]}"
    assert out.rstrip().endswith("END")
    lines = out.splitlines()
    outcomes = [l.strip() for l in lines if l.startswith("  ")]
    assert len(outcomes) == 26
    # the realistic case, a failed open: repr/html/close return, everything else raises a pylsm error
    # (a bare DB.__new__ object only has to not crash: it got this far)
    failed = out.split("never_opened")[0]
    for l in [l.strip() for l in failed.splitlines() if l.startswith("  ")]:
        assert l.startswith("returned") or l.startswith("raised pylsm"), out


def test_open_creates_missing_parent_directories(tmp_path, monkeypatch):
    """The README's example in an empty directory: pylsm.open("data/mydb") makes data/ and data/mydb/
    (each name made durable before the first write; tests/c/test_db.c checks that under a power cut)."""
    monkeypatch.chdir(tmp_path)
    with pylsm.open("data/mydb") as db:
        db[b"k"] = b"v"
    with pylsm.open(tmp_path / "data" / "mydb", create_if_missing=False) as db:
        assert db[b"k"] == b"v"
    with pylsm.open(str(tmp_path / "x" / "y" / "z") + "/") as db:
        db[b"k"] = b"v"
    (tmp_path / "afile").write_bytes(b"")
    with pytest.raises(pylsm.StorageError):
        pylsm.open(tmp_path / "afile" / "db")
    assert not (tmp_path / "afile").is_dir()


def test_get_takes_default_by_keyword_and_update_takes_keys_objects(db_path):
    class KeysOnly:  # what dict.update accepts: keys() and __getitem__, no items()
        def __init__(self, d):
            self.d = d

        def keys(self):
            return list(self.d)

        def __getitem__(self, k):
            return self.d[k]

    with pylsm.open(db_path) as db:
        assert db.get(b"x", default=b"d") == b"d"
        assert db.get(b"x", b"d") == b"d"
        with pytest.raises(TypeError):
            db.get(b"x", dflt=b"d")
        with pytest.raises(TypeError):
            db.get(b"x", b"d", default=b"e")
        db.update(KeysOnly({b"a": b"1", b"b": b"2"}))
        assert dict(db.items()) == {b"a": b"1", b"b": b"2"}
        assert db.get(b"a", default=None) == b"1"


def test_stats_count_batched_puts_and_deletes(db_path):
    with pylsm.open(db_path) as db:
        db.update((b"k%05d" % i, b"v") for i in range(1000))
        with db.batch() as b:
            b.put(b"x", b"1")
            b.delete(b"k00001")
            b.delete(b"k00002")
        db[b"y"] = b"2"
        del db[b"y"]
        s = db.stats()
        assert s["puts"] == 1002 and s["deletes"] == 3, (s["puts"], s["deletes"])


# ---------------------------------------------------------------------------------------------
# put_many / update of a list or tuple: runs of (bytes, bytes) tuples go to the core in chunks.

def test_update_with_lists_of_every_kind_of_pair(db_path):
    class Exporter:  # a buffer exporter whose __buffer__ changes the list being read
        def __init__(self, seq, data):
            self.seq, self.data = seq, data

        def __buffer__(self, flags):
            self.seq.clear()  # the pairs already read stay; the rest is gone
            return memoryview(self.data)

    with pylsm.open(db_path) as db:
        pairs = [(b"a%03d" % i, b"v%d" % i) for i in range(150)]  # crosses chunks of 64
        pairs[70] = [b"a070", bytearray(b"list-pair")]  # a list, and a bytearray value
        pairs[100] = (memoryview(b"a100"), b"mv")
        db.update(pairs)
        db.update(tuple((b"t%d" % i, b"x") for i in range(3)))
        assert len(db) == 153
        assert db[b"a069"] == b"v69" and db[b"a070"] == b"list-pair" and db[b"a100"] == b"mv"
        assert db[b"a149"] == b"v149" and db[b"t2"] == b"x"
        # a bad pair anywhere: update() writes nothing
        for bad in [(b"k", 5), (b"k",), (b"x" * (pylsm.MAX_KEY + 1), b"v"), 7]:
            lst = [(b"n%03d" % i, b"v") for i in range(100)]
            lst[80] = bad
            with pytest.raises((TypeError, ValueError)):
                db.update(lst)
            assert db.get(b"n000") is None and db.get(b"n079") is None
        # WriteBatch.put_many keeps, as one put per pair would, the pairs before a bad one
        b = pylsm.WriteBatch()
        lst = [(b"w%03d" % i, b"v") for i in range(100)]
        lst[90] = (b"x" * (pylsm.MAX_KEY + 1), b"v")
        with pytest.raises(ValueError):
            b.put_many(lst)
        assert len(b) == 90
        db.write(b)
        assert db[b"w089"] == b"v" and db.get(b"w090") is None
        # Python code run in the middle (a buffer exporter) that empties the list: no crash
        lst = [(b"e%03d" % i, b"v") for i in range(100)]
        if sys.version_info >= (3, 12):
            lst[10] = (b"e010", Exporter(lst, b"exported"))
            db.update(lst)
            assert db[b"e009"] == b"v" and db[b"e010"] == b"exported" and db.get(b"e011") is None
