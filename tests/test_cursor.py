"""db.iterator(): plyvel's cursor model checked against a list model, ranges with include flags, the
consistency rules (one view, valid through flush and compaction), lifetime and misuse."""
from __future__ import annotations

import bisect
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pylsm
from pylsm import _range


class Model:
    """The cursor as an index between entries: c entries lie before it."""

    def __init__(self, entries, reverse):
        self.e = entries
        self.keys = [k for k, _ in entries]
        self.reverse = reverse
        self.c = len(entries) if reverse else 0

    def fwd_next(self):
        if self.c == len(self.e):
            return StopIteration
        self.c += 1
        return self.e[self.c - 1]

    def fwd_prev(self):
        if self.c == 0:
            return StopIteration
        self.c -= 1
        return self.e[self.c]

    def next(self):
        return self.fwd_prev() if self.reverse else self.fwd_next()

    def prev(self):
        return self.fwd_next() if self.reverse else self.fwd_prev()

    def peek(self):
        if self.reverse:
            return self.e[self.c - 1] if self.c > 0 else None
        return self.e[self.c] if self.c < len(self.e) else None

    def seek(self, k):
        self.c = bisect.bisect_left(self.keys, k)

    def seek_to_first(self):
        self.c = 0

    def seek_to_last(self):
        self.c = max(len(self.e) - 1, 0)

    def seek_to_start(self):
        self.c = 0

    def seek_to_stop(self):
        self.c = len(self.e)


def call(obj, op, arg):
    try:
        return getattr(obj, op)(*arg)
    except StopIteration:
        return StopIteration


keys = st.binary(min_size=0, max_size=3)
ops = st.lists(st.one_of(
    st.tuples(st.sampled_from(["next", "prev", "peek", "seek_to_first", "seek_to_last",
                               "seek_to_start", "seek_to_stop"]), st.just(())),
    st.tuples(st.just("seek"), st.tuples(keys)),
), max_size=40)


@settings(max_examples=250, deadline=None)
@given(data=st.dictionaries(keys, st.binary(max_size=4), max_size=25),
       deleted=st.sets(keys, max_size=8),
       start=st.none() | keys, stop=st.none() | keys, prefix=st.none() | keys,
       include_start=st.booleans(), include_stop=st.booleans(), reverse=st.booleans(),
       flush=st.booleans(), ops=ops)
def test_cursor_matches_model(tmp_path_factory, data, deleted, start, stop, prefix, include_start,
                              include_stop, reverse, flush, ops):
    with pylsm.open(tmp_path_factory.mktemp("c") / "db") as db:
        db.update(data)
        if flush:
            db.flush()
        for k in deleted:
            db.delete(k)
        lo, hi = _range(start, stop, prefix, include_start, include_stop)
        live = sorted((k, v) for k, v in data.items() if k not in deleted)
        entries = [(k, v) for k, v in live if (lo is None or k >= lo) and (hi is None or k < hi)]
        # the range itself, as items() gives it
        assert list(db.items(start, stop, prefix=prefix, include_start=include_start,
                             include_stop=include_stop, reverse=reverse)) == (entries[::-1] if reverse else entries)
        model = Model(entries, reverse)
        with db.iterator(start, stop, prefix=prefix, include_start=include_start,
                         include_stop=include_stop, reverse=reverse) as it:
            for op, arg in ops:
                got, want = call(it, op, arg), call(model, op, arg)
                assert got == want, (op, arg)
            rest = []
            while (e := model.next()) is not StopIteration:
                rest.append(e)
            assert list(it) == rest


