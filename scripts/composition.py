"""Tied composition on real data: the rules ``patterns: auto`` adopts, and the MRR per tied
relation and overall with and without tying, under the same training budget.

    python scripts/composition.py --dataset fb15k-237 --budget 480       # one dataset, 2 runs
    python scripts/composition.py --dataset umls --epochs 100 --snap 0    # + a snapping arm
    python scripts/composition.py --table                                 # Markdown from JSON

Each dataset is trained twice from ``configs/<dataset>_none_flow_rotation.yaml`` (no encoder,
rotation flow, 1vsAll): ``patterns: auto`` with composition rules (``rules``) and
``patterns: auto`` with ``composition_confidence: null`` (``no rules``: involutions and tied
inverse pairs only), the same seed, the same ``train.time_budget`` seconds and no validation
during training (``eval_every`` beyond the budget); ``--epochs N`` trains every arm for exactly
``N`` epochs instead (fair on a machine whose load varies). The ``rules`` arm scores composed
relations with the continuous map (``composition_snap: null``); ``--snap S`` adds a third arm,
``snap``, with ``composition_snap: S`` (``one-to-one``, the decoder's default, or a temperature
for every composed relation: they snap to entity embeddings between body relations). Writes
``docs/results/composition/<dataset>.json``; ``--table`` writes ``docs/results/composition.md``
from every JSON there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, markdown_table, print_header, public_argv  # noqa: E402

RESULTS = ROOT / "docs" / "results" / "composition"


def per_relation_mrr(result, num_relations: int) -> tuple[list[float], list[int]]:
    """Test MRR per relation (head and tail queries together) and the number of ranks."""
    import torch

    ranks, rels = result.all_ranks()
    rr = 1.0 / ranks.double()
    n = torch.bincount(rels, minlength=num_relations)
    s = torch.zeros(num_relations, dtype=torch.float64).index_add_(0, rels, rr)
    mrr = (s / n.clamp_min(1)).tolist()
    return [m if c else float("nan") for m, c in zip(mrr, n.tolist())], n.tolist()


def run_arm(dataset: str, rules: bool, args, snap: str | None = None) -> dict:
    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config

    cfg_file = ROOT / "configs" / f"{dataset}_none_flow_rotation.yaml"
    budget = ([f"train.epochs={args.epochs}"] if args.epochs
              else [f"train.time_budget={args.budget}", "train.epochs=100000"])
    sets = [*budget, "train.eval_every=100000", "train.patience=0", "train.device=cpu",
            "model.decoder.patterns=auto", f"seed={args.seed}"]
    if args.dim:
        sets.append(f"model.dim={args.dim}")
    if rules:
        sets += [f"model.decoder.composition_confidence={args.confidence}",
                 f"model.decoder.composition_head_coverage={args.head_coverage}",
                 f"model.decoder.composition_residual={str(args.residual).lower()}"]
        sets.append(f"model.decoder.composition_snap={'null' if snap is None else snap}")
    else:
        sets.append("model.decoder.composition_confidence=null")
    cfg = Config.load(cfg_file, sets)
    arm = "no_rules" if not rules else ("rules" if snap is None else "snap")
    out = Path(args.out) / dataset / arm
    t0 = time.perf_counter()
    trainer = trainer_from_config(cfg, data_dir=args.data_dir, out_dir=out, quiet=True)
    build_s = time.perf_counter() - t0
    res = trainer.fit()
    test = trainer.evaluate("test")
    mrr, n = per_relation_mrr(test, trainer.kg.num_relations)
    dec = trainer.model.decoder
    return {
        "config": str(cfg_file.relative_to(ROOT)), "overrides": sets,
        "build_seconds": build_s, "train_seconds": res["train_seconds"], "epochs": res["epochs"],
        "test": res["test"], "valid": res["valid"],
        "patterns": dict(zip(trainer.kg.relation_names, dec.pattern_table())),
        "composition_rules": dec.composition_rules(),
        "certificate_composed": res.get("certificate", {}).get("composed"),
        "per_relation_mrr": dict(zip(trainer.kg.relation_names, mrr)),
        "per_relation_test_ranks": dict(zip(trainer.kg.relation_names, n)),
    }


def adopted_rules(dataset: str, args) -> list:
    from gnn_inn.data import load_dataset
    from gnn_inn.decoders.patterns import infer_patterns

    kg = load_dataset(dataset, data_dir=args.data_dir)
    pats = infer_patterns(kg.train, kg.num_relations, composition_confidence=args.confidence,
                          composition_head_coverage=args.head_coverage,
                          num_entities=kg.num_entities)
    return [q for q in pats if q.kind == "composition"]


def run(args) -> None:
    info = print_header()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for ds in args.dataset:
        row = {"dataset": ds, "machine": info, "command": " ".join(public_argv(sys.argv)),
               "budget_seconds": None if args.epochs else args.budget,
               "epochs": args.epochs or None, "confidence": args.confidence,
               "head_coverage": args.head_coverage, "residual": args.residual,
               "note": args.note}
        row["no_rules"] = run_arm(ds, False, args)
        print(ds, "no_rules", json.dumps(row["no_rules"]["test"]), flush=True)
        if adopted_rules(ds, args):
            row["rules"] = run_arm(ds, True, args)
            print(ds, "rules", json.dumps(row["rules"]["test"]), flush=True)
            if args.snap is not None:
                row["snap"] = run_arm(ds, True, args, snap=args.snap)
                row["snap_temperature"] = args.snap
                print(ds, "snap", json.dumps(row["snap"]["test"]), flush=True)
        else:  # no rule qualifies: both configs build the same model, one run serves both
            row["rules"] = {**row["no_rules"], "identical_to_no_rules": True}
            print(ds, "rules: no rule adopted, the same model as no_rules", flush=True)
        suffix = f"_{args.tag}" if args.tag else ""
        (RESULTS / f"{ds}{suffix}.json").write_text(json.dumps(row, indent=2) + "\n")


def table() -> str:
    lines = ["# Tied composition on real data", "",
             "Written by `python scripts/composition.py --table` from "
             "`docs/results/composition/*.json`; each JSON names its command, machine and "
             "overrides.", "",
             "Both arms train `configs/<dataset>_none_flow_rotation.yaml` (no encoder, rotation "
             "flow, 1vsAll) with `patterns: auto` under the same `train.time_budget` (checked "
             "after each epoch) and the same seed, without validation during training: "
             "*no rules* with `composition_confidence: null` (involutions and tied inverse pairs "
             "only), *rules* with composition rules adopted at PCA confidence ≥ 0.9 and head "
             "coverage ≥ 0.5. Test MRR is filtered, both directions; per relation it is the mean "
             "over that relation's head and tail queries. Where no rule qualifies both arms "
             "build the same model and one run serves both. *rules* scores composed relations "
             "with the continuous map (`composition_snap: null`); *rules + snap* (runs with "
             "`--snap`) is the rules arm with `composition_snap` as the JSON's "
             "`snap_temperature` says (0: every composed relation snaps to the nearest entity "
             "between its body relations; `one-to-one`: those whose body relations are all "
             "1-1). Runs tagged `epochs` train every arm the "
             "same number of epochs instead of the same seconds. The machine (2 cores) was "
             "shared with other jobs during every run, so epochs reached within a budget "
             "vary.", ""]
    summary, detail = [], []
    for f in sorted(RESULTS.glob("*.json")):
        d = json.loads(f.read_text())
        a, b, c = d["no_rules"], d["rules"], d.get("snap")
        tied = b["composition_rules"]
        nan = float("nan")
        summary.append({
            "run": f.stem, "rules adopted": len(tied),
            "budget": (f"{d['budget_seconds']:g} s" if d.get("budget_seconds")
                       else f"{d.get('epochs')} epoch" + ("s" if d.get("epochs") != 1 else "")),
            "epochs (no rules / rules / snap)": (
                f"{a['epochs']} (one run: no rule adopted)" if b.get("identical_to_no_rules")
                else f"{a['epochs']} / {b['epochs']} / {c['epochs'] if c else '-'}"),
            "MRR no rules": a["test"]["mrr"], "MRR rules": b["test"]["mrr"],
            "MRR rules + snap": c["test"]["mrr"] if c else nan,
            "H@10 no rules": a["test"]["hits@10"], "H@10 rules": b["test"]["hits@10"],
            "H@10 rules + snap": c["test"]["hits@10"] if c else nan,
        })
        if not tied:
            continue
        rows = []
        for q in tied:
            h = q["head"]
            rows.append({
                "relation (tied)": h, "rule body": " ∘ ".join(reversed(q["body"])),
                "PCA conf": q.get("pca_confidence", float("nan")),
                "head cov": q.get("head_coverage", float("nan")),
                "test ranks": b["per_relation_test_ranks"][h],
                "MRR no rules": a["per_relation_mrr"][h], "MRR rules": b["per_relation_mrr"][h],
                "MRR rules + snap": c["per_relation_mrr"][h] if c else nan,
            })
        rows.sort(key=lambda r: -r["test ranks"])
        tot = sum(r["test ranks"] for r in rows)
        wa = sum(r["test ranks"] * r["MRR no rules"] for r in rows if r["test ranks"]) / max(tot, 1)
        wb = sum(r["test ranks"] * r["MRR rules"] for r in rows if r["test ranks"]) / max(tot, 1)
        wc = (sum(r["test ranks"] * r["MRR rules + snap"] for r in rows if r["test ranks"])
              / max(tot, 1))
        snap_text = f", {wc:.3f} with tying and snapping" if c else ""
        detail += [f"## {f.stem}: the tied relations", "",
                   f"{len(rows)} relations tied; over their {tot} test ranks MRR "
                   f"{wa:.3f} without tying, {wb:.3f} with{snap_text}. Rule body written f_r = "
                   "(second ∘ first).", "",
                   markdown_table(rows, [(k, k) for k in rows[0]]), ""]
    cols = [(k, k) for k in (summary[0] if summary else {})]
    lines += ["## Overall test MRR, same budget", "", markdown_table(summary, cols), "", *detail]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", nargs="*", default=[])
    p.add_argument("--budget", type=float, default=480.0, help="train.time_budget, seconds")
    p.add_argument("--epochs", type=int, default=0,
                   help="train every arm exactly this many epochs instead of --budget seconds")
    p.add_argument("--snap", default=None,
                   help="add an arm with composition_snap=SNAP: one-to-one, or a temperature "
                        "for every composed relation (0: nearest entity)")
    p.add_argument("--confidence", type=float, default=0.9)
    p.add_argument("--head-coverage", type=float, default=0.5)
    p.add_argument("--residual", action="store_true")
    p.add_argument("--dim", type=int, default=0, help="override model.dim (0: the config's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="suffix of the JSON file name")
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    p.add_argument("--data-dir")
    p.add_argument("--out", default="runs/composition")
    p.add_argument("--table", action="store_true")
    args = p.parse_args()
    if args.dataset:
        run(args)
    if args.table:
        text = table()
        (ROOT / "docs" / "results" / "composition.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
