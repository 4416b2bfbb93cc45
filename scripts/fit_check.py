"""Does a trained model underfit or overfit? Training-set ranking beside validation, and how
saturated the encoder's entity embeddings are.

    python scripts/fit_check.py runs/a/best.pt runs/b/best.pt [--triples 3000] [--json out.json]

For each checkpoint (eval mode, no dropout):

* filtered MRR / Hits@1 / Hits@10 (both directions, the config's tie policy) of ``--triples``
  random training triples and of as many validation triples, drawn with ``--seed``; a model
  that overfits ranks its training triples far better than the validation ones, one that
  underfits ranks both about equally badly;
* the encoder's entity embeddings ``x [N, d]`` (:meth:`LinkPredictor.encode`): mean
  ``|x|``, the share of coordinates with ``|x| > 0.9`` (a ``tanh`` output there is saturated:
  its gradient ``1 - x^2`` is below 0.19) and the mean row norm.

Written for the FB15k-237 campaign (docs/results/campaign.md): the flagship's tanh output
sat at mean ``|x|`` 0.95 and ranked its own training triples at MRR 0.36, i.e. it underfit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, print_header  # noqa: E402

SATURATED = 0.9


def subsample(triples: torch.Tensor, m: int, seed: int) -> torch.Tensor:
    """``m`` rows of ``triples [M, 3]`` drawn without replacement (all of them if ``m >= M``)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(triples.size(0), generator=g)[:m]
    return triples[idx]


def embedding_stats(x: torch.Tensor) -> dict:
    """Saturation of entity embeddings ``x [N, d]``: mean |x|, share of |x| > 0.9, mean norm."""
    x = x.detach().float()
    a = x.abs()
    return {"mean_abs": a.mean().item(), "share_abs_gt_0.9": (a > SATURATED).float().mean().item(),
            "mean_norm": x.norm(dim=-1).mean().item()}


@torch.no_grad()
def fit_check(checkpoint: str, *, triples: int = 3000, seed: int = 0,
              data_dir: str | None = None) -> dict:
    from gnn_inn.evaluation.evaluator import evaluate
    from gnn_inn.training import load_trained

    model, kg, config = load_trained(checkpoint, data_dir=data_dir)
    model.eval()
    out: dict = {"checkpoint": str(checkpoint), "dataset": config.dataset.name,
                 "encoder": dict(config.model.encoder), "triples": triples, "seed": seed}
    for split in ("train", "valid"):
        part = subsample(getattr(kg, split), triples, seed)
        res = evaluate(model, part, kg.filter_index, batch_size=config.eval.batch_size,
                       policy=config.eval.tie_policy)
        m = res.metrics()
        out[split] = {"n": int(part.size(0)),
                      **{k: float(m[k]) for k in ("mrr", "hits@1", "hits@10")}}
    ent, _ = model.encode()
    out["entity"] = embedding_stats(ent)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--triples", type=int, default=3000,
                   help="training and validation triples ranked (default 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    if args.triples < 1:
        p.error("--triples must be >= 1")
    print_header()
    rows, table = [], []
    columns = [("checkpoint", "checkpoint"), ("train MRR", "train"), ("valid MRR", "valid"),
               ("train H@10", "train_h10"), ("valid H@10", "valid_h10"),
               ("mean abs x", "mean_abs"), (f"share abs x > {SATURATED}", "share"),
               ("mean norm", "norm")]
    for ck in args.checkpoints:
        r = fit_check(ck, triples=args.triples, seed=args.seed, data_dir=args.data_dir)
        rows.append(r)
        e = r["entity"]
        table.append({"checkpoint": ck, "train": r["train"]["mrr"], "valid": r["valid"]["mrr"],
                      "train_h10": r["train"]["hits@10"], "valid_h10": r["valid"]["hits@10"],
                      "mean_abs": e["mean_abs"], "share": e["share_abs_gt_0.9"],
                      "norm": e["mean_norm"]})
    print(markdown_table(table, columns), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"triples": args.triples, "seed": args.seed,
                                               "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
