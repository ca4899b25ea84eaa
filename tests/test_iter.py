"""Iterators, ranges and snapshots: items/keys/values with start/stop/prefix/reverse against a model
computed here (not with pylsm's own range helper), fixed views, snapshots, and a Hypothesis state
machine over put/delete/batch/flush/compact/reopen/snapshot/scan."""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

import pylsm

KiB = 1024

SPECIAL_KEYS = [b"", b"\x00", b"\x00\x00", b"\x01", b"a", b"a\x00", b"a\xff", b"ab", b"abc", b"abd", b"ac",
                b"b", b"ba", b"\x7f", b"\x80", b"\xfe", b"\xfe\xff", b"\xff", b"\xff\x00", b"\xff\xff",
                b"\xff\xff\xff", b"\xff\xff\xff\xff"]
BOUNDS = [None, b"", b"\x00", b"a", b"ab", b"abc", b"ac", b"b", b"\xfe", b"\xff", b"\xff\xff", b"\xff\xff\xff\xff\xff",
          b"zz"]
PREFIXES = [None, b"", b"\x00", b"a", b"ab", b"abc", b"b", b"q", b"\xfe", b"\xff", b"\xff\xff", b"\xff\xff\xff\xff\xff"]


def model_range(model, start=None, stop=None, prefix=None, reverse=False):
    keys = sorted(k for k in model
                  if (start is None or k >= start) and (stop is None or k < stop)
                  and (prefix is None or k.startswith(prefix)))
    if reverse:
        keys.reverse()
    return [(k, model[k]) for k in keys]


def value_for(k):
    return b"v:" + k.hex().encode()


def check_all_ranges(db, model, bounds=BOUNDS, prefixes=PREFIXES):
    n = 0
    for start, stop, prefix, reverse in itertools.product(bounds, bounds, prefixes, (False, True)):
        kw = {}
        if prefix is not None:
            kw["prefix"] = prefix
        want = model_range(model, start, stop, prefix, reverse)
        got = list(db.items(start, stop, reverse=reverse, **kw))
        assert got == want, (start, stop, prefix, reverse)
        assert list(db.keys(start, stop, reverse=reverse, **kw)) == [k for k, _ in want]
        assert list(db.values(start=start, stop=stop, reverse=reverse, **kw)) == [v for _, v in want]
        n += 1
    return n


@pytest.fixture
def special_db(db_path):
    with pylsm.open(db_path, memtable_bytes=4096, block_bytes=256) as db:
        yield db


def _fill_special(db, model):
    for k in SPECIAL_KEYS:
        db.put(k, value_for(k))
        model[k] = value_for(k)


def test_ranges_in_the_memtable(special_db):
    model = {}
    _fill_special(special_db, model)
    assert check_all_ranges(special_db, model) > 1000


def test_ranges_over_tables_memtable_and_deletes(special_db):
    db = special_db
    model = {}
    _fill_special(db, model)
    db.flush()
    # overwrite some in a second table, delete some, keep some in the memtable only
    for k in SPECIAL_KEYS[::3]:
        db.put(k, b"second" + k)
        model[k] = b"second" + k
    db.flush()
    for k in SPECIAL_KEYS[1::4]:
        db.delete(k)
        model.pop(k, None)
    for k in (b"aa", b"\xff\xfe", b"\x00\xff"):
        db.put(k, value_for(k))
        model[k] = value_for(k)
    check_all_ranges(db, model)
    db.compact()
    check_all_ranges(db, model)


def test_ranges_of_a_snapshot(special_db):
    db = special_db
    model = {}
    _fill_special(db, model)
    db.flush()
    with db.snapshot() as snap:
        frozen = dict(model)
        for k in SPECIAL_KEYS[::2]:
            db.delete(k)
        db.put(b"new", b"1")
        db.compact()
        check_all_ranges(snap, frozen, bounds=BOUNDS[::2], prefixes=PREFIXES[::2])


def test_iter_len_and_empty_database(special_db):
    db = special_db
    assert list(db) == [] and len(db) == 0
    assert list(db.items()) == [] and list(db.items(reverse=True)) == []
    assert list(db.items(prefix=b"")) == []
    model = {}
    _fill_special(db, model)
    assert list(db) == sorted(model)
    assert list(iter(db)) == sorted(model)
    assert len(db) == len(model)
    db.flush()
    db.delete(b"a")
    db.delete(b"not there")
    assert len(db) == len(model) - 1
    assert b"a" not in list(db)


