"""Shared helpers of the scripts: machine description, running configs, Markdown tables."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    info = {
        "cpu": cpu_model(),
        "cores": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count()),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    return info


def print_header() -> dict:
    """Print the machine and the command line (every benchmark starts with this)."""
    info = machine_info()
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    sys.stdout.flush()
    return info


def run_config(config: str | Path, overrides: list[str] | None = None, *, out: str | Path,
               data_dir: str | None = None, quiet: bool = True) -> dict:
    """Train one config in-process and return its results dict (also in ``out/results.json``)."""
    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config

    cfg = Config.load(config, overrides or [])
    t0 = time.perf_counter()
    trainer = trainer_from_config(cfg, data_dir=data_dir, out_dir=out, quiet=quiet)
    res = trainer.fit()
    res["wall_seconds"] = time.perf_counter() - t0
    res["epoch_seconds"] = res["train_seconds"] / max(res["epochs"], 1)
    Path(out, "results.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """``columns`` = [(header, key)]; floats printed with 3 decimals."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    head = "| " + " | ".join(h for h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k, "")) for _, k in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def run_dict(cfg: dict, *, out: str | Path, data_dir: str | None = None,
             quiet: bool = True) -> dict:
    """Train a config given as a dict (same keys as the YAML files)."""
    import yaml

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "input.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run_config(path, out=out, data_dir=data_dir, quiet=quiet)


def run_child(cmd: list[str], *, tag: str, env: dict | None = None) -> tuple[dict, dict]:
    """Run ``cmd`` in a fresh process; return the JSON after the last stdout line starting
    with ``tag``, and ``{"peak_rss_mb", "seconds"}`` of that child (kernel rusage, so the
    parent's own memory is not counted). stderr passes through; a failed child raises."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    stdout = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in stdout.splitlines() if ln.startswith(tag)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {shlex.join(cmd[:3])} ... failed (exit {proc.returncode}); "
                           "see its stderr above")
    return json.loads(lines[-1][len(tag):]), {"peak_rss_mb": usage.ru_maxrss / 1024,
                                               "seconds": time.perf_counter() - t0}
