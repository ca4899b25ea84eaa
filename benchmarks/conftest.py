"""pytest configuration of the benchmark suite: options, the shared data, backends and the measuring helper.

Options:
  --bench-n N           keys per workload (default 1,000,000); slow workloads use fewer, recorded as ``n``
  --bench-backends L    comma-separated subset of pylsm,plyvel,rocksdict,lmdb,sqlite3,lsmdb,dict (default: all)
  --bench-rounds R      measured rounds per benchmark (default 1); each round gets fresh state
  --bench-report        print one line per finished benchmark (workload, backend, n, ops/s); run.py uses it
  --bench-jsonl PATH    append each passed benchmark's extra_info to PATH as it finishes (run.py's fallback)
  --bench-timeout S     stop the run (with tracebacks) if one benchmark takes longer: a hang; default
                        max(120, N/1000) seconds
"""
import faulthandler
import gc
import json
import os
import shutil
import statistics
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common as C  # noqa: E402
import backends as B  # noqa: E402


def pytest_addoption(parser):
    g = parser.getgroup("pylsm-bench")
    g.addoption("--bench-n", type=int, default=1_000_000, help="keys per workload (default 1,000,000)")
    g.addoption("--bench-backends", default=",".join(B.BACKENDS),
                help="comma-separated backends to run (default: all)")
    g.addoption("--bench-rounds", type=int, default=1, help="measured rounds per benchmark (default 1)")
    g.addoption("--bench-report", action="store_true", help="print a line per finished benchmark")
    g.addoption("--bench-jsonl", default=None,
                help="also append each passed benchmark's extra_info to this file as one JSON line, as it "
                     "finishes (run.py's fallback if the run dies before pytest-benchmark writes its JSON)")
    g.addoption("--bench-timeout", type=float, default=None,
                help="seconds one benchmark may take before the run is stopped with every thread's "
                     "traceback (a hang, not a slow run); default max(120, N/1000); 0 disables")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: cannot run at a tiny --bench-n (deselected by make bench-smoke)")
    config.addinivalue_line("markers", "workload(name): the workload a benchmark measures")
    n = config.getoption("--bench-n", default=None)
    if n is not None and n < 200:
        raise pytest.UsageError("--bench-n must be at least 200")


def pytest_generate_tests(metafunc):
    if "backend_name" in metafunc.fixturenames:
        names = [s.strip() for s in metafunc.config.getoption("--bench-backends").split(",") if s.strip()]
        unknown = [s for s in names if s not in B.BACKENDS]
        if unknown:
            raise pytest.UsageError(f"unknown backend(s) {unknown}; known: {list(B.BACKENDS)}")
        metafunc.parametrize("backend_name", names)


# ------------------------------------------------------------------------------------------------ data
class BenchData:
    """Keys, values and orders shared by every backend in this session (built once, never timed)."""

    def __init__(self, n):
        self.n = n
        self.pool = C.value_pool()
        self.keys = C.make_keys(n)
        self.vals = C.make_values(n, self.pool)
        self.perm = C.permutation(n)
        self.rkeys = [self.keys[i] for i in self.perm]          # keys in random order
        self.rvals = [self.vals[i] for i in self.perm]          # their values
        self._cache = {}

    def cached(self, name, build):
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    def seq_chunks(self):
        """Pairs in key order, in batches of C.BATCH (fillbatch)."""
        def build():
            ks, vs = self.keys, self.vals
            return [list(zip(ks[i:i + C.BATCH], vs[i:i + C.BATCH])) for i in range(0, self.n, C.BATCH)]
        return self.cached("seq_chunks", build)

    def random_chunks(self):
        """Pairs in random order, in batches of C.BATCH (untimed prefill of the read workloads)."""
        def build():
            ks, vs = self.rkeys, self.rvals
            return [list(zip(ks[i:i + C.BATCH], vs[i:i + C.BATCH])) for i in range(0, self.n, C.BATCH)]
        return self.cached("random_chunks", build)

    def overwrite_vals(self):
        """New values for the keys in random order (overwrite, space)."""
        return self.cached("overwrite_vals",
                           lambda: [self.pool[(i + 7919) % len(self.pool)] for i in self.perm])

    def value_of(self, i):
        return self.pool[i % len(self.pool)]


