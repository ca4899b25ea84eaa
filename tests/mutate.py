"""make mutate: remove, one at a time, each fsync the core relies on, and check that a durability test
fails.

Each mutant is one call site of env_sync() / env_sync_dir() in csrc/ (outside env.c) replaced by
PL_OK: the file or directory is then never made durable there, and the env layer's power-loss model
(csrc/env.c, which drops what was not fsynced at a simulated cut) must lose something a test relies
on.  The tests run for each mutant are the C tests (tests/c, ASan; test_db.c and test_wal.c cut power)
and tests/test_powercut.py.  Mutants inside env.c itself (the fdatasync() and fsync() system calls, with
the model's bookkeeping left in place) cannot be seen by the model, which trusts that bookkeeping; they
need the independent power-loss oracle of the issue "Tests that fail when durability breaks" and are
listed as such.

Everything happens in a copy of the tree (build/mutate/tree); the working tree is never changed.
Prints one line per mutant and the kill count; exits 1 unless every mutant was caught.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutate"
CALL = re.compile(r"\benv_sync(_dir)?\s*\(")


def sites():
    """(file, line number, line) of every call site of env_sync/env_sync_dir outside env.c."""
    out = []
    for path in sorted((ROOT / "csrc").glob("*.c")):
        if path.name == "env.c":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//")[0]
            if CALL.search(code) and not code.lstrip().startswith(("/*", "*")) and ";" in code:
                out.append((path.name, n, line))
    return out


def mutate(line: str) -> str:
    """The call replaced by PL_OK, keeping the statement's shape (rc = PL_OK; or PL_OK;)."""
    start = CALL.search(line).start()
    depth, i = 0, line.index("(", start)
    for j in range(i, len(line)):
        depth += line[j] == "("
        depth -= line[j] == ")"
        if depth == 0:
            bare = not line[:start].strip()  # a statement of its own: nothing to assign
            stub = "(void)0 /* mutant: no fsync here */" if bare else "PL_OK /* mutant: no fsync here */"
            return line[:start] + stub + line[j + 1:]
    raise ValueError(f"unbalanced call: {line}")


def run(cmd, cwd, timeout=1200):
    t = time.time()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, shell=True)
    return r.returncode, time.time() - t, r.stdout[-2000:] + r.stderr[-2000:]


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
    tests = (f"make -s ctest >/dev/null 2>&1 && "
             f"{py} -m pytest -q -x -p no:cacheprovider tests/test_powercut.py >/dev/null 2>&1")
    rc, secs, out = run(build + " && " + tests, tree)
    if rc != 0:
        print("the durability tests fail on the unmutated tree:\n" + out)
        return 2
    print(f"unmutated tree: the durability tests pass ({secs:.0f} s)")
    caught = 0
    all_sites = sites()
    for name, n, line in all_sites:
        src = tree / "csrc" / name
        pristine = src.read_text()
        lines = pristine.splitlines(keepends=True)
        lines[n - 1] = mutate(lines[n - 1].rstrip("\n")) + "\n"
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
    print("not covered by this model (need the independent oracle): the fdatasync() and fsync() calls "
          "inside csrc/env.c")
    return 0 if caught == len(all_sites) else 1


if __name__ == "__main__":
    sys.exit(main())
