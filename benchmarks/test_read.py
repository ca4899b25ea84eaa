"""Read workloads: readrandom, readhot, readmissing, readseq, readreverse, seekrandom, readrandom_threads2.

The database is built once per benchmark in the untimed setup (reads do not change it, so further rounds
reuse it): N keys written in random order in batches of 1,000, flushed, closed and reopened, so the data
is in SSTables (or the B-tree file) and not in a memtable -- except readhot, whose keys stay in the memtable.
"""
import itertools
import random
import time
from collections import deque

import pytest

import bench_common as C
from test_write import check_sample


# Reads do not change the database, so every read workload times 3 rounds on the one database its
# setup built (the first round also brings the data into memory) and reports the median.
READ_ROUNDS = 3


def read_order(data):
    """The keys in a second random order (not the order they were written in)."""
    def build():
        perm = C.permutation(data.n, seed=C.SEED + 2)
        return [data.keys[i] for i in perm], [data.vals[i] for i in perm]
    return data.cached("read_order", build)


def build_db(dirs, chunks, cache_bytes=C.CACHE_BYTES, settle=False):
    """Filled, flushed, closed and reopened; settle: also fully compacted before the close (the state
    of data that has been in the store a while: no L0, the fewest tables)."""
    db = dirs.open(cache_bytes=cache_bytes)
    for chunk in chunks:
        db.write_batch(chunk)
    db.flush()
    if settle:
        db.compact()
    db.reopen()
    db.begin_reads()
    return db


def once(build):
    """A setup that builds the state on its first call and hands the same state to later rounds."""
    cell = []

    def setup():
        if not cell:
            cell.append(build())
        return cell[0]
    setup.state = cell
    return setup


def _readrandom(workload, settle, data, dirs, measure):
    keys, vals = read_order(data)
    setup = once(lambda: build_db(dirs, data.random_chunks(), settle=settle))

    def body(db):
        get = db.get
        for k in keys:
            get(k)

    measure.run(workload, data.n, setup, body, rounds=max(READ_ROUNDS, measure.rounds))
    check_sample(setup.state[0], keys, vals)


@pytest.mark.workload("readrandom")
def test_readrandom(backend, dirs, data, measure):
    _readrandom("readrandom", False, data, dirs, measure)


@pytest.mark.workload("readrandom_settled")
def test_readrandom_settled(backend, dirs, data, measure):
    """readrandom on settled data: filled, flushed, fully compacted, closed and reopened."""
    _readrandom("readrandom_settled", True, data, dirs, measure)


@pytest.mark.workload("get_many")
def test_get_many(backend, dirs, data, measure):
    """Batch reads of 1,000 random keys on settled data, through each store's own batch read (pylsm
    get_many, rocksdict get(list), lmdb getmulti; a loop of gets for the others). ops = keys."""
    keys, vals = read_order(data)
    batches = [keys[i:i + 1000] for i in range(0, len(keys), 1000)]
    setup = once(lambda: build_db(dirs, data.random_chunks(), settle=True))

    def body(db):
        get_many = db.get_many
        for b in batches:
            get_many(b)

    measure.run("get_many", data.n, setup, body, batch=1000, rounds=max(READ_ROUNDS, measure.rounds))
    db = setup.state[0]
    got = db.get_many(batches[0])
    assert got == [vals[i] for i in range(len(batches[0]))], "get_many returned wrong values"
    check_sample(db, keys, vals)


@pytest.mark.workload("readhot")
def test_readhot(backend, dirs, data, measure):
    """N gets spread over min(N, 100,000) keys that were just written and are still in the memtable."""
    hot = min(data.n, C.HOT_KEYS)
    hot_keys = [k for k in data.rkeys if int(k) < hot]          # written in random order
    hot_vals = [data.vals[int(k)] for k in hot_keys]
    qkeys, _ = read_order(data)
    queries = [data.keys[int(k) % hot] for k in qkeys]

    def build():
        db = dirs.open()
        for i in range(0, hot, C.BATCH):
            db.write_batch(list(zip(hot_keys[i:i + C.BATCH], hot_vals[i:i + C.BATCH])))
        db.begin_reads()
        return db

    setup = once(build)

    def body(db):
        get = db.get
        for k in queries:
            get(k)

    measure.run("readhot", data.n, setup, body, hot_keys=hot)
    check_sample(setup.state[0], hot_keys, hot_vals)


