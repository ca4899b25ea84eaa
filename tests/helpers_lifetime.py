"""Scenarios of test_lifetime.py that might crash the interpreter if the binding is wrong, run in a child
process so that a crash is a failed test rather than the end of the test run:

    python tests/helpers_lifetime.py <scenario> <db path> [seed]

Each scenario prints "OK <details>" as its last line when every check passed; any other ending (an
exception, a signal, a hang killed by the parent) fails the test.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from typing import List, Optional

from lsmtest import child_env, key_of


def value(i: int) -> bytes:
    return (b"v%d." % i) * 8


def _populate(path: str, n: int):
    import pylsm

    db = pylsm.open(path, memtable_bytes=256 * 1024)
    if db.get(key_of(n - 1)) is None:
        for i in range(n):
            db.put(key_of(i), value(i))
        db.flush()
        for i in range(0, n, 3):  # part of the data in the memtable
            db.put(key_of(i), value(i))
    return db


def close_while_iterating(path: str, seed: int) -> None:
    """Threads iterate (items, keys, reverse, bounded), read and write while the main thread closes the
    database at a random moment; every call either works or raises ClosedError."""
    import pylsm

    rng = random.Random(seed)
    n = 30_000
    closed_errors = 0
    completed_scans = 0
    for rep in range(8):
        db = _populate(path, n)
        errors: List[str] = []
        counts = {"closed": 0, "scans": 0}
        lock = threading.Lock()
        go = threading.Event()

        def scanner(t: int) -> None:
            go.wait()
            try:
                while True:
                    kind = t % 4
                    if kind == 0:
                        it = db.items(stop=b"l")
                        for j, (k, v) in enumerate(it):
                            assert k == key_of(j) and v == value(j), (j, k)
                    elif kind == 1:
                        it = db.keys(stop=b"l", reverse=True)
                        for j, k in enumerate(it):
                            assert k == key_of(n - 1 - j), (j, k)
                    elif kind == 2:
                        it = db.values(key_of(100), key_of(20_000))
                        for j, v in enumerate(it):
                            assert v == value(100 + j)
                    else:
                        snap = db.snapshot()
                        for j, (k, v) in enumerate(snap.items(prefix=b"k00")):
                            assert k == key_of(j)
                        snap.close()
                    with lock:
                        counts["scans"] += 1
            except pylsm.ClosedError:
                with lock:
                    counts["closed"] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append(f"scanner {t}: {e!r}")

        def pointer(t: int) -> None:
            go.wait()
            r = random.Random(t)
            try:
                while True:
                    i = r.randrange(n)
                    op = r.randrange(9)
                    if op == 0:
                        assert db.get(key_of(i)) == value(i)
                    elif op == 1:
                        assert key_of(i) in db
                    elif op == 2:
                        try:
                            del db[b"absent" + key_of(i)]
                        except KeyError:
                            pass
                    elif op == 3:
                        db.put(b"x" + key_of(i), b"x")
                    elif op == 4:
                        assert db.get_many([key_of(i), b"nope"]) == [value(i), None]
                    elif op == 5:
                        db.stats()
                    elif op == 6:
                        db.delete(b"x" + key_of(i))
                    elif op == 7:
                        if r.random() < 0.02:
                            db.flush()
                    else:
                        assert db[key_of(i)] == value(i)
            except pylsm.ClosedError:
                with lock:
                    counts["closed"] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append(f"pointer {t}: {e!r}")

        threads = [threading.Thread(target=scanner, args=(t,)) for t in range(4)]
        threads += [threading.Thread(target=pointer, args=(t,)) for t in range(3)]
        for th in threads:
            th.start()
        go.set()
        time.sleep(rng.uniform(0.01, 0.3))
        db.close()
        for th in threads:
            th.join(60)
            assert not th.is_alive(), "a thread hangs after close()"
        assert not errors, errors
        assert counts["closed"] == len(threads), counts  # every thread ended with ClosedError
        closed_errors += counts["closed"]
        completed_scans += counts["scans"]
        db.close()
    print("OK closed=%d scans=%d" % (closed_errors, completed_scans))


def two_threads_one_iterator(path: str, seed: int) -> None:
    """Two threads call next() on one iterator: each gets items or pylsm.Error ("in use"), never a
    crash; together they get every item exactly once, each thread in ascending order."""
    import pylsm

    n = 40_000
    db = _populate(path, n)
    busy = 0
    for rep in range(3):
        it = db.items() if rep < 2 else db.keys(reverse=True)
        got: List[List[bytes]] = [[], []]
        errors: List[str] = []
        in_use = [0, 0]
        start = threading.Barrier(2)

        def work(t: int) -> None:
            start.wait()
            try:
                while True:
                    try:
                        x = next(it)
                    except StopIteration:
                        return
                    except pylsm.Error:
                        in_use[t] += 1
                        continue
                    got[t].append(x[0] if isinstance(x, tuple) else x)
                    if isinstance(x, tuple):
                        assert x[1] == value(int(x[0][1:])), x
            except BaseException as e:  # noqa: BLE001
                errors.append(f"thread {t}: {e!r}")

        ths = [threading.Thread(target=work, args=(t,)) for t in (0, 1)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(60)
        assert not errors, errors
        want = [key_of(i) for i in range(n)]
        if rep == 2:
            want.reverse()
        for t in (0, 1):
            assert got[t] == sorted(got[t], reverse=rep == 2), f"thread {t} saw items out of order"
        allk = got[0] + got[1]
        assert len(allk) == len(set(allk)), f"{len(allk) - len(set(allk))} items seen twice"
        assert sorted(allk) == sorted(want), (len(allk), len(want))
        busy += sum(in_use)
    db.close()
    print("OK in_use_errors=%d" % busy)


def iterator_closed_by_other_thread(path: str, seed: int) -> None:
    """it.close() from one thread while another is inside next(): ClosedError or StopIteration there."""
    import pylsm

    n = 30_000
    db = _populate(path, n)
    rng = random.Random(seed)
    outcomes = {"closed": 0, "done": 0}
    for rep in range(20):
        it = db.items()
        errors: List[str] = []

        def reader() -> None:
            try:
                for _ in it:
                    pass
                outcomes["done"] += 1
            except pylsm.ClosedError:
                outcomes["closed"] += 1
            except BaseException as e:  # noqa: BLE001
                errors.append(repr(e))

        th = threading.Thread(target=reader)
        th.start()
        time.sleep(rng.uniform(0, 0.02))
        it.close()
        th.join(60)
        assert not th.is_alive()
        assert not errors, errors
        try:
            next(it)
        except (pylsm.ClosedError, StopIteration):
            pass
    db.close()
    assert outcomes["closed"] > 0, outcomes
    print("OK %s" % outcomes)


def reads_racing_close(path: str, seed: int) -> None:
    """Point reads that need table I/O (no bloom filter, no block cache) from several threads -- mostly
    `del db[absent]`, also get, `in` and get_many -- while the main thread closes the database: each
    call works or raises ClosedError (KeyError for the absent key)."""
    import pylsm

    rng = random.Random(seed)
    n = 20_000
    reps = 80
    nthreads = 5
    counts = {"closed": 0, "calls": 0}
    for rep in range(reps):
        db = pylsm.open(path, memtable_bytes=256 * 1024, bloom_bits_per_key=0, block_cache_bytes=0)
        if rep == 0:
            for i in range(n):
                db.put(key_of(i), value(i))
            db.flush()
        errors: List[str] = []
        go = threading.Event()
        lock = threading.Lock()

        def work(t: int) -> None:
            go.wait()
            r = random.Random(t)
            calls = 0
            try:
                while True:
                    i = r.randrange(n)
                    op = 0 if t < 4 else r.randrange(4)
                    if op == 0:
                        try:
                            del db[key_of(i) + b"absent"]
                        except KeyError:
                            pass
                    elif op == 1:
                        assert db.get(key_of(i)) == value(i)
                    elif op == 2:
                        assert (key_of(i) + b"absent") not in db
                    else:
                        assert db.get_many([key_of(i), key_of(i) + b"x"]) == [value(i), None]
                    calls += 1
            except pylsm.ClosedError:
                with lock:
                    counts["closed"] += 1
                    counts["calls"] += calls
            except BaseException as e:  # noqa: BLE001
                errors.append(f"thread {t}: {e!r}")

        threads = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
        for th in threads:
            th.start()
        go.set()
        time.sleep(rng.uniform(0.002, 0.02))
        db.close()
        for th in threads:
            th.join(60)
            assert not th.is_alive(), "a thread hangs after close()"
        assert not errors, errors
    assert counts["closed"] == reps * nthreads, counts
    print("OK %s" % counts)


SCENARIOS = {f.__name__: f for f in (close_while_iterating, two_threads_one_iterator,
                                     iterator_closed_by_other_thread, reads_racing_close)}


def build_asan_copy(dest: str) -> str:
    """Build the extension with ASan/UBSan (setup.py's PYLSM_SANITIZE) from the sources of the pylsm
    under test, into dest (a scratch directory: the tree under test is not touched).  Returns the
    directory to put on PYTHONPATH."""
    import shutil

    import pylsm

    root = os.path.dirname(os.path.dirname(os.path.abspath(pylsm.__file__)))
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        if os.path.exists(os.path.join(root, name)):
            shutil.copy(os.path.join(root, name), dest)
    shutil.copytree(os.path.join(root, "csrc"), os.path.join(dest, "csrc"))
    shutil.copytree(os.path.join(root, "pylsm"), os.path.join(dest, "pylsm"),
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = dict(os.environ, PYLSM_SANITIZE="1")
    p = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("ASan build failed:\n" + p.stdout.decode(errors="replace")[-3000:])
    return dest


def asan_runtime() -> Optional[str]:
    """The path of libasan.so for LD_PRELOAD, or None."""
    try:
        p = subprocess.run(["gcc", "-print-file-name=libasan.so"], stdout=subprocess.PIPE, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lib = p.stdout.decode().strip()
    return lib if os.path.isabs(lib) and os.path.exists(lib) else None


def run(scenario: str, path: str, seed: int = 0, timeout: float = 120, root: Optional[str] = None,
        asan: Optional[str] = None):
    """Run a scenario in a child; returns (returncode, stdout, stderr).  root: the directory holding
    the pylsm package to use (default: the one under test); asan: libasan.so to preload."""
    env = child_env({"PYTHONFAULTHANDLER": "1"}, root=root)
    if asan:
        env["LD_PRELOAD"] = asan
        env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), scenario, path, str(seed)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return "timeout", out.decode(errors="replace"), err.decode(errors="replace")
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
