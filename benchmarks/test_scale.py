"""The scale run's script at a tiny size (make bench-smoke): it loads, settles, reads back and checks every
value it reads, and reports each figure the README's scale table takes. `make scale` is the real run."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)   # the checkout, with the extension built in place (make build)


def test_scale_script_reports_every_figure(tmp_path):
    out = tmp_path / "scale.json"
    p = subprocess.run([sys.executable, os.path.join(HERE, "scale.py"), "--n", "5000", "--gets", "2000",
                        "--settle", "0",
                        "--cold-gets", "500", "--dir", str(tmp_path), "--json", str(out)],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, SCALE_PROGRESS="0",
                                PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])))
    assert p.returncode == 0, p.stdout + p.stderr
    (r,) = json.loads(out.read_text())
    assert r["engine"] == "pylsm" and r["n"] == 5000
    assert len(r["tenths"]) == 10 and all(x > 0 for x in r["tenths"])
    assert 0 < r["longest_stall_s"] < r["load_secs"]
    assert r["write_amp"] >= 0 and r["space"] > 0.5
    assert r["peak_anon"] >= r["base_anon"] > 0
    assert r["warm_gets_per_s"] > 0 and r["cold_gets_per_s"] > 0
    assert len(r["level_written"]) == 7 and r["level_written"][0] > 0
    assert sum(r["level_written"]) >= sum(r["load_level_written"]) > 0
    assert 0 < r["table_heap"] < r["peak_anon"]
    compactions, split = r["load_compactions"]
    assert 0 <= split <= compactions
    assert "longest single put" in p.stdout and "random gets, cold" in p.stdout
    assert "table writes per level" in p.stdout and "the tables' own at the end" in p.stdout
    assert os.listdir(tmp_path) == ["scale.json"]   # the databases are removed
