"""The scale run: load SCALE_N random keys into one store from one Python thread, settle it, read it.

    python benchmarks/scale.py [--n N] [--peers] [--engines E,..] [--dir DIR] [--json FILE] [--gets G]
                               [--cold-gets C]

Each engine runs in a child process of its own (``scale.py --child ENGINE PATH N ...``), so its memory
figures are its own and nothing of one engine's page cache or heap helps the next. The child

  1. puts keys 0..N-1 in a random order (16-byte keys, 100-byte values, ``sync="none"``, the suite's
     default sizes: 64 MiB memtable, 32 MiB block cache, 10 bloom bits per key), timing every put: the
     rate of each tenth of the load, and the longest single put (the longest stall a writer saw);
  2. flushes and fully compacts (LMDB has nothing to do), timed;
  3. closes, evicts the database's files from the page cache, waits 30 s (a VM's balloon hands the
     memory the load freed back to the host meanwhile, flushing the guest's TLBs) and reads each file
     once, so the cache holds all of it in a state that does not depend on the load's history (the
     load wrote it, but tens of GB went through the cache since, and a cache may drop what sat unread
     for a minute: on this benchmark's VM the kernel pages out memory idle that long), waits until the machine's
     CPUs are idle (up to 30 s: after a load the kernel's own work goes on for a while), reopens, and
     times G random gets of present keys ("warm"): pylsm first lets its warmer map the tables
     (reported: how long that took, with the gets running meanwhile), then the first G/4 gets are an
     untimed warm-up;
  4. closes, evicts every file of the database from the page cache, reopens, and times C random gets
     ("cold"); the first cold get pays the reopen's own reads too.

It reports write amplification (bytes the process caused to be written to storage, /proc/self/io
write_bytes, over the user bytes N*(16+100)), disk bytes over live bytes, the peak RSS (VmHWM, which counts the
mapped file pages the reads touch) and the peak anonymous memory (RssAnon, sampled every 0.2 s: heap, not
the file pages the OS may drop), over the load and compaction and again with the reads.

The keys are generated, not held in a list: key i is the 8-byte big-endian product of i with an odd
64-bit constant (a bijection, so the order is random) followed by i itself, so 100M keys cost the
parent nothing. The values are slices of one random buffer.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common as C  # noqa: E402

MULT = 0x9E3779B97F4A7C15   # odd: i -> i * MULT mod 2^64 is a permutation
MASK = (1 << 64) - 1
ENGINES = ("pylsm",)
PEERS = ("lmdb", "plyvel")


def key_at(i):
    return ((i * MULT) & MASK).to_bytes(8, "big") + i.to_bytes(8, "big")


class Values:
    """100-byte values: slices of a 1 MiB random buffer at offsets that move with i."""

    def __init__(self):
        self.blob = random.Random(C.SEED).randbytes(1 << 20)
        self.span = len(self.blob) - C.VALUE_BYTES

    def __call__(self, i):
        o = (i * 4099) % self.span
        return self.blob[o:o + C.VALUE_BYTES]


class MemorySampler(threading.Thread):
    """The peak of RssAnon, sampled every 0.2 s (the kernel keeps a peak of the whole RSS only)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0
        self.stop = threading.Event()

    def sample(self):
        v = C.read_proc_status("RssAnon") or 0
        self.peak = max(self.peak, v)

    def run(self):
        while not self.stop.wait(0.2):
            self.sample()


def io_written():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def progress(total, desc):
    """A tqdm bar on stderr when tqdm is installed and stderr is a terminal or SCALE_PROGRESS=1."""
    want = os.environ.get("SCALE_PROGRESS", "1" if sys.stderr.isatty() else "0") == "1"
    if want:
        try:
            from tqdm import tqdm
            return tqdm(total=total, desc=desc, unit="keys", unit_scale=True, mininterval=1.0, file=sys.stderr)
        except ImportError:
            pass
    return None


def timed_gets(db, n, rnd, total, vals, check):
    """n gets of random present keys; returns gets/s (a missing or wrong value is an error)."""
    idx = [rnd.randrange(total) for _ in range(n)]
    keys = [key_at(i) for i in idx]
    get = db.get
    t0 = time.perf_counter()
    got = [get(k) for k in keys]
    secs = time.perf_counter() - t0
    if check:
        for i, v in zip(idx, got):
            if v != vals(i):
                raise SystemExit(f"key {i}: wrong value after the load ({v[:16] if v else v!r})")
    return n / secs


