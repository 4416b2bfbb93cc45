"""OGB leaderboard run: one config, seeds 0-9, mean ± std of valid and test MRR.

    python scripts/ogb_submit.py configs/ogbl-biokg_none_flow_rotation.yaml \\
        --out runs/ogb/biokg_flow_rotation [--seeds 0 1 2] [--data-dir DIR] [--set key=value]

Each seed trains in ``<out>/seed_<k>/`` (config.yaml, metrics.jsonl, last.pt, best.pt,
results.json, written by the trainer). Rerunning the same command resumes: seeds whose
``results.json`` exists are read back, unfinished seeds continue from their ``last.pt``.
Evaluation is the OGB protocol (true entity against OGB's 500 negatives per side, the official
``ogb.linkproppred.Evaluator``, MRR averaged over head and tail queries).

Disk: a finished seed keeps ``best.pt`` without its optimiser state and loses ``last.pt``
(wikikg2 at dim 200 holds 500 M parameters: a full checkpoint with Adam's moments is ~6 GB, ten
seeds would not fit a 64 GB disk); ``--keep-checkpoints`` keeps both in full.

Writes ``<out>/submission.json`` and ``<out>/submission.md``: valid and test MRR as mean ±
unbiased standard deviation over the seeds (``statistics.stdev``), the number of parameters
(``sum(p.numel())`` over all parameters), the hardware, the ogb version, the command line and the
config — what an OGB leaderboard entry asks for.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, markdown_table, print_header  # noqa: E402

log = logging.getLogger("ogb_submit")

METRICS = ("mrr", "hits@1", "hits@3", "hits@10")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _read_results(path: Path) -> dict | None:
    """A finished seed's results, or ``None`` (absent or cut off while being written)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON (interrupted while written?); rerunning that seed", path)
        return None


def _check_same_config(seed_dir: Path, cfg) -> None:
    """Refuse to resume a seed folder that was trained with another config."""
    from gnn_inn.config import Config

    def key(c) -> dict:  # where the data lives may change between runs; nothing else may
        d = c.to_dict()
        d["dataset"].pop("data_dir", None)
        return d

    saved = seed_dir / "config.yaml"
    if saved.is_file() and key(Config.load(saved)) != key(cfg):
        raise SystemExit(
            f"{saved}: this seed was trained with another config than the one given now; "
            "use a new --out folder (or delete the seed folder to retrain it)"
        )


def run_seed(config_path: str, overrides: list[str], seed: int, out: Path, kg) -> dict:
    """Train (or resume, or read back) one seed; returns its results dict."""
    import torch

    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config

    cfg = Config.load(config_path, [*overrides, f"seed={seed}"])
    seed_dir = out / f"seed_{seed}"
    _check_same_config(seed_dir, cfg)
    done = _read_results(seed_dir / "results.json")
    if done is not None:
        log.info("seed %d: finished earlier, read %s", seed, seed_dir / "results.json")
        return done
    trainer = trainer_from_config(cfg, kg, out_dir=seed_dir, quiet=True)
    last = seed_dir / "last.pt"
    if last.is_file():
        trainer.resume(last)
    res = trainer.fit()
    _write_atomic(seed_dir / "results.json", json.dumps(res, indent=2) + "\n")
    del trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return res


def slim_checkpoints(seed_dir: Path) -> None:
    """Free a finished seed's disk: drop ``last.pt`` and the optimiser / scheduler state of
    ``best.pt`` (weights, config and vocabularies stay: ``gnn-inn evaluate`` still works)."""
    from gnn_inn.training.checkpoint import load_checkpoint, save_checkpoint

    best, last = seed_dir / "best.pt", seed_dir / "last.pt"
    if not best.is_file():
        return
    ckpt = load_checkpoint(best)
    if ckpt.get("optimizer") is not None or ckpt.get("scheduler") is not None:
        ckpt.pop("format", None)
        ckpt.update(optimizer=None, scheduler=None)
        save_checkpoint(best, ckpt)
    if last.is_file():
        last.unlink()


def mean_std(values: list[float]) -> dict[str, float | None]:
    """Mean and unbiased standard deviation (``None`` for fewer than two values)."""
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None}


def _pm(ms: dict) -> str:
    std = ms["std"]
    return f"{ms['mean']:.4f} ± {std:.4f}" if std is not None else f"{ms['mean']:.4f}"


def _hardware(results: list[dict], info: dict) -> str:
    on_gpu = any(str(r.get("device", "")).startswith("cuda") for r in results)
    if on_gpu and info["device"] != "cpu":
        return f"{info['device']} (CPU: {info['cpu']})"
    return f"CPU: {info['cpu']} ({info['cores']} cores)"


def _model_label(cfg: dict) -> str:
    dec = dict(cfg["model"]["decoder"])
    name = dec.pop("name")
    if name == "flow":
        name = f"flow/{dec.get('flow')} ({dec.get('conditioning', 'table')})"
    enc = cfg["model"]["encoder"].get("name", "none")
    return f"{enc} + {name}, dim {cfg['model']['dim']}, {cfg['train']['loss']['name']}"


