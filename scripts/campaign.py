"""Benchmark campaign: train a list of contenders, each under one wall-clock training budget.

```
python scripts/campaign.py scripts/campaigns/fb15k-237_cpu.yaml  # run what is not done
python scripts/campaign.py SPEC --detach                         # same, in the background
python scripts/campaign.py SPEC --only NAME [NAME ...]           # some of the runs
python scripts/campaign.py SPEC --commit                         # git-commit each result
python scripts/campaign.py SPEC --tables                         # rewrite the tables only
```

A campaign file names a dataset (and optionally a campaign id, default the dataset, which names the
results folder and table), a default budget (seconds of training; evaluation is not counted, for
either side) and thread count, and its runs: a project config (a file, or a list of config pieces
merged in order) plus ``--set`` overrides, or a PyKEEN experiment file shipped with PyKEEN plus
overrides. Each run trains in a fresh child process (peak RSS from the kernel, threads pinned), in
``runs/campaign/<campaign>/<name>/``; a rerun skips finished runs and continues unfinished ones from
their ``last.pt`` (the training clock is saved in the checkpoint, so a budget is never spent twice).
Each finished run writes ``docs/results/<campaign>/<name>.json`` (resolved config, machine, load,
budget, epochs, valid / test metrics, head / tail, per category and per relation) and the tables in
``docs/results/<campaign>.md`` are regenerated from all JSON files of that campaign; a run's
``reference`` (published numbers, with their ``source``) is printed beside it. Every contender, ours
and PyKEEN's, is ranked by the same evaluator (filtered, realistic ties).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_info, markdown_table, run_child  # noqa: E402

RESULT_TAG = "CAMPAIGN_RESULT "
CATEGORIES = ("1-1", "1-N", "N-1", "N-N")


# -------------------------------------------------------------------------- spec
def load_spec(path: str | Path) -> dict:
    """Read and check a campaign file; every run gets its budget, threads and kind."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or "dataset" not in spec or not spec.get("runs"):
        raise SystemExit(f"{path}: a campaign needs 'dataset' and a non-empty 'runs' list")
    names = set()
    for i, run in enumerate(spec["runs"]):
        where = f"{path}: runs[{i}]"
        if not isinstance(run, dict) or "name" not in run:
            raise SystemExit(f"{where}: each run needs a 'name'")
        if run["name"] in names:
            raise SystemExit(f"{where}: duplicate run name {run['name']!r}")
        names.add(run["name"])
        kinds = [k for k in ("config", "pykeen") if k in run]
        if len(kinds) != 1:
            raise SystemExit(f"{where} ({run['name']}): give exactly one of 'config' or 'pykeen'")
        run["kind"] = "gnn_inn" if kinds[0] == "config" else "pykeen"
        run.setdefault("budget", spec.get("budget"))
        run.setdefault("threads", spec.get("threads", 1))
        run.setdefault("set", [])
        if not isinstance(run["budget"], (int, float)) or run["budget"] <= 0:
            raise SystemExit(f"{where} ({run['name']}): budget must be a positive number of "
                             f"seconds, got {run['budget']!r}")
        if run["kind"] == "gnn_inn":
            files = run["config"] if isinstance(run["config"], list) else [run["config"]]
            for f in files:
                if not (ROOT / f).is_file():
                    raise SystemExit(f"{where} ({run['name']}): no config file {f}")
    spec.setdefault("data_dir", None)
    spec.setdefault("campaign", spec["dataset"])
    return spec


def result_path(results_dir: Path, campaign: str, name: str) -> Path:
    return results_dir / campaign / f"{name}.json"


# ------------------------------------------------------------------------ children
def _per_relation(result, kg) -> dict:
    """``{relation name: {"both"/"head"/"tail": metrics + count}}`` from an EvalResult."""
    out: dict[str, dict] = {}
    for direction in ("both", "head", "tail"):
        for r, m in result.per_relation(direction).items():
            out.setdefault(kg.relation_names[r], {})[direction] = m
    return out