def test_empty_key_and_all_ff_keys(special_db):
    db = special_db
    db[b""] = b"empty key"
    db[b"\xff" * 100] = b"long ff"
    db[b"\xff"] = b""
    db.flush()
    assert db[b""] == b"empty key"
    assert db[b"\xff"] == b""
    assert list(db.keys()) == [b"", b"\xff", b"\xff" * 100]
    assert list(db.keys(prefix=b"\xff")) == [b"\xff", b"\xff" * 100]
    assert list(db.keys(prefix=b"\xff\xff")) == [b"\xff" * 100]
    assert list(db.keys(prefix=b"\xff" * 101)) == []
    assert list(db.keys(start=b"\xff", reverse=True)) == [b"\xff" * 100, b"\xff"]
    assert list(db.keys(stop=b"")) == []
    assert list(db.keys(stop=b"\x00")) == [b""]
    assert list(db.keys(start=b"", stop=b"\xff")) == [b""]


def test_bounds_accept_bytes_like_and_reject_others(special_db):
    db = special_db
    model = {}
    _fill_special(db, model)
    want = [k for k, _ in model_range(model, b"a", b"b")]
    assert list(db.keys(bytearray(b"a"), memoryview(b"b"))) == want
    assert list(db.keys(prefix=bytearray(b"ab"))) == [k for k, _ in model_range(model, prefix=b"ab")]
    for bad in ("a", 1, 1.5, object()):
        with pytest.raises(TypeError):
            list(db.items(start=bad))
        with pytest.raises(TypeError):
            list(db.items(stop=bad))
        with pytest.raises(TypeError):
            list(db.items(prefix=bad))


def test_empty_and_inverted_ranges(special_db):
    db = special_db
    model = {}
    _fill_special(db, model)
    for start, stop in ((b"b", b"a"), (b"a", b"a"), (b"\xff", b"\xff"), (b"\xff\xff\xff\xff\xff", None)):
        for reverse in (False, True):
            it = db.items(start, stop, reverse=reverse)
            assert list(it) == []
            it.close()  # every range iterator can be closed early, empty or not
    assert list(db.items(prefix=b"a", start=b"b")) == []
    assert list(db.items(prefix=b"b", stop=b"a")) == []
    assert list(db.items(prefix=b"ab", start=b"abc", stop=b"abd")) == [(b"abc", value_for(b"abc"))]


def test_iterators_of_every_kind_have_close(special_db):
    db = special_db
    _fill_special(db, {})
    for maker in (db.items, db.keys, db.values):
        for args in ((), (b"a", b"b"), (b"b", b"a")):
            it = maker(*args)
            assert iter(it) is it
            it.close()
            it.close()  # idempotent


# ---------------------------------------------------------------------------------------------
# An iterator's view is fixed at creation.

@pytest.mark.parametrize("consume_first", [0, 1, 70, 300])
@pytest.mark.parametrize("reverse", [False, True])
def test_iterator_view_is_fixed_through_writes_flush_and_compact(db_path, consume_first, reverse):
    n = 400
    with pylsm.open(db_path, memtable_bytes=16 * KiB) as db:
        model = {b"k%04d" % i: b"v%d" % i for i in range(n)}
        for k, v in model.items():
            db.put(k, v)
        db.flush()
        for i in range(0, n, 5):  # part of the view lives in the memtable
            db.put(b"k%04d" % i, b"mem%d" % i)
            model[b"k%04d" % i] = b"mem%d" % i
        want = model_range(model, reverse=reverse)
        its = {"items": db.items(reverse=reverse), "keys": db.keys(reverse=reverse),
               "values": db.values(reverse=reverse),
               "range": db.items(b"k0100", b"k0200", reverse=reverse)}
        got = {name: list(itertools.islice(it, consume_first)) for name, it in its.items()}
        for i in range(0, n, 2):
            db.delete(b"k%04d" % i)
        for i in range(n, n + 100):
            db.put(b"k%04d" % i, b"later")
        db.put(b"k0001", b"changed")
        db.flush()
        db.compact()
        for i in range(1, n, 2):
            db.put(b"k%04d" % i, b"after compact")
        for name, it in its.items():
            got[name] += list(it)
        assert got["items"] == want
        assert got["keys"] == [k for k, _ in want]
        assert got["values"] == [v for _, v in want]
        assert got["range"] == model_range(model, b"k0100", b"k0200", reverse=reverse)


