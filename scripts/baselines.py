"""Baseline decoders (no encoder) from their shipped configs: the README's baseline table.

    python scripts/baselines.py --datasets umls nations --decoders distmult complex

Runs ``configs/<dataset>_none_<decoder>.yaml`` (the pieces ``configs/former.yaml`` lists for
it) unchanged for every pair, prints one JSON line per run and a Markdown table (test MRR /
H@1 / H@10 filtered, realistic ties; wall seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, markdown_table, print_header, run_config  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="*", default=["umls", "nations"])
    p.add_argument("--decoders", nargs="*", default=["distmult", "complex"])
    p.add_argument("--data-dir")
    p.add_argument("--out", default="runs/baselines")
    args = p.parse_args()
    info = print_header()
    rows = []
    for ds in args.datasets:
        for dec in args.decoders:
            cfg = ROOT / "configs" / f"{ds}_none_{dec}.yaml"
            res = run_config(cfg, out=Path(args.out) / f"{ds}_{dec}", data_dir=args.data_dir)
            t = res["test"]
            row = {"dataset": ds, "decoder": dec, "config": cfg.name, "mrr": t["mrr"],
                   "hits@1": t["hits@1"], "hits@10": t["hits@10"],
                   "seconds": res["wall_seconds"], "epochs": res["epochs"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(markdown_table(rows, [("dataset", "dataset"), ("config", "config"),
                                ("test MRR", "mrr"), ("H@1", "hits@1"), ("H@10", "hits@10"),
                                ("epochs", "epochs"), ("wall s", "seconds")]))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "baselines.json").write_text(
        json.dumps({"machine": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
