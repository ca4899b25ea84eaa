"""What a newcomer runs: the README's examples verbatim in a fresh empty directory, and the quickstart
notebook executed headless (nbclient), with its outputs checked."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_examples_run_verbatim_in_an_empty_directory(tmp_path):
    blocks = readme_blocks()
    assert len(blocks) >= 3  # the first example, tuple keys, a read-only open
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for i, code in enumerate(blocks):  # in order, in one directory, as a reader would
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 0, f"README block {i} failed:\n{code}\n{r.stderr}"
    assert (tmp_path / "data" / "mydb").is_dir()


def test_quickstart_notebook_executes_and_shows_the_engine(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="make test installs nbclient, nbformat and ipykernel")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_before if env_before else "")
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = env_before

    def text(cell):
        out = []
        for o in cell.outputs:
            out.append(o.get("text", ""))
            for k in ("text/plain", "text/html"):
                out.append(o.get("data", {}).get(k, ""))
        return "".join(out)

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.output_type != "error" for c in code for o in c.outputs)
    assert "pylsm " in text(code[0])
    load = text(code[1])
    assert "1,000,000 keys" in load and "100%" in load  # the count, and the progress bar finished
    card = text(code[2])
    assert "pylsm.DB" in card and "LSM tree" in card and "≈1.0M" in card and "write amp" in card
    assert re.search(r">L[01]<", card)  # at least one level drawn
    scan = text(code[3]).splitlines()
    assert scan[:2] == ["b'user:0000100' b'name-100'", "b'user:0000101' b'name-101'"]
    assert scan[-1] == "b'name-999999'"
    assert "snapshot: b'name-0' True" in text(code[4]) and "now:      b'renamed' False" in text(code[4])
    assert "('user', 42, 'langs'): ['en', 'fr']" in text(code[5])
    assert "before refresh: None" in text(code[6]) and "after refresh:  b'written after" in text(code[6])
    assert "'lsn': 1000003" in text(code[7])
