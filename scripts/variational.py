"""Variational (Gaussian) embeddings: V-DistMult LIM and V-ComplEx LFM, their link-prediction
metrics, predictive uncertainty and three plots.

    python scripts/variational.py                              # nations, ~1 min on 2 CPU cores
    python scripts/variational.py --dataset wn18rr --time-budget 600   # budgeted (GPU advised)

Trains ``configs/<dataset>_variational_distmult_lim.yaml`` and
``configs/<dataset>_variational_complex_lfm.yaml`` (after Cowen-Rivers, Minervini et al., 2019)
and prints

* a Markdown table of filtered test metrics (realistic ties): MRR, Hits@1/3/10, MR — on
  wn18rr beside the paper's rows (Hits@1/3/10 and filtered MR);
* a Markdown table of uncertainty numbers on the test split: area under the precision–coverage
  curve of filtered top-1 link prediction for two confidence measures (score magnitude
  ``σ(s)`` of the top prediction, and minus its sampling variance), precision at 50 % coverage,
  and the expected calibration error (10 bins) of triple classification against type-free
  random negatives, with posterior-mean and predictive (sampled) probabilities.

and writes into ``--out``:

* ``variance_vs_frequency.png`` — mean embedding variance against log training frequency, for
  entities and relations (paper Fig. 1);
* ``precision_coverage.png`` — precision–coverage curves of both confidence measures (Fig. 2);
* ``fact_pca.png`` — a 2-D PCA view of one test fact: posterior means and sampled clouds of the
  head, the relation-applied head (the decoder's tail query) and the tail;
* ``results.json`` — machine, command, metrics and uncertainty numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, markdown_table, print_header, public_argv  # noqa: E402

MODELS = [("V-DistMult LIM", "variational_distmult_lim"),
          ("V-ComplEx LFM", "variational_complex_lfm")]

#: Hits@1/3/10 and filtered MR reported in the paper (WN18RR)
PAPER = {
    "wn18rr": [
        {"model": "V-DistMult LIM (paper)", "hits@1": 0.357, "hits@3": 0.423, "hits@10": 0.440,
         "mr": 6095.0},
        {"model": "V-ComplEx LFM (paper)", "hits@1": 0.385, "hits@3": 0.446, "hits@10": 0.489,
         "mr": 6500.0},
    ],
}


def train(config: Path, args, out: Path):
    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config

    overrides = [f"seed={args.seed}"]
    if args.data_dir:
        overrides.append(f"dataset.data_dir={args.data_dir}")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.time_budget is not None:
        overrides.append(f"train.time_budget={args.time_budget}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    cfg = Config.load(config, overrides)
    t0 = time.perf_counter()
    trainer = trainer_from_config(cfg, out_dir=out, quiet=True)
    res = trainer.fit()
    res["wall_seconds"] = time.perf_counter() - t0
    return trainer, res


def uncertainty(model, kg, n_samples: int, seed: int) -> dict:
    from gnn_inn.evaluation.uncertainty import (
        area_under_precision_coverage,
        link_prediction_confidence,
        precision_at_coverage,
        precision_coverage,
        triple_classification_calibration,
    )

    lp = link_prediction_confidence(model, kg.test, kg.filter_index, n_samples=n_samples,
                                    generator=torch.Generator().manual_seed(seed))
    curves = {"score": precision_coverage(lp["score"], lp["correct"]),
              "variance": precision_coverage(-lp["variance"], lp["correct"])}
    cal = triple_classification_calibration(
        model, kg.test, kg.all_triples(), n_samples=n_samples,
        generator=torch.Generator().manual_seed(seed + 1))
    return {
        "hits@1_top1": float(lp["correct"].mean()),
        "aupc_score": area_under_precision_coverage(lp["score"], lp["correct"]),
        "aupc_variance": area_under_precision_coverage(-lp["variance"], lp["correct"]),
        "p@50_score": float(precision_at_coverage(lp["score"], lp["correct"], 0.5)),
        "p@50_variance": float(precision_at_coverage(-lp["variance"], lp["correct"], 0.5)),
        "ece_mean": cal["ece_mean"], "ece_predictive": cal["ece_predictive"],
        "acc_mean": cal["accuracy_mean"], "acc_predictive": cal["accuracy_predictive"],
        "_curves": {k: (c.tolist(), p.tolist()) for k, (c, p) in curves.items()},
    }


def plot_variance_frequency(models, kg, path: Path) -> None:
    import matplotlib.pyplot as plt

    from gnn_inn.evaluation.uncertainty import frequencies, mean_variances

    ent_f, rel_f = frequencies(kg.train, kg.num_entities, kg.num_relations)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (label, model), color in zip(models, ("tab:blue", "tab:orange")):
        with torch.no_grad():
            ev, rv = mean_variances(model.encoder.gaussian(model.graph))
        for ax, freq, var in ((axes[0], ent_f, ev), (axes[1], rel_f, rv)):
            if var is None:
                continue
            n = min(freq.numel(), var.numel())
            keep = freq[:n] > 0
            ax.scatter(torch.log(freq[:n][keep].double()), var[:n][keep].cpu(), s=10,
                       alpha=0.6, color=color, label=label)
    for ax, what in zip(axes, ("entities", "relations")):
        ax.set_xlabel("log frequency in train")
        ax.set_ylabel("mean embedding variance")
        ax.set_title(f"{what} ({kg.name})")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_precision_coverage(unc, kg_name: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (label, u), color in zip(unc, ("tab:blue", "tab:orange")):
        for measure, style in (("score", "-"), ("variance", "--")):
            cov, prec = u["_curves"][measure]
            name = "score magnitude" if measure == "score" else "sampling variance"
            ax.plot(cov, prec, style, color=color, label=f"{label}: {name}")
    ax.set_xlabel("coverage")
    ax.set_ylabel("precision (filtered top-1)")
    ax.set_title(f"precision–coverage, test ({kg_name})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.no_grad()
def plot_fact_pca(model, kg, label: str, path: Path, n_samples: int, seed: int) -> dict:
    import matplotlib.pyplot as plt

    from gnn_inn.decoders.base import fact_queries
    from gnn_inn.encoders.variational import sample_fact_embeddings

    model.eval()
    h, r, t = kg.test[0].tolist()
    hh, rr, tt = (torch.tensor([x]) for x in (h, r, t))
    post = model.encoder.gaussian(model.graph)
    g = torch.Generator().manual_seed(seed)
    z_h, z_r, z_t = sample_fact_embeddings(post, hh, rr, tt, n_samples, g)  # [S, 1, d]
    q = fact_queries(model.decoder, z_h, z_r, rr)
    rel_mu = None if post.rel_mu is None else post.rel_mu[rr]
    q_mu = fact_queries(model.decoder, post.ent_mu[hh], rel_mu, rr)
    clouds = [z_h[:, 0], q[:, 0], z_t[:, 0]]
    means = [post.ent_mu[h], q_mu[0], post.ent_mu[t]]
    pts = torch.cat(clouds).double()
    center = pts.mean(0)
    _, _, v = torch.linalg.svd(pts - center, full_matrices=False)
    proj = v[:2].T
    names = [f"head: {kg.entity_names[h]}",
             f"head ∘ {kg.relation_names[r]} (tail query)",
             f"tail: {kg.entity_names[t]}"]
    fig, ax = plt.subplots(figsize=(6, 5))
    for cloud, mean, name, color in zip(clouds, means, names,
                                        ("tab:blue", "tab:green", "tab:red")):
        xy = (cloud.double() - center) @ proj
        m = (mean.double() - center) @ proj
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.25, color=color, label=name)
        ax.scatter([m[0]], [m[1]], s=120, marker="X", color=color, edgecolor="black")
    ax.set_title(f"{label}: one test fact, {n_samples} samples (PCA)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {"fact": [kg.entity_names[h], kg.relation_names[r], kg.entity_names[t]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="nations")
    p.add_argument("--data-dir")
    p.add_argument("--out", default="runs/variational")
    p.add_argument("--epochs", type=int, help="override train.epochs of both configs")
    p.add_argument("--time-budget", type=float, help="training seconds per model")
    p.add_argument("--samples", type=int, default=64, help="forward samples per fact")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="override train.device (cpu, cuda, auto)")
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    info = print_header()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, unc_rows, models, unc, kg = [], [], [], [], None
    for label, suffix in MODELS:
        cfg = ROOT / "configs" / f"{args.dataset}_{suffix}.yaml"
        trainer, res = train(cfg, args, out / suffix)
        kg = trainer.kg
        model = trainer.model.eval()
        t = res["test"]
        rows.append({"model": label, "config": cfg.name, "mrr": t["mrr"], "hits@1": t["hits@1"],
                     "hits@3": t["hits@3"], "hits@10": t["hits@10"], "mr": t["mr"],
                     "epochs": res["epochs"], "seconds": res["wall_seconds"]})
        print(json.dumps(rows[-1]), flush=True)
        u = uncertainty(model, kg, args.samples, args.seed)
        unc.append((label, u))
        unc_rows.append({"model": label, **{k: v for k, v in u.items() if k != "_curves"}})
        models.append((label, model))
    for row in PAPER.get(args.dataset, []):
        rows.append({**row, "mrr": "–", "config": "paper", "epochs": "", "seconds": ""})

    print()
    print(f"Link prediction, {args.dataset} test (filtered, realistic ties)")
    print(markdown_table(rows, [("model", "model"), ("MRR", "mrr"), ("H@1", "hits@1"),
                                ("H@3", "hits@3"), ("H@10", "hits@10"), ("MR", "mr"),
                                ("epochs", "epochs"), ("wall s", "seconds")]))
    print()
    print(f"Uncertainty, {args.dataset} test ({args.samples} samples per fact)")
    print(markdown_table(unc_rows, [
        ("model", "model"), ("top-1 precision", "hits@1_top1"),
        ("AUPC score", "aupc_score"), ("AUPC variance", "aupc_variance"),
        ("P@50% score", "p@50_score"), ("P@50% variance", "p@50_variance"),
        ("ECE mean", "ece_mean"), ("ECE predictive", "ece_predictive"),
        ("acc mean", "acc_mean"), ("acc predictive", "acc_predictive")]))

    plot_variance_frequency(models, kg, out / "variance_vs_frequency.png")
    plot_precision_coverage(unc, kg.name, out / "precision_coverage.png")
    fact = plot_fact_pca(models[0][1], kg, models[0][0], out / "fact_pca.png", 300, args.seed)
    (out / "results.json").write_text(json.dumps(
        {"machine": info, "argv": public_argv(sys.argv), "rows": rows, "uncertainty": unc_rows,
         "pca_fact": fact}, indent=2, default=lambda x: None if isinstance(x, float)
        and math.isnan(x) else str(x)) + "\n")
    print(f"\nplots and results.json in {out}")


if __name__ == "__main__":
    main()
