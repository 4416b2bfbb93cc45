"""scripts/epoch_levers.py end to end on the synthetic suite: each lever trains in its own child,
its overrides reach the trainer (fewer steps for a larger batch or KvsAll's unique queries)
and the projection is steps per epoch x median step time."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "epoch_levers.py"


def test_levers_time_steps_in_children_and_project_the_epoch(tmp_path):
    pytest.importorskip("torch_sparse")  # the sampled lever's neighbour sampler
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "dataset": {"name": "synthetic"},
        "model": {"dim": 8, "encoder": {"name": "compgcn", "num_layers": 1},
                  "decoder": {"name": "flow", "flow": "rotation"}},
        "train": {"loss": {"name": "1vsall"}, "epochs": 1, "batch_size": 64, "lr": 0.01},
    }))
    out = tmp_path / "levers.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(config), "--levers", "baseline", "batch_8192",
         "kvsall", "sampled", "--base-set", "train.batch_size=64", "--threads", "1",
         "--warmup", "1", "--steps", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = {r["lever"]: r for r in data["rows"]}
    assert set(rows) == {"baseline", "batch_8192", "kvsall", "sampled"}
    assert data["threads"] == 1 and data["base_set"] == ["train.batch_size=64"]
    base = rows["baseline"]
    assert base["timed_steps"] == 2 and base["steps_per_epoch"] > 1
    # one step covers the whole synthetic train split at batch 8192
    assert rows["batch_8192"]["steps_per_epoch"] == 1
    # KvsAll: one row per unique (anchor, relation) query, at most two per triple (a 1vsAll
    # step holds each triple's head and tail query)
    assert base["steps_per_epoch"] < rows["kvsall"]["steps_per_epoch"] \
        <= 2 * base["steps_per_epoch"]
    assert rows["sampled"]["steps_per_epoch"] == base["steps_per_epoch"]
    for r in rows.values():
        assert r["s_per_epoch"] == pytest.approx(r["s_per_step"] * r["steps_per_epoch"])
        assert r["peak_rss_mb"] > 0
    assert "s / epoch (projected)" in proc.stdout
