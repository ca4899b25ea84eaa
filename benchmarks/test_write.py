"""Write workloads: fillseq, fillrandom, fillbatch, ingest, overwrite, fillsync, fillsync_threads8.

Each round starts from an empty database in a fresh directory (built in the untimed setup). The timed part is
the puts only, as in db_bench: not the open, and not the close (which may flush a memtable).
"""
import random

import pytest

import bench_common as C


def check_sample(db, keys, vals, count=300, seed=1):
    """Spot-check (untimed) that what the workload wrote reads back."""
    if hasattr(db, "begin_reads"):
        db.begin_reads()
    rnd = random.Random(seed)
    for _ in range(min(count, len(keys))):
        i = rnd.randrange(len(keys))
        got = db.get(keys[i])
        assert got == vals[i], f"{db!r}: key {keys[i]!r} read back {got!r:.40}, expected {vals[i]!r:.40}"


@pytest.mark.workload("fillseq")
def test_fillseq(backend, dirs, data, measure):
    state = {}

    def setup():
        state["db"] = db = dirs.open()
        return db

    def body(db):
        put = db.put
        for k, v in zip(data.keys, data.vals):
            put(k, v)

    measure.run("fillseq", data.n, setup, body)
    check_sample(state["db"], data.keys, data.vals)


@pytest.mark.workload("fillrandom")
def test_fillrandom(backend, dirs, data, measure):
    state = {}

    def setup():
        state["db"] = db = dirs.open()
        return db

    def body(db):
        put = db.put
        for k, v in zip(data.rkeys, data.rvals):
            put(k, v)

    measure.run("fillrandom", data.n, setup, body)
    check_sample(state["db"], data.rkeys, data.rvals)


@pytest.mark.workload("fillbatch")
def test_fillbatch(backend, dirs, data, measure):
    chunks = data.seq_chunks()
    state = {}

    def setup():
        state["db"] = db = dirs.open()
        return db

    def body(db):
        write = db.write_batch
        for chunk in chunks:
            write(chunk)

    measure.run("fillbatch", data.n, setup, body, batch=C.BATCH)
    check_sample(state["db"], data.keys, data.vals)


@pytest.mark.workload("ingest")
def test_ingest(backend, dirs, data, measure):
    """N pairs in key order loaded in bulk by each backend's fastest path (backends.py, bulk_load):
    pylsm's ingest(), RocksDB's SstFileWriter + ingest_external_file, LMDB's appending puts, the others'
    batch writes.  pylsm's target is against the peers' fillbatch (issue 11)."""
    state = {}

    def setup():
        state["db"] = db = dirs.open()
        return db

    def body(db):
        db.bulk_load(zip(data.keys, data.vals))

    measure.run("ingest", data.n, setup, body)
    check_sample(state["db"], data.keys, data.vals)


@pytest.mark.workload("overwrite")
def test_overwrite(backend, dirs, data, measure):
    """N puts of existing keys in random order, right after an (untimed) batched fill of all N keys."""
    chunks = data.seq_chunks()
    new_vals = data.overwrite_vals()
    state = {}

    def setup():
        state["db"] = db = dirs.open()
        for chunk in chunks:
            db.write_batch(chunk)
        return db

    def body(db):
        put = db.put
        for k, v in zip(data.rkeys, new_vals):
            put(k, v)

    measure.run("overwrite", data.n, setup, body)
    check_sample(state["db"], data.rkeys, new_vals)


@pytest.mark.workload("fillsync")
def test_fillsync(backend, dirs, data, measure):
    """Puts in key order with every put durable before it returns (sync="every_write" or its match).
    Few puts (2,000 at full size), so 3 rounds at least: the median damps the disk's jitter."""
    n = C.sync_n(data.n)
    keys, vals = data.keys[:n], data.vals[:n]
    state = {}

    def setup():
        state["db"] = db = dirs.open(sync=C.SYNC_EVERY_WRITE)
        return db

    def body(db):
        put = db.put
        for k, v in zip(keys, vals):
            put(k, v)

    measure.run("fillsync", n, setup, body, rounds=max(3, measure.rounds), sync=C.SYNC_EVERY_WRITE)
    check_sample(state["db"], keys, vals)


@pytest.mark.workload("fillsync_threads8")
def test_fillsync_threads8(backend, dirs, data, measure):
    """fillsync from 8 threads, each putting its own key range: concurrent durable writers, group commit."""
    threads = 8
    per = C.sync_n(data.n) // 2   # 4x fillsync's count in total, so group commit reaches a steady state
    n = per * threads
    keys, vals = data.keys[:n], data.vals[:n]
    state = {}

    def setup():
        state["db"] = db = dirs.open(sync=C.SYNC_EVERY_WRITE)
        views = [db.thread_view(write=True) for _ in range(threads)]
        state["views"] = views

        def worker(view, ks, vs):
            def run():
                put = view.put
                for k, v in zip(ks, vs):
                    put(k, v)
            return run

        return C.ThreadGang([worker(views[t], keys[t * per:(t + 1) * per], vals[t * per:(t + 1) * per])
                             for t in range(threads)])

    def body(gang):
        gang.go()

    measure.run("fillsync_threads8", n, setup, body, rounds=max(3, measure.rounds), sync=C.SYNC_EVERY_WRITE,
                threads=threads)
    db = state["db"]
    for v in state["views"]:
        db.close_view(v)
    check_sample(db, keys, vals)
