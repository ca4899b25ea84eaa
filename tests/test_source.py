"""Lint the C sources for the project's structural rules that a compiler does not check (one concept per file pair, no Python.h in csrc/, ...)."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_core_never_includes_python_h():
    offenders = [p.name for p in (ROOT / "csrc").glob("*.[ch]") if "Python.h" in p.read_text()]
    assert offenders == []


def test_gil_release_is_paired_and_touches_no_python_object():
    """Every Py_BEGIN_ALLOW_THREADS is closed by a Py_END_ALLOW_THREADS before the next one, and no
    Python C-API call (Py*/_Py*) stands between them: without the GIL nothing may touch Python."""
    src = (ROOT / "pylsm" / "_pylsm.c").read_text()
    pairs = re.findall(r"Py_BEGIN_ALLOW_THREADS(.*?)Py_END_ALLOW_THREADS", src, flags=re.S)
    assert len(pairs) == src.count("Py_BEGIN_ALLOW_THREADS") == src.count("Py_END_ALLOW_THREADS")
    assert len(pairs) >= 5
    for body in pairs:
        assert "Py_BEGIN_ALLOW_THREADS" not in body
        calls = re.findall(r"\b_?Py[A-Za-z_]*\s*\(", body)
        assert calls == [], f"Python API used without the GIL: {calls} in {body!r}"


def test_every_core_source_is_built_and_shipped():
    """setup.py builds csrc/*.c and MANIFEST.in ships csrc/*.c and *.h: a new file needs no list edit."""
    setup = (ROOT / "setup.py").read_text()
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert 'glob.glob("csrc/*.c")' in setup
    assert "recursive-include csrc *.c *.h" in manifest
