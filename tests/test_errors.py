"""Errors where Python code expects them: the class tree, FileNotFoundError for a missing database,
a LockError that says when this process holds the lock (a notebook cell run twice), docstrings."""
from __future__ import annotations

import errno
import inspect

import pytest

import pylsm


def test_class_tree():
    assert issubclass(pylsm.CorruptionError, pylsm.Error)
    assert issubclass(pylsm.LockError, pylsm.Error)
    assert issubclass(pylsm.ClosedError, pylsm.Error) and issubclass(pylsm.ClosedError, ValueError)
    assert issubclass(pylsm.StorageError, pylsm.Error) and issubclass(pylsm.StorageError, OSError)
    assert issubclass(pylsm.NotFoundError, pylsm.Error) and issubclass(pylsm.NotFoundError, FileNotFoundError)
    assert issubclass(pylsm.ReadOnlyError, pylsm.Error)
    assert issubclass(pylsm.PairError, TypeError) and issubclass(pylsm.PairError, ValueError)


def test_every_exception_class_has_a_docstring():
    for name in dir(pylsm):
        obj = getattr(pylsm, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert obj.__doc__ and len(obj.__doc__) > 20, name
            assert obj.__module__ == "pylsm", (name, obj.__module__)


def test_missing_database_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        pylsm.open(tmp_path / "nope", create_if_missing=False)
    assert isinstance(e.value, pylsm.NotFoundError)
    assert e.value.errno == errno.ENOENT
    assert "nope" in str(e.value)
    assert not (tmp_path / "nope").exists()


def test_missing_parents_are_created(tmp_path):
    with pylsm.open(tmp_path / "a" / "b" / "c") as db:
        db[b"k"] = b"v"
    with pylsm.open(tmp_path / "a" / "b" / "c", create_if_missing=False) as db:
        assert db[b"k"] == b"v"


def test_second_writer_in_this_process(tmp_path):
    db = pylsm.open(tmp_path / "db")
    with pytest.raises(pylsm.LockError) as e:
        pylsm.open(tmp_path / "db")
    msg = str(e.value)
    assert "this process" in msg and "close()" in msg and "notebook" in msg and "read_only=True" in msg
    db.close()
    with pylsm.open(tmp_path / "db"):  # closing the first handle releases the lock
        pass


def test_second_writer_in_another_process(tmp_path):
    import subprocess
    import sys

    db = pylsm.open(tmp_path / "db")
    code = ("import pylsm, sys\n"
            "try:\n    pylsm.open(sys.argv[1])\n"
            "except pylsm.LockError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "db")], capture_output=True,
                         text=True, check=True).stdout
    assert "another process" in out and "this process" not in out
    db.close()


def test_existing_database_with_error_if_exists(tmp_path):
    pylsm.open(tmp_path / "db").close()
    with pytest.raises(pylsm.Error, match="already exists"):
        pylsm.open(tmp_path / "db", error_if_exists=True)
