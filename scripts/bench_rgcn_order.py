"""R-GCN basis decomposition: basis-first vs per-type evaluation, and the order picked.

:class:`gnn_inn.encoders.rgcn.TypedRGCNConv` evaluates a basis-decomposed layer in one of two
orders (same result up to float rounding): *basis-first* combines the per-(target, type)
aggregates per basis with scatters and multiplies once by the stacked bases; *per type*
materialises the ``2R`` weights and multiplies each type's block of aggregates. This script
times one layer's forward + backward both ways on random graphs shaped like the ones met in
practice (some with the node, edge and (type, target) pair counts of the Nations, UMLS and
FB15k-237 train graphs) and prints which order the layer's cost model picks, so its constants
(``SCATTER_COST``, ``TYPE_COST``) can be checked or recalibrated on another machine.

Usage::

    python scripts/bench_rgcn_order.py [--reps 5] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, print_header  # noqa: E402

# (label, nodes n, edges E, edge types 2R, bases B, dim d[, distinct (type, target) pairs]);
# without a pair count the edges are uniformly random; the "train graph" rows have the counts
# of those datasets' train message graphs (with inverse edges)
SHAPES = [
    ("Nations train graph, d=500, B=22", 14, 3_184, 110, 22, 500, 909),
    ("Nations train graph, d=200, B=10", 14, 3_184, 110, 10, 200, 909),
    ("UMLS train graph, d=500, B=20", 135, 10_432, 92, 20, 500, 1_560),
    ("UMLS train graph, d=200, B=10", 135, 10_432, 92, 10, 200, 1_560),
    ("random, Nations-sized", 55, 4_000, 110, 4, 64),
    ("random, UMLS-sized, d=100", 135, 10_000, 92, 4, 100),
    ("random, UMLS-sized, d=500, B=14", 135, 10_000, 92, 14, 500),
    ("FB15k-237 train graph, d=64, B=4", 14_541, 544_230, 474, 4, 64, 149_689),
    ("FB15k-237 train graph, d=200, B=30", 14_541, 544_230, 474, 30, 200, 149_689),
    ("random, FB15k-237-sized", 14_541, 544_000, 474, 4, 64),
    ("random, FB15k-237 sampled step", 14_541, 100_000, 474, 4, 64),
    ("wikikg2 step, 256 triples, fan-out 5", 15_400, 16_000, 1070, 8, 64),
    ("  same, B=2", 15_400, 16_000, 1070, 2, 64),
    ("  same, B=30, d=200", 15_400, 16_000, 1070, 30, 200),
    ("wikikg2 step, 1/100 graph", 10_400, 14_600, 1070, 8, 64),
    ("wikikg2 step, 1024 triples, fan-out 10", 190_000, 213_000, 1070, 8, 64),
    ("small subgraph, many types", 2_000, 5_000, 1070, 8, 64),
]


def time_layer(conv, x, edge_index, edge_type, reps: int, device: str) -> float:
    times = []
    for _ in range(reps + 1):  # the first call warms up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        conv(x, edge_index, edge_type).square().sum().backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times[1:]) * 1e3


def main() -> None:
    from gnn_inn.encoders.rgcn import TypedRGCNConv

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print_header()
    rows = []
    for label, n, e, types, bases, d, *num_pairs in SHAPES:
        g = torch.Generator().manual_seed(0)
        conv = TypedRGCNConv(d, d, types, num_bases=bases, aggr="mean").to(args.device)
        x = torch.randn(n, d, generator=g).to(args.device).requires_grad_()
        if num_pairs:  # exactly num_pairs distinct (type, target) pairs, every one used
            pair = torch.randperm(types * n, generator=g)[: num_pairs[0]]
            pick = torch.cat([torch.arange(pair.numel()),
                              torch.randint(pair.numel(), (e - pair.numel(),), generator=g)])
            edge_type, dst = pair[pick] // n, pair[pick] % n
            edge_index = torch.stack([torch.randint(n, (e,), generator=g), dst])
        else:
            edge_index = torch.randint(n, (2, e), generator=g)
            edge_type = torch.randint(types, (e,), generator=g)
        edge_index, edge_type = edge_index.to(args.device), edge_type.to(args.device)
        pairs = int(torch.unique(edge_type * n + edge_index[1]).numel())
        picked = "basis-first" if conv._basis_first(pairs, n) else "per type"
        ms = {}
        for order in ("basis-first", "per type"):
            conv._basis_first = (lambda *_, o=order: o == "basis-first")
            ms[order] = time_layer(conv, x, edge_index, edge_type, args.reps, args.device)
        del conv._basis_first
        faster = min(ms, key=ms.get)
        rows.append({"shape": label, "n": f"{n:,}", "E": f"{e:,}", "pairs": f"{pairs:,}",
                     "types": types, "B": bases, "d": d,
                     "basis": f"{ms['basis-first']:.1f}", "typed": f"{ms['per type']:.1f}",
                     "picked": picked, "ok": "yes" if picked == faster else "NO"})
        print(rows[-1], flush=True)
    print()
    print(markdown_table(rows, [
        ("shape", "shape"), ("n", "n"), ("E", "E"), ("pairs P", "pairs"), ("2R", "types"),
        ("B", "B"), ("d", "d"), ("basis-first ms", "basis"), ("per type ms", "typed"),
        ("picked", "picked"), ("picked the faster", "ok")]))


if __name__ == "__main__":
    main()
