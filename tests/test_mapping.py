"""DB as a collections.abc.MutableMapping (Snapshot as a Mapping), checked with CPython's own mapping
protocol tests (Lib/test/mapping_tests.py) run on pylsm databases.

Exceptions, each overridden below with the reason:
- ``d.keys(None)``, ``d.values(None)``, ``d.items(None)`` must raise TypeError in the stdlib tests;
  pylsm's keys()/values()/items() take a range (``start`` is their first argument, None meaning
  "from the first key"), so these calls are valid range scans.
- ``fromkeys`` and ``copy`` are dict's constructors, not part of the mapping protocol: a database
  needs a path, so pylsm.DB has neither.
- ``d.setdefault(k, []).append(x)`` then ``d[k] == [x]`` needs the stored object itself back; a
  database stores an encoding, so a value read back is a new object (as with shelve without
  writeback).
- ``test_popitem`` copies with ``copy()`` in half of its rounds (see above); the other half runs.
"""
from __future__ import annotations

import collections.abc
import shutil
import tempfile
import unittest

import pytest

import pylsm

mapping_tests = pytest.importorskip("test.mapping_tests", reason="CPython's test package is not installed")


class _Dirs:
    """Fresh databases for each call of type2test, all closed and removed in tearDown."""

    def setUp(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="pylsm-mapping-")
        self._dbs: list = []
        outer = self

        def factory(*args, **kwargs):
            db = pylsm.open(f"{outer._tmp}/db{len(outer._dbs)}", **outer.options)
            outer._dbs.append(db)
            if args or kwargs:
                db.update(*args, **kwargs)
            return db

        self.type2test = factory

    def tearDown(self) -> None:
        for db in self._dbs:
            db.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


class TestRawBytesMappingProtocol(_Dirs, mapping_tests.BasicTestMappingProtocol):
    """The basic protocol on a raw-bytes database (no codecs)."""

    options: dict = {}

    def _reference(self):
        return {b"1": b"2", b"key1": b"value1", b"key2": b"\x00\x01\x02"}

    def _basic_keys_checks(self):
        """BasicTestMappingProtocol.test_keys but for d.keys(None) (module docstring)."""
        d = self._empty_mapping()
        self.assertEqual(list(d.keys()), [])
        d = self.reference
        self.assertIn(list(self.inmapping.keys())[0], d.keys())
        self.assertNotIn(list(self.other.keys())[0], d.keys())

    def test_keys(self):
        self._basic_keys_checks()
        # exception: d.keys(None) is a range scan from the first key (module docstring)
        self.assertEqual(list(self._full_mapping(self.reference).keys(None)), sorted(self.reference))

    def test_values(self):
        d = self._empty_mapping()
        self.assertEqual(list(d.values()), [])
        # exception: d.values(None) is a range scan (module docstring)
        self.assertEqual(list(d.values(None)), [])

    def test_items(self):
        d = self._empty_mapping()
        self.assertEqual(list(d.items()), [])
        # exception: d.items(None) is a range scan (module docstring)
        self.assertEqual(list(d.items(None)), [])

    def test_update(self):
        # The stdlib test writes str keys ('a'...'z') through objects with keys(); on a raw-bytes
        # database that is a TypeError, which is what it must be.  The rest runs as written.
        d = self._empty_mapping()
        d.update(self.other)
        self.assertEqual(list(d.items()), list(self.other.items()))
        d = self._empty_mapping()
        d.update()
        self.assertEqual(d, self._empty_mapping())
        d = self._empty_mapping()
        d.update(self.other.items())
        self.assertEqual(list(d.items()), list(self.other.items()))
        self.assertRaises((TypeError, AttributeError), d.update, 42)
        self.assertRaises(ValueError, d.update, [(b"1", b"2", b"3")])
        self.assertRaises(TypeError, d.update, {"str": b"v"})
        self.assertEqual(list(d.items()), list(self.other.items()), "a failed update wrote nothing")


