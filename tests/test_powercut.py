"""A power cut that tears the unsynced part of the WAL: every write acknowledged as durable survives, the
default open never needs wal_recovery="salvage", and what it yields is a prefix of the history.

The model of the cut: the database is written with a sync strategy, then its files are copied as the page
cache holds them.  Bytes below stats()["wal_synced_bytes"] (read before the copy, with the writers
stopped) reached the disk; every 512-byte piece above it is kept, dropped (reads as zeros: the
preallocated file) or garbled, each piece on its own, so pieces reach the disk out of order.  The copy
is then opened with the default options.
"""
from __future__ import annotations

import functools
import os
import random
import shutil

import pytest

from lsmtest import key_of
import pylsm

SECTOR = 512


key = functools.partial(key_of, width=5)  # k00000: the keys these tests were written with


def value(i: int, rnd: random.Random) -> bytes:
    n = rnd.choice([1, 20, 100, 700, 3000])
    return (b"%d." % i) * (n // 4 + 1)


STRATEGIES = {
    "every_n_8": lambda: pylsm.EveryNEntries(8),
    "hybrid_8_20": lambda: pylsm.Hybrid(8, 20),
    "time_20": lambda: pylsm.TimeBasedBackground(20),
    "none": lambda: "none",
    "every_write": lambda: "every_write",
}


def tear(data: bytes, durable: int, written: int, rnd: random.Random, fates: str) -> bytes:
    """The file after the cut: [0, durable) as it was, each sector-sized piece of [durable, written)
    kept ('k'), dropped to zeros ('d') or garbled ('g')."""
    out = bytearray(data)
    start = durable
    while start < written:
        end = min((start // SECTOR + 1) * SECTOR, written)
        fate = rnd.choice(fates)
        if fate == "d":
            out[start:end] = bytes(end - start)
        elif fate == "g":
            out[start:end] = rnd.randbytes(end - start)
        start = end
    return bytes(out)


def write_history(path: str, sync, n: int, rnd: random.Random):
    """n puts; returns (values, end offset of each put's record, durable offset, WAL file name)."""
    db = pylsm.open(path, sync=sync)
    vals, ends = [], []
    for i in range(n):
        vals.append(value(i, rnd))
        db[key(i)] = vals[-1]
        ends.append(db.stats()["wal_bytes"])
        if rnd.random() < 0.02:
            db.sync()  # an explicit sync, under every strategy
    durable = db.stats()["wal_synced_bytes"]
    wals = sorted(f for f in os.listdir(path) if f.endswith(".wal"))
    return db, vals, ends, durable, wals[-1]


def check_prefix(path: str, vals, must_have: int):
    with pylsm.open(path) as db:  # the default: wal_recovery="tolerate_tail"
        got = dict(db.items())
        m = 0
        while m < len(vals) and key(m) in got:
            assert got[key(m)] == vals[m], m
            m += 1
        assert len(got) == m, "not a prefix of the history"
        assert m >= must_have, f"lost durable writes: {m} of {must_have} survived"
        db[b"after"] = b"x"  # and the database is writable again
    with pylsm.open(path) as db:
        assert db[b"after"] == b"x" and len(db) == m + 1
    return m


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("fates", ["kd", "kdg"])
def test_torn_unsynced_wal_opens_to_a_durable_prefix(fast_dir, strategy, fates):
    rounds = 8
    torn = 0
    for r in range(rounds):
        rnd = random.Random(f"{strategy}-{fates}-{r}")
        src = os.path.join(fast_dir, f"src{r}")
        db, vals, ends, durable, wal = write_history(src, STRATEGIES[strategy](), 300, rnd)
        must_have = sum(1 for e in ends if e <= durable)
        if strategy == "every_write":
            assert must_have == len(vals)
        written = ends[-1]
        for cut in range(3):
            dst = os.path.join(fast_dir, f"cut{r}-{cut}")
            shutil.copytree(src, dst)
            wal_path = os.path.join(dst, wal)
            data = open(wal_path, "rb").read()
            torn_data = tear(data, durable, written, rnd, fates)
            torn += torn_data != data
            with open(wal_path, "wb") as f:
                f.write(torn_data)
            check_prefix(dst, vals, must_have)
            shutil.rmtree(dst)
        db.close()
        shutil.rmtree(src)
    if strategy != "every_write":
        assert torn > 0  # the model did tear something


def test_damage_that_a_later_sync_declares_durable_is_corruption(fast_dir):
    """The other side of the rule: bytes below a durable point that an intact later sync mark records
    are not a torn tail; damage there is reported, not silently cut."""
    rnd = random.Random(3)
    src = os.path.join(fast_dir, "src")
    db, vals, ends, durable, wal = write_history(src, pylsm.EveryNEntries(8), 100, rnd)
    db.close()  # a clean close: the last mark declares the whole WAL durable
    dst = os.path.join(fast_dir, "dst")
    shutil.copytree(src, dst)
    p = os.path.join(dst, wal)
    data = bytearray(open(p, "rb").read())
    data[ends[40] - 3] ^= 0xFF
    open(p, "wb").write(bytes(data))
    with pytest.raises(pylsm.CorruptionError, match="durable"):
        pylsm.open(dst)
    assert open(p, "rb").read() == bytes(data)  # the failed open changed nothing


def test_wal_torn_as_it_was_created_opens(fast_dir):
    """A crash while a new WAL's header was being written (no record can follow it yet): the header is
    garbage with zeros after it; the default open goes on with what the other files hold."""
    path = os.path.join(fast_dir, "db")
    with pylsm.open(path) as db:
        db[b"a"] = b"1"
    names = sorted(f for f in os.listdir(path) if f.endswith(".wal"))
    number = int(names[-1].split(".")[0]) + 1
    with open(os.path.join(path, "%06d.wal" % number), "wb") as f:
        f.write(random.Random(1).randbytes(16) + bytes(1 << 16))
    with pylsm.open(path) as db:
        assert db[b"a"] == b"1"
        db[b"b"] = b"2"
    with pylsm.open(path) as db:
        assert dict(db.items()) == {b"a": b"1", b"b": b"2"}
