"""Key and value codecs: the order-preserving tuple codec (property tests), the built-in codecs, custom
codec objects, and every DB call speaking the codec (ranges, prefixes, snapshots, batches, get_many,
iterators)."""
from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import pylsm
from pylsm.codecs import pack, unpack

# ---- the tuple encoding ---------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(1 << 2100), max_value=1 << 2100),  # lengths past the one-byte form
    st.floats(allow_nan=False),
    st.text(),
    st.text(alphabet=st.sampled_from("\x00\x01a\xff\u0100\U0001f600")),
    st.binary(),
    st.binary(max_size=6).map(lambda b: b.replace(b"\x01", b"\x00")),  # many NULs
)
elements = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=12)
tuples = st.lists(elements, max_size=5).map(tuple)

_TYPE_RANK = {type(None): 0, bytes: 1, str: 2, tuple: 3, int: 4, float: 5, bool: 6}


def model_lt(a: tuple, b: tuple) -> bool:
    """The documented order: Python's order within a type, the type order across types."""
    for x, y in zip(a, b):
        rx, ry = _TYPE_RANK[type(x)], _TYPE_RANK[type(y)]
        if rx != ry:
            return rx < ry
        if isinstance(x, tuple):  # not x != y: Python calls (False,) and (0,) equal, the codec does not
            if model_lt(x, y):
                return True
            if model_lt(y, x):
                return False
            continue
        if x is None:
            continue
        if x != y:
            return x < y
    return len(a) < len(b)


def same_types(a: tuple, b: tuple) -> bool:
    """True when Python itself orders a and b the way the codec does (no int/float/bool mixing)."""
    try:
        a < b
    except TypeError:
        return False
    for x, y in zip(a, b):
        if type(x) is not type(y):
            return False
        if isinstance(x, tuple) and not same_types(x, y):
            return False
        if x != y:
            return True
    return True


def norm(t):
    """-0.0 is stored as 0.0 (equal in Python)."""
    return tuple(norm(x) if isinstance(x, tuple) else (0.0 if isinstance(x, float) and x == 0 else x) for x in t)


@settings(max_examples=600, deadline=None)
@given(tuples)
def test_round_trip(t):
    got = unpack(pack(t))
    assert got == t
    assert [type(x) for x in got] == [type(x) for x in t]  # True stays True, 1 stays 1
    assert got == norm(t)


@settings(max_examples=1000, deadline=None)
@given(tuples, tuples)
@example(a=(((False, False, False), False, (), False),), b=(((False, False, False), False, (), 0),))
def test_order_matches_documented_order(a, b):
    ea, eb = pack(a), pack(b)
    assert (ea < eb) == model_lt(a, b)
    assert (ea == eb) == (not model_lt(a, b) and not model_lt(b, a))


@settings(max_examples=1000, deadline=None)
@given(tuples, tuples)
def test_order_matches_python_where_python_orders_alike(a, b):
    assume(same_types(a, b))
    assert (pack(a) < pack(b)) == (a < b)
    assert (pack(a) == pack(b)) == (a == b)


@settings(max_examples=300, deadline=None)
@given(tuples, tuples)
def test_a_tuple_is_a_byte_prefix_of_its_extensions(a, b):
    assert pack(a + b).startswith(pack(a))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-(1 << 600), max_value=1 << 600), min_size=2))
def test_ints_sort_numerically(xs):
    assert sorted(xs, key=lambda x: pack((x,))) == sorted(xs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False), min_size=2))
def test_floats_sort_numerically(xs):
    assert [x for x in sorted(xs, key=lambda x: pack((x,)))] == sorted(xs)


def test_type_order_is_the_documented_one():
    ordered = [(None,), (b"",), ("",), ((),), (-1,), (0,), (1,), (-1.5,), (2.5,), (False,), (True,)]
    assert sorted(ordered, key=pack) == ordered
    assert pack(()) == b""
    assert pack(("user", 42)) < pack(("user", 42, "name")) < pack(("user", 43))
    assert pack((b"a",)) < pack((b"a\x00",)) < pack((b"a\x00\x00",)) < pack((b"a\x01",))
    assert pack(((None,),)) > pack(((),)) and pack(((), None)) < pack(((None,),))


@pytest.mark.parametrize("bad", [object(), 1.5j, [1], {1: 2}, {1}])
def test_unencodable_elements(bad):
    with pytest.raises(TypeError):
        pack((bad,))


def test_refusals():
    with pytest.raises(ValueError):
        pack((math.nan,))
    with pytest.raises(TypeError):
        pack("not a tuple")
    with pytest.raises(TypeError):
        pack(["a", "list"])
    for junk in [b"\x02abc", b"\x05\x02a\x00", b"\x15\x05\x01", b"\x21\x00", b"\x99"]:
        with pytest.raises(ValueError):
            unpack(junk)


def test_big_ints_at_the_length_boundaries():
    xs = [s * ((1 << (8 * n)) - 1 + d) for n in (253, 254, 255, 256, 300) for d in (-1, 0, 1, 2)
          for s in (1, -1)]
    assert sorted(xs, key=lambda x: pack((x,))) == sorted(xs)
    for x in xs:
        assert unpack(pack((x,))) == (x,)


# ---- codecs on a database -------------------------------------------------------------------


