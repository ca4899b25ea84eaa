"""The seed's decisions, measured on pylsm alone (docs/decisions.md quotes these figures).

- item 1 and 3: put throughput and put latency (p50/p99) under every sync strategy, with and without the
  WAL timestamp, and fsyncs per put;
- item 3 (group commit): every_write from 1 and 8 threads;
- item 4: flush latency as the table count grows past 1,000, compaction off;
- item 5: readrandom from 1, 2 and 4 threads on the same tables, block cache much smaller than the data.

Run: ``pytest benchmarks/test_decisions.py --benchmark-only -s`` (``--bench-n`` scales the counts).
Each benchmark prints one line and stores its figures in extra_info.
"""
import os
import random
import statistics
import threading
import time

import pytest

import bench_common as C

pylsm = pytest.importorskip("pylsm")

STRATEGIES = {
    "none": "none",
    "every_n_1000": pylsm.EveryNEntries(1000),
    "time_based_10ms": pylsm.TimeBasedBackground(10),
    "hybrid_1000_10ms": pylsm.Hybrid(1000, 10),
    "every_write": "every_write",
}


def _report(benchmark, **info):
    benchmark.extra_info.update(info)
    print("\n  " + "  ".join(f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()))


def _percentile(sorted_ns, p):
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * p))] / 1000.0


@pytest.mark.parametrize("timestamp", [False, True], ids=["ts_off", "ts_on"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_put_under_strategy(benchmark, tmp_path, request, strategy, timestamp):
    n_all = request.config.getoption("--bench-n")
    n = C.sync_n(n_all) if strategy == "every_write" else min(n_all, 300_000)
    keys = C.make_keys(n)
    val = os.urandom(C.VALUE_BYTES)
    lat = []
    state = {}

    def setup():
        path = str(tmp_path / f"db{len(lat)}")
        state["db"] = pylsm.open(path, sync=STRATEGIES[strategy], wal_timestamp=timestamp)
        lat.clear()
        return (state["db"],), {}

    def body(db):
        put, clock = db.put, time.perf_counter_ns
        for k in keys:
            t0 = clock()
            put(k, val)
            lat.append(clock() - t0)

    benchmark.pedantic(body, setup=setup, rounds=1, iterations=1)
    db = state["db"]
    st = db.stats()
    db.close()
    lat.sort()
    total_s = sum(lat) / 1e9
    _report(benchmark, backend="pylsm", workload=f"put_{strategy}_{'ts' if timestamp else 'nots'}", n=n,
            ops_per_sec=n / total_s, p50_us=_percentile(lat, 0.50), p99_us=_percentile(lat, 0.99),
            fsyncs=st["wal_syncs"], wal_bytes_per_put=st["disk_bytes_written"] / n)
    assert st["lsn"] == n


@pytest.mark.parametrize("threads", [1, 8])
def test_every_write_group_commit(benchmark, tmp_path, request, threads):
    per = C.sync_n(request.config.getoption("--bench-n")) // (1 if threads == 1 else 2)
    n = per * threads
    keys = C.make_keys(n)
    val = os.urandom(C.VALUE_BYTES)
    state = {}

    def setup():
        state["db"] = pylsm.open(str(tmp_path / f"g{len(state)}"), sync="every_write")
        return (state["db"],), {}

    def body(db):
        def worker(t):
            for k in keys[t * per:(t + 1) * per]:
                db.put(k, val)
        ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        t0 = time.perf_counter()
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        state["secs"] = time.perf_counter() - t0

    benchmark.pedantic(body, setup=setup, rounds=1, iterations=1)
    st = state["db"].stats()
    state["db"].close()
    secs = state["secs"]
    _report(benchmark, backend="pylsm", workload=f"every_write_threads{threads}", n=n, ops_per_sec=n / secs,
            fsyncs=st["wal_syncs"], puts_per_fsync=n / max(1, st["wal_syncs"]))
    assert st["lsn"] == n and st["wal_syncs"] <= n


def test_flush_latency_with_many_tables(benchmark, tmp_path, request):
    """Seed item 4: does adding a table get slower as the table list grows?  Compaction off."""
    n_all = request.config.getoption("--bench-n")
    tables = max(40, min(1200, n_all // 800))
    db = pylsm.open(str(tmp_path / "many"), memtable_bytes=1 << 16, background_compaction=False)
    val = os.urandom(C.VALUE_BYTES)
    lat = []

    def body():
        for t in range(tables):
            db.put(C.key(t), val)
            t0 = time.perf_counter_ns()
            db.flush()
            lat.append(time.perf_counter_ns() - t0)

    benchmark.pedantic(body, rounds=1, iterations=1)
    st = db.stats()
    db.close()
    k = max(10, tables // 10)
    first, last = statistics.median(lat[:k]) / 1e3, statistics.median(lat[-k:]) / 1e3
    _report(benchmark, backend="pylsm", workload="flush_latency", n=tables, tables=st["sstables"],
            first_median_us=first, last_median_us=last, ratio_last_first=last / first)
    assert st["sstables"] == tables


@pytest.fixture(scope="module")
def read_db(tmp_path_factory, request):
    n = min(request.config.getoption("--bench-n"), 1_000_000)
    path = str(tmp_path_factory.mktemp("reads") / "db")
    keys = C.make_keys(n)
    val = os.urandom(C.VALUE_BYTES)
    with pylsm.open(path, memtable_bytes=4 << 20) as db:
        for i in range(0, n, C.BATCH):
            db.update([(k, val) for k in keys[i:i + C.BATCH]])
        db.compact()
    return path, keys


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_readrandom_threads(benchmark, read_db, threads):
    """Seed item 5: reads of tables from several threads, small block cache (reads go to the OS)."""
    path, keys = read_db
    order = keys[:]
    random.Random(C.SEED).shuffle(order)
    db = pylsm.open(path, block_cache_bytes=C.SMALL_CACHE_BYTES)
    per = len(order) // threads
    state = {}

    def body():
        def worker(t):
            get = db.get
            for k in order[t * per:(t + 1) * per]:
                get(k)
        ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        t0 = time.perf_counter()
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        state["secs"] = time.perf_counter() - t0

    benchmark.pedantic(body, rounds=1, iterations=1)
    db.close()
    secs = state["secs"]
    _report(benchmark, backend="pylsm", workload=f"readrandom_threads{threads}", n=per * threads,
            ops_per_sec=per * threads / secs)
