#!/usr/bin/env python3
"""The full benchmark run (``make bench``): pylsm and its peers side by side, one table, JSON and a plot.

    .venv/bin/python benchmarks/run.py --n 1000000
    .venv/bin/python benchmarks/run.py --n 20000 --backends pylsm,plyvel -k "fill"
    .venv/bin/python benchmarks/run.py --from-json results/bench-YYYYmmdd-HHMMSS.json   # table + plot again

Steps: (1) compile benchmarks/c/bench_disk.c with ``gcc -O2`` into results/ and measure the disk's raw
``write + fdatasync`` rate for a 128-byte record in the temp directory the databases use; (2) run the pytest
suite (``--benchmark-only``, a progress line per benchmark) saving ``--benchmark-json``; (3) print one table
of ops/s per workload x backend (the median of the rounds, with a min-max row below where there were
several) with pylsm's ratio to the best peer (dict, the in-memory ceiling, is not a peer) and its target,
met or not by the median; (4) save results/bench-<stamp>.{json,txt,png}. Exit status: pytest's.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from backends import BACKENDS as _ADAPTERS, PEERS  # noqa: E402

BACKENDS = list(_ADAPTERS)                 # table columns, in this order; PEERS: all but pylsm and dict

# (row label, workload, extra_info metric, higher is better, unit). A row whose metric has a recorded
# spread (<metric>_min / _max over more than one round) is followed by a "min-max" row.
ROWS = [
    ("fillseq", "fillseq", "ops_per_sec", True, "ops"),
    ("fillrandom", "fillrandom", "ops_per_sec", True, "ops"),
    ("fillbatch", "fillbatch", "ops_per_sec", True, "ops"),
    ("ingest (bulk load)", "ingest", "ops_per_sec", True, "ops"),
    ("overwrite", "overwrite", "ops_per_sec", True, "ops"),
    ("fillsync", "fillsync", "ops_per_sec", True, "ops"),
    ("fillsync_threads8", "fillsync_threads8", "ops_per_sec", True, "ops"),
    ("readrandom", "readrandom", "ops_per_sec", True, "ops"),
    ("readrandom_settled", "readrandom_settled", "ops_per_sec", True, "ops"),
    ("get_many (1,000 keys)", "get_many", "ops_per_sec", True, "ops"),
    ("readhot", "readhot", "ops_per_sec", True, "ops"),
    ("readmissing", "readmissing", "ops_per_sec", True, "ops"),
    ("readseq", "readseq", "ops_per_sec", True, "ops"),
    ("readreverse", "readreverse", "ops_per_sec", True, "ops"),
    ("seekrandom", "seekrandom", "ops_per_sec", True, "ops"),
    ("readrandom_threads2", "readrandom_threads2", "ops_per_sec", True, "ops"),
    ("  1-thread, same data", "readrandom_threads2", "single_thread_ops_per_sec", True, "ops"),
    ("readrandom_cold", "readrandom_cold", "ops_per_sec", True, "ops"),
    ("  reopen after evict (ms)", "readrandom_cold", "open_ms", False, "ms"),
    ("  KiB read by the reopen", "readrandom_cold", "open_disk_kib", False, "mib"),
    ("  KiB read from disk / get", "readrandom_cold", "disk_kib_per_get", False, "ms"),
    ("readrandom_cold_threads2", "readrandom_cold_threads2", "ops_per_sec", True, "ops"),
    ("  1-thread cold, same keys", "readrandom_cold_threads2", "single_thread_ops_per_sec", True, "ops"),
    ("recovery (records/s)", "recovery", "ops_per_sec", True, "ops"),
    ("  WAL replay MB/s", "recovery", "wal_mb_per_sec", True, "mbs"),
    ("space (disk/live)", "space", "space_amp", False, "x"),
    ("compressible_fill", "compressible_fill", "ops_per_sec", True, "ops"),
    ("  compressed space (disk/live)", "compressible_fill", "space_amp", False, "x"),
    ("compressible_read", "compressible_read", "ops_per_sec", True, "ops"),
    ("  same data uncompressed", "compressible_read", "uncompressed_ops_per_sec", True, "ops"),
    ("memory (peak RSS MiB)", "memory", "peak_rss_delta_mib", False, "mib"),
]

# Read workloads whose targets compare with the best peer (ratio of medians), and the ratio they need.
PEER_TARGETS = [("fillseq", 2.0), ("fillrandom", 2.0), ("fillbatch", 1.5), ("overwrite", 1.5),
                ("readrandom", 1.5), ("readrandom_settled", 1.5), ("readmissing", 1.5),
                ("readseq", 1.0), ("readreverse", 1.0), ("seekrandom", 1.0), ("readrandom_cold", 1.0)]


def shown(workload, backend):
    """Whether a backend's figure for a workload is shown and compared: the recovery rows only for engines
    that replay a log on reopen (LMDB and SQLite replay nothing: their "recovery" is an open)."""
    return workload != "recovery" or getattr(_ADAPTERS.get(backend), "replays_log", True)


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "x":
        return f"{v:.2f}x"
    if unit == "mib":       # also KiB read by a reopen: no decimals
        return f"{v:,.0f}"
    if unit == "mbs":
        return f"{v:,.0f}"
    if unit == "ms":        # also KiB per get: one decimal
        return f"{v:,.1f}"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:,.0f}"


def build_disk_bench(outdir):
    src = os.path.join(HERE, "c", "bench_disk.c")
    exe = os.path.join(outdir, "bench_disk")
    cc = os.environ.get("CC", "gcc")
    subprocess.run([cc, "-O2", "-Wall", "-o", exe, src], check=True)
    return exe


def run_disk_bench(exe, seconds=3.0):
    """Raw write+fdatasync rate of a 128-byte record in the temp directory (where pytest's tmp_path is)."""
    with tempfile.TemporaryDirectory(prefix="bench_disk.") as d:
        out = subprocess.run([exe, d, str(seconds), "128"], check=True, capture_output=True, text=True).stdout
    m = re.search(r"RESULT record_bytes=(\d+) append=([\d.]+) prealloc=([\d.]+)", out)
    if not m:
        raise RuntimeError(f"bench_disk printed no RESULT line:\n{out}")
    return {"record_bytes": int(m.group(1)), "append": float(m.group(2)), "prealloc": float(m.group(3)),
            "dir": tempfile.gettempdir(), "seconds": seconds}


def disk_limit(disk):
    """The physical limit fillsync is held to: the faster of appending and writing into a preallocated file
    (a WAL may do either; preallocation spares the size update each fdatasync would otherwise commit)."""
    return max(disk["append"], disk["prealloc"])


def load(json_path):
    with open(json_path) as f:
        doc = json.load(f)
    results = {}
    for b in doc.get("benchmarks", []):
        info = b.get("extra_info") or {}
        if "workload" in info and "backend" in info:
            results[(info["workload"], info["backend"])] = info
    return doc, results


def load_jsonl(path):
    """The per-benchmark lines conftest appends as each benchmark passes (--bench-jsonl)."""
    results = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                info = json.loads(line)
                results[(info["workload"], info["backend"])] = info
    return results


def targets(results, disk):
    """pylsm's targets: {row label: (target text, achieved text, met or None)}; ratios of medians."""
    out = {}

    def get(w, m, b="pylsm"):
        return (results.get((w, b)) or {}).get(m)

    def best_peer(w, m, higher=True):
        vals = [(get(w, m, p), p) for p in PEERS if get(w, m, p) is not None and shown(w, p)]
        if not vals:
            return None, None
        return (max if higher else min)(vals)

    def vs_best(w, need, label=None, own=None):
        mine, (best, _) = get(w, "ops_per_sec"), best_peer(w, "ops_per_sec")
        text = f">= {need:g}x best peer" + ("'s 2 threads" if own else "")
        if mine is not None and best:
            r = mine / best
            sp = get(w, own) if own else None
            out[label or w] = (text, f"{r:.2f}x" + (f" (own {sp:.2f}x)" if sp else ""), r >= need)
        else:
            out[label or w] = (text, "-", None)

    def vs_own(w, need, label, own_text):
        sp = get(w, "thread_speedup")
        out[label] = (f">= {need:g}x own {own_text}", f"{sp:.2f}x" if sp else "-", (sp >= need) if sp else None)

    for w, need in PEER_TARGETS:
        vs_best(w, need)
    vs_best("get_many", 2.0, label="get_many (1,000 keys)")
    vs_best("readrandom_threads2", 1.5, own="thread_speedup")
    vs_own("readrandom_cold_threads2", 1.6, "readrandom_cold_threads2", "1-thread cold")
    mine, (best, who) = get("ingest", "ops_per_sec"), best_peer("fillbatch", "ops_per_sec")
    out["ingest (bulk load)"] = (">= 3x best peer fillbatch",
                                 f"{mine / best:.2f}x {who}" if mine and best else "-",
                                 (mine / best >= 3) if mine and best else None)
    mine = get("fillsync", "ops_per_sec")
    if disk and mine:
        r = mine / disk_limit(disk)
        out["fillsync"] = (f">= 0.9x disk ({disk_limit(disk):,.0f}/s)", f"{r:.2f}x disk", r >= 0.9)
    else:
        out["fillsync"] = (">= 0.9x disk", "-", None)
    one, eight = get("fillsync", "ops_per_sec"), get("fillsync_threads8", "ops_per_sec")
    out["fillsync_threads8"] = (">= 4x own fillsync", f"{eight / one:.2f}x" if one and eight else "-",
                                (eight / one >= 4) if one and eight else None)
    mbs = get("recovery", "wal_mb_per_sec")
    out["  WAL replay MB/s"] = (">= 200 MB/s", f"{mbs:,.0f} MB/s" if mbs else "-", (mbs >= 200) if mbs else None)
    amp = get("space", "space_amp")
    out["space (disk/live)"] = ("<= 1.3", f"{amp:.2f}" if amp else "-", (amp <= 1.3) if amp else None)
    amp, (best, who) = get("compressible_fill", "space_amp"), best_peer("compressible_fill", "space_amp", higher=False)
    out["  compressed space (disk/live)"] = ("<= best peer's", f"{amp:.2f} vs {who} {best:.2f}" if amp and best else "-",
                                             (amp <= best) if amp and best else None)
    r = get("compressible_read", "vs_uncompressed")
    out["compressible_read"] = (">= 0.8x own uncompressed", f"{r:.2f}x" if r else "-", (r >= 0.8) if r else None)
    mem, budget = get("memory", "peak_rss_delta_mib"), get("memory", "budget_mib")
    out["memory (peak RSS MiB)"] = (f"<= {budget:.0f} MiB" if budget else "<= memtable+cache+64 MiB",
                                    f"{mem:.0f} MiB" if mem is not None else "-",
                                    (mem <= budget) if mem is not None and budget else None)
    return out


def table(results, disk, n_requested):
    backends = [b for b in BACKENDS if any(k[1] == b for k in results)] or BACKENDS
    tg = targets(results, disk)
    head = ["workload", "n"] + backends + ["best peer", "pylsm/best", "pylsm target", "pylsm", "met"]
    rows = []
    for label, w, metric, higher, unit in ROWS:
        infos = {b: (results.get((w, b)) or {}) if shown(w, b) else {} for b in backends}
        vals = {b: infos[b].get(metric) for b in backends}
        ns = [(results.get((w, b)) or {}).get("n") for b in backends]
        n = next((x for x in ns if x), None)
        if all(v is None for v in vals.values()):
            continue
        peers = [(vals[p], p) for p in PEERS if vals.get(p) is not None]
        best = (max if higher else min)(peers) if peers else None
        mine = vals.get("pylsm")
        ratio = f"{mine / best[0]:.2f}x" if (best and mine is not None and best[0]) else "-"
        t = tg.get(label, ("", "", None))
        met = {True: "yes", False: "NO", None: ""}[t[2]]
        rows.append([label, f"{n:,}" if n and not label.startswith("  ") else ""]
                    + [fmt(vals[b], unit) for b in backends]
                    + [f"{best[1]}" if best else "-", ratio, t[0], t[1], met])
        if any(i.get(metric + "_rounds", 1) > 1 for i in infos.values()):
            indent = label[:len(label) - len(label.lstrip())]
            rows.append([indent + "  min-max", ""]
                        + [f"{fmt(infos[b][metric + '_min'], unit)}-{fmt(infos[b][metric + '_max'], unit)}"
                           if infos[b].get(metric + "_min") is not None else "" for b in backends]
                        + ["", "", "", "", ""])
        if w == "fillsync" and label == "fillsync" and disk:
            rows.append(["  disk write+fdatasync", "", f"{disk_limit(disk):,.0f}/s"]
                        + [""] * (len(backends) - 1) + ["(bench_disk.c)", "", "", "", ""])
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    lines = []
    line = lambda r: "  ".join(str(c).rjust(w) if 1 <= i < len(r) - 3 else str(c).ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths)))
    lines.append(line(head))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(line(r).rstrip())
    notes = [f"ops/s unless stated (n = operations timed; --n {n_requested:,}); best peer excludes dict "
             "(the in-memory ceiling); space, memory, reopen and KiB read: lower is better.",
             "read rows: median of the rounds, min-max below it; targets use the median. recovery: LMDB and "
             "SQLite replay no log on reopen, so they show '-' and are not compared."]
    if disk:
        notes.append(f"disk: raw write+fdatasync of a {disk['record_bytes']}-byte record in {disk['dir']}: "
                     f"{disk['append']:,.0f}/s appending, {disk['prealloc']:,.0f}/s into a preallocated file; "
                     f"fillsync is held to the faster ({disk_limit(disk):,.0f}/s).")
    return "\n".join(lines + [""] + notes)


