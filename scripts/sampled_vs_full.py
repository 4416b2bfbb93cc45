"""Full-batch vs neighbour-sampled training of the same GNN model: test MRR and peak memory.

Both runs train the same model (R-GCN or CompGCN encoder, DistMult or flow decoder — the
flagship: ``--encoder compgcn --decoder flow``, rotation flows conditioned on CompGCN's
relation outputs with a per-entity bias and per-relation scale — same dimension, optimiser,
learning rate, batch size and number of epochs) on one dataset (default FB15k-237;
``--dataset umls`` for a quick check) and are evaluated identically (filtered ranking against
all entities, both directions; the sampled run's evaluation uses the encoder's layer-wise
inference). They differ only in the training step:

* ``full``: each step encodes the whole train graph and scores every entity (1vsAll
  cross-entropy);
* ``sampled``: each step encodes the ``--fanout`` neighbourhood of its entities with its own
  supervision edges removed and scores ``--negatives`` shared negatives (sampled softmax).

Each run is a fresh child process; its peak RSS (``ru_maxrss``) includes interpreter,
torch, dataset and model. On CUDA the peak allocated GPU memory is reported too.

Usage::

    python scripts/sampled_vs_full.py [--dataset fb15k-237] [--data-dir DIR] [--epochs 30]
        [--dim 100] [--fanout 10 10] [--negatives 256] [--device cpu] [--json OUT]
        [--encoder rgcn|compgcn] [--decoder distmult|flow] [--flow rotation]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_header, print_table, run_child  # noqa: E402

RESULT_TAG = "BENCH_RESULT "


def config(args, mode: str) -> dict:
    train = {"loss": {"name": "1vsall"}, "epochs": args.epochs, "batch_size": args.batch_size,
             "lr": args.lr, "eval_every": 0, "patience": 0, "device": args.device}
    if mode == "sampled":
        train["sampler"] = {"num_neighbors": args.fanout, "num_negatives": args.negatives,
                            "inference_batch_size": args.inference_batch_size,
                            "batch_negatives": args.batch_negatives}
    return {
        "seed": args.seed,
        "dataset": {"name": args.dataset, "data_dir": args.data_dir},
        "model": {"dim": args.dim, "encoder": encoder_spec(args), "decoder": decoder_spec(args),
                  # the full-batch run hides each step's own triples too (leak-free both ways)
                  "mask_targets": mode == "full"},
        "train": train,
    }


def encoder_spec(args) -> dict:
    if args.encoder == "compgcn":
        return {"name": "compgcn", "num_layers": len(args.fanout), "composition": "corr"}
    return {"name": "rgcn", "num_layers": len(args.fanout), "conv": "typed",
            "num_bases": args.bases}


def decoder_spec(args) -> dict:
    if args.decoder == "flow":
        # CompGCN's relation outputs condition the flows (context); R-GCN has none (table)
        ctx = ({"conditioning": "context", "context_dim": args.dim}
               if args.encoder == "compgcn" else {"conditioning": "table"})
        return {"name": "flow", "flow": args.flow, **ctx, "entity_bias": True,
                "relation_scale": True}
    return {"name": "distmult"}


def child(args) -> dict:
    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config

    torch.set_num_threads(args.threads)
    cfg = Config.from_dict(config(args, args.mode))
    trainer = trainer_from_config(cfg, quiet=True)
    t0 = time.perf_counter()
    res = trainer.fit()
    out = {
        "mode": args.mode, "dataset": res["dataset"], "epochs": res["epochs"],
        "encoder": args.encoder, "decoder": args.decoder,
        "fanout": args.fanout if args.mode == "sampled" else None,
        "test_mrr": res["test"]["mrr"], "test_hits@10": res["test"]["hits@10"],
        "train_s": res["train_seconds"], "wall_s": time.perf_counter() - t0,
        "params": res["params"],
    }
    if args.device.startswith("cuda"):
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fb15k-237")
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--bases", type=int, default=4)
    p.add_argument("--encoder", default="rgcn", choices=["rgcn", "compgcn"])
    p.add_argument("--decoder", default="distmult", choices=["distmult", "flow"])
    p.add_argument("--flow", default="rotation", help="flow family of --decoder flow")
    p.add_argument("--fanout", type=int, nargs="+", default=[10, 10])
    p.add_argument("--negatives", type=int, default=256)
    p.add_argument("--no-batch-negatives", dest="batch_negatives", action="store_false",
                   help="shared negatives only, without the step's heads and tails")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--inference-batch-size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--modes", nargs="+", default=["full", "sampled"],
                   choices=["full", "sampled"])
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(RESULT_TAG + json.dumps(child(args)), flush=True)
        return

    print_header()
    argv = [a for a in sys.argv[1:] if a != "--child"]
    rows = []
    for mode in args.modes:
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", "--mode", mode]
        row, usage = run_child(cmd, tag=RESULT_TAG)
        rows.append({**row, "peak_rss_mb": usage["peak_rss_mb"]})
        print(f"{mode}: {json.dumps(rows[-1])}", flush=True)
    cols = [("training", "mode"), ("dataset", "dataset"), ("epochs", "epochs"),
            ("test MRR", "test_mrr"), ("test H@10", "test_hits@10"), ("train s", "train_s"),
            ("peak RSS MB", "peak_rss_mb")]
    if args.device.startswith("cuda"):
        cols.append(("GPU peak MB", "gpu_peak_mb"))
    print_table(rows, cols, json_path=args.json)


if __name__ == "__main__":
    main()