def _summary(result, kg) -> dict:
    return {
        "test": result.metrics(),
        "test_head": result.metrics("head"),
        "test_tail": result.metrics("tail"),
        "test_per_category": result.per_category(kg.relation_categories()),
        "test_per_relation": _per_relation(result, kg),
    }


def child_gnn_inn(run: dict, out: Path, data_dir: str | None) -> dict:
    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config

    overrides = [*run["set"], f"train.time_budget={run['budget']}"]
    files = run["config"] if isinstance(run["config"], list) else [run["config"]]
    cfg = Config.load([ROOT / f for f in files], overrides)
    if cfg.dataset.name != run["dataset"]:
        raise SystemExit(f"{run['name']}: {run['config']} trains on {cfg.dataset.name!r}, but "
                         f"the campaign is on {run['dataset']!r}")
    trainer = trainer_from_config(cfg, data_dir=data_dir, out_dir=out, quiet=True)
    if (out / "last.pt").is_file():
        trainer.resume(out / "last.pt")
    t = cfg.train
    spent = (trainer.epoch >= t.epochs or trainer.train_seconds >= t.time_budget
             or (t.patience and trainer.bad_evals >= t.patience))
    if spent:  # killed after its last epoch: finish the bookkeeping only
        if trainer.best_state is not None:
            trainer.model.load_state_dict(trainer.best_state)
        res = trainer.results()
    else:
        res = trainer.fit()
    test = trainer.evaluate("test")
    return {
        "config": cfg.to_dict(),
        "valid": res["valid"],
        **_summary(test, trainer.kg),
        "params": res["params"],
        "epochs": res["epochs"],
        "best_epoch": res["best_epoch"],
        "train_seconds": res["train_seconds"],
        **({"relation_patterns": res["relation_patterns"]} if "relation_patterns" in res else {}),
    }


def pykeen_experiment(name: str) -> dict:
    """The ``pipeline`` block of an experiment file shipped in ``pykeen/experiments``."""
    import pykeen

    path = Path(pykeen.__file__).parent / "experiments" / name
    if not path.is_file():
        raise SystemExit(f"no PyKEEN experiment {name!r} (looked for {path})")
    return json.loads(path.read_text())["pipeline"]


class _PyKEENScorer:
    """Our evaluator's scorer interface over a trained PyKEEN model (``[B, N]`` score rows)."""

    def __init__(self, model):
        self.model = model

    def score_tails(self, h, r):
        return self.model.score_t(hr_batch=torch.stack([h, r], 1)).float()

    def score_heads(self, r, t):
        return self.model.score_h(rt_batch=torch.stack([r, t], 1)).float()