def plot(results, disk, png):
    """Bars of ops/s per workload (log axis, min-max whiskers where there were rounds); below: space, memory
    and recovery's WAL replay rate (engines that replay a log), each on its own axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b for b in BACKENDS if any(k[1] == b for k in results)]
    workloads = [r[1] for r in ROWS if r[2] == "ops_per_sec" and r[1] not in ("memory", "recovery")]
    workloads = [w for w in dict.fromkeys(workloads) if any((w, b) in results for b in backends)]
    colors = {"pylsm": "#d62728", "plyvel": "#1f77b4", "rocksdict": "#ff7f0e", "lmdb": "#2ca02c",
              "sqlite3": "#9467bd", "lsmdb": "#8c564b", "dict": "#7f7f7f"}
    fig = plt.figure(figsize=(max(12, 1.1 * len(workloads)), 9))
    gs = fig.add_gridspec(2, 3, height_ratios=[3, 1.3])
    ax = fig.add_subplot(gs[0, :])
    width = 0.8 / max(1, len(backends))
    for j, b in enumerate(backends):
        xs, ys, lo, hi = [], [], [], []
        for i, w in enumerate(workloads):
            info = results.get((w, b)) or {}
            v = info.get("ops_per_sec")
            if v:
                xs.append(i + (j - (len(backends) - 1) / 2) * width)
                ys.append(v)
                lo.append(v - info.get("ops_per_sec_min", v))
                hi.append(info.get("ops_per_sec_max", v) - v)
        ax.bar(xs, ys, width, label=b, color=colors.get(b), yerr=[lo, hi], error_kw=dict(lw=0.6, capsize=1))
    if disk and "fillsync" in workloads:
        i = workloads.index("fillsync")
        ax.hlines(disk_limit(disk), i - 0.45, i + 0.45, colors="k", linestyles="--", label="disk fdatasync")
    ax.set_yscale("log")
    ax.set_ylabel("ops/s (log)")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads, rotation=30, ha="right")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(ncol=len(backends) + 1, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)
    ax.set_title("pylsm vs peers: ops/s, higher is better (read workloads: median, whiskers min-max)", pad=22)
    panels = [("space", "space_amp", "space: disk / live bytes (lower is better)", 1.3),
              ("memory", "peak_rss_delta_mib", "peak RSS MiB, fillrandom (lower)", None),
              ("recovery", "wal_mb_per_sec", "recovery: WAL replayed, MB/s (higher)", 200)]
    for k, (w, metric, title, line) in enumerate(panels):
        a = fig.add_subplot(gs[1, k])
        bs = [b for b in backends if (results.get((w, b)) or {}).get(metric) is not None and shown(w, b)]
        a.bar(bs, [results[(w, b)][metric] for b in bs], color=[colors.get(b) for b in bs])
        a.set_title(title, fontsize=9)
        if not bs:
            a.text(0.5, 0.5, "not run", ha="center", va="center", transform=a.transAxes, color="0.5")
            a.set_xticks([])
            a.set_yticks([])
            continue
        if line is not None:
            a.axhline(line, color="k", linestyle="--", linewidth=0.8)
        a.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="keys per workload (default 1,000,000)")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset")
    ap.add_argument("--rounds", type=int, default=1, help="measured rounds per benchmark (default 1)")
    ap.add_argument("-k", dest="keyword", default=None, help="pytest -k expression")
    ap.add_argument("--out", default=os.path.join(ROOT, "results"), help="output directory (results/)")
    ap.add_argument("--from-json", default=None, help="only print the table and plot from a saved JSON")
    ap.add_argument("--no-disk", action="store_true", help="skip the C disk benchmark")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()
    rc = 0
    if args.from_json:
        json_path = args.from_json
        stamp = os.path.splitext(os.path.basename(json_path))[0]
        doc, results = load(json_path)
        disk = (doc.get("machine_info") or {}).get("pylsm_disk")
        n_req = max((i.get("bench_n", i.get("n", 0)) for i in results.values()), default=0)
    else:
        stamp = "bench-" + time.strftime("%Y%m%d-%H%M%S")
        json_path = os.path.join(args.out, stamp + ".json")
        jsonl_path = os.path.join(args.out, stamp + ".partial.jsonl")
        disk = None
        if not args.no_disk:
            if shutil.which(os.environ.get("CC", "gcc")):
                exe = build_disk_bench(args.out)
                print(f"== disk: write+fdatasync of 128-byte records ({exe}) ...", flush=True)
                disk = run_disk_bench(exe)
                print(f"   {disk['append']:,.0f} records/s appending, {disk['prealloc']:,.0f} records/s "
                      f"preallocated", flush=True)
            else:
                print("== disk benchmark skipped: no C compiler", flush=True)
        cmd = [sys.executable, "-m", "pytest", HERE, "-p", "no:cacheprovider", "-o", "addopts=",
               "-q", "-rfE", "--benchmark-only", "--benchmark-quiet", f"--benchmark-json={json_path}",
               f"--bench-n={args.n}", f"--bench-backends={args.backends}", f"--bench-rounds={args.rounds}",
               "--bench-report", f"--bench-jsonl={jsonl_path}"]
        if args.keyword:
            cmd += ["-k", args.keyword]
        print(f"== suite: N = {args.n:,} (fillsync, seekrandom and recovery use fewer; see the n column)",
              flush=True)
        print("   " + " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if os.path.exists(json_path):
            if disk:
                with open(json_path) as f:
                    doc = json.load(f)
                doc.setdefault("machine_info", {})["pylsm_disk"] = disk
                with open(json_path, "w") as f:
                    json.dump(doc, f, indent=2)
            doc, results = load(json_path)
            if os.path.exists(jsonl_path):
                os.remove(jsonl_path)
        elif os.path.exists(jsonl_path):
            print(f"\npytest stopped (exit status {rc}) before writing {json_path}; the table below is "
                  f"from the benchmarks that finished ({jsonl_path})", file=sys.stderr)
            results = load_jsonl(jsonl_path)
            json_path = jsonl_path
        else:
            print(f"no results written ({json_path}); pytest exit status {rc}", file=sys.stderr)
            return rc or 1
        n_req = args.n

    text = table(results, disk, n_req)
    print()
    print(text)
    txt_path = os.path.join(args.out, stamp + ".txt")
    with open(txt_path, "w") as f:
        f.write(text + "\n")
    print()
    print(f"json:  {json_path}")
    print(f"table: {txt_path}")
    if not args.no_plot:
        png = os.path.join(args.out, stamp + ".png")
        try:
            plot(results, disk, png)
            print(f"plot:  {png}")
        except ImportError as e:
            print(f"plot skipped: {e} (pip install matplotlib)")
    print(f"wall time: {time.time() - t_start:,.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
