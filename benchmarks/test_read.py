"""Read workloads: readrandom, readrandom_settled, get_many, readhot, readmissing, readseq, readreverse,
seekrandom, readrandom_threads2, readrandom_cold, readrandom_cold_threads2.

The database is built once per benchmark in the untimed setup (reads do not change it, so further rounds
reuse it): N keys written in random order in batches of 1,000, flushed, closed and reopened, so the data
is in SSTables (or the B-tree file) and not in a memtable -- except readhot, whose keys stay in the memtable.
Settled (the state the read targets are measured in): also fully compacted before the close -- used by
readrandom_settled, get_many, readseq, readreverse, seekrandom and the threads and cold workloads;
readrandom and readmissing read the state right after the fill (tables as the flushes left them).

Every read workload times at least 3 rounds (READ_ROUNDS) and reports the median with the spread. The cold
workloads close the store before each round, evict its files from the OS page cache and reopen it.
"""
import functools
import gc
import itertools
import random
import statistics
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


def get_all(get, keys):
    """The timed loop of the point-read workloads."""
    for k in keys:
        get(k)


def timed_gets(get, keys):
    """Seconds of get_all(get, keys), timed by hand with garbage collection off (as in every timed body,
    Measure), for the reference rates recorded beside a workload's own."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        get_all(get, keys)
        return time.perf_counter() - t0
    finally:
        gc.enable()


def _readrandom(workload, settle, data, dirs, measure):
    keys, vals = read_order(data)
    setup = once(lambda: build_db(dirs, data.random_chunks(), settle=settle))
    measure.run(workload, data.n, setup, lambda db: get_all(db.get, keys),
                rounds=max(READ_ROUNDS, measure.rounds))
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
    """Batch reads of 1,000 random keys on settled data, each store's fastest way to a list of their values
    (pylsm get_many, rocksdict get(list), lsm-db fetch_bulk; a map of get for the others, LMDB's included:
    its getmulti is slower). ops = keys."""
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

    measure.run("readhot", data.n, setup, body, hot_keys=hot, rounds=max(READ_ROUNDS, measure.rounds))
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
    setup = once(lambda: build_db(dirs, data.random_chunks(), settle=True))
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
    """Seeks to a random present key, each reading the first 100 entries from there (ops = seeks);
    settled data."""
    seeks = C.seek_n(data.n)
    span = 100
    rnd = random.Random(C.SEED + 4)
    starts_i = [rnd.randrange(data.n - span) for _ in range(seeks)]
    starts = [data.keys[i] for i in starts_i]
    setup = once(lambda: build_db(dirs, data.random_chunks(), settle=True))

    def body(db):
        scan = db.scan
        for k in starts:
            deque(scan(start=k, limit=span), maxlen=0)

    measure.run("seekrandom", seeks, setup, body, entries_per_seek=span, rounds=max(READ_ROUNDS, measure.rounds))
    db = setup.state[0]
    for i in starts_i[:20]:
        got = list(db.scan(start=data.keys[i], limit=span))
        assert [k for k, _ in got] == data.keys[i:i + span]


def cold_reopen(db):
    """Close the store, evict every file of its database from the OS page cache, reopen it and begin a
    read pass (untimed). Returns (seconds of the reopen + begin_reads, fraction of the files' bytes still
    in the page cache right after the eviction)."""
    db.close()
    C.evict(db.path)
    resident = C.resident_fraction(db.path)
    if resident is not None and resident > 0.5:
        pytest.skip(f"{resident:.0%} of the files stay in the page cache after POSIX_FADV_DONTNEED "
                    f"({db.path}: tmpfs?): cold reads cannot be measured here")
    t0 = time.perf_counter()
    db.open()
    db.begin_reads()
    return time.perf_counter() - t0, resident


def _threads2(workload, db_setup, keys, vals, measure, prepare=None, **extra):
    """Gets of ``keys`` from 2 threads (each half, each through its own thread_view and read pass), timed;
    before each round the same gets from 1 thread on the same database, timed by hand: their rate is
    recorded beside (single_thread_ops_per_sec with its spread, thread_speedup). ``prepare(db)`` runs
    (untimed) before each of the two passes (the cold workload evicts there); ``prepare.info()`` goes into
    extra_info."""
    n = len(keys)
    halves = [keys[:n // 2], keys[n // 2:]]
    single, views = [], []

    def setup():
        db = db_setup()
        for v in views:
            db.close_view(v)
        views.clear()
        if prepare:
            prepare(db)
        single.append(timed_gets(db.get, keys))
        if prepare:
            prepare(db)
        views[:] = [db.thread_view() for _ in halves]
        for v in views:
            v.begin_reads()
        return C.ThreadGang([functools.partial(get_all, v.get, h) for v, h in zip(views, halves)])

    secs = measure.run(workload, n, setup, lambda gang: gang.go(), rounds=max(READ_ROUNDS, measure.rounds),
                       threads=2, **extra)
    one = measure.spread("single_thread_ops_per_sec", n, single)
    measure.record(workload, n, secs, threads=2, **extra, **one, **(prepare.info() if prepare else {}),
                   thread_speedup=(n / secs) / one["single_thread_ops_per_sec"])
    db = db_setup()
    for v in views:
        db.close_view(v)
    check_sample(db, keys, vals)


@pytest.mark.workload("readrandom_threads2")
def test_readrandom_threads2(backend, dirs, data, measure):
    """readrandom on settled data from 2 threads (each half of the gets) with a 4 MiB block cache, far
    smaller than the data. Before each round one thread does all N gets on the same database: that rate
    and the speedup over it are recorded (single_thread_ops_per_sec, thread_speedup)."""
    keys, vals = read_order(data)
    db_setup = once(lambda: build_db(dirs, data.random_chunks(), cache_bytes=C.SMALL_CACHE_BYTES, settle=True))
    _threads2("readrandom_threads2", db_setup, keys, vals, measure, cache_bytes=C.SMALL_CACHE_BYTES)


def cold_keys(data):
    """The cold workloads' gets: the first min(20,000, N/50) keys of the read order, and their values."""
    keys, vals = read_order(data)
    m = C.cold_n(data.n)
    return keys[:m], vals[:m]


