"""scripts/campaign.py end to end on the built-in synthetic KG: runs train in children, finished
runs are skipped, unfinished ones resume from last.pt without spending their budget twice, and
the tables are written from the JSON files."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "campaign.py"


def _campaign(tmp_path: Path, runs: list[dict], budget: float = 600) -> Path:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "dataset": {"name": "synthetic"},
        "model": {"dim": 8, "encoder": {"name": "none"}, "decoder": {"name": "distmult"}},
        "train": {"loss": {"name": "1vsall"}, "epochs": 2, "batch_size": 256, "lr": 0.01,
                  "eval_every": 1},
        "eval": {"batch_size": 512},
    }))
    for run in runs:
        run.setdefault("config", str(config))
    spec = tmp_path / "campaign.yaml"
    spec.write_text(yaml.safe_dump({"dataset": "synthetic", "budget": budget, "threads": 1,
                                    "runs": runs}))
    return spec


def _run(spec: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(spec), "--runs-dir", str(tmp_path / "runs"),
         "--results-dir", str(tmp_path / "results"), *extra],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _metric_lines(tmp_path: Path, name: str) -> list[dict]:
    path = tmp_path / "runs" / "synthetic" / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_campaign_runs_skips_and_writes_tables(tmp_path):
    spec = _campaign(tmp_path, [{"name": "a"}, {"name": "b", "set": ["model.dim=4"]}])
    proc = _run(spec, tmp_path)
    assert "a: test MRR" in proc.stdout and "b: test MRR" in proc.stdout
    rows = {n: json.loads((tmp_path / "results" / "synthetic" / f"{n}.json").read_text())
            for n in "ab"}
    for name, row in rows.items():
        assert row["name"] == name and row["kind"] == "gnn_inn"
        assert row["epochs"] == 2 and row["budget"] == 600 and row["threads"] == 1
        assert 0 < row["test"]["mrr"] <= 1 and row["peak_rss_mb"] > 0
        assert row["config"]["train"]["time_budget"] == 600
        # per relation: every relation of the test split, head and tail
        assert set(row["test_per_relation"]) and all(
            {"head", "tail", "both"} <= set(m) for m in row["test_per_relation"].values())
        assert set(row["test_per_category"]) <= {"1-1", "1-N", "N-1", "N-N"}
    assert rows["b"]["config"]["model"]["dim"] == 4 and rows["b"]["params"] < rows["a"]["params"]
    table = (tmp_path / "results" / "synthetic.md").read_text()
    assert "| a | gnn_inn |" in table and "| b | gnn_inn |" in table
    assert "per relation" in table  # the synthetic suite has few relations

    before = {n: (tmp_path / "results" / "synthetic" / f"{n}.json").stat().st_mtime_ns
              for n in "ab"}
    proc = _run(spec, tmp_path)
    assert "a: done" in proc.stdout and "b: done" in proc.stdout
    assert before == {n: (tmp_path / "results" / "synthetic" / f"{n}.json").stat().st_mtime_ns
                      for n in "ab"}


def test_campaign_resumes_unfinished_and_never_trains_a_finished_run_again(tmp_path):
    spec = _campaign(tmp_path, [{"name": "a"}])
    _run(spec, tmp_path)
    assert len(_metric_lines(tmp_path, "a")) == 2
    result = tmp_path / "results" / "synthetic" / "a.json"

    # killed after training but before its JSON was written: no epoch is trained again
    result.unlink()
    _run(spec, tmp_path)
    assert len(_metric_lines(tmp_path, "a")) == 2
    assert json.loads(result.read_text())["epochs"] == 2

    # a longer schedule for the same run continues from last.pt (epochs 3 and 4 only)
    result.unlink()
    spec = _campaign(tmp_path, [{"name": "a", "set": ["train.epochs=4"]}])
    _run(spec, tmp_path)
    assert [m["epoch"] for m in _metric_lines(tmp_path, "a")] == [1, 2, 3, 4]
    assert json.loads(result.read_text())["epochs"] == 4


def test_campaign_rejects_bad_specs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dataset": "synthetic", "budget": 10,
                                   "runs": [{"name": "x", "config": "no/such.yaml"}]}))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "no config file no/such.yaml" in proc.stderr
    bad.write_text(yaml.safe_dump({"dataset": "synthetic", "budget": -1,
                                   "runs": [{"name": "x", "config": str(bad)}]}))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "budget must be a positive number" in proc.stderr


def _module():
    spec = importlib.util.spec_from_file_location("campaign", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return mod


def _row(name, patterns, mrrs, *, encoder="none", mode="free"):
    """A result row as campaign children write it (only the fields the tables read)."""
    per_rel = {rel: {"both": {"mrr": m, "count": c}} for rel, (m, c) in mrrs.items()}
    metrics = {"mrr": 0.5, "hits@1": 0.4, "hits@3": 0.5, "hits@10": 0.6, "mr": 10.0}
    cat = {"1-1": {"head": {"mrr": 0.9}, "tail": {"mrr": 0.8}}}
    return {"name": name, "kind": "gnn_inn", "budget": 60, "threads": 1, "epochs": 2,
            "test": metrics, "valid": metrics, "params": 10, "peak_rss_mb": 100.0,
            "load_before": [0.1], "load_after": [0.2], "dataset": "toy",
            "test_per_category": cat, "test_per_relation": per_rel,
            "relation_patterns": patterns,
            "config": {"model": {"encoder": {"name": encoder},
                                 "decoder": {"name": "flow", "flow": "rotation",
                                             "patterns": mode}},
                       "train": {"time_budget": 60}}}


def test_tables_report_what_auto_chose_beside_the_free_run(tmp_path):
    mod = _module()
    mrr_free = {"sym": (0.5, 10), "inv": (0.2, 30), "x": (0.4, 10)}
    mrr_auto = {"sym": (0.9, 10), "inv": (0.4, 30), "x": (0.4, 10)}
    free = _row("flow", {"sym": "free", "inv": "free", "x": "free"}, mrr_free)
    auto = _row("flow_auto", {"sym": "involution", "inv": "tied-inverse:x", "x": "free"},
                mrr_auto, mode="auto")
    other = _row("gnn", {"sym": "free", "inv": "free", "x": "free"}, mrr_free,
                 encoder="compgcn")  # a different config: never the partner
    rows = mod.pattern_rows([other, free, auto])
    got = {r["kind"]: r for r in rows}
    assert set(got) == {"involution", "tied-inverse", "free"}
    assert got["involution"]["relations"] == 1 and got["involution"]["queries"] == 10
    assert got["involution"]["mrr"] == 0.9 and got["involution"]["free"] == 0.5
    assert got["tied-inverse"]["partner"] == "flow" and got["tied-inverse"]["free"] == 0.2
    assert mod.model_label(auto) == "lookup → rotation flow (auto)"
    assert mod.model_label(other) == "compgcn → rotation flow (free)"
    for act, label in (("identity", "linear"), ("tanh", "tanh")):
        other["config"]["model"]["encoder"]["activation"] = act
        assert mod.model_label(other) == f"compgcn ({label} output) → rotation flow (free)"
    other["config"]["model"]["encoder"].pop("activation")
    for r in (free, auto, other):
        (tmp_path / "toy").mkdir(exist_ok=True)
        (tmp_path / "toy" / f"{r['name']}.json").write_text(json.dumps(r))
    md = mod.tables(tmp_path, "toy")
    assert "What `patterns: auto` chose" in md
    assert "| sym | 10 | involution |" in md  # the per-relation table names auto's choice
    # without a tying run neither the section nor the column appears
    (tmp_path / "toy" / "flow_auto.json").unlink()
    md = mod.tables(tmp_path, "toy")
    assert "patterns: auto" not in md and "auto's pattern" not in md


def test_shipped_campaigns_parse():
    mod = _module()
    for path in sorted((SCRIPT.parent / "campaigns").glob("*.yaml")):
        c = mod.load_spec(path)
        assert c["runs"] and all(r["budget"] > 0 for r in c["runs"])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pykeen") is None,
                    reason="PyKEEN is the 'bench' extra")
def test_campaign_pykeen_contender_ranked_by_our_evaluator(tmp_path):
    spec = _campaign(tmp_path, [{"name": "pk", "budget": 2, "pykeen": {
        "model": "DistMult", "model_kwargs": {"embedding_dim": 8},
        "training_kwargs": {"num_epochs": 3, "batch_size": 256, "use_tqdm": False}}}])
    spec_dict = yaml.safe_load(spec.read_text())
    del spec_dict["runs"][0]["config"]
    spec.write_text(yaml.safe_dump(spec_dict))
    _run(spec, tmp_path)
    row = json.loads((tmp_path / "results" / "synthetic" / "pk.json").read_text())
    assert row["kind"] == "pykeen" and 1 <= row["epochs"] <= 3
    assert 0 < row["test"]["mrr"] <= 1 and row["test_per_relation"]


@pytest.mark.parametrize("dataset", ["fb15k-237", "wn18rr"])
def test_budget_configs_are_the_campaigns_flagship(dataset):
    """configs/<dataset>_cpu_budget.yaml is what the campaign trains as its flagship, and its
    train.time_budget is the campaign's 60-minute budget for it."""
    from gnn_inn.config import Config

    mod = _module()
    spec = mod.load_spec(SCRIPT.parent / "campaigns" / f"{dataset}_cpu.yaml")
    run = {r["name"]: r for r in spec["runs"]}["flagship_cpu_budget"]
    assert run["config"] == f"configs/{dataset}_cpu_budget.yaml" and not run["set"]
    cfg = Config.load(SCRIPT.parents[1] / run["config"])
    assert cfg.dataset.name == dataset and cfg.model.encoder["name"] == "compgcn"
    assert cfg.model.decoder["name"] == "flow"
    assert cfg.train.time_budget == run["budget"] == 3600 and run["threads"] == 2
