"""Shared fixtures of the pylsm test suite.

  db_path        a fresh database path (not yet created) under pytest's tmp_path
  fast_dir       a scratch directory on tmpfs when there is one (for sweeps that reopen thousands of
                 times; recovery logic does not depend on the file system), else under tmp_path
  spawn          start a child process running tests/lsmtest.py <command> with the same pylsm build;
                 every child is killed (by its own pid) at teardown if still running
  faults         pylsm._pylsm._test_fault, cleared before and after the test whatever happens

Tests marked ``slow`` run only when selected with ``-m slow`` (``make stress``).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile

import pytest

import lsmtest


def pytest_configure(config):
    # pytest's default ("auto", long) tracebacks repr every frame's arguments.  A failing pylsm.open()
    # leaves the half-made DB as `self` in DB.__init__'s frame, and repr() of such an object crashes
    # the interpreter (see test_api.py::test_db_whose_open_failed_raises_instead_of_crashing), which
    # would take the whole run down on any failure that passes through open().  Short tracebacks do
    # not repr arguments.  An explicit --tb=... is respected.
    if config.getoption("tbstyle", "auto") == "auto":
        config.option.tbstyle = "short"


def pytest_collection_modifyitems(config, items):
    markexpr = config.getoption("markexpr", default="") or ""
    if "slow" in markexpr:
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "db")


@pytest.fixture
def fast_dir(tmp_path):
    base = "/dev/shm"
    if os.path.isdir(base) and os.access(base, os.W_OK):
        d = tempfile.mkdtemp(prefix="pylsm-test-", dir=base)
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        d = tmp_path / "fast"
        d.mkdir()
        yield str(d)


@pytest.fixture
def spawn():
    started = []

    def _spawn(command, *args, env=None, stdin=None):
        p = subprocess.Popen(lsmtest.child_argv(command, *args), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=stdin, env=lsmtest.child_env(env))
        started.append(p)
        return p

    yield _spawn
    for p in started:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
        for s in (p.stdout, p.stderr, p.stdin):
            if s:
                s.close()


@pytest.fixture
def faults():
    from pylsm import _pylsm

    _pylsm._test_fault_clear()
    try:
        yield _pylsm._test_fault
    finally:
        _pylsm._test_fault_clear()