def child_pykeen(run: dict, out: Path, data_dir: str | None) -> dict:
    from pykeen.pipeline import pipeline
    from pykeen.stoppers import Stopper
    from pykeen.triples import TriplesFactory

    from gnn_inn.data import load_dataset
    from gnn_inn.evaluation import evaluate

    kg = load_dataset(run["dataset"], data_dir=data_dir)
    spec = dict(run["pykeen"])
    kwargs = pykeen_experiment(spec.pop("experiment")) if "experiment" in spec else {}
    for key, value in spec.items():  # overrides: nested dicts merge one level deep
        if isinstance(value, dict) and isinstance(kwargs.get(key), dict):
            kwargs[key] = {**kwargs[key], **value}
        else:
            kwargs[key] = value
    kwargs.pop("dataset", None)
    kwargs.pop("evaluator_kwargs", None)
    inverse = bool(kwargs.pop("create_inverse_triples", False))  # PyKEEN's CompGCN needs them
    ent = {n: i for i, n in enumerate(kg.entity_names)}
    rel = {n: i for i, n in enumerate(kg.relation_names)}

    def factory(triples):
        return TriplesFactory(mapped_triples=triples.clone(), entity_to_id=ent,
                              relation_to_id=rel, create_inverse_triples=inverse)

    budget = float(run["budget"])

    class Budget(Stopper):
        """Stops once ``budget`` seconds of training have passed (checked after each epoch)."""

        def __init__(self):
            super().__init__()
            self.start = time.perf_counter()
            self.epochs = 0

        def should_evaluate(self, epoch: int) -> bool:
            return True

        def should_stop(self, epoch: int) -> bool:
            self.epochs = epoch
            return time.perf_counter() - self.start >= budget

        def get_summary_dict(self):
            return {"budget": budget, "epochs": self.epochs}

    training = factory(kg.train)
    stopper = Budget()
    t0 = time.perf_counter()
    # PyKEEN's own end-of-pipeline evaluation would rank the whole test split a second time
    # (minutes): it gets a one-triple split; valid and test are ranked by our evaluator below
    result = pipeline(
        training=training, validation=factory(kg.valid), testing=factory(kg.valid[:1]),
        stopper=stopper, random_seed=int(run.get("seed", 0)), device="cpu", use_tqdm=False,
        **kwargs,
    )
    train_seconds = time.perf_counter() - t0
    model = result.model
    model.eval()
    with torch.inference_mode():
        valid = evaluate(_PyKEENScorer(model), kg.valid, kg.filter_index, batch_size=64)
        test = evaluate(_PyKEENScorer(model), kg.test, kg.filter_index, batch_size=64)
    return {
        "config": {"pykeen": run["pykeen"], "resolved": kwargs},
        "valid": valid.metrics(),
        **_summary(test, kg),
        "params": int(sum(p.numel() for p in model.parameters())),
        "epochs": stopper.epochs,
        "best_epoch": stopper.epochs,
        "train_seconds": train_seconds,
    }


def child_main(payload: str) -> None:
    job = json.loads(payload)
    torch.manual_seed(int(job["run"].get("seed", 0)))
    torch.set_num_threads(int(job["run"]["threads"]))
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    fn = child_gnn_inn if job["run"]["kind"] == "gnn_inn" else child_pykeen
    row = fn(job["run"], out, job["data_dir"])
    print(RESULT_TAG + json.dumps(row), flush=True)


# --------------------------------------------------------------------------- tables
def _load_rows(results_dir: Path, campaign: str) -> list[dict]:
    rows = []
    for path in sorted((results_dir / campaign).glob("*.json")):
        rows.append(json.loads(path.read_text()))
    return rows


def model_label(row: dict) -> str:
    """``encoder → decoder`` of a result row, e.g. ``compgcn → rotation flow (context, free)``;
    an encoder activation the config sets is named (``compgcn (linear output) → ...``)."""
    cfg = row.get("config", {})
    if row.get("kind") == "pykeen":
        return f"PyKEEN {cfg.get('resolved', {}).get('model', '?')}"
    model = cfg.get("model", {})
    enc_cfg = model.get("encoder", {})
    enc = enc_cfg.get("name", "none")
    dec = model.get("decoder", {})
    name = dec.get("name", "?")
    if name in ("flow", "stochastic_flow"):
        kind = "stochastic flow" if name == "stochastic_flow" else "flow"
        extra = [dec["conditioning"]] if dec.get("conditioning") not in (None, "table") else []
        extra.append(str(dec.get("patterns", "free")))
        name = f"{dec.get('flow', '?')} {kind} ({', '.join(extra)})"
    enc = "lookup" if enc == "none" else enc
    if "activation" in enc_cfg:  # set by the config: name it (tanh vs linear output)
        act = enc_cfg["activation"]
        enc += f" ({'linear' if act in (None, 'identity') else act} output)"
    return f"{enc} → {name}"


def pattern_kind(pattern: str) -> str:
    """``free`` / ``involution`` / ``tied-inverse`` / ``composition`` of a pattern string."""
    return pattern.split(":", 1)[0]


