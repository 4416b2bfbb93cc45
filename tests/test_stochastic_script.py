"""scripts/stochastic.py writes its results as JSON and the Markdown tables from that JSON, and
``--tables`` regenerates the same tables from the committed file alone."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stochastic.py"
sys.path.insert(0, str(SCRIPT.parent))
from common import public_args, public_argv  # noqa: E402


def test_results_json_and_tables_regenerated_from_it(tmp_path):
    res = tmp_path / "results"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--datasets", "synthetic", "--budget", "30",
         "--epochs", "2", "--eval-every", "0", "--dim", "16", "--samples", "4",
         "--temperatures", "1.0", "--out", str(tmp_path / "runs"), "--results", str(res)],
        check=True, capture_output=True, text=True, timeout=600)
    # checkpoints under --out, results under --results only
    assert sorted(p.name for p in res.iterdir()) == ["synthetic.json", "synthetic.md"]
    assert any((tmp_path / "runs" / "synthetic").rglob("best.pt"))
    out = json.loads((res / "synthetic.json").read_text())
    md = (res / "synthetic.md").read_text()
    assert [r["model"] for r in out["categories"]] == [
        "flow/rotation", "stochastic_flow/rotation+affine_coupling"]
    for row in out["categories"]:
        assert row["epochs"] == 2
        assert f"| {row['model']} | 2 | {row['train_s']:.3f} | {row['all']:.3f} |" in md
        assert row["all"] == out["raw"][row["model"]]["results"]["test"]["mrr"]
    assert "--budget 30" in md and "set recall@size" in md
    # the machine's paths stay out of the committed files
    for text in (md, (res / "synthetic.json").read_text()):
        assert str(tmp_path) not in text
    assert "out" not in out["args"] and "data_dir" not in out["args"]
    # the tables come from the JSON alone: regenerated, they are the same
    (res / "synthetic.md").unlink()
    subprocess.run([sys.executable, str(SCRIPT), "--tables", str(res / "synthetic.json")],
                   check=True, capture_output=True, text=True, timeout=120)
    assert (res / "synthetic.md").read_text() == md


def test_public_args_leave_out_the_machines_paths():
    argv = ["scripts/x.py", "--datasets", "fb15k-237", "--data-dir", "/data", "--budget", "60",
            "--out=/runs", "--results", "/res", "--seed", "1"]
    assert public_argv(argv) == ["scripts/x.py", "--datasets", "fb15k-237", "--budget", "60",
                                 "--seed", "1"]
    assert public_args({"budget": 60, "data_dir": "/data", "out": "/runs", "json": "/r.json"}) \
        == {"budget": 60}
