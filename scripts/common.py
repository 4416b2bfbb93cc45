"""Shared helpers of the scripts: machine description, running configs, Markdown tables."""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
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


#: options that name places on the machine that ran a script (data, run folders, output
#: files), not the experiment: left out of committed results and of the commands they quote
LOCAL_OPTIONS = ("data_dir", "out", "results", "tables", "json", "runs_dir", "results_dir")


def public_args(args) -> dict:
    """``vars(args)`` (or a dict) without :data:`LOCAL_OPTIONS`."""
    items = args.items() if isinstance(args, dict) else vars(args).items()
    return {k: v for k, v in items if k not in LOCAL_OPTIONS}


def public_argv(argv: list[str]) -> list[str]:
    """``argv`` without the :data:`LOCAL_OPTIONS` flags (``--data-dir X``, ``--out=Y``, ...)
    and their values."""
    flags = {"--" + k.replace("_", "-") for k in LOCAL_OPTIONS}
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        elif a.split("=", 1)[0] not in flags:
            out.append(a)
    return out


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


def print_table(rows: list[dict], columns: list[tuple[str, str]], *,
                json_path: str | Path | None = None, json_rows: list | None = None) -> None:
    """Print ``rows`` as a Markdown table after a blank line (see :func:`markdown_table`);
    with ``json_path``, write ``json_rows`` (default ``rows``) there as JSON."""
    print()
    print(markdown_table(rows, columns))
    if json_path:
        Path(json_path).write_text(json.dumps(rows if json_rows is None else json_rows,
                                              indent=2) + "\n")


def run_dict(cfg: dict, *, out: str | Path, data_dir: str | None = None,
             quiet: bool = True) -> dict:
    """Train a config given as a dict (same keys as the YAML files)."""
    import yaml

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "input.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run_config(path, out=out, data_dir=data_dir, quiet=quiet)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_child(cmd: list[str], *, tag: str, env: dict | None = None, world_size: int = 1,
              capture_stderr: bool = False) -> tuple[dict, dict]:
    """Run ``cmd`` in a fresh process; return the JSON after the last stdout line starting
    with ``tag``, and ``{"peak_rss_mb", "seconds"}`` of that child (kernel rusage, so the
    parent's own memory is not counted). A failed child raises ``RuntimeError``.

    ``world_size > 1`` starts that many copies under the ``torchrun`` environment
    (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` on a free
    local port); the result and usage are rank 0's, the other ranks' stdout goes to stderr.
    stderr passes through, unless ``capture_stderr``: then it is shown only when the child
    fails (its last 3000 characters)."""
    env = dict(os.environ if env is None else env)
    if world_size > 1:
        env.update(WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(_free_port()))
    t0 = time.perf_counter()
    err = tempfile.TemporaryFile("w+") if capture_stderr else None
    procs = []
    try:
        for rank in range(world_size):
            rank_env = ({**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}
                        if world_size > 1 else env)
            other_out = err if err is not None else 2  # ranks > 0: their stdout to stderr
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE if rank == 0 else other_out,
                                          stderr=err, text=True, env=rank_env))
        stdout = procs[0].stdout.read()
        procs[0].stdout.close()
        usages = []
        for proc in procs:
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            usages.append(ru)
        seconds = time.perf_counter() - t0
        codes = [proc.returncode for proc in procs]
        lines = [ln for ln in stdout.splitlines() if ln.startswith(tag)]
        if any(codes) or not lines:
            if err is not None:
                err.seek(0)
                sys.stderr.write(err.read()[-3000:])
            raise RuntimeError(f"child {shlex.join(cmd[:3])} ... failed "
                               f"(exit {codes[0] if world_size == 1 else codes}); "
                               "see its stderr above")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        if err is not None:
            err.close()
    return json.loads(lines[-1][len(tag):]), {"peak_rss_mb": usages[0].ru_maxrss / 1024,
                                               "seconds": seconds}
