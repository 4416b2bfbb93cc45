"""What a trained variational (ELBO) model learned: positive vs negative scores, popularity.

    python scripts/variational_diagnose.py runs/a/last.pt runs/b/best.pt [--json out.json]

For each checkpoint (posterior means, eval mode), on the training facts and on ``K`` random
head / tail corruptions of each (the ELBO's ``corrupt`` negatives, ``K`` from the config):

* the mean score and the share scored above 0 (``σ(s) > ½``) of positives and of negatives;
* the two log-likelihood parts per positive, ``−log σ(s⁺)`` and ``w · Σ_k −log σ(−s⁻_k)`` with
  the config's negative weight ``w`` and with the unbiased ``1/b⁻ = 2(N−1)/K``;
* the mean posterior variance of entities;
* with ``--rank-train M``: filtered ranking metrics of ``M`` random training facts beside those
  of the validation facts (how far the model memorised the training graph).

Written to show why the unbiased Bernoulli weight does not learn on WN18RR (README,
"Variational embeddings").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_header, public_argv  # noqa: E402


@torch.no_grad()
def diagnose(checkpoint: str, seed: int, data_dir: str | None, rank_train: int = 0) -> dict:
    from gnn_inn.data.triples import sample_negatives
    from gnn_inn.training import load_trained
    from gnn_inn.training.elbo import bernoulli_weight

    model, kg, config = load_trained(checkpoint, data_dir=data_dir)
    loss_cfg = dict(config.train.loss) if not isinstance(config.train.loss, str) else {}
    k = int(loss_cfg.get("num_negatives", 1))
    mode = loss_cfg.get("negatives", "corrupt")
    n, r = kg.num_entities, kg.num_relations
    train = kg.train
    unbiased = bernoulli_weight(mode, n, r, train.shape[0], k)
    w = loss_cfg.get("negative_weight")
    w = unbiased if w is None else float(w)
    g = torch.Generator().manual_seed(seed)
    ent, rel = model.encode()
    dec = model.decoder
    h, rr, t = train.unbind(1)
    s_pos = dec.score(ent, rel, h, rr, t).float()
    neg = sample_negatives(h, rr, t, k, n, r, mode, g).reshape(-1, 3)
    s_neg = dec.score(ent, rel, *neg.unbind(1)).float()
    post = model.encoder.gaussian(getattr(model, "graph", None))
    nll_neg = (-F.logsigmoid(-s_neg)).reshape(-1, k).sum(1).mean().item()
    ranking = {}
    if rank_train:
        from gnn_inn.evaluation.evaluator import evaluate

        keep = ("mrr", "mr", "hits@1", "hits@10")
        idx = torch.randperm(train.shape[0], generator=g)[:rank_train]
        for name, triples in (("train_sample", train[idx]), ("valid", kg.valid)):
            m = evaluate(model, triples, kg.filter_index).metrics()
            ranking[name] = {key: m[key] for key in keep}
    return {
        "checkpoint": checkpoint,
        "epoch_metrics": _last_valid(Path(checkpoint).parent / "metrics.jsonl"),
        "num_negatives": k, "negative_weight": w, "unbiased_weight": unbiased,
        "positive_mean_score": s_pos.mean().item(),
        "positive_share_above_0": (s_pos > 0).float().mean().item(),
        "negative_mean_score": s_neg.mean().item(),
        "negative_share_above_0": (s_neg > 0).float().mean().item(),
        "nll_positive_per_fact": (-F.logsigmoid(s_pos)).mean().item(),
        "nll_negatives_per_fact_weighted": w * nll_neg,
        "nll_negatives_per_fact_unbiased_weight": unbiased * nll_neg,
        "entity_mean_variance": post.ent_logvar.exp().mean().item(),
        **({"filtered_ranking": ranking} if ranking else {}),
    }


def _last_valid(path: Path) -> dict | None:
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [x for x in rows if "valid" in x]
    return {"epoch": rows[-1]["epoch"], **rows[-1]["valid"]} if rows else None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rank-train", type=int, default=0, metavar="M",
                    help="also rank M random training facts and the validation facts")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    info = print_header()
    rows = [diagnose(c, args.seed, args.data_dir, args.rank_train) for c in args.checkpoints]
    for row in rows:
        print(json.dumps(row, indent=1))
    if args.json:
        out = {"machine": info, "command": "python scripts/variational_diagnose.py "
               + " ".join(public_argv(sys.argv[1:])), "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
