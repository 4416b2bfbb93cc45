"""Training curves of a run folder: ``metrics.jsonl`` → a PNG (``gnn-inn plot RUN_DIR``).

Left panel: the mean training loss per epoch. Right panel: valid MRR and Hits@k at each
evaluation. Needs matplotlib (``pip install 'gnn-inn[plot]'``), drawn with its Agg backend
(no display needed).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The epoch records of a run: ``run/metrics.jsonl`` (or ``run`` itself when it is the file).

    A truncated last line (a run killed while writing it) is skipped with a warning; any other
    line that is not a JSON object is an error naming the file and the line.
    """
    run = Path(run)
    path = run if run.is_file() else run / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; give a run folder written by "
                                "'gnn-inn train' (it holds metrics.jsonl)")
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "epoch" not in rec:
                raise ValueError("not an epoch record")
        except ValueError as e:
            if i == len(lines):
                log.warning("%s:%d: skipping an incomplete last line", path, i)
                continue
            raise ValueError(f"{path}:{i}: not a metrics record ({e})") from None
        records.append(rec)
    if not records:
        raise ValueError(f"{path}: no epoch recorded yet")
    return records


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plot_run(run: str | Path, out: str | Path | None = None) -> Path:
    """Draw the curves of ``run`` to ``out`` (default ``run/curves.png``); returns the path."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib, which is not installed: "
                          "pip install matplotlib (or gnn-inn[plot])") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    records = read_metrics(run)
    run = Path(run)
    folder = run.parent if run.is_file() else run
    out = Path(out) if out is not None else folder / "curves.png"
    loss = [(r["epoch"], r["loss"]) for r in records if _finite(r.get("loss"))]
    evals = [(r["epoch"], r["valid"]) for r in records if isinstance(r.get("valid"), dict)]
    hits = {k for _, m in evals for k in m if k.startswith("hits@") and k[5:].isdigit()}
    names = ["mrr", *sorted(hits, key=lambda k: int(k[5:]))]

    fig, (ax_loss, ax_valid) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    if loss:
        ax_loss.plot(*zip(*loss), marker="." if len(loss) < 50 else None)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    for name in names:
        pts = [(e, m[name]) for e, m in evals if _finite(m.get(name))]
        if pts:
            ax_valid.plot(*zip(*pts), marker="o", label=name)
    if evals:
        ax_valid.legend()
    else:
        ax_valid.text(0.5, 0.5, "no evaluation recorded", ha="center", va="center",
                      transform=ax_valid.transAxes)
    ax_valid.set(xlabel="epoch", ylabel="filtered metric (valid)", title="validation",
                 ylim=(0, 1))
    fig.suptitle(folder.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


__all__ = ["METRICS_FILE", "plot_run", "read_metrics"]
