"""Flow family × dataset table, with RotatE / TransE baselines trained by the same script under
the same budget (epochs, batch, optimiser, loss, dimension).

    python scripts/flow_table.py --dataset umls --epochs 150 --out runs/flow_table

Prints the machine and command, one line per finished run, and a Markdown table; writes
``<out>/<dataset>.json``. Rerunning reproduces the README's numbers (seeded, CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, print_header, public_args, run_dict  # noqa: E402

FAMILIES = ["translation", "affine", "rotation", "orthogonal", "lu", "additive_coupling",
            "affine_coupling", "spline_coupling"]
BASELINES = ["rotate", "transe"]


def flow_decoder(args, family: str) -> dict:
    dec = {"name": "flow", "flow": family, "conditioning": args.conditioning, "p": 2.0}
    if args.conditioning == "context":
        dec["context_dim"] = args.context_dim
    if args.entity_bias:
        dec["entity_bias"] = True
    if args.relation_scale:
        dec["relation_scale"] = True
    if args.margin:
        dec["margin"] = args.margin
    return dec


def base_config(args, decoder: dict) -> dict:
    return {
        "seed": args.seed,
        "dataset": {"name": args.dataset},
        "model": {"dim": args.dim, "encoder": {"name": "none"}, "decoder": decoder},
        "train": {"loss": json.loads(args.loss), "epochs": args.epochs,
                  "batch_size": args.batch_size, "lr": args.lr,
                  "eval_every": args.eval_every, "patience": args.patience, "grad_clip": 5.0,
                  "device": args.device},
        "eval": {"batch_size": 256, "tie_policy": "realistic"},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="umls")
    p.add_argument("--data-dir")
    p.add_argument("--families", nargs="*", default=FAMILIES)
    p.add_argument("--baselines", nargs="*", default=BASELINES)
    p.add_argument("--dim", type=int, default=200)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--conditioning", choices=["table", "context"], default="table")
    p.add_argument("--context-dim", type=int, default=64, help="relation context size (context)")
    p.add_argument("--entity-bias", action="store_true", help="per-entity score bias")
    p.add_argument("--relation-scale", action="store_true", help="per-relation distance scale")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--loss", default='{"name": "1vsall"}', help="training objective as JSON")
    p.add_argument("--margin", type=float, default=0.0,
                   help="γ added to the scores of flows, RotatE and TransE (sigmoid losses)")
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--out", default="runs/flow_table")
    args = p.parse_args()
    info = print_header()
    rows = []
    runs = [("flow", f) for f in args.families] + [(b, None) for b in args.baselines]
    for name, family in runs:
        dec = flow_decoder(args, family) if family else {"name": name}
        if not family and args.margin and name in ("rotate", "transe"):
            dec["margin"] = args.margin
        label = f"flow/{family}" if family else name
        res = run_dict(base_config(args, dec), out=Path(args.out) / args.dataset /
                       label.replace("/", "_"), data_dir=args.data_dir)
        t = res["test"]
        row = {"model": label, "mrr": t["mrr"], "hits@1": t["hits@1"], "hits@10": t["hits@10"],
               "params": res["params"], "epoch_s": res["epoch_seconds"],
               "epochs": res["epochs"], "best_epoch": res["best_epoch"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    cols = [("decoder", "model"), ("test MRR", "mrr"), ("H@1", "hits@1"), ("H@10", "hits@10"),
            ("params", "params"), ("s / epoch", "epoch_s"), ("epochs (best)", "epochs")]
    for r in rows:
        r["epochs"] = f"{r['epochs']} ({r['best_epoch']})"
    extras = [f"{args.conditioning} conditioning"] + [
        k for k, on in (("entity bias", args.entity_bias), ("relation scale", args.relation_scale))
        if on]
    print(f"\n{args.dataset}, dim {args.dim}, flows: {', '.join(extras)}; 1vsAll CE, lr {args.lr}, "
          f"batch {args.batch_size}, ≤ {args.epochs} epochs, early stop on valid MRR (patience "
          f"{args.patience} × {args.eval_every} epochs)\n")
    print(markdown_table(rows, cols))
    out = Path(args.out) / f"{args.dataset}.json"
    out.write_text(json.dumps({"machine": info, "args": public_args(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
