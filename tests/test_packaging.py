"""Packaging: one source for the version, the license shipped, and a build without a C compiler that
says so (instead of blaming ISA-L).  The wheel itself is checked by `make dist-check`
(tests/check_wheel.py): manylinux, ISA-L carried, loaded with the system's copy hidden."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pylsm

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_written_once():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and not re.search(r'^version\s*=\s*"', pyproject, re.M)
    assert 'version = {attr = "pylsm.__version__"}' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+", pylsm.__version__)
    assert f"## {pylsm.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_license_file_is_shipped():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "LICENSE" in (ROOT / "MANIFEST.in").read_text()


def test_a_missing_compiler_is_named_as_such(tmp_path):
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"))
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-temp", str(tmp_path / "b"),
                        "--build-lib", str(tmp_path / "l")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert "no C compiler" in r.stderr and "no-such-cc" in r.stderr
    assert "ISA-L was not found" not in r.stderr
