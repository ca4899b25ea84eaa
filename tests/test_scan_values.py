"""Scans over values of every size, from 0 bytes to pylsm.MAX_VALUE: items(), values(), keys() forward and
reverse, with ranges, prefixes and snapshots, from the memtable, from tables and from both.  The binding
moves entries into Python in chunks of bounded bytes; a chunk cut short by its byte limit must never be
taken as the end of the scan."""
from __future__ import annotations

import random

import pytest

import pylsm

KiB, MiB = 1 << 10, 1 << 20


def val(i: int, n: int) -> bytes:
    """A value of n bytes that differs per key (cheap to make even at 64 MiB)."""
    head = b"%d:" % i
    if n <= len(head):
        return head[:n]
    return (head + bytes([i % 251]) * (n - len(head)))


def model_items(model, start=None, stop=None, prefix=None, reverse=False):
    ks = sorted(k for k in model if (start is None or k >= start) and (stop is None or k < stop)
                and (prefix is None or k.startswith(prefix)))
    if reverse:
        ks.reverse()
    return [(k, model[k]) for k in ks]


def check_scans(db, model, snap=None):
    src = snap if snap is not None else db
    for reverse in (False, True):
        want = model_items(model, reverse=reverse)
        got = list(src.items(reverse=reverse))
        assert len(got) == len(want)
        assert got == want
        assert list(src.keys(reverse=reverse)) == [k for k, _ in want]
        assert list(src.values(reverse=reverse)) == [v for _, v in want]
    ks = sorted(model)
    if ks:
        lo, hi = ks[len(ks) // 4], ks[3 * len(ks) // 4]
        for reverse in (False, True):
            assert list(src.items(lo, hi, reverse=reverse)) == model_items(model, lo, hi, reverse=reverse)
            assert list(src.values(lo, None, reverse=reverse)) == \
                [v for _, v in model_items(model, lo, None, reverse=reverse)]
        for prefix in (b"k1", b"k0", b"big", b"none"):
            for reverse in (False, True):
                assert list(src.items(prefix=prefix, reverse=reverse)) == \
                    model_items(model, prefix=prefix, reverse=reverse)


def test_the_reported_case_40kb_values(db_path):
    with pylsm.open(db_path) as db:
        for i in range(100):
            db[b"k%03d" % i] = bytes(40000)
        assert sum(1 for _ in db.items()) == 100
        assert sum(1 for _ in db.values()) == 100
        assert sum(1 for _ in db.items(reverse=True)) == 100
        db.flush()
        assert sum(1 for _ in db.items()) == 100
        assert sum(1 for _ in db.values(reverse=True)) == 100


@pytest.mark.parametrize("size", [33_000, 70_000, 300 * KiB, MiB - 40, MiB, MiB + 1, 3 * MiB])
@pytest.mark.parametrize("where", ["memtable", "tables", "both"])
def test_uniform_sizes(db_path, size, where):
    model = {}
    with pylsm.open(db_path) as db:
        n = 50 if size < MiB else 8
        for i in range(n):
            k = b"k%03d" % i
            model[k] = val(i, size)
            db[k] = model[k]
            if where == "both" and i == n // 2:
                db.flush()
        if where == "tables":
            db.flush()
        check_scans(db, model)


@pytest.mark.parametrize("where", ["memtable", "tables", "both", "compacted"])
def test_mixed_sizes_with_deletes(db_path, where):
    """The issue's second case: 20 B to 40 KB values over 2,000 keys, 20% deleted."""
    rnd = random.Random(18)
    model = {}
    with pylsm.open(db_path, memtable_bytes=8 * MiB if where != "memtable" else 64 * MiB) as db:
        for i in range(2000):
            k = b"k%05d" % rnd.randrange(3000)
            if rnd.random() < 0.2:
                db.delete(k)
                model.pop(k, None)
            else:
                model[k] = val(i, rnd.choice([0, 20, 100, 4000, 40_000, rnd.randrange(60_000)]))
                db[k] = model[k]
            if where == "both" and i == 1000:
                db.flush()
        if where in ("tables", "compacted"):
            db.flush()
        if where == "compacted":
            db.compact()
        check_scans(db, model)
        for k in list(model)[:50]:
            assert db[k] == model[k]


def test_snapshot_scans_of_large_values(db_path):
    model = {}
    with pylsm.open(db_path) as db:
        for i in range(40):
            model[b"k%02d" % i] = val(i, 100_000 + i)
            db[b"k%02d" % i] = model[b"k%02d" % i]
        frozen = dict(model)
        with db.snapshot() as snap:
            for i in range(0, 40, 2):
                db[b"k%02d" % i] = val(i + 1000, 200_000)
            del db[b"k01"]
            db.flush()
            check_scans(db, frozen, snap=snap)
            with pytest.raises(AssertionError):
                check_scans(db, model | {b"k00": b"x"}, snap=snap)


def test_values_up_to_the_maximum(db_path):
    """Values of 0 bytes and of MAX_VALUE bytes side by side, before and after a flush."""
    top = pylsm.MAX_VALUE
    model = {b"a": b"", b"b": val(1, top), b"c": b"x", b"d": val(3, top - 1), b"e": val(4, MiB + 17)}
    with pylsm.open(db_path) as db:
        for k, v in model.items():
            db[k] = v
        for reverse in (False, True):
            got = list(db.items(reverse=reverse))
            assert [k for k, _ in got] == sorted(model, reverse=reverse)
            assert all(v == model[k] for k, v in got)
        db.flush()
        for reverse in (False, True):
            got = [len(v) for v in db.values(reverse=reverse)]
            assert got == [len(model[k]) for k in sorted(model, reverse=reverse)]
        assert list(db.keys()) == sorted(model)