def child(engine, path, n, gets, cold_gets, settle):
    import backends as B
    mem = MemorySampler()
    mem.sample()
    mem.start()
    base_anon = C.read_proc_status("RssAnon") or 0
    cls = B.get_backend_class(engine)
    db = cls(path, sync=C.SYNC_NONE)
    vals = Values()
    put = db.put
    clock = time.perf_counter
    tenth = max(1, n // 10)
    rates, longest, longest_at = [], 0.0, 0
    written0 = io_written()
    bar = progress(n, engine)
    t_start = t_tenth = clock()
    for i in range(n):
        k, v = key_at(i), vals(i)
        t0 = clock()
        put(k, v)
        dt = clock() - t0
        if dt > longest:
            longest, longest_at = dt, i
        if (i + 1) % tenth == 0 or i + 1 == n:
            now = clock()
            done = (i + 1) - tenth * len(rates)
            rates.append(done / (now - t_tenth))
            t_tenth = now
            mem.sample()
            if bar:
                bar.update(done)
    load_secs = clock() - t_start
    if bar:
        bar.close()
    t0 = clock()
    db.flush()
    load_levels = level_written(db)
    st = pylsm_stats(db)
    splits = (st["compactions"], st["subcompactions"]) if st else None
    db.compact()
    settle_secs = clock() - t0
    levels = level_written(db)
    heap = table_heap(db)
    db.close()
    written = io_written() - written0
    mem.sample()
    load_anon = mem.peak   # the reads below hold their own lists of keys and values: not the engine's
    user = n * (C.KEY_BYTES + C.VALUE_BYTES)
    disk = C.dir_bytes(path)

    rnd = random.Random(C.SEED + 7)
    C.load_cache(path, settle=settle)
    quiet_secs = C.wait_quiet(max_secs=settle) if settle > 0 else 0.0
    db.reopen()
    db.begin_reads()
    t0, warm_secs = clock(), None
    while warming(db):  # gets go on meanwhile: these are the user's first gets after the restart
        timed_gets(db, 1000, rnd, n, vals, check=False)
        warm_secs = clock() - t0
    timed_gets(db, max(1, gets // 4), rnd, n, vals, check=False)           # warm-up, untimed
    db.begin_reads()
    warm = timed_gets(db, gets, rnd, n, vals, check=True)
    db.close()
    C.evict(path)
    t0 = clock()
    db.reopen()
    db.begin_reads()
    reopen_ms = (clock() - t0) * 1000
    cold = timed_gets(db, cold_gets, rnd, n, vals, check=True)
    db.close()
    mem.stop.set()
    mem.sample()
    out = dict(engine=engine, n=n, load_secs=load_secs, puts_per_s=n / load_secs, tenths=rates,
               longest_stall_s=longest, longest_stall_at=longest_at, settle_secs=settle_secs,
               load_compactions=splits, write_amp=written / user, space=disk / user, disk_bytes=disk,
               peak_rss=C.read_proc_status("VmHWM"), peak_anon=load_anon, peak_anon_reads=mem.peak,
               base_anon=base_anon, load_level_written=load_levels, level_written=levels, table_heap=heap,
               warm_gets_per_s=warm, warming_secs=warm_secs, quiet_secs=quiet_secs, cache_wait_secs=settle,
               cold_gets_per_s=cold, cold_reopen_ms=reopen_ms)
    print(json.dumps(out), flush=True)


def pylsm_stats(db):
    """pylsm's stats() (None for the peers)."""
    inner = getattr(db, "db", None)
    return inner.stats() if engine_name(db) == "pylsm" and inner is not None else None


def level_written(db):
    """pylsm's table bytes written into each level since open ([] for the peers)."""
    st = pylsm_stats(db)
    return [lv["bytes_written"] for lv in st["levels"]] if st else []


def warming(db):
    """Whether pylsm's warmer is still mapping the tables after an open (False for the peers)."""
    st = pylsm_stats(db)
    return bool(st and st["warming"])


def table_heap(db):
    """pylsm's heap bytes held by its open tables after the full compaction (None for the peers)."""
    st = pylsm_stats(db)
    return st["table_heap_bytes"] if st else None


def engine_name(db):
    return getattr(db, "name", "")


def fmt_rate(r):
    return f"{r / 1e6:.2f}M" if r >= 1e6 else f"{r / 1e3:.0f}k"


def report(results):
    lines = []
    for r in results:
        t = r["tenths"]
        lines += [
            f"== {r['engine']}: {r['n']:,} random keys, one thread, sync none",
            f"  puts/s over the load       {fmt_rate(r['puts_per_s'])}: {r['puts_per_s'] / t[0]:.2f}x the first "
            f"tenth's {fmt_rate(t[0])} (slowest tenth {fmt_rate(min(t))}, last {fmt_rate(t[-1])})",
            f"  per tenth                  {' '.join(fmt_rate(x) for x in t)}",
            f"  longest single put         {r['longest_stall_s'] * 1000:.1f} ms (put #{r['longest_stall_at']:,})",
            f"  flush + full compaction    {r['settle_secs']:.1f} s",
            f"  write amplification        {r['write_amp']:.1f} (storage writes / user bytes)",
        ]
        user = r['n'] * (C.KEY_BYTES + C.VALUE_BYTES)
        if r.get("load_level_written"):
            lines.append("  table writes per level     " + " ".join(
                f"L{i} {w / user:.1f}" for i, w in enumerate(r["load_level_written"]) if w)
                + " over the load; the full compaction adds "
                + f"{(sum(r['level_written']) - sum(r['load_level_written'])) / user:.1f} (x user bytes)")
        if r.get("load_compactions"):
            lines.append(f"  compactions over the load   {r['load_compactions'][0]:,}, "
                         f"{r['load_compactions'][1]:,} of them split over two threads")
        lines += [
            f"  disk / live bytes          {r['space']:.2f} ({r['disk_bytes'] / 1e9:.2f} GB)",
            f"  peak RSS                   {r['peak_rss'] / 2**20:.0f} MiB (mapped file pages included)",
            f"  peak anonymous memory      {r['peak_anon'] / 2**20:.0f} MiB over the load and compaction "
            f"({(r['peak_anon'] - r['base_anon']) / 2**20:.0f} MiB above the interpreter's at the start), "
            f"{r['peak_anon_reads'] / 2**20:.0f} MiB with the reads' own key lists"
            + (f" (the tables' own at the end: {r['table_heap'] / 2**20:.1f} MiB)"
               if r.get("table_heap") is not None else ""),
            f"  random gets, warm          {fmt_rate(r['warm_gets_per_s'])}/s (files evicted, "
            f"{r.get('cache_wait_secs', 30):.0f} s, read into the page cache, then "
            f"{r.get('quiet_secs', 0):.0f} s for the CPUs to go idle"
            + (f"; the warmer mapped the tables in {r['warming_secs']:.1f} s, gets running)"
               if r.get("warming_secs") is not None else ")"),
            f"  random gets, cold          {fmt_rate(r['cold_gets_per_s'])}/s (reopen after eviction "
            f"{r['cold_reopen_ms']:.1f} ms)",
        ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=int(os.environ.get("SCALE_N", 10_000_000)))
    ap.add_argument("--peers", action="store_true", default=os.environ.get("SCALE_PEERS") == "1")
    ap.add_argument("--dir", default=os.environ.get("SCALE_DIR"), help="where the databases go (default: a "
                    "temporary directory beside the project; it needs about 130 bytes a key per engine)")
    ap.add_argument("--engines", default=None,
                    help="comma-separated engines to run instead (of pylsm, lmdb, plyvel), e.g. the peers alone")
    ap.add_argument("--gets", type=int, default=200_000)
    ap.add_argument("--cold-gets", type=int, default=20_000)
    ap.add_argument("--settle", type=float, default=30.0,
                    help="seconds to wait after the eviction before the warm reads' page cache is loaded, "
                         "and at most for the CPUs to go idle (0: no waits)")
    ap.add_argument("--json", default=None, help="write the results here too")
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    gets, cold_gets = min(a.gets, a.n), min(a.cold_gets, a.n)
    if a.child:
        child(a.child[0], a.child[1], a.n, gets, cold_gets, a.settle)
        return
    engines = ENGINES + (PEERS if a.peers else ())
    if a.engines:
        engines = tuple(e.strip() for e in a.engines.split(",") if e.strip())
        unknown = set(engines) - set(ENGINES + PEERS)
        if unknown:
            ap.error(f"unknown engine(s) {', '.join(sorted(unknown))}; known: {', '.join(ENGINES + PEERS)}")
    root = tempfile.mkdtemp(prefix="pylsm-scale-", dir=a.dir)
    results = []
    try:
        for e in engines:
            path = os.path.join(root, e)
            os.makedirs(path)
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", e, path, "--n", str(a.n),
                                "--gets", str(gets), "--cold-gets", str(cold_gets), "--settle", str(a.settle)],
                               stdout=subprocess.PIPE, text=True)
            if p.returncode:
                raise SystemExit(f"{e}: the scale child failed (exit {p.returncode})")
            results.append(json.loads(p.stdout.strip().splitlines()[-1]))
            shutil.rmtree(path)
            print(report(results[-1:]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
