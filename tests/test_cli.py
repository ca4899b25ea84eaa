"""The command line (python -m pylsm) as a user runs it: real subprocesses, real databases, non-ASCII
and binary keys, a writer holding the database while inspecting commands run (which must not change
a byte), a closed pipe, repair's report, destroy's question."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import lsmtest
import pylsm
from pylsm.__main__ import _parser


def run(*args, input=None, env=None):
    return subprocess.run([sys.executable, "-m", "pylsm", *args], capture_output=True, timeout=120,
                          input=input, env=env)


def out(r):
    return r.stdout.decode("utf-8")


tree = lsmtest.dir_snapshot


@pytest.fixture
def filled(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path) as db:
        db.update({"café".encode(): "crème".encode(), "日本".encode(): b"\x00\xff", b"user:1": b"alice",
                   b"user:2": b"bob", b"bad\\x": b"backslash"})
        db.flush()
        db[b"user:3"] = b"carol"  # in the log only
    return path


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and out(r).strip() == f"pylsm {pylsm.__version__}"
    r = run("--help")
    assert r.returncode == 0 and "Exit status" in out(r)
    assert run().returncode == 2  # no command: usage error
    assert run("frobnicate", "x").returncode == 2


def test_every_option_has_help_text():
    parser = _parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"stats", "get", "put", "delete", "scan", "dump", "load", "verify",
                                 "repair", "destroy", "changes", "backup", "backups", "restore"}
    for name, sp in subs.choices.items():
        assert sp.description, name
        for action in sp._actions:
            assert action.help, (name, action.dest)


def test_get_put_delete_text_hex_base64(filled):
    r = run("get", filled, "café")
    assert r.returncode == 0 and out(r) == "crème\n"
    r = run("get", filled, "日本", "--hex")
    assert r.returncode == 2 and "not hexadecimal" in r.stderr.decode()  # bad input: a usage error
    r = run("get", filled, "--hex", "日本".encode().hex())
    assert r.returncode == 0 and out(r) == "00ff\n"
    r = run("get", filled, "日本")
    assert out(r) == "\\x00\\xff\n"  # not UTF-8: shown with escapes, no traceback
    r = run("get", filled, "bad\\x")
    assert r.returncode == 0 and out(r) == "backslash\n"
    r = run("get", filled, "nope")
    assert r.returncode == 1 and b"not found" in r.stderr
    r = run("get", filled, "user:3", "--json")
    assert json.loads(r.stdout) == {"key": "user:3", "value": "carol"}
    r = run("get", filled, "日本", "--json")
    assert json.loads(r.stdout) == {"key": "日本", "value_base64": "AP8="}
    assert run("put", filled, "ключ", "значение").returncode == 0
    assert out(run("get", filled, "ключ")) == "значение\n"
    assert run("put", filled, "--base64", "AAE=", "/w==").returncode == 0
    assert out(run("get", filled, "--base64", "AAE=")) == "/w==\n"
    assert run("delete", filled, "ключ").returncode == 0
    assert run("delete", filled, "ключ").returncode == 1
    assert run("put", str(filled) + "-missing", "k", "v").returncode == 2  # no --create: not created
    assert not os.path.exists(str(filled) + "-missing")
    assert run("put", str(filled) + "-new", "k", "v", "--create").returncode == 0


def test_scan(filled):
    r = run("scan", filled, "--prefix", "user:", "--reverse")
    assert r.returncode == 0 and out(r).splitlines() == ["user:3\tcarol", "user:2\tbob", "user:1\talice"]
    r = run("scan", filled, "--limit", "2", "--keys-only")
    assert out(r).splitlines() == ["bad\\x", "café"]
    r = run("scan", filled, "--start", "user:2", "--stop", "user:3", "--json")
    assert [json.loads(line) for line in out(r).splitlines()] == [{"key": "user:2", "value": "bob"}]


def test_dump_load_round_trip_is_exact(filled, tmp_path):
    with pylsm.open(filled) as db:
        for i in range(256):
            db[bytes([i]) * 3] = bytes(range(i))
    r = run("dump", filled)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert json.loads(lines[0]).keys() <= {"key", "key_base64", "value", "value_base64"}
    dst = str(tmp_path / "copy")
    r = run("load", dst, "--create", input=r.stdout)
    assert r.returncode == 0, r.stderr
    with pylsm.open(filled) as a, pylsm.open(dst) as b:
        assert dict(a.items()) == dict(b.items()) and len(b) == 262
    assert run("dump", filled, "-o", str(tmp_path / "d.jsonl"), "--prefix", "user:").returncode == 0
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 3
    r = run("load", dst, input=b'{"key": "a"}\n')
    assert r.returncode == 2 and b"line 1" in r.stderr
    r = run("load", dst, input=b"not json\n")
    assert r.returncode == 2 and b"line 1" in r.stderr


HOLDER = textwrap.dedent("""
    import sys, time, pylsm
    db = pylsm.open(sys.argv[1])
    db[b"held"] = b"by a writer"
    print("ready", flush=True)
    sys.stdin.read()
    db.close()
