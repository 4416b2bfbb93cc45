"""Benchmark filtered rank-based evaluation: ``gnn_inn.evaluation`` vs PyKEEN's evaluator.

Both contenders rank the test triples of a dataset (default FB15k-237) in both directions
against all entities, filtered with train ∪ valid ∪ test, using realistic ranks, for an untrained
DistMult of dimension ``--dim``. PyKEEN's model gets *our* entity and relation weights copied in,
so both must report the same MRR (a strong end-to-end correctness check of our ranking).

Each contender runs in a fresh child process; its peak RSS is that child's ``ru_maxrss``
(``os.wait4``), so both include the interpreter, torch and the dataset. Seconds are wall time
of the evaluation call itself, filter-index construction included for both (PyKEEN builds its
filter inside ``evaluate``).

Usage::

    python scripts/bench_eval.py [--dataset fb15k-237] [--data-dir DIR] [--dim 200]
        [--batch-size 256] [--pykeen-batch-size 32] [--skip-pykeen] [--json OUT]

Needs: ``gnn_inn.model.build_model`` with the ``"none"`` (lookup) encoder and the
``"distmult"`` decoder, ``gnn_inn.data.load_dataset`` (or, without it, a plain TSV reader
here plus ``gnn_inn.data.filters.FilterIndex``), and for the comparison ``pip install
'gnn-inn[bench]'`` (PyKEEN 1.11.1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_header, public_args, public_argv  # noqa: E402
from common import run_child as common_run_child  # noqa: E402

RESULT_TAG = "BENCH_RESULT "


# ----------------------------------------------------------------------------- data
def load(dataset: str, data_dir: str | None):
    """``(train, valid, test, num_entities, num_relations, make_filter)``; ids 0-based."""
    from gnn_inn.data import load_dataset

    kg = load_dataset(dataset, data_dir=data_dir)
    return (kg.train, kg.valid, kg.test, kg.num_entities, kg.num_relations,
            lambda: kg.filter_index)


def build_ours(num_entities: int, num_relations: int, dim: int, seed: int):
    """Untrained lookup-encoder + DistMult :class:`~gnn_inn.model.LinkPredictor`."""
    from gnn_inn.model import build_model

    torch.manual_seed(seed)
    model = build_model(
        num_entities=num_entities, num_relations=num_relations, dim=dim,
        encoder={"name": "none"}, decoder={"name": "distmult"},
    )
    return model.eval()


def our_weights(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Entity ``[N, d]`` and relation ``[R, d]`` tables the DistMult decoder scores with."""
    with torch.no_grad():
        ent, rel = model.encode()
        rel = model.decoder.relation if rel is None else rel
        model.invalidate_cache()
    return ent.detach().clone(), rel.detach()[: model.decoder.num_relations].clone()


# ------------------------------------------------------------------------- children
def child(args) -> dict:
    torch.manual_seed(args.seed)
    train, valid, test, n_ent, n_rel, make_filter = load(args.dataset, args.data_dir)
    model = build_ours(n_ent, n_rel, args.dim, args.seed)
    out = {"contender": args.child, "num_test": int(test.shape[0]), "num_entities": n_ent}
    if args.child == "gnn_inn":
        from gnn_inn.evaluation import evaluate

        t0 = time.perf_counter()
        res = evaluate(model, test, make_filter(), batch_size=args.batch_size)
        out["seconds"] = time.perf_counter() - t0
        out["metrics"] = res.metrics()
        return out

    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.models import DistMult
    from pykeen.triples import CoreTriplesFactory

    ent, rel = our_weights(model)
    tf = CoreTriplesFactory.create(mapped_triples=train, num_entities=n_ent, num_relations=n_rel)
    pk = DistMult(triples_factory=tf, embedding_dim=args.dim, random_seed=args.seed)
    with torch.no_grad():
        pk.entity_representations[0]._embeddings.weight.copy_(ent)
        pk.relation_representations[0]._embeddings.weight.copy_(rel)
        probe = test[:64]
        ours = model.score(probe[:, 0], probe[:, 1], probe[:, 2])
        out["max_score_diff"] = float((pk.score_hrt(probe).view(-1) - ours).abs().max())
    del model
    evaluator = RankBasedEvaluator(filtered=True)
    t0 = time.perf_counter()
    res = evaluator.evaluate(
        pk, test, batch_size=args.pykeen_batch_size, use_tqdm=False,
        additional_filter_triples=[train, valid],
    )
    out["seconds"] = time.perf_counter() - t0
    get = res.get_metric
    out["metrics"] = {
        "mrr": get("both.realistic.inverse_harmonic_mean_rank"),
        "mr": get("both.realistic.arithmetic_mean_rank"),
        **{f"hits@{k}": get(f"both.realistic.hits_at_{k}") for k in (1, 3, 10)},
    }
    return out


def run_child(name: str, argv: list[str]) -> dict:
    """Run one contender in a fresh interpreter; peak RSS from the kernel's rusage."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", name]
    out, usage = common_run_child(cmd, tag=RESULT_TAG)
    out["peak_rss_mb"] = usage["peak_rss_mb"]
    return out


# ----------------------------------------------------------------------------- main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fb15k-237")
    p.add_argument("--data-dir", default=os.environ.get("GNN_INN_DATA"),
                   help="folder holding <dataset>/{train,valid,test}.txt (default $GNN_INN_DATA)")
    p.add_argument("--dim", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=256, help="queries per batch (ours)")
    p.add_argument("--pykeen-batch-size", type=int, default=32,
                   help="PyKEEN evaluation batch size; its DistMult builds a [B, N, d] tensor, "
                        "so this is kept small (32 -> ~370 MB for FB15k-237, d=200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-pykeen", action="store_true")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--child", choices=["gnn_inn", "pykeen"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.child:
        print(RESULT_TAG + json.dumps(child(args)), flush=True)
        return 0
    info = print_header()
    if not args.data_dir:
        print("error: no dataset folder; pass --data-dir or set GNN_INN_DATA", file=sys.stderr)
        return 2
    print(f"dataset={args.dataset} dim={args.dim} batch_size={args.batch_size} "
          f"pykeen_batch_size={args.pykeen_batch_size} seed={args.seed} policy=realistic")
    contenders = ["gnn_inn"] + ([] if args.skip_pykeen else ["pykeen"])
    rows = [run_child(name, argv) for name in contenders]

    print(f"\n{'contender':<12} {'seconds':>8} {'peak RSS MB':>12} {'MRR':>10} {'Hits@10':>8}")
    for r in rows:
        m = r["metrics"]
        print(f"{r['contender']:<12} {r['seconds']:>8.2f} {r['peak_rss_mb']:>12.0f} "
              f"{m['mrr']:>10.6f} {m['hits@10']:>8.4f}")
    report = {"machine": info, "command": public_argv(sys.argv), "args": public_args(args),
              "results": rows}
    if len(rows) == 2:
        ours, pk = rows[0]["metrics"], rows[1]["metrics"]
        diff = {k: abs(ours[k] - pk[k]) for k in ours}
        same = diff["mrr"] <= 1e-6 * max(1.0, abs(pk["mrr"]))
        print(f"\nsame weights in both (max |score diff| on 64 test triples: "
              f"{rows[1]['max_score_diff']:.2e}); |ΔMRR| = {diff['mrr']:.2e}, "
              f"|ΔMR| = {diff['mr']:.2e}, |ΔHits@10| = {diff['hits@10']:.2e} -> "
              f"{'EQUAL' if same else 'DIFFERENT'}")
        print(f"speed-up: {rows[1]['seconds'] / rows[0]['seconds']:.1f}x, "
              f"memory: {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.1f}x")
        report["abs_diff"] = diff
        report["mrr_equal"] = same
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
