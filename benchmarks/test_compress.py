"""The compressible workloads: JSON-like records of about 200 bytes built from a fixed vocabulary, each
engine with its block compression on (pylsm and RocksDB zstd, LevelDB snappy; engines without one are
skipped).

compressible_fill: N records in random order in batches of 1,000, then flush + full compaction, timed
together (ops = N); space_amp = allocated disk bytes / live bytes (N * (16 + the record's length)), the
space target's figure.
compressible_read: random gets of every key on that settled data (3 rounds, median).  pylsm's row also
records the same gets on the same records stored without compression (uncompressed_ops_per_sec), the
reference of its read target (within 20%).
"""
import json
import random

import pytest

import bench_common as C
from test_read import READ_ROUNDS, get_all, once, timed_gets
from test_write import check_sample

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
CITIES = ["Lisbon", "Porto", "Oslo", "Bergen", "Lyon", "Turin", "Ghent", "Krakow", "Tartu", "Cork"]


def records(n):
    """n (key, value) pairs: the keys of the other workloads, JSON records of ~200 bytes as values."""
    rnd = random.Random(C.SEED + 11)
    keys = C.make_keys(n)
    vals = []
    for i in range(n):
        rec = {"id": i, "user": f"{rnd.choice(WORDS)}_{rnd.choice(WORDS)}{rnd.randrange(100)}",
               "city": rnd.choice(CITIES), "active": rnd.random() < 0.7, "score": rnd.randrange(10000),
               "tags": rnd.sample(WORDS, 3), "bio": " ".join(rnd.choice(WORDS) for _ in range(8))}
        vals.append(json.dumps(rec, separators=(",", ":")).encode())
    perm = C.permutation(n, seed=C.SEED + 12)
    return [keys[i] for i in perm], [vals[i] for i in perm]


def compressible(data):
    return data.cached("compressible", lambda: records(data.n))


def chunks_of(keys, vals):
    return [list(zip(keys[i:i + C.BATCH], vals[i:i + C.BATCH])) for i in range(0, len(keys), C.BATCH)]


def settled(dirs, keys, vals, compress=True):
    db = dirs.open(compress=compress)
    for chunk in chunks_of(keys, vals):
        db.write_batch(chunk)
    db.flush()
    db.compact()
    db.reopen()
    db.begin_reads()
    return db


@pytest.mark.workload("compressible_fill")
def test_compressible_fill(backend, dirs, data, measure):
    keys, vals = compressible(data)
    chunks = chunks_of(keys, vals)
    state = {}

    def setup():
        state["db"] = db = dirs.open(compress=True)
        return db

    def body(db):
        for chunk in chunks:
            db.write_batch(chunk)
        db.flush()
        db.compact()

    secs = measure.run("compressible_fill", data.n, setup, body)
    db = state["db"]
    db.close()
    disk = C.dir_bytes(db.path)
    live = sum(len(k) + len(v) for k, v in zip(keys, vals))
    measure.record("compressible_fill", data.n, secs, disk_bytes=disk, live_bytes=live, space_amp=disk / live,
                   value_bytes=live / data.n - C.KEY_BYTES)
    db.open()
    check_sample(db, keys, vals)


@pytest.mark.workload("compressible_read")
def test_compressible_read(backend, backend_name, dirs, data, measure):
    keys, vals = compressible(data)
    order = keys[:]
    random.Random(C.SEED + 13).shuffle(order)
    extra = {}
    if backend_name == "pylsm":  # the same gets without compression: the read target's reference
        raw = settled(dirs, keys, vals, compress=False)
        times = [timed_gets(raw.get, order) for _ in range(READ_ROUNDS)]
        extra = measure.spread("uncompressed_ops_per_sec", data.n, times)
        raw.close()
        dirs.cleanup()
    setup = once(lambda: settled(dirs, keys, vals))
    secs = measure.run("compressible_read", data.n, setup, lambda db: get_all(db.get, order),
                       rounds=max(READ_ROUNDS, measure.rounds))
    if extra:
        measure.record("compressible_read", data.n, secs, **extra,
                       vs_uncompressed=(data.n / secs) / extra["uncompressed_ops_per_sec"])
    check_sample(setup.state[0], keys, vals)