def _without_patterns(config: dict) -> str:
    """The config as a key that ignores ``model.decoder.patterns`` only (same budget too)."""
    c = copy.deepcopy(config)
    c.get("model", {}).get("decoder", {}).pop("patterns", None)
    return json.dumps(c, sort_keys=True)


def _mrr_over(row: dict, relations: list[str]) -> tuple[float | None, int]:
    """Query-weighted test MRR (both directions) over ``relations``, and the query count."""
    total, n = 0.0, 0
    for name in relations:
        m = row.get("test_per_relation", {}).get(name, {}).get("both")
        if m and m.get("mrr") is not None:
            total += m["mrr"] * m["count"]
            n += m["count"]
    return (total / n if n else None), n


def pattern_rows(rows: list[dict]) -> list[dict]:
    """What ``patterns: auto`` chose in each run that tied relations, and its test MRR per
    pattern kind beside the same run with ``patterns: free`` (same config otherwise)."""
    from gnn_inn.decoders.patterns import PATTERNS  # every kind a pattern string can have

    out = []
    by_config = {_without_patterns(r["config"]): r for r in rows if r.get("kind") == "gnn_inn"
                 and r["config"].get("model", {}).get("decoder", {}).get("patterns") == "free"}
    for r in rows:
        pats = r.get("relation_patterns") or {}
        if not any(pattern_kind(p) != "free" for p in pats.values()):
            continue
        partner = by_config.get(_without_patterns(r["config"]))
        for kind in (*(k for k in PATTERNS if k != "free"), "free"):  # tied kinds first
            rels = sorted(n for n, p in pats.items() if pattern_kind(p) == kind)
            if not rels:
                continue
            mrr, count = _mrr_over(r, rels)
            ref = _mrr_over(partner, rels)[0] if partner is not None else None
            out.append({"name": r["name"], "kind": kind, "relations": len(rels),
                        "queries": count, "mrr": "" if mrr is None else mrr,
                        "free": "" if ref is None else ref,
                        "partner": partner["name"] if partner is not None else "(no free run)"})
    return out


