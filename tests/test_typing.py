"""The stubs catch misuse under ``mypy --strict``: a str key on a raw-bytes database (get, [], put,
update, items(prefix=...), snapshot().get), a misspelled option of pylsm.open(), and keys or values
of the wrong type under codecs; correct code type-checks clean."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent('''
    from typing import Any, Optional, Tuple
    import pylsm

    db = pylsm.open("data/db")
    db.get("str key")  # E
    db["str key"]  # E
    db.put("k", b"v")  # E
    db["k"] = "v"  # E
    db.update({"k": b"v"})  # E
    db.ingest([("k", b"v")])  # E
    db.items(prefix="user:")  # E
    db.snapshot().get("k")  # E
    pylsm.open("data/db", memtable_byte=1 << 20)  # E
    pylsm.open("data/db", sync="sometimes")  # E
    pylsm.open("data/db", read_only="yes")  # E
    pylsm.open("data/db", key_codec="yaml")  # E

    # correct uses: no errors
    v: Optional[bytes] = db.get(b"k")
    d: bytes = db.get(b"k", b"default")
    db[b"k"] = bytearray(b"v")
    db.put(memoryview(b"k"), b"v", sync=True)
    db.update({b"a": b"1"})
    db.update([(b"a", b"1")])
    count: int = db.ingest(((b"%d" % i, b"v") for i in range(10)), progress=True)
    for key, value in db.items(prefix=b"user:", reverse=True):
        key.startswith(b"u") and value.decode()
    with db.batch() as b:
        b.put(b"x", b"y")
        b.delete(b"z")
    with db.iterator(start=b"a", include_start=False) as it:
        it.seek(b"b")
        first: Optional[Tuple[bytes, bytes]] = it.peek()
    with db.snapshot() as snap:
        got: Optional[bytes] = snap.get(b"k")
        n: int = len(snap)
    values: list[Optional[bytes]] = db.get_many([b"a", b"b"])
    ro = pylsm.open("data/db", read_only=True, sync=pylsm.EveryNEntries(10), wal_recovery="salvage")
    ro.refresh()

    s = pylsm.open("data/s", key_codec="str", value_codec="str")
    s["name"] = "ann"
    name: Optional[str] = s.get("name")
    s.get(b"bytes key")  # E
    s["k"] = b"bytes value"  # E

    t = pylsm.open("data/t", key_codec="tuple", value_codec="json")
    t[("user", 42, "name")] = {"any": "json"}
    k: Tuple[Any, ...] = next(t.keys(prefix=("user", 42)))
    t["not a tuple"] = 1  # E

    class U32:
        def encode(self, n: int) -> bytes:
            return n.to_bytes(4, "big")

        def decode(self, b: bytes) -> int:
            return int.from_bytes(b, "big")

    u = pylsm.open("data/u", key_codec=U32(), value_codec="pickle")
    u[7] = object()
    seven: int = next(iter(u))
    u["7"] = 1  # E
''')


def test_mypy_strict_catches_misuse(tmp_path):
    mypy = pytest.importorskip("mypy", reason="mypy is installed by make test (pip install mypy)")
    assert mypy
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    expected = {i for i, line in enumerate(SCRIPT.splitlines(), 1) if line.rstrip().endswith("# E")}
    env = dict(os.environ, MYPYPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir",
                        str(tmp_path / "cache"), str(script)], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    errors: dict = {}
    for line in r.stdout.splitlines():
        m = re.match(r".*user_script\.py:(\d+): error: (.*)", line)
        if m:
            errors.setdefault(int(m.group(1)), []).append(m.group(2))
    assert not [l for l in r.stdout.splitlines() if ": error:" in l and "user_script" not in l], r.stdout
    missed = sorted(expected - set(errors))
    spurious = {n: errors[n] for n in sorted(set(errors) - expected)}
    assert not missed, f"mypy did not flag lines {missed}:\n{r.stdout}"
    assert not spurious, f"mypy flagged correct code: {spurious}"


def test_the_package_itself_type_checks_strict(tmp_path):
    pytest.importorskip("mypy", reason="mypy is installed by make test (pip install mypy)")
    env = dict(os.environ, MYPYPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir",
                        str(tmp_path / "cache"), "-p", "pylsm"], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout
