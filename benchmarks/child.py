"""Child process of the recovery and memory workloads (run by the tests; not a test itself).

  python child.py recovery BACKEND PATH COUNT
      opens BACKEND at PATH with sync "none" and a memtable large enough never to flush, puts keys
      0..COUNT-1 one put each (values as in the suite), prints READY and waits to be killed (SIGKILL).
  python child.py memory BACKEND PATH N
      fillrandom of N keys with sync "none" (the suite's data and order); prints one JSON line with the
      seconds of the puts and the peak RSS above the RSS before the database was opened.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common as C  # noqa: E402
import backends as B  # noqa: E402


def recovery(backend, path, count):
    cls = B.get_backend_class(backend)
    pool = C.value_pool()
    keys = C.make_keys(count)
    vals = C.make_values(count, pool)
    db = cls(path, sync=C.SYNC_NONE, memtable_bytes=C.RECOVERY_MEMTABLE_BYTES)
    put = db.put
    for k, v in zip(keys, vals):
        put(k, v)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    sys.stdin.read()          # the parent kills us; if it only closes the pipe, exit without closing the db
    os._exit(0)


def memory(backend, path, n):
    cls = B.get_backend_class(backend)
    pool = C.value_pool()
    keys = C.make_keys(n)
    vals = C.make_values(n, pool)
    perm = C.permutation(n)
    rkeys = [keys[i] for i in perm]
    rvals = [vals[i] for i in perm]
    del keys, vals, perm
    import gc
    gc.collect()
    reset = C.reset_peak_rss()
    base = C.read_proc_status("VmRSS")
    db = cls(path, sync=C.SYNC_NONE)
    put = db.put
    t0 = time.perf_counter()
    for k, v in zip(rkeys, rvals):
        put(k, v)
    secs = time.perf_counter() - t0
    db.close()
    peak = C.read_proc_status("VmHWM")
    print(json.dumps({"seconds": secs, "base_rss": base, "peak_rss": peak, "peak_reset": reset,
                      "peak_rss_delta": (peak - base) if (peak and base and reset) else None}))


if __name__ == "__main__":
    mode, backend, path, num = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    {"recovery": recovery, "memory": memory}[mode](backend, path, num)
