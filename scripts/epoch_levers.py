"""Seconds per training epoch of one config under each speed lever, measured step by step.

    python scripts/epoch_levers.py configs/fb15k-237_compgcn_flow_rotation.yaml --threads 2
    python scripts/epoch_levers.py CONFIG --levers baseline batch_8192 sampled --steps 8

Each lever is a list of ``--set`` overrides on the config (plus, for ``bf16``, CPU autocast of
the training step) trained in a fresh child process: ``--warmup`` steps are discarded, the next
``--steps`` are timed, and the median step time times the lever's steps per epoch gives the
projected seconds per epoch (so a lever that halves the steps or the cost of a step shows up
here; whether it keeps the MRR per epoch is for a training run to say). The machine should be
otherwise idle; the command, machine and thread count are printed with the table.

Levers (``--levers``, default all):

* ``baseline``: the config with ``--base-set`` (the campaign's batch size);
* ``batch_8192`` / ``batch_16384``: fewer, larger steps (one encoder pass per step);
* ``sampled``: neighbour-sampled objective, every in-edge (fan-out -1, so the same graph the
  full-batch encoder sees, minus the step's own edges), 256 shared + in-batch negatives
  (sampled softmax instead of all entities);
* ``sampled_1024``: the same with 1024 shared negatives;
* ``kvsall``: one row per unique (anchor, relation) query instead of one per triple and
  direction (BCE with label smoothing);
* ``bf16``: ``torch.autocast("cpu", torch.bfloat16)`` around the whole training step
  (forward, backward and optimiser step; the trainer has no precision option yet).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_header, print_table, run_child  # noqa: E402

TAG = "LEVER_RESULT "

LEVERS: dict[str, list[str]] = {
    "baseline": [],
    "batch_8192": ["train.batch_size=8192"],
    "batch_16384": ["train.batch_size=16384"],
    "sampled": ["train.sampler={num_neighbors: [-1], num_negatives: 256}"],
    "sampled_1024": ["train.sampler={num_neighbors: [-1], num_negatives: 1024}"],
    "kvsall": ["train.loss={name: kvsall, label_smoothing: 0.1}"],
    "bf16": [],
}


def child(payload: str) -> None:
    import torch

    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config

    args = json.loads(payload)
    torch.set_num_threads(args["threads"])
    cfg = Config.load(args["config"], args["sets"])
    trainer = trainer_from_config(cfg, data_dir=args["data_dir"], quiet=True)
    if args["bf16"]:
        step = trainer._step

        def autocast_step(batch):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return step(batch)
        trainer._step = autocast_step
    times: list[float] = []
    real_step = trainer._step

    def timed(batch):
        t0 = time.perf_counter()
        out = real_step(batch)
        times.append(time.perf_counter() - t0)
        return out
    trainer._step = timed
    need = args["warmup"] + args["steps"]
    while len(times) < need:  # small graphs: an epoch may have fewer steps than needed
        trainer.train_epoch(max_steps=need - len(times))
    timed_steps = times[args["warmup"]:]
    med = statistics.median(timed_steps)
    print(TAG + json.dumps({"steps_per_epoch": trainer.steps_per_epoch, "s_per_step": med,
                            "s_per_epoch": med * trainer.steps_per_epoch,
                            "timed_steps": len(timed_steps)}), flush=True)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    p.add_argument("--base-set", nargs="*", default=["train.batch_size=4096"],
                   help="overrides applied under every lever (default: the campaign's batch)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.child is not None:
        child(args.child)
        return 0
    info = print_header()
    rows = []
    for lever in args.levers:
        payload = {"config": args.config, "sets": [*args.base_set, *LEVERS[lever]],
                   "threads": args.threads, "bf16": lever == "bf16", "warmup": args.warmup,
                   "steps": args.steps, "data_dir": args.data_dir}
        try:
            res, usage = run_child([sys.executable, __file__, args.config, "--child",
                                    json.dumps(payload)], tag=TAG, capture_stderr=True)
        except RuntimeError as e:
            print(f"{lever}: failed ({e})", flush=True)
            continue
        row = {"lever": lever, "sets": " ".join(LEVERS[lever]) or "-", **res,
               "peak_rss_mb": usage["peak_rss_mb"]}
        rows.append(row)
        print(f"{lever}: {res['s_per_step']:.2f} s/step x {res['steps_per_epoch']} steps = "
              f"{res['s_per_epoch']:.0f} s/epoch", flush=True)
    print_table(rows, [("lever", "lever"), ("overrides", "sets"),
                       ("steps / epoch", "steps_per_epoch"), ("s / step", "s_per_step"),
                       ("s / epoch (projected)", "s_per_epoch"), ("peak RSS MB", "peak_rss_mb")],
                json_path=args.json,
                json_rows={"machine": info, "config": args.config, "base_set": args.base_set,
                           "threads": args.threads, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