""")


def test_inspecting_commands_change_nothing_while_a_writer_holds_it(filled):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, filled], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = tree(filled)
        r = run("stats", filled)
        assert r.returncode == 0, r.stderr
        assert f"process {holder.pid} has it open" in out(r) and "keys" in out(r)
        s = json.loads(run("stats", filled, "--json").stdout)
        assert s["writer_pid"] == holder.pid and s["keys_estimate"] >= 7 and s["disk_bytes"] > 0
        assert s["levels"][0]["files"] == 1 and "sst" in s["files"]
        assert out(run("get", filled, "held")) == "by a writer\n"
        assert run("scan", filled).returncode == 0
        assert run("dump", filled).returncode == 0
        r = run("verify", filled)
        assert r.returncode == 0 and f"process {holder.pid} has it open" in out(r)
        assert tree(filled) == before
        r = run("put", filled, "k", "v")
        assert r.returncode == 2 and b"LockError" not in r.stderr and b"locked" in r.stderr
    finally:
        holder.communicate("", timeout=30)
    r = run("stats", filled)
    assert "none (closed)" in out(r)


def test_closed_pipe_ends_quietly(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path) as db:
        db.update((b"%08d" % i, b"v" * 100) for i in range(100_000))
    p = subprocess.run(f"{sys.executable} -m pylsm scan {path} | head -1", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert p.stdout == "00000000\t" + "v" * 100 + "\n"
    assert p.stderr == ""


def damage_a_block(path):
    sst = sorted(n for n in os.listdir(path) if n.endswith(".sst"))[0]
    p = os.path.join(path, sst)
    data = bytearray(open(p, "rb").read())
    data[5000] ^= 0xFF
    open(p, "wb").write(bytes(data))


def test_repair_reports_what_it_kept_and_dropped(tmp_path):
    path = str(tmp_path / "db")
    with pylsm.open(path) as db:
        db.update((b"k%06d" % i, b"v" * 100) for i in range(20_000))
        db.flush()
    damage_a_block(path)
    r = run("verify", path)
    assert r.returncode == 2 and b"checksum" in r.stderr
    before = tree(path)
    r = run("repair", path, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would keep" in out(r) and "dry run" in out(r) and "1 damaged" in out(r)
    assert tree(path) == before
    r = run("repair", path)
    assert r.returncode == 0, r.stderr
    text = out(r)
    assert "kept" in text and "1 damaged" in text and "blocks and" in text
    with pylsm.open(path) as db:
        kept = len(db)
    assert 19_000 < kept < 20_000
    assert f"{kept:,} keys" in text
    assert run("verify", path).returncode == 0


def test_destroy_asks(tmp_path):
    path = str(tmp_path / "db")
    pylsm.open(path).close()
    r = run("destroy", path, input=b"")
    assert r.returncode == 2 and b"--yes" in r.stderr and os.path.isdir(path)
    r = run("destroy", path, "--yes")
    assert r.returncode == 0 and not os.path.exists(path)
    r = run("stats", path)
    assert r.returncode == 2 and b"pylsm:" in r.stderr and b"Traceback" not in r.stderr


def test_console_script_is_this_main():
    """`pylsm` (the installed script) runs the same main as python -m pylsm; dist-check runs it from
    the wheel."""
    import pylsm.__main__ as cli

    pyproject = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/pyproject.toml")
    text = open(pyproject).read()
    assert 'pylsm = "pylsm.__main__:main"' in text
    with pytest.raises(SystemExit) as e:  # argparse's --version prints and exits 0
        cli.main(["--version"])
    assert e.value.code == 0


def test_changes_backup_backups_and_restore(tmp_path):
    path = str(tmp_path / "ev")
    with pylsm.open(path, wal_retention_seconds=3600) as db:
        for i in range(5):
            db[b"k%d" % i] = b"v%d" % i
        del db[b"k1"]
    r = run("changes", path)
    assert r.returncode == 0, r.stderr
    lines = out(r).splitlines()
    assert len(lines) == 6 and lines[0].startswith("1\t") and lines[0].endswith("put\tk0\tv0")
    assert lines[5].startswith("6\t") and lines[5].endswith("delete\tk1")
    r = run("changes", path, "--since", "4", "--json")
    recs = [json.loads(line) for line in out(r).splitlines()]
    assert [x["lsn"] for x in recs] == [5, 6] and recs[1]["ops"] == [{"op": "delete", "key": "k1"}]
    assert isinstance(recs[0]["timestamp"], float)
    bk = str(tmp_path / "bk")
    r = run("backup", path, bk)
    assert r.returncode == 0 and "backup 1" in out(r), r.stderr
    with pylsm.open(path) as db:
        db[b"later"] = b"x"
    assert run("backup", path, bk).returncode == 0
    r = run("backups", bk, "--json")
    assert [b["id"] for b in json.loads(out(r))] == [1, 2]
    assert run("restore", bk, str(tmp_path / "r1"), "--id", "1").returncode == 0
    assert run("restore", bk, str(tmp_path / "r2")).returncode == 0
    with pylsm.open(tmp_path / "r1") as db:
        assert dict(db.items()) == {b"k0": b"v0", b"k2": b"v2", b"k3": b"v3", b"k4": b"v4"}
    with pylsm.open(tmp_path / "r2") as db:
        assert db[b"later"] == b"x"
    r = run("restore", bk, str(tmp_path / "r2"))
    assert r.returncode == 2 and b"already exists" in r.stderr
    r = run("backups", str(tmp_path / "none"))
    assert r.returncode == 0 and "no backups" in out(r)
    with pylsm.open(tmp_path / "plain") as db:  # nothing kept: the history is gone, said so
        for i in range(3000):
            db[b"p%05d" % i] = b"y" * 64
        db.flush()
    r = run("changes", str(tmp_path / "plain"))
    assert r.returncode == 2 and b"no kept WAL" in r.stderr
