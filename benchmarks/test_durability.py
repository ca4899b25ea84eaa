"""recovery, space and memory: the workloads measured around a process boundary or on disk."""
import json
import os
import random
import signal
import subprocess
import sys

import pytest

import bench_common as C

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")


def child_env():
    """The child imports what this process imports (e.g. pylsm built in place in the repo root)."""
    env = dict(os.environ)
    paths = [os.path.abspath(p or os.curdir) for p in sys.path if os.path.isdir(p or os.curdir)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@pytest.mark.workload("recovery")
def test_recovery(backend, backend_name, dirs, data, measure):
    """A child process puts 64 MiB of values (scaled down below N = 1M) with sync "none" and a memtable that
    never flushes, then is killed with SIGKILL; timed: the reopen plus one get (so a backend that recovers
    lazily pays for it too). ops = records recovered; extra_info: wal_bytes (the WAL files' written bytes,
    a preallocated zero tail not counted), wal_mb_per_sec = wal_bytes / time (MB = 10^6 bytes), and
    user_mb_per_sec = (keys + values) / time, comparable across backends whatever their log format."""
    count = C.recovery_value_bytes(data.n) // C.VALUE_BYTES
    state = {}

    def setup():
        path = dirs.fresh()
        proc = subprocess.Popen([sys.executable, CHILD, "recovery", backend_name, str(path), str(count)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=child_env())
        try:
            line = proc.stdout.readline()
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            err = proc.stderr.read()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()
        assert line.strip() == "READY", f"recovery child said {line!r}; stderr:\n{err}"
        assert proc.returncode == -signal.SIGKILL
        state["wal_bytes"] = backend.wal_bytes(path)
        state["dir_bytes"] = C.dir_bytes(path, allocated=False)
        return path

    last = C.key(count - 1)

    def body(path):
        state["db"] = db = dirs.open(path, memtable_bytes=C.RECOVERY_MEMTABLE_BYTES)
        db.get(last)

    secs = measure.run("recovery", count, setup, body)
    wal = state["wal_bytes"]
    user = count * (C.KEY_BYTES + C.VALUE_BYTES)
    measure.record("recovery", count, secs, user_bytes=user, wal_bytes=wal, dir_bytes=state["dir_bytes"],
                   user_mb_per_sec=user / secs / 1e6, wal_mb_per_sec=(wal / secs / 1e6 if wal else None))
    db = state["db"]
    db.begin_reads()
    pool = C.value_pool()
    rnd = random.Random(7)
    for i in [count - 1, 0] + [rnd.randrange(count) for _ in range(300)]:
        assert db.get(C.key(i)) == pool[i % len(pool)], f"key {i} lost in recovery"


@pytest.mark.workload("space")
def test_space(backend, dirs, data, measure):
    """fillrandom of N keys then an overwrite of all of them in random order (both in batches of 1,000: this
    workload measures bytes, not put speed), then flush + compact (pylsm compact(), LevelDB/RocksDB
    compact_range, SQLite checkpoint+VACUUM; LMDB has none) and close. space_amp = allocated disk bytes of
    the directory / live bytes (N * (16 + 100)). ops = 2N puts, timed with the compaction."""
    fill = data.random_chunks()
    new_vals = data.overwrite_vals()
    over = [list(zip(data.rkeys[i:i + C.BATCH], new_vals[i:i + C.BATCH])) for i in range(0, data.n, C.BATCH)]
    state = {}

    def setup():
        state["db"] = db = dirs.open()
        return db

    def body(db):
        for chunk in fill:
            db.write_batch(chunk)
        for chunk in over:
            db.write_batch(chunk)
        db.flush()
        db.compact()

    secs = measure.run("space", 2 * data.n, setup, body)
    db = state["db"]
    db.close()
    disk = C.dir_bytes(db.path)
    live = data.n * (C.KEY_BYTES + C.VALUE_BYTES)
    measure.record("space", 2 * data.n, secs, disk_bytes=disk, live_bytes=live, space_amp=disk / live)
    db.open()
    from test_write import check_sample
    check_sample(db, data.rkeys, new_vals)


@pytest.mark.workload("memory")
def test_memory(backend, backend_name, dirs, data, measure):
    """fillrandom of N keys in a child process; peak RSS above the RSS before the open (the data arrays are
    built first and not counted). Target for pylsm: memtable + block cache + 64 MiB."""
    state = {}

    def setup():
        return dirs.fresh()

    def body(path):
        out = subprocess.run([sys.executable, CHILD, "memory", backend_name, str(path), str(data.n)],
                             capture_output=True, text=True, env=child_env())
        assert out.returncode == 0, f"memory child failed ({out.returncode}):\n{out.stderr}"
        state["r"] = r = json.loads(out.stdout.strip().splitlines()[-1])
        return float(r["seconds"])

    secs = measure.run("memory", data.n, setup, body)
    r = state["r"]
    delta = r["peak_rss_delta"]
    measure.record("memory", data.n, secs, peak_rss_delta_mib=(delta / 2**20 if delta is not None else None),
                   budget_mib=(C.MEMTABLE_BYTES + C.CACHE_BYTES + (64 << 20)) / 2**20)
