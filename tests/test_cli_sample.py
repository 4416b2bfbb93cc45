"""``gnn-inn sample``: sampled answers of a tiny trained stochastic-flow checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gnn_inn.cli import main

CFG = """
seed: 0
dataset: {name: synthetic}
model:
  dim: 16
  encoder: {name: none}
  decoder: %s
train: {epochs: 2, batch_size: 512, lr: 0.01, eval_every: 2, patience: 0,
        loss: {name: %s}, device: cpu}
eval: {batch_size: 512}
"""


STOCHASTIC = ("{name: stochastic_flow, rerank_k: 8, train_rerank_k: 4, "
              "coupling: {name: affine_coupling, hidden: 16}}")


def _train(tmp_path: Path, decoder: str, loss: str) -> Path:
    name = "stochastic" if decoder == STOCHASTIC else decoder
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(CFG % (decoder if decoder == STOCHASTIC else f"{{name: {decoder}}}", loss))
    out = tmp_path / name
    assert main(["train", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    return out / "best.pt"


def test_sample_tails_and_heads_of_a_trained_checkpoint(tmp_path, capsys):
    from gnn_inn.data import load_dataset

    ckpt = _train(tmp_path, STOCHASTIC, "flow_nll")
    capsys.readouterr()
    kg = load_dataset("synthetic")
    hm = kg.relation_names.index("has_member")
    leader = int(kg.train[kg.train[:, 1] == hm][0, 0])
    args = ["sample", str(ckpt), "--head", kg.entity_names[leader], "--relation", "has_member",
            "--n", "20", "--seed", "3"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"] == f"({kg.entity_names[leader]}, has_member, ?)"
    assert out["n"] == 20 and out["distinct"] == len(out["samples"])
    assert sum(s["count"] for s in out["samples"]) == 20
    assert sum(s["frequency"] for s in out["samples"]) == pytest.approx(1.0)
    counts = [s["count"] for s in out["samples"]]
    assert counts == sorted(counts, reverse=True)
    # the true answers are the leader's members from all three splits
    known = set()
    for split in ("train", "valid", "test"):
        tr = getattr(kg, split)
        known |= set(tr[(tr[:, 0] == leader) & (tr[:, 1] == hm)][:, 2].tolist())
    assert {a["entity"] for a in out["true_answers"]} == {kg.entity_names[e] for e in known}
    assert len(known) == 4
    hit = {s["entity"] for s in out["samples"]}
    for a in out["true_answers"]:
        assert a["sampled"] == (a["entity"] in hit) and set(a["splits"]) <= {"train", "valid",
                                                                            "test"}
    for s in out["samples"]:
        assert s["true_answer"] == (s["entity"] in {kg.entity_names[e] for e in known})
    assert out["recall"] == pytest.approx(sum(a["sampled"] for a in out["true_answers"]) / 4)
    # the same seed gives the same answer; the head mirror answers (?, member_of, leader)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == out
    assert main(["sample", str(ckpt), "--tail", kg.entity_names[leader], "--relation",
                 "member_of", "--n", "5"]) == 0
    mirror = json.loads(capsys.readouterr().out)
    assert mirror["query"] == f"(?, member_of, {kg.entity_names[leader]})"
    assert sum(s["count"] for s in mirror["samples"]) == 5 and len(mirror["true_answers"]) == 4


def test_sample_errors_are_reported(tmp_path, capsys):
    ckpt = _train(tmp_path, "flow", "1vsall")
    capsys.readouterr()
    assert main(["sample", str(ckpt), "--head", "e0", "--relation", "has_member"]) == 2
    assert "cannot sample" in capsys.readouterr().err
    sto = _train(tmp_path, STOCHASTIC, "flow_nll")
    capsys.readouterr()
    assert main(["sample", str(sto), "--head", "no-such-entity", "--relation",
                 "has_member"]) == 2
    assert "unknown entity 'no-such-entity'" in capsys.readouterr().err
