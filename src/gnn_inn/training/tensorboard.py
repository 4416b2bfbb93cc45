"""Optional TensorBoard logging of a run (``train.tensorboard: true``).

Writes ``RUN_DIR/tensorboard/events.out.tfevents.*`` with :class:`torch.utils.tensorboard
.SummaryWriter`: per epoch ``train/loss``, ``train/lr``, ``train/epoch_seconds`` and, at each
evaluation, ``valid/<metric>`` (``mrr``, ``mr``, ``hits@k``). Needs the ``tensorboard`` package
(``pip install 'gnn-inn[tensorboard]'``); a run that asks for it without the package stops at
start with a :class:`~gnn_inn.config.ConfigError`.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from ..config import ConfigError

#: the folder of a run that holds the event files
TENSORBOARD_DIR = "tensorboard"


def require_tensorboard() -> None:
    """Raise :class:`ConfigError` unless ``torch.utils.tensorboard`` can be used."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard: true needs the 'tensorboard' package, which is "
                          "not installed; pip install tensorboard (or gnn-inn[tensorboard]), "
                          "or set train.tensorboard: false")


class TensorBoardLog:
    """Scalars of a run's epoch records to ``run_dir/tensorboard``.

    Args:
        run_dir: the run folder; the event files go to ``run_dir / "tensorboard"``.
    """

    def __init__(self, run_dir: str | Path) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def epoch(self, record: dict[str, Any], lr: float | None = None) -> None:
        """Log one ``metrics.jsonl`` record (``epoch``, ``loss``, ``epoch_seconds``, optional
        ``valid`` metrics) at step ``record["epoch"]``; non-finite values are skipped."""
        step = int(record["epoch"])
        scalars = {"train/loss": record.get("loss"),
                   "train/epoch_seconds": record.get("epoch_seconds"), "train/lr": lr}
        for name, value in (record.get("valid") or {}).items():
            scalars[f"valid/{name}"] = value
        for tag, value in scalars.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


__all__ = ["TENSORBOARD_DIR", "TensorBoardLog", "require_tensorboard"]