def test_many_open_iterators_through_compactions(db_path):
    with pylsm.open(db_path, memtable_bytes=16 * KiB) as db:
        views = []
        model = {}
        for r in range(12):
            for i in range(60):
                k = b"k%03d" % ((i * 7 + r) % 100)
                if (i + r) % 9 == 0:
                    db.delete(k)
                    model.pop(k, None)
                else:
                    db.put(k, b"r%d" % r)
                    model[k] = b"r%d" % r
            views.append((db.items(), sorted(model.items())))
            if r % 3 == 0:
                db.compact()
        for it, want in views:
            assert list(it) == want


# ---------------------------------------------------------------------------------------------
# Snapshots.

def test_snapshot_reads(db_path):
    with pylsm.open(db_path, memtable_bytes=16 * KiB) as db:
        for i in range(300):
            db.put(b"k%03d" % i, b"old%d" % i)
        db.flush()
        snap = db.snapshot()
        for i in range(0, 300, 2):
            db.delete(b"k%03d" % i)
        for i in range(1, 300, 2):
            db.put(b"k%03d" % i, b"new%d" % i)
        db.put(b"zzz", b"late")
        db.compact()
        assert snap.get(b"k000") == b"old0"
        assert snap.get(b"zzz") is None
        assert snap.get(b"zzz", b"dflt") == b"dflt"
        assert snap[b"k001"] == b"old1"
        with pytest.raises(KeyError):
            snap[b"zzz"]
        assert b"k002" in snap and b"zzz" not in snap
        assert snap.get_many([b"k000", b"zzz", b"k299"]) == [b"old0", None, b"old299"]
        assert list(snap.keys()) == [b"k%03d" % i for i in range(300)]
        assert list(snap.values(reverse=True)) == [b"old%d" % i for i in reversed(range(300))]
        assert list(snap.items(b"k010", b"k013")) == [(b"k%03d" % i, b"old%d" % i) for i in (10, 11, 12)]
        assert list(snap.keys(prefix=b"k29")) == [b"k%03d" % i for i in range(290, 300)]
        assert list(snap) == [b"k%03d" % i for i in range(300)]
        # the live database moved on
        assert db.get(b"k000") is None and db[b"k001"] == b"new1" and db[b"zzz"] == b"late"
        snap.close()
        for call in (lambda: snap.get(b"k000"), lambda: snap[b"k000"], lambda: b"k000" in snap,
                     lambda: snap.get_many([b"k000"]), lambda: list(snap.items()), lambda: list(snap.keys()),
                     lambda: list(snap.values())):
            with pytest.raises(pylsm.ClosedError):
                call()
        snap.close()  # idempotent


def test_snapshot_context_manager(db_path):
    with pylsm.open(db_path) as db:
        db[b"a"] = b"1"
        with db.snapshot() as snap:
            db[b"a"] = b"2"
            assert snap[b"a"] == b"1"
            it = snap.items()
        with pytest.raises(pylsm.ClosedError):
            snap.get(b"a")
        # an iterator made from the snapshot before it closed keeps its own view
        assert list(it) == [(b"a", b"1")]
        assert db[b"a"] == b"2"


def test_snapshot_isolated_from_batch(db_path):
    with pylsm.open(db_path) as db:
        db.update({b"a": b"1", b"b": b"1"})
        snap = db.snapshot()
        with db.batch() as b:
            b.put(b"a", b"2")
            b.delete(b"b")
            b.put(b"c", b"2")
        assert list(snap.items()) == [(b"a", b"1"), (b"b", b"1")]
        assert list(db.items()) == [(b"a", b"2"), (b"c", b"2")]
        snap.close()


# ---------------------------------------------------------------------------------------------
# The state machine.

