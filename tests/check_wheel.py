"""dist-check's proof that the wheel needs neither a compiler nor ISA-L, zstd or lz4 (run by `make dist-check`).

Usage: python tests/check_wheel.py WHEEL VENV_PYTHON

Checks the wheel's contents (a manylinux tag, ISA-L, zstd and lz4 carried in pylsm.libs/, no C sources,
the LICENSE) and that the installed extension loads them from the wheel, not from the system: `ldd` must
resolve it inside the venv, and the smoke test is run once more with the system's libisal hidden
(bind-mounted over with /dev/null in a private mount namespace, where unshare is allowed).
"""
import os
import shutil
import subprocess
import sys
import zipfile

SMOKE = ("import pylsm, tempfile, os; d = tempfile.mkdtemp(); "
         "db = pylsm.open(os.path.join(d, 'db'), compression='zstd'); "
         "db[b'k'] = b'v'; db.flush(); assert db[b'k'] == b'v'; db.close(); pylsm.verify(os.path.join(d, 'db')); "
         "print('wheel ok', pylsm.__version__)")


def main() -> int:
    wheel, py = sys.argv[1], sys.argv[2]
    name = os.path.basename(wheel)
    assert "manylinux" in name, f"not a manylinux wheel: {name}"
    names = zipfile.ZipFile(wheel).namelist()
    for lib in ("libisal", "libzstd", "liblz4"):
        assert any(n.startswith("pylsm.libs/" + lib) for n in names), f"{lib} not carried: {names}"
    assert not [n for n in names if n.endswith(".c")], "C sources in the wheel"
    assert any(n.endswith("licenses/LICENSE") for n in names), "no LICENSE in the wheel"
    so = subprocess.check_output([py, "-c", "import pylsm._pylsm as m; print(m.__file__)"], text=True).strip()
    ldd = subprocess.check_output(["ldd", so], text=True)
    isal = [line for line in ldd.splitlines() if "isal" in line]
    site = os.path.dirname(os.path.dirname(so))
    assert isal and all(site in line for line in isal), f"ISA-L not loaded from the wheel:\n{ldd}"
    for lib in ("libzstd", "liblz4"):
        found = [line for line in ldd.splitlines() if lib in line]
        assert found and all(site in line for line in found), f"{lib} not loaded from the wheel:\n{ldd}"
    print("ldd:", isal[0].strip())
    out = subprocess.check_output([py, "-c", SMOKE], text=True)
    print(out.strip())
    system = [p for p in ("/usr/lib/x86_64-linux-gnu/libisal.so.2", "/usr/lib64/libisal.so.2",
                          "/usr/lib/libisal.so.2") if os.path.exists(p)]
    if system and not shutil.which("unshare"):
        print("(no unshare here to hide the system libisal; the ldd check above stands)")
    elif system:
        real = os.path.realpath(system[0])
        # First whether this machine lets us hide it at all (root, mount namespaces allowed) ...
        probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind /dev/null {real}"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            print(f"(could not hide {real} here: {probe.stderr.strip()}; the ldd check above stands)")
        else:  # ... then the smoke test with it hidden, where a failure is the wheel's
            hide = f"mount --bind /dev/null {real} && {py} -c \"{SMOKE}\""
            r = subprocess.run(["unshare", "-m", "sh", "-c", hide], capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stdout, r.stderr)
                return 1
            print(f"with {real} hidden: {r.stdout.strip()}")
    cli = subprocess.check_output([os.path.join(os.path.dirname(py), "pylsm"), "--version"], text=True)
    print("console script:", cli.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
