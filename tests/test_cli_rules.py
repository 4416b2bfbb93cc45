"""``gnn-inn rules``: mined composition rules and what ``patterns: auto`` adopts."""

from __future__ import annotations

import json

from gnn_inn.cli import main


def test_rules_command_prints_the_synthetic_composition(capsys):
    assert main(["rules", "synthetic", "--top", "3", "--min-support", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"] == "synthetic" and out["num_rules"] >= 3
    assert len(out["rules"]) == 3
    assert out["rules"][0]["rule"] == "compose_3(x,z) <= compose_1(x,y) ∧ compose_2(y,z)"
    assert all(r["support"] >= 20 and r["pca_confidence"] >= 0.5 for r in out["rules"])
    adopted = out["adopted_by_auto"]["rules"]
    assert [r["rule"] for r in adopted] == [out["rules"][0]["rule"]]


def test_rules_command_rejects_bad_thresholds(capsys):
    assert main(["rules", "synthetic", "--min-confidence", "1.5"]) == 2
    assert "--min-confidence must be in [0, 1]" in capsys.readouterr().err