KEY_BYTES = [0x00, 0x01, 0x61, 0x62, 0x7F, 0xFE, 0xFF]
keys_st = st.lists(st.sampled_from(KEY_BYTES), max_size=4).map(bytes)
# Mostly small values, some of a block or more, and two in nine large (up to 450 KB): a few large ones fill
# the binding's 1 MiB scan chunks, which must not end a scan early.
_large_values = st.builds(lambda n, b, tail: bytes([b]) * n + tail, st.integers(150_000, 450_000),
                          st.integers(0, 255), st.binary(max_size=8))
values_st = st.sampled_from("sssssmmll").flatmap(
    lambda c: st.binary(max_size=40) if c == "s" else
    st.binary(min_size=300, max_size=1500) if c == "m" else _large_values)
bounds_st = st.one_of(st.none(), keys_st)
ops_st = st.lists(st.one_of(st.tuples(st.just("put"), keys_st, values_st), st.tuples(st.just("del"), keys_st)),
                  min_size=1, max_size=8)


def _fast_tmp():
    base = "/dev/shm"
    if os.path.isdir(base) and os.access(base, os.W_OK):
        return tempfile.mkdtemp(prefix="pylsm-sm-", dir=base)
    return tempfile.mkdtemp(prefix="pylsm-sm-")


class DBMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = _fast_tmp()
        self.path = os.path.join(self.dir, "db")
        self.db = pylsm.open(self.path, memtable_bytes=4096, block_bytes=256)
        self.model = {}
        self.generation = 0       # bumps at each reopen: older snapshots are closed by it
        self.live_snaps = []

    def teardown(self):
        for s, _, _ in self.live_snaps:
            s.close()
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- writes ---------------------------------------------------------------------------------

    @rule(k=keys_st, v=values_st)
    def put(self, k, v):
        self.db.put(k, v)
        self.model[k] = v

    @rule(ks=st.lists(keys_st, min_size=3, max_size=6), v=_large_values)
    def put_large_run(self, ks, v):
        for i, k in enumerate(ks):
            self.db.put(k, v + bytes([i]))
            self.model[k] = v + bytes([i])

    @rule(k=keys_st)
    def delete(self, k):
        self.db.delete(k)
        self.model.pop(k, None)

    @rule(ops=ops_st)
    def batch(self, ops):
        b = pylsm.WriteBatch()
        for op in ops:
            if op[0] == "put":
                b.put(op[1], op[2])
            else:
                b.delete(op[1])
        self.db.write(b)
        for op in ops:
            if op[0] == "put":
                self.model[op[1]] = op[2]
            else:
                self.model.pop(op[1], None)

    @rule(start=bounds_st, stop=bounds_st)
    def delete_range(self, start, stop):
        gone = [k for k, _ in model_range(self.model, start, stop)]
        assert self.db.delete_range(start, stop) == len(gone)
        for k in gone:
            del self.model[k]

    # -- maintenance ----------------------------------------------------------------------------

    @rule()
    def flush(self):
        self.db.flush()

    @rule(start=bounds_st, stop=bounds_st)
    def compact(self, start, stop):
        self.db.compact(start, stop)

    @rule()
    def reopen(self):
        self.db.close()
        for s, _, _ in self.live_snaps:
            with pytest.raises(pylsm.ClosedError):
                s.get(b"a")
            s.close()
        self.live_snaps = []
        self.generation += 1
        self.db = pylsm.open(self.path, memtable_bytes=4096, block_bytes=256)

    # -- snapshots ------------------------------------------------------------------------------

    @precondition(lambda self: len(self.live_snaps) < 4)
    @rule()
    def take_snapshot(self):
        self.live_snaps.append((self.db.snapshot(), dict(self.model), self.generation))

    @precondition(lambda self: self.live_snaps)
    @rule(data=st.data())
    def check_snapshot(self, data):
        i = data.draw(st.integers(0, len(self.live_snaps) - 1))
        snap, frozen, _ = self.live_snaps[i]
        for k in data.draw(st.lists(keys_st, max_size=4)) + list(frozen)[:3]:
            assert snap.get(k) == frozen.get(k), k
            assert (k in snap) == (k in frozen)
        assert list(snap.items()) == model_range(frozen)
        assert list(snap.items(reverse=True)) == model_range(frozen, reverse=True)
        start, stop = data.draw(bounds_st), data.draw(bounds_st)
        prefix = data.draw(st.one_of(st.none(), keys_st))
        reverse = data.draw(st.booleans())
        kw = {} if prefix is None else {"prefix": prefix}
        assert list(snap.items(start, stop, reverse=reverse, **kw)) == \
            model_range(frozen, start, stop, prefix, reverse)

    @precondition(lambda self: self.live_snaps)
    @rule(data=st.data())
    def release_snapshot(self, data):
        i = data.draw(st.integers(0, len(self.live_snaps) - 1))
        snap, _, _ = self.live_snaps.pop(i)
        snap.close()
        with pytest.raises(pylsm.ClosedError):
            snap.get(b"")

    # -- reads ----------------------------------------------------------------------------------

    @rule(k=keys_st)
    def get(self, k):
        assert self.db.get(k) == self.model.get(k)
        assert (k in self.db) == (k in self.model)

    @rule(start=bounds_st, stop=bounds_st, prefix=st.one_of(st.none(), keys_st), reverse=st.booleans())
    def scan(self, start, stop, prefix, reverse):
        kw = {} if prefix is None else {"prefix": prefix}
        want = model_range(self.model, start, stop, prefix, reverse)
        assert list(self.db.items(start, stop, reverse=reverse, **kw)) == want
        assert list(self.db.keys(start, stop, reverse=reverse, **kw)) == [k for k, _ in want]

    @rule()
    def full_scan(self):
        assert list(self.db.items()) == model_range(self.model)
        assert list(self.db.items(reverse=True)) == model_range(self.model, reverse=True)
        assert len(self.db) == len(self.model)

    @rule(ks=st.lists(keys_st, max_size=6))
    def get_many(self, ks):
        assert self.db.get_many(ks) == [self.model.get(k) for k in ks]

    @rule(k=keys_st)
    def key_may_exist(self, k):
        if k in self.model:  # never a False for a present key (a True for an absent one is allowed)
            assert self.db.key_may_exist(k)

    @rule(start=bounds_st, stop=bounds_st)
    def approximate_size(self, start, stop):
        # a background flush or compaction may change the tables between two calls: compare the part
        # with the whole of the same tables (the whole unchanged around it)
        for _ in range(50):
            whole = self.db.approximate_size()
            part = self.db.approximate_size(start, stop)
            if self.db.approximate_size() == whole:
                break
        assert 0 <= part <= whole
        if start is not None and stop is not None and start >= stop:
            assert part == 0


DBMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow,
                                                              HealthCheck.filter_too_much])
TestDBMachine = DBMachine.TestCase


class SlowDBMachine(DBMachine):
    pass


SlowDBMachine.TestCase.settings = settings(max_examples=2000, stateful_step_count=60, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
TestDBMachineSlow = pytest.mark.slow(SlowDBMachine.TestCase)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_chunks_with_large_entries(db_path, reverse):
    """A scan hands out its entries chunk by chunk (16, 32, ... 1,024 entries, or 1 MiB): entries of
    every size, a 5 MiB one among them (whose chunk buffer is dropped at the next refill), read back the
    same from tables and the memtable, in both directions, and the close of an iterator in the middle
    of a chunk ends it."""
    n = 3000
    big = {17: 5 << 20, 40: 1 << 20, 1500: 300 * KiB}
    model = {b"k%05d" % i: bytes([i % 251]) * big.get(i, i % 200) for i in range(n)}
    with pylsm.open(db_path, memtable_bytes=256 * KiB, block_bytes=512) as db:
        for i, (k, v) in enumerate(model.items()):
            db.put(k, v)
            if i == n // 2:
                db.flush()
        want = model_range(model, reverse=reverse)
        assert list(db.items(reverse=reverse)) == want
        assert list(db.keys(reverse=reverse)) == [k for k, _ in want]
        assert list(db.values(reverse=reverse)) == [v for _, v in want]
        it = db.items(reverse=reverse)
        assert list(itertools.islice(it, 20)) == want[:20]  # inside the second chunk
        it.close()
        with pytest.raises((pylsm.ClosedError, StopIteration)):
            next(it)