def test_plyvel_examples(tmp_path):
    with pylsm.open(tmp_path / "db") as db:
        for k in (b"a", b"b", b"c", b"d"):
            db[k] = k.upper()
        it = db.iterator()
        assert next(it) == (b"a", b"A")
        assert it.prev() == (b"a", b"A")  # next() then prev() return the same entry
        assert it.peek() == (b"a", b"A")
        with pytest.raises(StopIteration):
            it.prev()
        it.seek(b"bb")
        assert it.next() == (b"c", b"C")
        it.seek_to_last()
        assert it.next() == (b"d", b"D")
        with pytest.raises(StopIteration):
            it.next()
        assert it.peek() is None
        assert it.prev() == (b"d", b"D")
        it.seek_to_first()
        assert [k for k, _ in it] == [b"a", b"b", b"c", b"d"]

        rit = db.iterator(reverse=True)
        assert next(rit) == (b"d", b"D")
        assert rit.prev() == (b"d", b"D")
        rit.seek(b"c")  # the cursor before c: going down, b comes next
        assert next(rit) == (b"b", b"B")
        rit.seek_to_stop()
        assert [k for k, _ in rit] == [b"d", b"c", b"b", b"a"]


def test_include_flags(tmp_path):
    with pylsm.open(tmp_path / "db") as db:
        for k in (b"a", b"b", b"b\x00", b"c", b"d"):
            db[k] = b""
        assert list(db.keys(b"b", b"d")) == [b"b", b"b\x00", b"c"]
        assert list(db.keys(b"b", b"d", include_start=False)) == [b"b\x00", b"c"]
        assert list(db.keys(b"b", b"d", include_stop=True)) == [b"b", b"b\x00", b"c", b"d"]
        assert list(db.keys(b"b", b"d", include_start=False, include_stop=True, reverse=True)) == [b"d", b"c", b"b\x00"]
        assert list(db.values(b"a", b"a", include_stop=True)) == [b""]
        with db.iterator(b"b", b"c", include_start=False, include_stop=True) as it:
            assert [k for k, _ in it] == [b"b\x00", b"c"]


def test_one_view_through_flush_and_compaction(tmp_path):
    with pylsm.open(tmp_path / "db", memtable_bytes=64 * 1024) as db:
        db.update((b"k%04d" % i, b"old") for i in range(2000))
        it = db.iterator(prefix=b"k")
        assert next(it) == (b"k0000", b"old")
        for i in range(2000):
            db[b"k%04d" % i] = b"new"
        db.delete(b"k0001")
        db.flush()
        db.compact()
        assert it.next() == (b"k0001", b"old")
        it.seek(b"k1999")
        assert it.next() == (b"k1999", b"old")
        assert it.prev() == (b"k1999", b"old")
        it.seek_to_first()
        assert sum(1 for _ in it) == 2000
        with db.snapshot() as snap:
            db[b"k0000"] = b"newer"
            with snap.iterator() as sit:
                assert sit.next() == (b"k0000", b"new")


def test_closed_iterator_and_database(tmp_path):
    db = pylsm.open(tmp_path / "db")
    db[b"a"] = b"1"
    it = db.iterator()
    it.close()
    with pytest.raises(pylsm.ClosedError):
        it.next()
    it2 = db.iterator()
    db.close()
    for op in (it2.next, it2.prev, it2.peek, it2.seek_to_last, lambda: it2.seek(b"a")):
        with pytest.raises(pylsm.ClosedError):
            op()


def test_seek_takes_bytes_like_only(tmp_path):
    with pylsm.open(tmp_path / "db") as db:
        db[b"a"] = b"1"
        it = db.iterator()
        with pytest.raises(TypeError):
            it.seek("a")
        it.seek(bytearray(b"a"))
        assert it.next() == (b"a", b"1")


def test_two_threads_on_one_cursor_never_crash(tmp_path):
    with pylsm.open(tmp_path / "db") as db:
        db.update((b"%05d" % i, b"v" * 100) for i in range(5000))
        it = db.iterator()
        errors = []

        def walk():
            try:
                for _ in range(3000):
                    try:
                        it.next()
                    except StopIteration:
                        it.seek_to_first()
                    except pylsm.Error as e:  # "in use by another thread" is the allowed answer
                        assert "another thread" in str(e)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        ts = [threading.Thread(target=walk) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors
