"""Side-by-side encoder benchmark: our R-GCN / CompGCN versus PyKEEN 1.11's ``RGCN`` / ``CompGCN``.

    python scripts/bench_encoders.py --datasets umls nations --out runs/bench_encoders

For every (dataset, encoder) both implementations train in a fresh child process on the same
triples (the project's copies of the datasets; PyKEEN reads the same files through
``TriplesFactory.from_path``) at the same embedding size, number of layers, epochs, batch size,
optimiser and learning rate, with the same decoder (DistMult, PyKEEN's default interaction for
both models). Each child reports seconds per epoch (training only), peak resident memory
(``ru_maxrss`` of the child, which includes the Python / torch runtime of ~0.4 GB), and the
filtered test MRR with realistic ranks (PyKEEN's ``both.realistic.inverse_harmonic_mean_rank``).

Training objective, stated because it decides the step count:

* PyKEEN runs its defaults: sLCWA training loop, one uniformly corrupted negative per positive,
  margin ranking loss (margin 1), one optimisation step per ``batch_size`` training triples; its
  R-GCN and CompGCN recompute the full-graph message passing in every step (forward and
  backward), as ours does.
* ours runs ``1vsall`` cross-entropy (each triple scored as a tail and a head query against all
  entities): the same number of steps per epoch (``⌈|train| / batch_size⌉``), one encoder pass
  per step. Our R-GCN uses PyKEEN's edge dropout (0.4) and, where PyKEEN drops 20 % of the
  self-loop messages, 0.2 feature dropout between its layers; the same number of basis
  matrices per layer (PyKEEN: ⌈√R⌉ for forward and ⌈√R⌉ for inverse relations; ours: 2⌈√R⌉
  shared by all 2R edge types), so both models have the same parameter count up to biases.
  Our Adam runs torch's fused kernel (``train.fused_optimizer``); PyKEEN's uses its default.

PyKEEN's CompGCN needs inverse triples in its factory (``create_inverse_triples=True``); ours
has inverse edge types in the message graph and answers head queries with the decoder, without
inverse training triples.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, print_header, public_args, run_child  # noqa: E402

RESULT_TAG = "RESULT "

# the settings shared by both implementations, per encoder
SETTINGS = {
    # PyKEEN's RGCN defaults: 500-d, 2 layers, edge dropout 0.4 (self-loop dropout 0.2), DistMult
    "rgcn": {"dim": 500, "num_layers": 2, "epochs": 20, "batch_size": 256, "lr": 0.001},
    # PyKEEN's CompGCN defaults: 64-d, 1 layer, DistMult
    "compgcn": {"dim": 64, "num_layers": 1, "epochs": 100, "batch_size": 256, "lr": 0.001},
}


def dataset_files(data_dir: str | None, name: str) -> dict[str, Path]:
    from gnn_inn.data.datasets import dataset_folder

    root = Path(dataset_folder(name, data_dir))
    return {split: root / f"{split}.txt" for split in ("train", "valid", "test")}


# ---------------------------------------------------------------------------- children
def child_ours(args) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import run_dict
    from gnn_inn.data import load_dataset

    s = SETTINGS[args.encoder]
    if args.encoder == "rgcn":
        # PyKEEN's default: a basis decomposition of ⌈√R⌉ bases for the forward and another for
        # the inverse relations; ours decomposes all 2R edge types with one basis of 2⌈√R⌉
        # (the same number of weight matrices per layer)
        num_rel = load_dataset(args.dataset, data_dir=args.data_dir).num_relations
        bases = args.num_bases or 2 * math.ceil(math.sqrt(num_rel))
        # edge dropout 0.4 as PyKEEN; feature dropout 0.2 between the layers where PyKEEN
        # drops 20 % of the self-loop messages
        enc = {"name": "rgcn", "num_layers": s["num_layers"], "conv": args.rgcn_conv,
               "num_bases": bases, "edge_dropout": 0.4, "dropout": 0.2, "activation": "relu"}
    else:
        enc = {"name": "compgcn", "num_layers": s["num_layers"], "composition": "mult"}
    enc.update(json.loads(args.our_encoder))
    cfg = {
        "seed": args.seed,
        "dataset": {"name": args.dataset},
        "model": {"dim": s["dim"], "encoder": enc, "decoder": {"name": "distmult"}},
        "train": {"loss": json.loads(args.our_loss), "epochs": s["epochs"],
                  "batch_size": s["batch_size"],
                  "lr": s["lr"], "eval_every": 0, "device": "cpu", "fused_optimizer": True},
        "eval": {"batch_size": 256, "tie_policy": "realistic"},
    }
    torch.set_num_threads(args.threads)
    res = run_dict(cfg, out=Path(args.out) / f"ours_{args.dataset}_{args.encoder}",
                   data_dir=args.data_dir)
    return {"epoch_s": res["train_seconds"] / s["epochs"], "mrr": res["test"]["mrr"],
            "hits@10": res["test"]["hits@10"], "params": res["params"]}


def child_pykeen(args) -> dict:
    import torch
    from pykeen.pipeline import pipeline
    from pykeen.triples import TriplesFactory

    torch.set_num_threads(args.threads)
    s = SETTINGS[args.encoder]
    files = dataset_files(args.data_dir, args.dataset)
    inverse = args.encoder == "compgcn"  # PyKEEN's CompGCN asserts inverse triples
    train = TriplesFactory.from_path(files["train"], create_inverse_triples=inverse)
    valid, test = (TriplesFactory.from_path(files[k], entity_to_id=train.entity_to_id,
                                            relation_to_id=train.relation_to_id,
                                            create_inverse_triples=inverse)
                   for k in ("valid", "test"))
    if args.encoder == "rgcn":
        model, kwargs = "RGCN", {"embedding_dim": s["dim"], "num_layers": s["num_layers"]}
    else:
        model, kwargs = "CompGCN", {"embedding_dim": s["dim"],
                                    "encoder_kwargs": {"num_layers": s["num_layers"]}}
    t0 = time.perf_counter()
    result = pipeline(
        training=train, validation=valid, testing=test, model=model, model_kwargs=kwargs,
        optimizer="Adam", optimizer_kwargs={"lr": s["lr"]},
        training_kwargs={"num_epochs": s["epochs"], "batch_size": s["batch_size"],
                         "use_tqdm_batch": False, "use_tqdm": False},
        evaluation_kwargs={"batch_size": 256, "use_tqdm": False},
        random_seed=args.seed, device="cpu",
    )
    wall = time.perf_counter() - t0
    m = result.metric_results
    return {"epoch_s": result.train_seconds / s["epochs"],
            "mrr": float(m.get_metric("both.realistic.inverse_harmonic_mean_rank")),
            "hits@10": float(m.get_metric("both.realistic.hits_at_10")),
            "params": sum(p.numel() for p in result.model.parameters()), "wall_s": wall}


# ---------------------------------------------------------------------------- parent
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="*", default=["umls", "nations"])
    p.add_argument("--encoders", nargs="*", default=["rgcn", "compgcn"], choices=list(SETTINGS))
    p.add_argument("--impls", nargs="*", default=["ours", "pykeen"], choices=["ours", "pykeen"])
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per child")
    p.add_argument("--rgcn-conv", default="typed", help="our R-GCN layer (typed | rgcn | fast)")
    p.add_argument("--num-bases", type=int, default=None,
                   help="bases of our R-GCN (default 2⌈√R⌉, PyKEEN's default)")
    p.add_argument("--epochs", type=int, help="override the epochs of every setting")
    p.add_argument("--our-loss", default='{"name": "1vsall"}',
                   help="our training objective as JSON (default 1vsAll cross-entropy)")
    p.add_argument("--our-encoder", default="{}",
                   help="extra keyword arguments of our encoders as JSON")
    p.add_argument("--out", default="runs/bench_encoders")
    p.add_argument("--child", choices=["ours", "pykeen"], help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    p.add_argument("--encoder", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.epochs:
        for s in SETTINGS.values():
            s["epochs"] = args.epochs

    if args.child:
        fn = child_ours if args.child == "ours" else child_pykeen
        print(RESULT_TAG + json.dumps(fn(args)), flush=True)
        return

    info = print_header()
    rows = []
    for ds in args.datasets:
        for enc in args.encoders:
            for impl in args.impls:
                cmd = [sys.executable, __file__, "--child", impl, "--dataset", ds, "--encoder",
                       enc, "--seed", str(args.seed), "--threads", str(args.threads),
                       "--rgcn-conv", args.rgcn_conv, "--out", args.out]
                if args.epochs:
                    cmd += ["--epochs", str(args.epochs)]
                cmd += ["--our-loss", args.our_loss, "--our-encoder", args.our_encoder]
                if args.data_dir:
                    cmd += ["--data-dir", args.data_dir]
                if args.num_bases:
                    cmd += ["--num-bases", str(args.num_bases)]
                out, usage = run_child(cmd, tag=RESULT_TAG, capture_stderr=True)
                row = {"dataset": ds, "encoder": enc, "impl": impl, **SETTINGS[enc], **out,
                       "peak_rss_mb": usage["peak_rss_mb"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    # speed-up per (dataset, encoder)
    for r in rows:
        peer = [q for q in rows if q["dataset"] == r["dataset"] and q["encoder"] == r["encoder"]
                and q["impl"] == "pykeen"]
        if peer and r["impl"] == "ours":
            r["speedup"] = f"{peer[0]['epoch_s'] / r['epoch_s']:.1f}×"
    cols = [("dataset", "dataset"), ("encoder", "encoder"), ("impl", "impl"), ("d", "dim"),
            ("layers", "num_layers"), ("epochs", "epochs"), ("s / epoch", "epoch_s"),
            ("speed-up", "speedup"), ("peak RSS MB", "peak_rss_mb"), ("test MRR", "mrr"),
            ("H@10", "hits@10"), ("params", "params")]
    print()
    print(markdown_table(rows, cols))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_encoders.json").write_text(
        json.dumps({"machine": info, "args": public_args(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
