"""Deterministic vs stochastic relation flows on relations with several valid answers.

    python scripts/stochastic.py --datasets synthetic --budget 60
    python scripts/stochastic.py --datasets fb15k-237 --budget 1800 --device auto

Trains, per dataset and within the same wall-clock budget per model (``--budget`` seconds of
training, the trainer's ``time_budget``; ``--epochs`` caps it), the deterministic flow decoder
(``flow``: ``s = −‖f_r(e_h) − e_t‖``, 1vsAll CE) and the stochastic one (``stochastic_flow``:
``e_t = f_r(e_h) + σ ⊙ C(z; [ρ_r, e_h])``, ``flow_nll`` loss) with the same mean-map family,
dimension and optimiser, then reports as Markdown tables

1. filtered test MRR per relation category (1-1, 1-N, N-1, N-N; head / tail / both);
2. on the relations of ``--categories`` (default the many-answer ones: 1-N, N-1, N-N), for
   test queries with ``≥ 2`` known answers: set recall@|S|, held-out recall@|S|, recall
   within ``--samples`` samples at each of ``--temperatures`` (nearest entity per sample; the
   deterministic decoder's "samples" are its one query point), sample precision (share of
   samples whose nearest entity is a true answer) and distinct entities hit
   (:mod:`gnn_inn.evaluation.many_answers`);
3. for the stochastic decoder, the cost and effect of re-ranking: test MRR, top-1 change rate
   and seconds per 1000 queries for stage 1 and stage 2 with ``rerank_k`` = 0 (Gaussian
   only), the trained value, and ``'all'`` (exact; skipped above ``--exact-max`` entities).

Writes ``<out>/<dataset>.json``. Every number is from one seed; CPU runs are budget-limited,
not converged.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, print_header, public_args, public_argv  # noqa: E402

CATS = ("1-1", "1-N", "N-1", "N-N")

# per dataset: (dim, batch size, lr, mean-map patterns, eval batch)
SETTINGS = {
    "synthetic": (64, 256, 0.01, "auto", 512),
    "fb15k-237": (200, 512, 0.003, "free", 256),
}


def configs(dataset: str, args) -> dict[str, dict]:
    dim, bs, lr, patterns, ebs = SETTINGS.get(dataset, SETTINGS["fb15k-237"])
    dim = args.dim or dim
    train = {"epochs": args.epochs, "batch_size": bs, "lr": lr, "eval_every": args.eval_every,
             "patience": 3, "grad_clip": 5.0, "device": args.device,
             "time_budget": float(args.budget)}
    base = {"seed": args.seed, "dataset": {"name": dataset}, "eval": {"batch_size": ebs}}
    det = {"name": "flow", "flow": args.flow, "patterns": patterns, "p": 2.0}
    sto = {"name": "stochastic_flow", "flow": args.flow, "patterns": patterns,
           "coupling": {"name": args.coupling, "num_blocks": 2, "hidden": args.hidden},
           "context_dim": 32, "init_log_scale": -1.0, "rerank_k": args.rerank_k,
           "train_rerank_k": args.train_rerank_k}
    return {
        f"flow/{args.flow}": {**base, "model": {"dim": dim, "encoder": {"name": "none"},
                                                "decoder": det},
                              "train": {**train, "loss": {"name": "1vsall"}}},
        f"stochastic_flow/{args.flow}+{args.coupling}": {
            **base, "model": {"dim": dim, "encoder": {"name": "none"}, "decoder": sto},
            "train": {**train, "loss": {"name": "flow_nll", "gaussian_weight": 0.5,
                                        "nll_weight": args.nll_weight}}},
    }


def _k(value: str):
    return value if value == "all" else int(value)


def rerank_ablation(trainer, ks, exact_max: int) -> list[dict]:
    from gnn_inn.evaluation import evaluate

    dec, kg = trainer.model.decoder, trainer.kg
    trained_k = dec.rerank_k
    rows = []
    for k in ks:
        if k == "all" and kg.num_entities > exact_max:
            continue
        dec.rerank_k = k
        dec.reset_rerank_statistics()
        t0 = time.perf_counter()
        res = evaluate(trainer.model, kg.test, kg.filter_index,
                       batch_size=trainer.config.eval.batch_size)
        wall = time.perf_counter() - t0
        st = dec.rerank_statistics()
        q = max(st["queries"], 1) / 1000.0
        rows.append({"rerank_k": str(k), "mrr": res.metrics()["mrr"],
                     "hits@1": res.metrics()["hits@1"],
                     "top1_change_rate": st["top1_change_rate"],
                     "stage1_s_per_1k": st["stage1_seconds"] / q,
                     "stage2_s_per_1k": st["stage2_seconds"] / q, "eval_s": wall})
    dec.rerank_k = trained_k
    return rows


def run_dataset(dataset: str, args, info: dict) -> dict:
    from gnn_inn.config import Config
    from gnn_inn.evaluation.many_answers import category_mrr, many_answer_report
    from gnn_inn.training import trainer_from_config

    rows_cat, rows_set, ablation, raw = [], [], [], {}
    relations = None
    for label, cfg in configs(dataset, args).items():
        config = Config.from_dict(cfg, source=f"scripts/stochastic.py:{label}")
        out = Path(args.out) / dataset / label.replace("/", "_").replace("+", "_")
        trainer = trainer_from_config(config, data_dir=args.data_dir, out_dir=out, quiet=True)
        kg = trainer.kg
        if relations is None:
            cats = kg.relation_categories()
            relations = [i for i, c in enumerate(cats) if c in args.categories]
            print(f"{dataset}: relations of categories {args.categories}: "
                  f"{[kg.relation_names[i] for i in relations][:12]}"
                  f"{' ...' if len(relations) > 12 else ''} ({len(relations)})", flush=True)
        t0 = time.perf_counter()
        res = trainer.fit()
        print(f"{label}: trained {res['epochs']} epochs in {res['train_seconds']:.1f} s "
              f"(wall {time.perf_counter() - t0:.1f} s), test MRR {res['test']['mrr']:.3f}",
              flush=True)
        model = trainer.model
        dec = model.decoder
        if hasattr(dec, "reset_rerank_statistics"):
            dec.reset_rerank_statistics()
        t0 = time.perf_counter()
        cat = category_mrr(model, kg, batch_size=config.eval.batch_size)
        eval_s = time.perf_counter() - t0
        stats = dec.rerank_statistics() if hasattr(dec, "rerank_statistics") else None
        row = {"model": label, "epochs": res["epochs"], "train_s": res["train_seconds"],
               "all": res["test"]["mrr"], "eval_s": eval_s}
        for c in CATS:
            for d in ("head", "tail"):
                row[f"{c} {d}"] = cat.get(c, {}).get(d, math.nan)
        if stats is not None:
            row["top1_change"] = stats["top1_change_rate"]
        rows_cat.append(row)
        groups = [("all selected", relations)]
        if 1 < len(relations) <= 4:  # few relations (synthetic): one row per relation too
            groups += [(kg.relation_names[r], [r]) for r in relations]
        rep = {}
        for gname, rels in groups:
            for temp in args.temperatures:
                rep[f"{gname} T={temp:g}"] = many_answer_report(
                    model, kg, n_samples=args.samples, seed=args.seed, relations=rels,
                    batch_size=config.eval.batch_size, temperature=temp)
            first = rep[f"{gname} T={args.temperatures[0]:g}"]
            for d in ("tail", "head", "both"):
                e = dict(first[d])
                if not e.get("queries") or (d == "both" and gname != "all selected"):
                    continue
                for temp in args.temperatures:
                    other = rep[f"{gname} T={temp:g}"][d]
                    for key in ("sample_recall", "sample_precision", "distinct_hits"):
                        e[f"{key} T={temp:g}"] = other[key]
                rows_set.append({"model": label, "relations": gname, "direction": d, **e})
        if stats is not None:
            ks = [0, dec.rerank_k, "all"] if dec.rerank_k != "all" else [0, "all"]
            for r in rerank_ablation(trainer, ks, args.exact_max):
                ablation.append({"model": label, **r})
        raw[label] = {"results": res, "category_mrr": cat, "many_answers": rep,
                      "rerank_statistics": stats}

    out = {"dataset": dataset, "machine": info, "args": vars(args), "categories": rows_cat,
           "sets": rows_set, "rerank": ablation, "raw": raw}
    print(tables(out))
    return out


def tables(out: dict) -> str:
    """The Markdown report of one dataset's results (the dict :func:`run_dataset` returns and
    ``<results>/<dataset>.json`` holds): per-category MRR, many-answer queries, re-ranking."""
    args = argparse.Namespace(**out["args"])
    info, dataset = out["machine"], out.get("dataset", "?")
    rows_cat, rows_set, ablation = out["categories"], out["sets"], out["rerank"]
    lines = [f"### {dataset}: budget {args.budget:g} s of training per model "
             f"({info['device']}, {info['torch_threads']} thread(s)), ≤ {args.epochs} epochs, "
             f"seed {args.seed}", "",
             "Filtered test MRR per relation category (head / tail prediction):", ""]
    cols = [("model", "model"), ("epochs", "epochs"), ("train s", "train_s"), ("all", "all")]
    cols += [(f"{c} {d}", f"{c} {d}") for c in CATS for d in ("head", "tail")]
    cols += [("eval s", "eval_s"), ("top-1 changed", "top1_change")]
    lines += [markdown_table(rows_cat, cols), "",
              f"Many-answer queries (relations of categories {', '.join(args.categories)}, test "
              f"queries with ≥ 2 known answers; {args.samples} samples; recall@size = share of "
              "the known answer set among the top set-size entities):", ""]
    lines.append(markdown_table(rows_set, [
        ("model", "model"), ("relations", "relations"), ("direction", "direction"),
        ("queries", "queries"), ("mean set size", "mean_set_size"),
        ("set recall@size", "set_recall"), ("held-out recall@size", "heldout_recall")]
        + [(f"{name} T={t:g}", f"{key} T={t:g}") for t in args.temperatures
           for name, key in ((f"recall@{args.samples} samples", "sample_recall"),
                             ("precision", "sample_precision"), ("distinct", "distinct_hits"))]))
    if ablation:
        lines += ["", "Re-ranking (stochastic decoder, test, both directions): rerank_k 0 = "
                  "Gaussian stage only, 'all' = exact density ranking:", ""]
        lines.append(markdown_table(ablation, [
            ("model", "model"), ("rerank_k", "rerank_k"), ("MRR", "mrr"), ("H@1", "hits@1"),
            ("top-1 changed", "top1_change_rate"), ("stage 1 s / 1k queries", "stage1_s_per_1k"),
            ("stage 2 s / 1k queries", "stage2_s_per_1k"), ("eval s", "eval_s")]))
    return "\n".join(lines) + "\n"


def write_results(out: dict, results_dir: str | Path) -> Path:
    """``<results_dir>/<dataset>.json`` and, generated from it, ``<dataset>.md`` (both without
    the machine's paths)."""
    out = {**out, "args": public_args(out["args"]), "argv": public_argv(out.get("argv", []))}
    path = Path(results_dir) / f"{out['dataset']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    header = (f"<!-- generated by scripts/stochastic.py from {path.name}; do not edit -->\n\n"
              f"Command: `python scripts/stochastic.py {' '.join(out.get('argv', []))}`\n\n")
    path.with_suffix(".md").write_text(header + tables(json.loads(path.read_text())))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["synthetic"])
    p.add_argument("--budget", type=float, default=60.0,
                   help="training seconds per model (CPU budget; stated in the output)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--dim", type=int, default=None, help="default: 64 synthetic, 200 otherwise")
    p.add_argument("--flow", default="rotation", help="mean-map family of both decoders")
    p.add_argument("--coupling", default="affine_coupling",
                   choices=["affine_coupling", "spline_coupling", "additive_coupling"])
    p.add_argument("--hidden", type=int, default=32, help="coupling conditioner width")
    p.add_argument("--rerank-k", type=_k, default=32)
    p.add_argument("--train-rerank-k", type=_k, default=8)
    p.add_argument("--nll-weight", type=float, default=1.0,
                   help="weight of the continuous NLL term of the flow_nll loss")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.5],
                   help="sampling temperatures T (z ~ N(0, T²I)) of the stochastic decoder")
    p.add_argument("--categories", nargs="+", default=["1-N", "N-1", "N-N"])
    p.add_argument("--exact-max", type=int, default=2000,
                   help="largest entity count for the exact ('all') re-ranking row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/stochastic", help="run folders (checkpoints)")
    p.add_argument("--results", default=None,
                   help="folder of <dataset>.json and the .md tables generated from it "
                        "(default: --out)")
    p.add_argument("--tables", nargs="+", metavar="JSON", default=None,
                   help="only regenerate the .md tables of these result files")
    args = p.parse_args()
    if args.tables:
        for path in args.tables:
            write_results(json.loads(Path(path).read_text()), Path(path).parent)
        return
    info = print_header()
    for ds in args.datasets:
        out = run_dataset(ds, args, info)
        out["argv"] = sys.argv[1:]
        print(f"wrote {write_results(out, args.results or args.out)}")


if __name__ == "__main__":
    main()
