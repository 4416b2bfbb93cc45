"""Neighbour-sampled training at ogbl-wikikg2 scale: memory and speed across graph sizes.

A random knowledge graph with ogbl-wikikg2's size — 2,500,604 entities, 535 relations,
16,109,182 training triples (32M message edges with inverses) — times ``--scale``, trained
with ``train.sampler`` (``--model rgcn-distmult``: R-GCN encoder, DistMult decoder;
``--model compgcn-flow``, the flagship: CompGCN encoder + rotation flows conditioned on
CompGCN's relation outputs; sampled softmax over shared negatives) for a fixed number of
steps. Heads and tails are drawn with a skewed (``u^1.5``) distribution so that a few
entities are hubs, like in real KGs.

Each size runs in a fresh child process, so its peak RSS (``ru_maxrss``) is its own:
interpreter + torch + graph + sampler CSC + model + optimiser + the steps. Columns:

* ``setup MB`` — RSS after building graph, model, sampler (before any step);
* ``peak MB`` — peak RSS of the child;
* ``step MB`` — ``peak − setup``: optimiser state and gradients (``3 · N · d`` floats for
  Adam on the dense entity table, ``2 · N · d`` for SparseAdam's moments with
  ``--sparse-embeddings``) plus one step's transient memory;
* ``state MB`` — RSS after the warm-up steps minus ``setup MB``: the optimiser state and
  gradient buffers, which grow with the entity table;
* ``step transient MB`` — the peak during the timed steps above the RSS after warm-up (the
  kernel's peak mark is reset after warm-up; warm-up and timed steps share one epoch, so the
  epoch's shuffled order of the training triples, ``8 · |train|`` bytes, is not counted as
  step memory): one step's own working memory, which should not depend on the graph's size;
* ``nodes / step``, ``edges / step`` — mean size of the sampled subgraph;
* ``step MB (pinned malloc)`` — ``step transient MB`` of a second child for the same size
  run with glibc's allocator pinned (``--malloc both``, the default; see below);
* ``steps/s`` and ``sampling %`` — throughput after ``--warmup`` steps and the share of the
  step time spent sampling subgraphs;
* ``infer s``, ``infer MB`` — one layer-wise full-graph inference (all entities, node
  batches; ``--no-inference`` skips it) and the peak RSS afterwards.

Usage::

    python scripts/bench_scale.py --scales 0.01 0.001 [--steps 30] [--dim 64]
        [--fanout 10 10] [--batch-size 1024] [--negatives 256] [--device cpu] [--json OUT]
        [--sparse-embeddings | --dense-embeddings] [--malloc both|default|pinned]

``--scales 1`` is the full wikikg2 size (several GB of RSS: graph, CSC copy, the
``2.5M × d`` entity table with its Adam state).

Allocator. glibc's ``malloc`` serves blocks below a *dynamic* mmap threshold (up to 32 MB)
from its heap and keeps freed heap memory resident for reuse, so the RSS a step adds depends
on what earlier allocations left behind, not only on what the step allocates (the same step
configuration added 33 MB at 1M entities and 54 MB at 100k). ``--malloc pinned`` runs the child
with ``MALLOC_MMAP_THRESHOLD_=65536`` and ``MALLOC_TRIM_THRESHOLD_=0``: every block of 64 KB
or more is its own mapping, returned to the kernel on ``free``, so the RSS above the warm
level is the step's live working memory. The pinned allocator maps and faults pages on every
large allocation, so it runs fewer steps per second; ``--malloc both`` (the default) therefore
runs each size twice — speed, peak RSS and state from the default allocator, the step's
working memory from the pinned one. The variables are glibc's; other C libraries ignore them.

``--world-size W`` runs each size as ``W`` gloo processes (the ``torchrun`` environment, one
child per rank; rank 0 reports): ``exchange MB/step`` is what a rank sends per step for the
gradients — the entity table as touched rows — against ``dense all-reduce MB``, the payload
of a dense all-reduce of all gradients (``--malloc default`` is implied).

``--sparse-embeddings`` (the default here) sets ``train.sparse_embeddings``: the entity
table's gradient holds only the step's subgraph rows and ``SparseAdam`` updates only those,
so a step's transient memory does not grow with ``N``; ``--dense-embeddings`` compares with
the dense ``[N, d]`` gradient and Adam.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_header, print_table  # noqa: E402
from common import run_child as common_run_child  # noqa: E402

RESULT_TAG = "BENCH_RESULT "
WIKIKG2 = {"entities": 2_500_604, "relations": 535, "train": 16_109_182}
# glibc: blocks >= 64 KB are their own mappings (no dynamic threshold), freed memory at the heap
# top is returned at once -- RSS then follows the live allocations (see the module docstring)
PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def rss_mb() -> float:
    """Current resident set size in MB (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) of this process (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float | None:
    """Peak RSS since the last :func:`reset_peak_rss` (``VmHWM``), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class ScaledKG:
    """Just what the trainer needs of a knowledge graph, without 2.5M entity-name strings."""

    # the optional attributes KnowledgeGraph declares: an untyped graph, no OGB candidates
    fingerprint = ogb_name = ogb_candidates = relation_patterns = None
    entity_type_ranges = relation_types = None
    entity_type_names = ()

    def __init__(self, scale: float, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.name = f"wikikg2-like x{scale:g}"
        self.num_entities = max(100, round(WIKIKG2["entities"] * scale))
        self.num_relations = WIKIKG2["relations"]
        t = max(1000, round(WIKIKG2["train"] * scale))
        n = self.num_entities
        h = (n * torch.rand(t, generator=g).pow(1.5)).long().clamp_max(n - 1)
        tail = (n * torch.rand(t, generator=g).pow(1.5)).long().clamp_max(n - 1)
        r = torch.randint(self.num_relations, (t,), generator=g)
        self.train = torch.stack([h, r, tail], 1)
        self.valid = self.train[:0]
        self.test = self.train[:0]

    def message_graph(self):
        from torch_geometric.data import Data

        h, r, t = self.train.unbind(1)
        return Data(edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
                    edge_type=torch.cat([r, r + self.num_relations]),
                    num_nodes=self.num_entities)


MODELS = {
    "rgcn-distmult": lambda a: {
        "encoder": {"name": "rgcn", "num_layers": len(a.fanout), "conv": "typed",
                    "num_bases": a.bases},
        "decoder": {"name": "distmult"}},
    # the flagship: CompGCN's relation outputs condition the rotation flows
    "compgcn-flow": lambda a: {
        "encoder": {"name": "compgcn", "num_layers": len(a.fanout), "composition": "corr"},
        "decoder": {"name": "flow", "flow": "rotation", "conditioning": "context",
                    "context_dim": a.dim}},
}
MODEL_NAMES = {"rgcn-distmult": "R-GCN (typed, {layers} layers, {bases} bases) + DistMult",
               "compgcn-flow": "CompGCN (corr, {layers} layers) + rotation flow (context: "
                               "CompGCN relations)"}


def child(args) -> dict:
    from gnn_inn.config import Config
    from gnn_inn.model import build_model
    from gnn_inn.training import Trainer

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    kg = ScaledKG(args.scale)
    graph = kg.message_graph()
    cfg = Config.from_dict({
        "seed": 0,
        "model": {"dim": args.dim, **MODELS[args.model](args)},
        "train": {"loss": {"name": "1vsall"}, "batch_size": args.batch_size, "lr": 0.001,
                  "device": args.device, "epochs": 1,
                  "sparse_embeddings": args.sparse_embeddings,
                  "sampler": {"num_neighbors": args.fanout, "num_negatives": args.negatives,
                              "inference_batch_size": args.inference_batch_size}},
    })
    torch.manual_seed(0)
    model = build_model(num_entities=kg.num_entities, num_relations=kg.num_relations,
                        dim=args.dim, encoder=cfg.model.encoder, decoder=cfg.model.decoder,
                        graph=graph)
    trainer = Trainer(model=model, kg=kg, config=cfg, quiet=True)
    del graph
    setup_s = time.perf_counter() - t0
    setup = rss_mb()

    objective = trainer.sampler
    sizes: list[tuple[int, int]] = []
    sample_s = [0.0]
    subgraph = objective.subgraph
    calls = [0]
    mark: dict[str, float] = {}
    prof = None
    if args.profile:  # op-level CPU time of the timed steps, printed to stderr
        from torch.profiler import ProfilerActivity, profile
        prof = profile(activities=[ProfilerActivity.CPU])

    def timed_subgraph(*a, **kw):
        calls[0] += 1
        if calls[0] == args.warmup + 1:
            # first timed step: the optimiser state exists and the epoch's shuffled order of
            # the training triples (an O(|train|) index, allocated once per epoch) is already
            # built, so what grows from here is one step's own working memory
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            if prof is not None:
                prof.__enter__()
            mark["warm"] = rss_mb()
            mark["reset"] = reset_peak_rss()
            mark["t"] = time.perf_counter()
            sizes.clear()
            sample_s[0] = 0.0
        s = time.perf_counter()
        out = subgraph(*a, **kw)
        sample_s[0] += time.perf_counter() - s
        sizes.append(objective.last_subgraph)
        return out

    objective.subgraph = timed_subgraph
    # warm-up and timed steps in one epoch (one pass over the shuffled triples)
    trainer.train_epoch(max_steps=args.warmup + args.steps)
    if prof is not None:
        prof.__exit__(None, None, None)
        print(f"profile of the {args.steps} timed steps at scale {args.scale:g}:\n"
              + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile),
              file=sys.stderr, flush=True)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    train_s = time.perf_counter() - mark["t"]
    warm, can_reset = mark["warm"], mark["reset"]
    steps = len(sizes)
    out = {
        "scale": args.scale, "entities": kg.num_entities, "relations": kg.num_relations,
        "train_triples": int(kg.train.shape[0]), "edges": 2 * int(kg.train.shape[0]),
        "params": model.num_parameters(), "setup_s": setup_s, "setup_mb": setup,
        "malloc_env": {k: os.environ.get(k) for k in PINNED_MALLOC},
        "peak_train_mb": peak_mb(), "steps": steps, "steps_per_s": steps / train_s,
        "sampling_pct": 100 * sample_s[0] / train_s,
        "nodes_per_step": sum(n for n, _ in sizes) / max(steps, 1),
        "edges_per_step": sum(e for _, e in sizes) / max(steps, 1),
    }
    if trainer.dist.enabled:
        timed = trainer.exchange_bytes[-steps:]
        out["world_size"] = trainer.dist.world_size
        out["exchange_mb_per_step"] = sum(timed) / max(len(timed), 1) / 2**20
        out["dense_allreduce_mb"] = trainer.dist.last_exchange["dense_bytes"] / 2**20
        out["exchange_rows_per_step"] = trainer.dist.last_exchange["rows"]
        trainer.dist.close()
    out["model"] = args.model
    out["step_mb"] = out["peak_train_mb"] - setup
    out["state_mb"] = warm - setup
    hwm = hwm_mb() if can_reset else None
    if hwm is not None:
        out["step_transient_mb"] = hwm - warm
    if args.device.startswith("cuda"):
        out["gpu_peak_train_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if args.inference:
        model.eval()
        t2 = time.perf_counter()
        with torch.no_grad():
            ent, _ = model.encoder.inference(model.graph, args.inference_batch_size)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        out["inference_s"] = time.perf_counter() - t2
        out["inference_rows"] = int(ent.shape[0])
        out["peak_mb"] = peak_mb()
    else:
        out["peak_mb"] = out["peak_train_mb"]
    return out


def run_child(scale: float, argv: list[str], pinned_malloc: bool = False,
              world_size: int = 1) -> dict:
    """One child per size (``world_size`` children, one per rank, under a gloo group);
    the result of rank 0."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--scale", str(scale),
           *argv]
    env = {k: v for k, v in os.environ.items() if k not in PINNED_MALLOC}
    if pinned_malloc:
        env.update(PINNED_MALLOC)
    return common_run_child(cmd, tag=RESULT_TAG, env=env, world_size=world_size)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scales", type=float, nargs="+", default=[0.01, 0.001])
    p.add_argument("--steps", type=int, default=30, help="timed steps per size")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--bases", type=int, default=8, help="R-GCN basis decomposition")
    p.add_argument("--model", choices=sorted(MODELS), default="rgcn-distmult")
    p.add_argument("--world-size", type=int, default=1,
                   help="gloo processes per size (the torchrun scheme); rank 0 reports")
    p.add_argument("--fanout", type=int, nargs="+", default=[10, 10])
    p.add_argument("--batch-size", type=int, default=1024, help="training triples per step")
    p.add_argument("--negatives", type=int, default=256)
    p.add_argument("--inference-batch-size", type=int, default=16384)
    p.add_argument("--no-inference", dest="inference", action="store_false")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sparse-embeddings", dest="sparse_embeddings", action="store_true",
                   default=True, help="train.sparse_embeddings: true (sparse entity-table "
                   "gradients + SparseAdam; the default here)")
    p.add_argument("--dense-embeddings", dest="sparse_embeddings", action="store_false",
                   help="dense entity-table gradients + Adam, for comparison")
    p.add_argument("--malloc", choices=["both", "default", "pinned"], default="both",
                   help="allocator of the children: 'both' runs each size with glibc's default "
                   "(speed, peak RSS) and pinned (step working memory) settings")
    p.add_argument("--profile", type=int, default=0, metavar="ROWS",
                   help="print the top ROWS ops (torch.profiler, self CPU time) of the timed "
                   "steps of each default-allocator child to stderr; timings then include "
                   "the profiler's overhead")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scale", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(RESULT_TAG + json.dumps(child(args)), flush=True)
        return

    print_header()
    passthrough = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--dim",
                   str(args.dim), "--bases", str(args.bases), "--fanout",
                   *map(str, args.fanout), "--batch-size", str(args.batch_size),
                   "--negatives", str(args.negatives), "--inference-batch-size",
                   str(args.inference_batch_size), "--device", args.device,
                   "--threads", str(args.threads), "--model", args.model]
    if not args.inference:
        passthrough.append("--no-inference")
    if args.profile:
        passthrough += ["--profile", str(args.profile)]
    passthrough.append("--sparse-embeddings" if args.sparse_embeddings
                       else "--dense-embeddings")
    if args.world_size > 1:
        args.malloc = "default"
    name = MODEL_NAMES[args.model].format(layers=len(args.fanout), bases=args.bases)
    print(f"{name}, d={args.dim}, fan-out {args.fanout}, {args.batch_size} triples/step, "
          f"{args.negatives} shared negatives, {args.steps} timed steps, "
          f"{'sparse' if args.sparse_embeddings else 'dense'} entity-table gradients\n",
          flush=True)
    print(f"allocator: {args.malloc}"
          + (f" ({' '.join(f'{k}={v}' for k, v in PINNED_MALLOC.items())})"
             if args.malloc != "default" else "") + "\n", flush=True)
    rows = []
    for scale in args.scales:
        row = run_child(scale, passthrough, pinned_malloc=args.malloc == "pinned",
                        world_size=args.world_size)
        row["malloc"] = args.malloc if args.malloc != "both" else "default"
        if args.malloc == "both":
            pinned = run_child(scale, [*passthrough, "--no-inference", "--profile", "0"],
                               pinned_malloc=True)
            row["pinned"] = pinned
            if "step_transient_mb" in pinned:
                row["pinned_step_transient_mb"] = pinned["step_transient_mb"]
        rows.append(row)
        print(f"scale {scale:g}: {json.dumps(row)}", flush=True)
    cols = [("scale", "scale"), ("entities", "entities"), ("train triples", "train_triples"),
            ("params", "params"), ("setup s", "setup_s"), ("setup MB", "setup_mb"),
            ("peak MB", "peak_mb"), ("step MB", "step_mb"), ("state MB", "state_mb"),
            ("step transient MB", "step_transient_mb"),
            *([("step MB (pinned malloc)", "pinned_step_transient_mb")]
              if args.malloc == "both" else []),
            ("nodes / step", "nodes_per_step"), ("edges / step", "edges_per_step"),
            ("steps", "steps"), ("steps/s", "steps_per_s"), ("sampling %", "sampling_pct")]
    if args.world_size > 1:
        cols += [("exchange MB/step", "exchange_mb_per_step"),
                 ("dense all-reduce MB", "dense_allreduce_mb")]
    if args.inference:
        cols.append(("infer s", "inference_s"))
    if args.device.startswith("cuda"):
        cols.append(("GPU peak MB (train)", "gpu_peak_train_mb"))
    shown = []
    for row in rows:  # integers for counts and MB, 3 decimals for rates and seconds
        r = dict(row)
        for k in ("setup_mb", "peak_mb", "step_mb", "state_mb", "step_transient_mb",
                  "pinned_step_transient_mb", "nodes_per_step", "edges_per_step",
                  "gpu_peak_train_mb"):
            if k in r:
                r[k] = f"{r[k]:,.0f}"
        for k in ("entities", "train_triples", "params"):
            r[k] = f"{r[k]:,}"
        r["sampling_pct"] = f"{r['sampling_pct']:.0f}"
        shown.append(r)
    print_table(shown, cols, json_path=args.json, json_rows=rows)


if __name__ == "__main__":
    main()