def summarise(*, config_path: str, cfg, seeds: list[int], results: list[dict], info: dict,
              command: str) -> dict[str, Any]:
    import ogb
    import torch

    params = sorted({int(r["params"]) for r in results})
    out: dict[str, Any] = {
        "dataset": results[0]["dataset"] if results else cfg.dataset.name,
        "model": _model_label(cfg.to_dict()),
        "seeds": seeds,
        "valid_mrr": mean_std([r["valid"]["mrr"] for r in results]),
        "test_mrr": mean_std([r["test"]["mrr"] for r in results]),
        "valid": {m: mean_std([r["valid"][m] for r in results]) for m in METRICS},
        "test": {m: mean_std([r["test"][m] for r in results]) for m in METRICS},
        "params": params[0] if len(params) == 1 else params,
        "hardware": _hardware(results, info),
        "machine": info,
        "ogb_version": ogb.__version__,
        "torch_version": torch.__version__,
        "command": command,
        "config_file": config_path,
        "config": {k: v for k, v in cfg.to_dict().items() if k != "seed"},
        "per_seed": [
            {"seed": s, "valid_mrr": r["valid"]["mrr"], "test_mrr": r["test"]["mrr"],
             "params": r["params"], "epochs": r.get("epochs"), "best_epoch": r.get("best_epoch"),
             "train_seconds": r.get("train_seconds"), "device": r.get("device")}
            for s, r in zip(seeds, results)
        ],
    }
    return out


def to_markdown(s: dict[str, Any]) -> str:
    import yaml

    params = s["params"]
    params_txt = f"{params:,}" if isinstance(params, int) else ", ".join(f"{p:,}" for p in params)
    head = markdown_table(
        [{"dataset": s["dataset"], "model": s["model"], "params": params_txt,
          "valid": _pm(s["valid_mrr"]), "test": _pm(s["test_mrr"]),
          "seeds": str(len(s["seeds"])), "hw": s["hardware"], "ogb": s["ogb_version"]}],
        [("Dataset", "dataset"), ("Model", "model"), ("#Params", "params"),
         ("Valid MRR", "valid"), ("Test MRR", "test"), ("Seeds", "seeds"),
         ("Hardware", "hw"), ("ogb", "ogb")],
    )
    per_seed = markdown_table(
        [{"seed": str(r["seed"]), "valid": f"{r['valid_mrr']:.4f}",
          "test": f"{r['test_mrr']:.4f}", "epochs": str(r["epochs"]),
          "best": str(r["best_epoch"]),
          "secs": f"{r['train_seconds']:.0f}" if r["train_seconds"] is not None else ""}
         for r in s["per_seed"]],
        [("Seed", "seed"), ("Valid MRR", "valid"), ("Test MRR", "test"), ("Epochs", "epochs"),
         ("Best epoch", "best"), ("Train s", "secs")],
    )
    hits = markdown_table(
        [{"split": split, **{m: _pm(s[split][m]) for m in METRICS}} for split in ("valid", "test")],
        [("Split", "split"), *((m.upper() if m == "mrr" else m.capitalize(), m) for m in METRICS)],
    )
    return "\n\n".join([
        f"# OGB submission: {s['dataset']}",
        "Mean ± unbiased standard deviation over seeds "
        f"{', '.join(str(x) for x in s['seeds'])}; OGB protocol (official Evaluator, MRR averaged "
        "over head and tail queries).",
        head, "## Metrics", hits, "## Seeds", per_seed,
        f"## Command\n\n```\n{s['command']}\n```",
        f"torch {s['torch_version']}, ogb {s['ogb_version']}",
        f"## Config ({s['config_file']}, seed set per run)\n\n```yaml\n"
        f"{yaml.safe_dump(s['config'], sort_keys=False)}```",
    ]) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", help="YAML config of an ogbl-* dataset")
    p.add_argument("--out", required=True, help="output folder (seed_<k>/ per seed)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)),
                   help="seeds to run (default: 0 1 … 9)")
    p.add_argument("--data-dir", help="folder holding ogb's ogbl_<name>/ (default: config)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep last.pt and the optimiser state of finished seeds")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="config override, e.g. train.epochs=10")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from gnn_inn.config import Config
    from gnn_inn.model import load_kg

    info = print_header()
    script = Path(__file__).resolve()
    script_txt = str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else script.name
    command = shlex.join(["python", script_txt, *argv])
    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"dataset.data_dir={args.data_dir}")
    base = Config.load(args.config, overrides)
    if not base.dataset.name.startswith("ogbl-"):
        raise SystemExit(f"{args.config}: dataset.name is {base.dataset.name!r}; this script "
                         "reports OGB leaderboard runs (ogbl-biokg, ogbl-wikikg2)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kg = load_kg(base)
    results = []
    for seed in args.seeds:
        res = run_seed(args.config, overrides, seed, out, kg)
        results.append(res)
        if not args.keep_checkpoints:
            slim_checkpoints(out / f"seed_{seed}")
        print(f"seed {seed}: valid MRR {res['valid']['mrr']:.4f}  test MRR "
              f"{res['test']['mrr']:.4f}  params {res['params']:,}", flush=True)
    summary = summarise(config_path=args.config, cfg=base, seeds=args.seeds, results=results,
                        info=info, command=command)
    _write_atomic(out / "submission.json", json.dumps(summary, indent=2, default=str) + "\n")
    md = to_markdown(summary)
    _write_atomic(out / "submission.md", md)
    print(md)
    return summary


if __name__ == "__main__":
    main()