class TestCodedMappingProtocol(_Dirs, mapping_tests.TestMappingProtocol):
    """The full protocol (str, int and tuple keys and values) on a database with pickle codecs."""

    options = {"key_codec": "pickle", "value_codec": "pickle"}

    _basic_keys_checks = TestRawBytesMappingProtocol._basic_keys_checks

    def test_keys(self):
        self._basic_keys_checks()
        d = self._full_mapping({"a": 1, "b": 2})
        self.assertIn("a", d.keys())
        self.assertIn("b", d.keys())
        self.assertNotIn("c", d.keys())
        # exception: d.keys(None) is a range scan (module docstring)
        self.assertEqual(sorted(d.keys(None)), ["a", "b"])

    def test_values(self):
        d = self._empty_mapping()
        self.assertEqual(list(d.values()), [])
        d = self._full_mapping({1: 2})
        self.assertEqual(list(d.values()), [2])
        # exception: d.values(None) is a range scan (module docstring)
        self.assertEqual(list(d.values(None)), [2])

    def test_items(self):
        d = self._empty_mapping()
        self.assertEqual(list(d.items()), [])
        d = self._full_mapping({1: 2})
        self.assertEqual(list(d.items()), [(1, 2)])
        # exception: d.items(None) is a range scan (module docstring)
        self.assertEqual(list(d.items(None)), [(1, 2)])

    def test_fromkeys(self):
        # exception: fromkeys is a dict constructor; a database needs a path (module docstring)
        self.assertFalse(hasattr(pylsm.DB, "fromkeys"))

    def test_copy(self):
        # exception: copy is a dict constructor; a database needs a path (module docstring)
        self.assertFalse(hasattr(pylsm.DB, "copy"))
        d = self._full_mapping({1: 1, 2: 2, 3: 3})
        self.assertEqual(dict(d), {1: 1, 2: 2, 3: 3})  # what a user writes instead

    def test_setdefault(self):
        d = self._empty_mapping()
        self.assertRaises(TypeError, d.setdefault)
        self.assertTrue(d.setdefault("key0") is None)
        d.setdefault("key0", [])
        self.assertTrue(d.setdefault("key0") is None)
        # exception: a value read back is a new object; mutating it does not change the database
        self.assertEqual(d.setdefault("key", [3]), [3])
        self.assertEqual(d.setdefault("key", []), [3])
        d.setdefault("key", []).append(4)
        self.assertEqual(d["key"], [3])

    def test_popitem(self):
        mapping_tests.BasicTestMappingProtocol.test_popitem(self)
        # the copymode -1 half of the stdlib test (copy() does not exist: module docstring)
        for log2size in range(12):
            size = 2 ** log2size
            a = self._empty_mapping()
            b = self._empty_mapping()
            for i in range(size):
                a[repr(i)] = i
                b[repr(i)] = i
            for i in range(size):
                ka, va = ta = a.popitem()
                self.assertEqual(va, int(ka))
                kb, vb = tb = b.popitem()
                self.assertEqual(vb, int(kb))
                self.assertEqual(ta, tb)
            self.assertTrue(not a)
            self.assertTrue(not b)


# ---- our own checks of the mapping behaviour ------------------------------------------------


def test_abc_registration(tmp_path):
    with pylsm.open(tmp_path / "db") as db:
        assert isinstance(db, collections.abc.MutableMapping)
        with db.snapshot() as snap:
            assert isinstance(snap, collections.abc.Mapping)
            assert not isinstance(snap, collections.abc.MutableMapping)


def test_eq_against_any_mapping(tmp_path):
    with pylsm.open(tmp_path / "a") as a, pylsm.open(tmp_path / "b") as b:
        assert a == {} and a == b
        a[b"k"] = b"v"
        assert a == {b"k": b"v"}
        assert a == collections.OrderedDict([(b"k", b"v")])
        assert a != b
        b.update({b"k": b"v"})
        assert a == b
        assert a != [(b"k", b"v")]  # not a mapping: not equal
        with pytest.raises(TypeError):
            hash(a)


def test_pop_popitem_setdefault_clear(tmp_path):
    with pylsm.open(tmp_path / "db") as db:
        db.update({b"a": b"1", b"b": b"2", b"c": b"3"})
        assert db.pop(b"a") == b"1"
        assert db.pop(b"a", None) is None
        with pytest.raises(KeyError):
            db.pop(b"a")
        assert db.popitem() == (b"b", b"2")  # the smallest key
        assert db.setdefault(b"c", b"x") == b"3"
        assert db.setdefault(b"d", b"4") == b"4" and db[b"d"] == b"4"
        db.flush()
        db.update((b"k%05d" % i, b"v") for i in range(25_000))
        db.clear()
        assert len(db) == 0 and not db and list(db.items()) == []
        with pytest.raises(KeyError):
            db.popitem()


def test_snapshot_is_a_mapping_of_its_view(tmp_path):
    with pylsm.open(tmp_path / "db") as db:
        db.update({b"a": b"1", b"b": b"2"})
        with db.snapshot() as snap:
            db[b"c"] = b"3"
            del db[b"a"]
            assert len(snap) == 2 and dict(snap) == {b"a": b"1", b"b": b"2"}
            assert snap == {b"a": b"1", b"b": b"2"}
            assert list(reversed(snap)) == [b"b", b"a"]
            assert bool(snap)
        assert dict(db) == {b"b": b"2", b"c": b"3"}


def test_iterators_not_views(tmp_path):
    """keys()/values()/items() stay what the API promises: iterators fixed at creation."""
    with pylsm.open(tmp_path / "db") as db:
        db.update({b"a": b"1", b"b": b"2"})
        it = db.items()
        db[b"c"] = b"3"
        assert next(it) == (b"a", b"1")
        assert list(it) == [(b"b", b"2")]
        assert next(db.keys()) == b"a"
        assert next(db.values(reverse=True)) == b"3"


def test_update_like_dict(tmp_path):
    class KeysOnly:
        def keys(self):
            return [b"x", b"y"]

        def __getitem__(self, k):
            return k.upper()

    with pylsm.open(tmp_path / "db") as db:
        db.update(KeysOnly())
        assert dict(db) == {b"x": b"X", b"y": b"Y"}
        with pytest.raises(ValueError):
            db.update([(b"1", b"2", b"3")])
        with pytest.raises(ValueError):  # as dict.update: a sequence of the wrong length
            db.update([(b"k", b"v"), b"not a pair"])
        with pytest.raises(TypeError):
            db.update([(b"k", b"v"), 42])
        assert dict(db) == {b"x": b"X", b"y": b"Y"}


def test_bool_is_cheap_and_right(tmp_path):
    with pylsm.open(tmp_path / "db") as db:
        assert not db
        db[b""] = b""
        assert db
        del db[b""]
        assert not db


if __name__ == "__main__":
    unittest.main()