def test_tuple_keys_on_a_database(tmp_path):
    with pylsm.open(tmp_path / "db", key_codec="tuple", value_codec="json") as db:
        db[("user", 42, "name")] = "ann"
        db[("user", 42, "age")] = 31
        db[("user", 7, "name")] = "bob"
        db[("user", -3, "name")] = "neg"
        db[("user", 10**30, "name")] = "big"
        db[("order", 1)] = {"total": 9.5, "items": [1, 2]}
        assert db[("user", 42, "name")] == "ann"
        assert db.get(("nobody",)) is None and db.get(("nobody",), "d") == "d"
        assert ("user", 42, "age") in db and ("user", 42) not in db
        assert "not a tuple" not in db  # what the codec cannot encode is not there
        assert list(db.items(prefix=("user", 42))) == [(("user", 42, "age"), 31), (("user", 42, "name"), "ann")]
        assert [k[1] for k in db.keys(prefix=("user",))] == [-3, 7, 42, 42, 10**30]
        assert list(db.keys(start=("user", 7), stop=("user", 42))) == [("user", 7, "name")]
        assert list(db.keys(start=("user", 7, "name"), include_start=False, stop=("user", 42))) == []
        assert list(db.values(prefix=("order",))) == [{"total": 9.5, "items": [1, 2]}]
        assert next(db.keys(reverse=True)) == ("user", 10**30, "name")
        assert db.get_many([("user", 7, "name"), ("x",)]) == ["bob", None]
        with db.batch() as b:
            b.put(("user", 8, "name"), "cy")
            b.delete(("user", 7, "name"))
        db.update({("user", 9, "name"): "dee"})
        db.update([(("user", 11, "name"), "eve")])
        with db.snapshot() as snap:
            db[("user", 8, "name")] = "changed"
            assert snap[("user", 8, "name")] == "cy"
            assert snap.get(("user", 7, "name")) is None
            assert snap.get_many([("user", 9, "name")]) == ["dee"]
            assert [k for k, _ in snap.items(prefix=("user", 8))] == [("user", 8, "name")]
            assert ("user", 9, "name") in snap
        assert db.pop(("user", 9, "name")) == "dee"
        db.flush()
        db.compact(("user",), ("user", 100))
        assert db[("user", 42, "name")] == "ann"
        with db.iterator(prefix=("user", 42)) as it:
            assert next(it) == (("user", 42, "age"), 31)
            it.seek(("user", 42, "name"))
            assert it.peek() == (("user", 42, "name"), "ann")
        with pytest.raises(TypeError):
            db["a str key"] = 1
        with pytest.raises(KeyError):
            db[("missing",)]
        assert isinstance(db, pylsm.DB)
        assert "key_codec='tuple'" in repr(db)


def test_str_codec(tmp_path):
    with pylsm.open(tmp_path / "db", key_codec="str", value_codec="str") as db:
        db["é"] = "ü"
        db["a"] = "\ud800"  # a lone surrogate round-trips
        assert db["é"] == "ü" and db["a"] == "\ud800"
        assert list(db) == ["a", "é"]
        assert list(db.items(prefix="é")) == [("é", "ü")]
        with pytest.raises(TypeError):
            db[b"bytes"] = "x"
    with pylsm.open(tmp_path / "db") as raw:  # what is stored: UTF-8
        assert raw["é".encode()] == "ü".encode()


def test_pickle_and_json_values(tmp_path):
    with pylsm.open(tmp_path / "db", value_codec="pickle") as db:
        db[b"k"] = {"set": {1, 2}, "t": (1, b"x")}
        assert db[b"k"] == {"set": {1, 2}, "t": (1, b"x")}
        assert db.popitem() == (b"k", {"set": {1, 2}, "t": (1, b"x")})
    with pylsm.open(tmp_path / "j", value_codec="json") as db:
        db[b"k"] = {"b": 1, "a": [None, True]}
        assert db[b"k"] == {"a": [None, True], "b": 1}
        with pytest.raises(ValueError):
            db[b"nan"] = math.nan  # JSON has no NaN: refused, nothing written
        assert b"nan" not in db
    with pylsm.open(tmp_path / "j") as raw:
        assert json.loads(raw[b"k"]) == {"a": [None, True], "b": 1}


def test_custom_codec_object(tmp_path):
    class U32:
        def encode(self, n):
            return struct.pack(">I", n)

        def decode(self, b):
            return struct.unpack(">I", b)[0]

    with pylsm.open(tmp_path / "db", key_codec=U32(), value_codec=U32()) as db:
        for n in (5, 1, 300, 70000):
            db[n] = n * 2
        assert list(db.items()) == [(1, 2), (5, 10), (300, 600), (70000, 140000)]
        assert list(db.keys(start=5, stop=300, include_stop=True)) == [5, 300]


def test_codec_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown codec"):
        pylsm.open(tmp_path / "db", key_codec="yaml")
    with pytest.raises(TypeError, match="encode"):
        pylsm.open(tmp_path / "db", value_codec=42)
    assert not (tmp_path / "db").exists()  # a bad option creates nothing


def test_codec_error_writes_nothing(tmp_path):
    with pylsm.open(tmp_path / "db", key_codec="tuple") as db:
        with pytest.raises(TypeError):
            db.update([(("ok",), b"1"), ((object(),), b"2")])
        assert len(db) == 0
        with pytest.raises(TypeError):
            with db.batch() as b:
                b.put(("ok",), b"1")
                b.put(("bad", object()), b"2")
        assert len(db) == 0


def test_raw_database_unchanged(tmp_path):
    """Without codecs the DB's methods are the C binding's own: nothing in between."""
    with pylsm.open(tmp_path / "db") as db:
        assert type(db) is pylsm.DB
        assert type(db).get is pylsm._pylsm.DB.get
        assert type(db).__getitem__ is pylsm._pylsm.DB.__getitem__
        assert type(db).put is pylsm._pylsm.DB.put