def tables(results_dir: Path, campaign: str, references: dict[str, dict] | None = None) -> str:
    """The Markdown of ``docs/results/<campaign>.md``, from the committed JSON files;
    ``references``: published numbers per run name, printed on their own row below it."""
    rows = _load_rows(results_dir, campaign)
    references = references or {}
    dataset = rows[0]["dataset"] if rows else campaign
    flat = []
    for r in sorted(rows, key=lambda r: -r["test"]["mrr"]):
        flat.append({
            "name": r["name"], "kind": r["kind"], "budget": f"{r['budget']:.0f}",
            "threads": r["threads"], "epochs": r["epochs"],
            # early stopping can end a run before its budget: say where it stopped and why
            "trained": (f"{r['train_seconds']:,.0f}" if r.get("train_seconds") is not None
                        else "-"),
            "best": r.get("best_epoch") if r.get("best_epoch") is not None else "-",
            "mrr": r["test"]["mrr"], "h1": r["test"]["hits@1"], "h3": r["test"]["hits@3"],
            "h10": r["test"]["hits@10"], "mr": f"{r['test']['mr']:.0f}",
            "valid": r["valid"]["mrr"], "params": f"{r['params']:,}",
            "rss": f"{r['peak_rss_mb']:,.0f}",
            "load": "/".join(f"{x:.1f}" for x in r["load_before"][:1] + r["load_after"][:1]),
        })
        ref = references.get(r["name"])
        if ref:
            flat.append({"name": f"{r['name']}: {ref.get('source', 'published')}",
                         "kind": "reference",
                         **{k: ref[m] for k, m in (("mrr", "mrr"), ("h1", "hits@1"),
                                                    ("h3", "hits@3"), ("h10", "hits@10"),
                                                    ("mr", "mr")) if m in ref}})
            if "mr" in flat[-1]:
                flat[-1]["mr"] = f"{flat[-1]['mr']:.0f}"
    lines = [
        f"# {campaign}: campaign results ({dataset})",
        "",
        "Written by `scripts/campaign.py` from the JSON files in this folder; do not edit by "
        "hand. Filtered ranking against all entities, both directions, realistic ties; every "
        "contender (ours and PyKEEN's) ranked by the same evaluator. Budget = seconds of "
        "training (evaluation not counted); trained s = seconds actually trained (less when "
        "early stopping ended the run: the test metrics are the best epoch's); load = 1-minute "
        "load average before / after.",
        "",
        markdown_table(flat, [
            ("contender", "name"), ("kind", "kind"), ("budget s", "budget"),
            ("threads", "threads"), ("trained s", "trained"), ("epochs", "epochs"),
            ("best epoch", "best"), ("test MRR", "mrr"),
            ("H@1", "h1"), ("H@3", "h3"), ("H@10", "h10"), ("MR", "mr"),
            ("valid MRR", "valid"), ("params", "params"), ("peak RSS MB", "rss"),
            ("load", "load"),
        ]),
        "",
        "## Test MRR per relation category (head / tail queries)",
        "",
    ]
    cat_rows = []
    for r in sorted(rows, key=lambda r: -r["test"]["mrr"]):
        row = {"name": r["name"], "model": model_label(r)}
        for c in CATEGORIES:
            m = r.get("test_per_category", {}).get(c)
            row[c] = (f"{m['head']['mrr']:.3f} / {m['tail']['mrr']:.3f}"
                      if m and m.get("head", {}).get("mrr") is not None else "")
        cat_rows.append(row)
    lines.append(markdown_table(cat_rows, [("contender", "name"), ("encoder → decoder", "model"),
                                           *[(c, c) for c in CATEGORIES]]))
    auto = pattern_rows(rows)
    chosen = {}  # relation name -> the pattern a tying run chose (first such run)
    for r in rows:
        for name, p in (r.get("relation_patterns") or {}).items():
            if pattern_kind(p) != "free":
                chosen.setdefault(name, p)
    if auto:
        lines += ["", "## What `patterns: auto` chose and what it changed", "",
                  "Relations grouped by the pattern the run tied them to; test MRR (both "
                  "directions, query-weighted) of the group, beside the same config with "
                  "`patterns: free`.", ""]
        lines.append(markdown_table(auto, [
            ("contender", "name"), ("pattern", "kind"), ("relations", "relations"),
            ("test queries", "queries"), ("test MRR", "mrr"), ("free run", "partner"),
            ("free run's MRR", "free")]))
    relations = sorted({k for r in rows for k in r.get("test_per_relation", {})})
    if rows and len(relations) <= 20:
        lines += ["", "## Test MRR per relation (both directions)", ""]
        rel_rows = []
        for name in relations:
            row = {"relation": name, "pattern": chosen.get(name, "free")}
            for r in rows:
                m = r.get("test_per_relation", {}).get(name, {}).get("both")
                row[r["name"]] = m["mrr"] if m and m.get("mrr") is not None else ""
                row["count"] = m["count"] if m else row.get("count", "")
            rel_rows.append(row)
        cols = [("relation", "relation"), ("test queries", "count"),
                *([("auto's pattern", "pattern")] if chosen else []),
                *[(r["name"], r["name"]) for r in rows]]
        lines.append(markdown_table(rel_rows, cols))
    return "\n".join(lines) + "\n"


def write_tables(results_dir: Path, spec: dict) -> Path:
    refs = {r["name"]: r["reference"] for r in spec["runs"] if r.get("reference")}
    path = results_dir / f"{spec['campaign']}.md"
    path.write_text(tables(results_dir, spec["campaign"], refs))
    return path