class ColdRounds:
    """The cold state before each pass: close, evict, reopen (cold_reopen). Collects for extra_info the
    reopen times, the page-cache residency right after each eviction, the bytes read from storage by the
    reopen, and by each pass of gets (from the reopen to the next eviction, or to ``info()``), per get: the
    proof that the gets did go to the disk (a small database may be read whole by the reopen)."""

    def __init__(self, gets):
        self.gets = gets
        self.open_secs, self.resident, self.read_bytes, self.open_bytes = [], [], [], []
        self.mark = None

    def _pass_done(self):
        now = C.storage_read_bytes()
        if self.mark is not None and now is not None:
            self.read_bytes.append(now - self.mark)
        self.mark = None

    def __call__(self, db):
        self._pass_done()
        before = C.storage_read_bytes()
        secs, resident = cold_reopen(db)
        self.open_secs.append(secs)
        if resident is not None:
            self.resident.append(resident)
        self.mark = C.storage_read_bytes()
        if before is not None:
            self.open_bytes.append(self.mark - before)

    def info(self):
        self._pass_done()
        med = statistics.median
        return dict(open_ms=1000 * med(self.open_secs) if self.open_secs else None,
                    resident_after_evict=max(self.resident) if self.resident else None,
                    disk_kib_per_get=med(self.read_bytes) / 1024 / self.gets if self.read_bytes else None,
                    open_disk_kib=med(self.open_bytes) / 1024 if self.open_bytes else None)


@pytest.mark.workload("readrandom_cold")
def test_readrandom_cold(backend, dirs, data, measure):
    """Cold point reads on settled data: before each round the store is closed, every file of its database
    evicted from the OS page cache (fsync, then posix_fadvise DONTNEED) and the store reopened (untimed);
    timed: min(20,000, N/50) gets of present keys in random order. extra_info: open_ms (the reopen after the
    eviction, median), resident_after_evict (the files' fraction still cached: ~0 if the eviction worked),
    disk_kib_per_get (KiB read from storage per get, median of the passes) and open_disk_kib (KiB read by
    the reopen)."""
    keys, vals = cold_keys(data)
    db_setup = once(lambda: build_db(dirs, data.random_chunks(), settle=True))
    cold = ColdRounds(len(keys))

    def setup():
        db = db_setup()
        cold(db)
        return db

    secs = measure.run("readrandom_cold", len(keys), setup, lambda db: get_all(db.get, keys),
                       rounds=max(READ_ROUNDS, measure.rounds))
    measure.record("readrandom_cold", len(keys), secs, **cold.info())
    check_sample(db_setup(), keys, vals)


@pytest.mark.workload("readrandom_cold_threads2")
def test_readrandom_cold_threads2(backend, dirs, data, measure):
    """readrandom_cold from 2 threads, each half of the gets (own thread_view, own read pass). Before each
    round the same gets from 1 thread, also after an eviction, timed by hand: single_thread_ops_per_sec and
    thread_speedup (pylsm's target: >= 1.6x its own 1-thread cold rate)."""
    keys, vals = cold_keys(data)
    db_setup = once(lambda: build_db(dirs, data.random_chunks(), settle=True))
    cold = ColdRounds(len(keys))
    _threads2("readrandom_cold_threads2", db_setup, keys, vals, measure, prepare=cold)
