"""The command line (python -m pylsm): each command against a real database."""
import subprocess
import sys

import pylsm


def run(*args):
    return subprocess.run([sys.executable, "-m", "pylsm", *args], capture_output=True, text=True, timeout=60)


def test_cli_commands(db_path):
    with pylsm.open(db_path) as db:
        db.update({b"user:1": b"alice", b"user:2": b"b\x00b", b"other": b"x"})
        db.flush()
    r = run("get", db_path, "user:2")
    assert r.returncode == 0 and r.stdout.strip() == "b\\x00b"
    r = run("get", db_path, "nope")
    assert r.returncode == 1
    r = run("scan", db_path, "--prefix", "user:", "--reverse")
    assert r.returncode == 0 and r.stdout.splitlines() == ["user:2\tb\\x00b", "user:1\talice"]
    r = run("scan", db_path, "--limit", "1")
    assert r.stdout.splitlines() == ["other\tx"]
    r = run("stats", db_path)
    assert r.returncode == 0 and '"sstables": 1' in r.stdout
    assert run("verify", db_path).returncode == 0
    assert run("repair", db_path).returncode == 0
    with pylsm.open(db_path) as db:
        assert db[b"user:1"] == b"alice"
    assert run("destroy", db_path).returncode == 0
    r = run("stats", db_path)
    assert r.returncode == 2 and "pylsm:" in r.stderr