@pytest.fixture(scope="session")
def data(request):
    return BenchData(request.config.getoption("--bench-n"))


@pytest.fixture
def backend(backend_name, request):
    """The adapter class for ``backend_name``; skipped (with the reason) if its module does not import
    or it cannot do this workload fairly."""
    cls = B.get_backend_class(backend_name)
    if cls.module is not None:
        mod = pytest.importorskip(cls.module, reason=f"{backend_name} is not installed (pip install -e .[bench])")
        if backend_name == "pylsm" and not hasattr(mod, "open"):
            pytest.skip("pylsm imports but has no open() (the C binding is not built yet)")
    marker = request.node.get_closest_marker("workload")
    reason = cls.skip_reason(marker.args[0]) if marker else None
    if reason:
        pytest.skip(reason)
    return cls


class Dirs:
    """Fresh database directories under tmp_path; everything opened is closed and removed at teardown."""

    def __init__(self, tmp_path, cls):
        self.tmp_path = tmp_path
        self.cls = cls
        self.count = 0
        self.open_dbs = []
        self.paths = []

    def fresh(self):
        """Close and delete what the previous round made, return a new empty path."""
        self.cleanup()
        self.count += 1
        p = self.tmp_path / f"db{self.count}"
        self.paths.append(p)
        return p

    def open(self, path=None, **kw):
        db = self.cls(path if path is not None else self.fresh(), **kw)
        self.open_dbs.append(db)
        return db

    def cleanup(self):
        while self.open_dbs:
            db = self.open_dbs.pop()
            try:
                db.close()
            except Exception:
                pass
        gc.collect()
        for p in self.paths:
            if hasattr(self.cls, "destroy"):
                self.cls.destroy(p)
            shutil.rmtree(p, ignore_errors=True)
        self.paths = []


@pytest.fixture
def dirs(tmp_path, backend):
    d = Dirs(tmp_path, backend)
    yield d
    d.cleanup()


# ------------------------------------------------------------------------------------------- measuring
class Measure:
    """Runs one workload under ``benchmark.pedantic`` and records its extra_info.

    ``setup()`` builds fresh state for a round and returns the argument (or tuple of arguments) of ``body``;
    it is not timed. ``body`` may return a float: the seconds it measured itself (a child process's timer).
    Garbage collection is collected before and disabled during every timed body (for every backend alike).
    ops/s = n / median(seconds of the rounds), from our own perf_counter around the body, so it exists even
    with --benchmark-disable; ops_per_sec_min / _max (the slowest and fastest round) give the spread.
    """

    def __init__(self, benchmark, request, backend_name):
        self.benchmark = benchmark
        self.request = request
        self.backend_name = backend_name
        self.rounds = request.config.getoption("--bench-rounds")
        self.times = []

    def run(self, workload, n, setup, body, rounds=None, **extra):
        times = self.times

        def wrapped_setup():
            args = setup()
            gc.collect()
            gc.disable()
            return (args if isinstance(args, tuple) else (args,)), {}

        def target(*args):
            t0 = time.perf_counter()
            try:
                secs = body(*args)
            finally:
                t1 = time.perf_counter()
                gc.enable()
            # A body may return the seconds it measured itself (a child process's own timer).
            times.append(secs if isinstance(secs, float) else t1 - t0)

        try:
            self.benchmark.pedantic(target, setup=wrapped_setup, rounds=rounds or self.rounds,
                                    iterations=1, warmup_rounds=0)
        finally:
            gc.enable()
        secs = statistics.median(times)
        self.record(workload, n, secs, **extra)
        return secs

    @staticmethod
    def spread(name, n, times):
        """``{name: n / median, name_min: n / slowest, name_max: n / fastest, name_rounds: len}`` of a list
        of round times: the median a table shows and the spread (min-max) beside it."""
        rate = lambda t: n / t if t > 0 else float("inf")
        return {name: rate(statistics.median(times)), name + "_min": rate(max(times)),
                name + "_max": rate(min(times)), name + "_rounds": len(times)}

    def record(self, workload, n, secs, **extra):
        info = dict(backend=self.backend_name, workload=workload, n=n, seconds=secs,
                    bench_n=self.request.config.getoption("--bench-n"),
                    ops_per_sec=(n / secs if secs > 0 else float("inf")),
                    config=(B.get_backend_class(self.backend_name).__doc__ or "").split("\n")[0])
        if self.times:
            info.update(self.spread("ops_per_sec", n, self.times), round_seconds=list(self.times))
        info.update(extra)
        self.benchmark.extra_info.update(info)
        self.request.node.user_properties.append(("bench", info))


