"""scripts/fit_check.py on a tiny CompGCN run: its training / validation ranks are those of the
evaluator on the same drawn triples, and its saturation numbers those of the encoder output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gnn_inn.cli import main
from gnn_inn.evaluation.evaluator import evaluate
from gnn_inn.training import load_trained
from helpers import write_graph

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fit_check.py"

CFG = """
seed: 0
dataset: {name: toy}
model: {dim: 8, encoder: {name: compgcn, num_layers: 1, activation: ACT},
        decoder: {name: flow, flow: rotation}}
train: {epochs: 3, batch_size: 64, lr: 0.05, eval_every: 1, patience: 0, device: cpu,
        loss: {name: 1vsall}}
eval: {batch_size: 64}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit_check")
    data = write_graph(root / "data")
    out = {}
    for act in ("tanh", "identity"):
        cfg = root / f"{act}.yaml"
        cfg.write_text(CFG.replace("ACT", act))
        assert main(["train", "--config", str(cfg), "--out", str(root / act), "--data-dir",
                     str(data), "--quiet"]) == 0
        out[act] = root / act / "best.pt"
    return data, out


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=600)


def test_ranks_and_saturation_are_the_evaluators_and_the_encoders(runs, tmp_path):
    data, ck = runs
    out = tmp_path / "fit.json"
    proc = run_script(str(ck["tanh"]), str(ck["identity"]), "--triples", "50", "--seed", "3",
                      "--data-dir", str(data), "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["encoder"]["activation"] for r in rows] == ["tanh", "identity"]
    for row, path in zip(rows, (ck["tanh"], ck["identity"])):
        model, kg, config = load_trained(path, data_dir=str(data))
        for split, size in (("train", 50), ("valid", 30)):  # the toy valid split has 30
            assert row[split]["n"] == size
            g = torch.Generator().manual_seed(3)
            part = getattr(kg, split)[torch.randperm(getattr(kg, split).size(0),
                                                     generator=g)[:50]]
            m = evaluate(model, part, kg.filter_index, batch_size=64,
                         policy=config.eval.tie_policy).metrics()
            assert row[split]["mrr"] == pytest.approx(m["mrr"])
            assert row[split]["hits@10"] == pytest.approx(m["hits@10"])
        model.eval()
        with torch.no_grad():
            ent, _ = model.encode()
        assert row["entity"]["mean_abs"] == pytest.approx(ent.abs().mean().item(), rel=1e-5)
        assert row["entity"]["share_abs_gt_0.9"] == pytest.approx(
            (ent.abs() > 0.9).float().mean().item())
    # tanh bounds the output; the linear (batch-normed) one is not bounded by 1
    assert rows[0]["entity"]["mean_abs"] < 1.0
    assert rows[1]["entity"]["mean_norm"] != pytest.approx(rows[0]["entity"]["mean_norm"])
    assert "| train MRR | valid MRR |" in proc.stdout


def test_rejects_a_non_positive_sample(runs):
    data, ck = runs
    proc = run_script(str(ck["tanh"]), "--triples", "0", "--data-dir", str(data))
    assert proc.returncode == 2 and "--triples must be >= 1" in proc.stderr