@pytest.mark.workload("readmissing")
def test_readmissing(backend, dirs, data, measure):
    """N gets of absent keys: the database holds the even numbers 0, 2, .. 2N-2, the gets ask for odd ones."""
    n = data.n
    present = C.make_keys(n, step=2)
    absent = C.make_keys(n, step=2, offset=1)
    perm = data.perm
    rpresent = [present[i] for i in perm]
    rvals = data.rvals
    qperm = C.permutation(n, seed=C.SEED + 3)
    queries = [absent[i] for i in qperm]
    del absent

    def build():
        chunks = (list(zip(rpresent[i:i + C.BATCH], rvals[i:i + C.BATCH])) for i in range(0, n, C.BATCH))
        return build_db(dirs, chunks)

    setup = once(build)

    def body(db):
        get = db.get
        for k in queries:
            get(k)

    measure.run("readmissing", n, setup, body, rounds=max(READ_ROUNDS, measure.rounds))
    db = setup.state[0]
    rnd = random.Random(5)
    for _ in range(300):
        assert db.get(queries[rnd.randrange(n)]) is None
    check_sample(db, rpresent, rvals)


def _scan_workload(workload, reverse, data, dirs, measure):
    setup = once(lambda: build_db(dirs, data.random_chunks()))
    counted = []

    def body(db):
        counter = itertools.count()
        deque(zip(db.scan(reverse=reverse), counter), maxlen=0)
        counted.append(next(counter))

    measure.run(workload, data.n, setup, body, rounds=max(READ_ROUNDS, measure.rounds))
    assert counted[-1] == data.n, f"{workload} saw {counted[-1]} entries, expected {data.n}"
    db = setup.state[0]
    first = list(itertools.islice(db.scan(reverse=reverse), 3))
    want = [data.keys[-1], data.keys[-2], data.keys[-3]] if reverse else data.keys[:3]
    assert [k for k, _ in first] == want
    assert first[0][1] == (data.vals[-1] if reverse else data.vals[0])


@pytest.mark.workload("readseq")
def test_readseq(backend, dirs, data, measure):
    _scan_workload("readseq", False, data, dirs, measure)


@pytest.mark.workload("readreverse")
def test_readreverse(backend, dirs, data, measure):
    _scan_workload("readreverse", True, data, dirs, measure)


@pytest.mark.workload("seekrandom")
def test_seekrandom(backend, dirs, data, measure):
    """Seeks to a random present key, each reading the first 100 entries from there (ops = seeks)."""
    seeks = C.seek_n(data.n)
    span = 100
    rnd = random.Random(C.SEED + 4)
    starts_i = [rnd.randrange(data.n - span) for _ in range(seeks)]
    starts = [data.keys[i] for i in starts_i]
    setup = once(lambda: build_db(dirs, data.random_chunks()))

    def body(db):
        scan = db.scan
        for k in starts:
            deque(scan(start=k, limit=span), maxlen=0)

    measure.run("seekrandom", seeks, setup, body, entries_per_seek=span, rounds=max(READ_ROUNDS, measure.rounds))
    db = setup.state[0]
    for i in starts_i[:20]:
        got = list(db.scan(start=data.keys[i], limit=span))
        assert [k for k, _ in got] == data.keys[i:i + span]


@pytest.mark.workload("readrandom_threads2")
def test_readrandom_threads2(backend, dirs, data, measure):
    """readrandom from 2 threads (each half of the gets) with a 4 MiB block cache, far smaller than the data.
    The untimed setup also times one thread doing all N gets on the same database: that rate and the
    speedup over it are recorded (single_thread_ops_per_sec, thread_speedup)."""
    keys, vals = read_order(data)
    half = data.n // 2
    parts = [keys[:half], keys[half:]]
    single = []
    db_cell = once(lambda: build_db(dirs, data.random_chunks(), cache_bytes=C.SMALL_CACHE_BYTES))
    views = []

    def setup():
        db = db_cell()
        if not single:
            get = db.get
            t0 = time.perf_counter()
            for k in keys:
                get(k)
            single.append(time.perf_counter() - t0)
        for v in views:
            db.close_view(v)
        views[:] = [db.thread_view() for _ in parts]

        def worker(view, ks):
            def run():
                view.begin_reads()
                get = view.get
                for k in ks:
                    get(k)
            return run
        return C.ThreadGang([worker(v, p) for v, p in zip(views, parts)])

    def body(gang):
        gang.go()

    secs = measure.run("readrandom_threads2", data.n, setup, body, threads=2,
                       cache_bytes=C.SMALL_CACHE_BYTES,
                       single_thread_ops_per_sec=None, thread_speedup=None)
    single_rate = data.n / single[0]
    measure.record("readrandom_threads2", data.n, secs, threads=2, cache_bytes=C.SMALL_CACHE_BYTES,
                   single_thread_ops_per_sec=single_rate, thread_speedup=(data.n / secs) / single_rate)
    db = db_cell()
    for v in views:
        db.close_view(v)
    check_sample(db, keys, vals)
