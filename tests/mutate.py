"""make mutate: remove, one at a time, each fsync the core relies on, and check that a durability test
fails.

Each mutant is one call site of env_sync() / env_sync_dir() in csrc/ (outside env.c) replaced by
PL_OK, or one of the fdatasync() / fsync() system calls inside env.c replaced by 0 (success, nothing
done): the file or directory is then never made durable there.  The tests run for each mutant:
- tests/test_powerloss.py: power cuts judged by tests/powerfs.py, a FUSE filesystem that sees the
  system calls themselves, so it catches the env.c mutants too;
- the C tests (tests/c, ASan; test_db.c and test_wal.c cut power through the env layer's own model,
  which drops what its bookkeeping says was not fsynced);
- tests/test_powercut.py (torn WAL tails).

Everything happens in a copy of the tree (build/mutate/tree); the working tree is never changed.
Prints one line per mutant and the kill count; exits 1 unless every mutant was caught.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutate"
CALL = re.compile(r"\benv_sync(_dir)?\s*\(")
SYSCALL = re.compile(r"\b(fdatasync|fsync)\s*\(")
STICKY = re.compile(r"^\s*set_bg_error\s*\(")


def sites(root: Path = ROOT):
    """(file, line number, line) of every call site of env_sync/env_sync_dir outside env.c, and of the
    fdatasync/fsync system calls inside it."""
    out = []
    for path in sorted((root / "csrc").glob("*.c")):
        pattern = SYSCALL if path.name == "env.c" else CALL
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//")[0]
            if code.lstrip().startswith(("/*", "*")) or '"' in code.split("(")[0]:
                continue
            if pattern.search(code) and (";" in code or pattern is SYSCALL):
                out.append((path.name, n, line))
            elif path.name == "db.c" and STICKY.search(code):
                out.append((path.name, n, line))
    return out


def mutate(line: str, syscall: bool = False) -> str:
    """The call replaced by PL_OK (by 0 for a system call), keeping the statement's shape; a
    set_bg_error() call (the sticky error) removed."""
    if STICKY.search(line):
        return line[:len(line) - len(line.lstrip())] + "(void)0; /* mutant: the error is not sticky */"
    start = (SYSCALL if syscall else CALL).search(line).start()
    depth, i = 0, line.index("(", start)
    for j in range(i, len(line)):
        depth += line[j] == "("
        depth -= line[j] == ")"
        if depth == 0:
            bare = not line[:start].strip()  # a statement of its own: nothing to assign
            if syscall:
                stub = "0 /* mutant: no fsync here */"
            elif bare:
                stub = "(void)0 /* mutant: no fsync here */"
            else:
                stub = "PL_OK /* mutant: no fsync here */"
            return line[:start] + stub + line[j + 1:]
    raise ValueError(f"unbalanced call: {line}")


def run(cmd, cwd, timeout=900):
    """(exit status, seconds, the output's tail).  A run that does not end in time is killed, with
    every process it started, and counts as failed: a test that hangs under a mutant has caught it."""
    t = time.time()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, shell=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return 124, time.time() - t, f"timed out after {timeout} s"
    return p.returncode, time.time() - t, out[-2000:] + err[-2000:]


def main() -> int:
    py = sys.executable
    tree = WORK / "tree"
    shutil.rmtree(WORK, ignore_errors=True)
    files = subprocess.check_output(["git", "ls-files"], cwd=ROOT, text=True).split()
    for f in files:
        dst = tree / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst)
    # A mutant may leave a variable unused: no -Werror in the copy, so that only a test can catch it.
    mk = tree / "Makefile"
    mk.write_text(mk.read_text().replace(" -Werror", ""))
    build = f"{py} setup.py -q build_ext --inplace >/dev/null 2>&1"
    pytest = f"{py} -m pytest -q -x -p no:cacheprovider"
    tests = (f"{pytest} tests/test_fsync_order.py tests/test_powerloss.py tests/test_faults.py >/dev/null 2>&1 && "
             f"make -s ctest >/dev/null 2>&1 && "
             f"{pytest} tests/test_powercut.py >/dev/null 2>&1")
    rc, secs, out = run(build + " && " + tests.replace(">/dev/null 2>&1", "2>&1"), tree)  # its output, if it fails
    if rc != 0:
        print("the durability tests fail on the unmutated tree:\n" + out)
        return 2
    print(f"unmutated tree: the durability tests pass ({secs:.0f} s)")
    caught = 0
    all_sites = sites(tree)  # the copy's lines: the working tree may change while this runs
    only = os.environ.get("MUTATE_ONLY")  # e.g. "wal.c,env.c:364": sites whose "file:line" starts so
    if only:
        all_sites = [x for x in all_sites if any(f"{x[0]}:{x[1]}".startswith(o) for o in only.split(","))]
    for name, n, line in all_sites:
        src = tree / "csrc" / name
        pristine = src.read_text()
        lines = pristine.splitlines(keepends=True)
        lines[n - 1] = mutate(lines[n - 1].rstrip("\n"), name == "env.c") + "\n"
        src.write_text("".join(lines))
        brc, _, bout = run(build, tree)
        if brc != 0:
            src.write_text(pristine)
            print(f"NO BUILD {name}:{n}: the mutant does not compile:\n{bout}")
            return 2
        rc, secs, _ = run(tests, tree)
        src.write_text(pristine)
        os.utime(src, None)  # make rebuilds the restored file's objects
        ok = rc != 0
        caught += ok
        print(f"{'caught ' if ok else 'MISSED '} {name}:{n}: {line.strip()}  ({secs:.0f} s)", flush=True)
    print(f"make mutate: {caught} of {len(all_sites)} mutants caught")
    return 0 if caught == len(all_sites) else 1


if __name__ == "__main__":
    sys.exit(main())
