"""CLI round trip on a real small dataset: train → results / checkpoints → evaluate → predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gnn_inn.cli import main
from helpers import DATA, needs_data


def _config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


CFG = """
seed: 0
dataset: {name: nations}
model: {dim: 16, encoder: {name: none}, decoder: {name: distmult}}
train: {epochs: 4, batch_size: 256, lr: 0.01, eval_every: 2, patience: 0,
        loss: {name: kvsall, label_smoothing: 0.1}, device: cpu}
"""


@needs_data
def test_train_evaluate_predict_round_trip(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(_config(tmp_path, CFG)), "--out", str(out),
                 "--data-dir", DATA, "--quiet"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    test_metrics = json.loads(printed[-1])
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt", "results.json"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"] == "nations" and res["params"] == 14 * 16 + 55 * 16
    assert set(res["test"]) >= {"mrr", "mr", "hits@1", "hits@3", "hits@10"}
    assert res["test"]["mrr"] == pytest.approx(test_metrics["mrr"], abs=1e-6)
    assert res["train_seconds"] > 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4] and "valid" in lines[1]

    assert main(["evaluate", str(out / "best.pt"), "--split", "test", "--data-dir", DATA]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["mrr"] == pytest.approx(res["test"]["mrr"], abs=1e-6)

    from gnn_inn.data import load_dataset

    kg = load_dataset("nations", data_dir=DATA)
    h, r, _ = kg.train[0].tolist()
    assert main(["predict", str(out / "best.pt"), "--head", kg.entity_names[h], "--relation",
                 kg.relation_names[r], "--k", "5", "--data-dir", DATA]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert len(pred["answers"]) == 5
    known = set(kg.train[(kg.train[:, 0] == h) & (kg.train[:, 1] == r)][:, 2].tolist())
    for a in pred["answers"]:
        assert a["known_train_answer"] == (kg.entity_names.index(a["entity"]) in known)
    scores = [a["score"] for a in pred["answers"]]
    assert scores == sorted(scores, reverse=True)


@needs_data
def test_resume_continues_exactly(tmp_path, capsys):
    cfg = _config(tmp_path, CFG.replace("decoder: {name: distmult}",
                                        "decoder: {name: complex}"))
    full, part = tmp_path / "full", tmp_path / "part"
    main(["train", "--config", str(cfg), "--out", str(full), "--data-dir", DATA, "--quiet"])
    main(["train", "--config", str(cfg), "--out", str(part), "--data-dir", DATA, "--quiet",
          "--set", "train.epochs=2"])
    main(["train", "--config", str(cfg), "--out", str(part), "--data-dir", DATA, "--quiet",
          "--resume"])
    capsys.readouterr()
    a = torch.load(full / "last.pt", weights_only=False)
    b = torch.load(part / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 4
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    for k in ("best_metric", "best_epoch"):
        assert a[k] == b[k]


@needs_data
def test_stats_command(capsys):
    assert main(["stats", "umls", "--data-dir", DATA]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["num_entities"], s["num_relations"]) == (135, 46)
    assert (s["num_train"], s["num_valid"], s["num_test"]) == (5216, 652, 661)


def test_errors_are_reported_not_raised(tmp_path, capsys):
    bad = _config(tmp_path, "train: {epochz: 3}\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "unknown key 'train.epochz'" in capsys.readouterr().err