# ----------------------------------------------------------------------------- main
def run_one(spec: dict, run: dict, *, runs_dir: Path, results_dir: Path) -> dict:
    dataset = spec["dataset"]
    out = runs_dir / spec["campaign"] / run["name"]
    job = {"run": {**run, "dataset": dataset}, "out": str(out), "data_dir": spec["data_dir"]}
    env = {**os.environ, "OMP_NUM_THREADS": str(run["threads"]),
           "MKL_NUM_THREADS": str(run["threads"])}
    load_before = list(os.getloadavg())
    t0 = time.perf_counter()
    row, usage = run_child([sys.executable, str(Path(__file__).resolve()), "--child",
                            json.dumps(job)], tag=RESULT_TAG, env=env)
    row = {
        "name": run["name"], "kind": run["kind"], "dataset": dataset,
        "campaign": spec["campaign"],
        "budget": float(run["budget"]), "threads": int(run["threads"]),
        **row,
        "wall_seconds": time.perf_counter() - t0,
        "peak_rss_mb": usage["peak_rss_mb"],
        "load_before": load_before, "load_after": list(os.getloadavg()),
        "machine": {**machine_info(), "torch_threads": int(run["threads"])},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = result_path(results_dir, spec["campaign"], run["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(row, indent=2) + "\n")
    os.replace(tmp, path)
    return row


def commit(paths: list[Path], message: str) -> None:
    subprocess.run(["git", "-C", str(ROOT), "add", *map(str, paths)], check=True)
    # only these paths, whatever else is staged
    subprocess.run(["git", "-C", str(ROOT), "commit", "-q", "-m", message, "--",
                    *map(str, paths)], check=False)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("spec", nargs="?", help="campaign file (YAML)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these runs")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "campaign"))
    p.add_argument("--results-dir", default=str(ROOT / "docs" / "results"))
    p.add_argument("--data-dir", help="dataset folder (default: the campaign's, "
                   "$GNN_INN_DATA, or the download cache)")
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    p.add_argument("--tables", action="store_true", help="only rewrite the tables")
    p.add_argument("--commit", action="store_true",
                   help="git-commit each result JSON and the tables as soon as a run finishes")
    p.add_argument("--detach", action="store_true",
                   help="run in the background; output goes to <runs-dir>/<campaign>/campaign.log")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        child_main(args.child)
        return 0
    if not args.spec:
        raise SystemExit("campaign.py: name a campaign file")
    spec = load_spec(args.spec)
    if args.data_dir:
        spec["data_dir"] = args.data_dir
    runs_dir, results_dir = Path(args.runs_dir), Path(args.results_dir)
    campaign = spec["campaign"]
    if args.tables:
        print(write_tables(results_dir, spec))
        return 0
    if args.detach:
        log = runs_dir / campaign / "campaign.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--detach"]
        with open(log, "a") as f:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv],
                                    stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=ROOT)
        print(f"campaign running in the background: pid {proc.pid}, log {log}")
        return 0
    runs = spec["runs"]
    if args.only:
        unknown = sorted(set(args.only) - {r["name"] for r in runs})
        if unknown:
            raise SystemExit(f"--only: no run named {', '.join(unknown)} in {args.spec}")
        runs = [r for r in runs if r["name"] in args.only]
    info = machine_info()
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    for run in runs:
        path = result_path(results_dir, campaign, run["name"])
        if path.is_file() and not args.force:
            print(f"{run['name']}: done ({path})", flush=True)
            continue
        print(f"{run['name']}: training ({run['budget']:.0f} s budget, {run['threads']} "
              f"thread(s))", flush=True)
        row = run_one(spec, run, runs_dir=runs_dir, results_dir=results_dir)
        table = write_tables(results_dir, spec)
        print(f"{run['name']}: test MRR {row['test']['mrr']:.4f} after {row['epochs']} epochs "
              f"({row['train_seconds']:.0f} s training)", flush=True)
        if args.commit:
            commit([path, table], f"campaign {campaign}: {run['name']} test MRR "
                   f"{row['test']['mrr']:.3f} ({row['budget']:.0f} s budget, "
                   f"{row['epochs']} epochs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