@pytest.fixture
def measure(benchmark, request, backend_name):
    return Measure(benchmark, request, backend_name)


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed and _REPORT["jsonl"]:
        infos = [v for k, v in report.user_properties if k == "bench"]
        if infos:
            with open(_REPORT["jsonl"], "a") as f:
                f.write(json.dumps(infos[-1]) + "\n")
    if not _REPORT["on"] or not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    _REPORT["done"] += 1
    pos = f"[{_REPORT['done']:>3}/{_REPORT['total']}]"
    if not report.passed:
        what = ("skipped: " + str(report.longrepr[2])[:70]) if report.skipped else f"FAILED ({report.when})"
        _REPORT["tr"].write_line(f"  {pos} {report.nodeid.split('::')[-1]:<40} {what}")
        return
    infos = [v for k, v in report.user_properties if k == "bench"]
    if not infos:
        return
    i = infos[-1]
    extra = ""
    if i.get("ops_per_sec_rounds", 1) > 1:
        extra += f"  ({i['ops_per_sec_min']:,.0f}-{i['ops_per_sec_max']:,.0f})"
    for k in ("space_amp", "wal_mb_per_sec", "thread_speedup", "peak_rss_delta_mib", "resident_after_evict",
              "disk_kib_per_get"):
        if i.get(k) is not None:
            extra += f"  {k}={i[k]:.2f}"
    _REPORT["tr"].write_line(f"  {pos} {i['workload']:<20} {i['backend']:<10} n={i['n']:<9,} "
                             f"{i['ops_per_sec']:>14,.0f} ops/s{extra}")


_REPORT = {"on": False, "tr": None, "done": 0, "total": 0, "jsonl": None}


_WATCHDOG = {}


def _watchdog_file(cfg):
    """The real stderr (pytest captures fd 2 while a test runs, and a capture is lost on _exit)."""
    if "file" not in _WATCHDOG:
        f = sys.__stderr__
        try:
            capman = cfg.pluginmanager.getplugin("capturemanager")
            fd = capman._global_capturing.err.targetfd_save  # pytest internals; stderr if they change
            f = os.fdopen(os.dup(fd), "w")
        except Exception:
            pass
        _WATCHDOG["file"] = f
    return _WATCHDOG["file"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A watchdog: a benchmark that hangs (e.g. a deadlock in a backend) stops the run with every thread's
    Python traceback instead of hanging ``make test`` forever."""
    cfg = item.config
    limit = cfg.getoption("--bench-timeout")
    if limit is None:
        limit = max(120.0, cfg.getoption("--bench-n") / 1000.0)
    if limit > 0:
        faulthandler.dump_traceback_later(limit, exit=True, file=_watchdog_file(cfg))
    try:
        yield
    finally:
        if limit > 0:
            faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A benchmark whose test fails after the timing (e.g. its data did not read back) is left out of the
    JSON, so run.py's table never shows a number for a run that was wrong."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        bench = getattr(item, "funcargs", {}).get("benchmark")
        if bench is not None:
            bench.has_error = True


def pytest_collection_finish(session):
    _REPORT["total"] = len(session.items)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    cfg = session.config
    _REPORT["jsonl"] = cfg.getoption("--bench-jsonl")
    if cfg.getoption("--bench-report"):
        _REPORT["on"] = True
        _REPORT["tr"] = cfg.pluginmanager.get_plugin("terminalreporter")
