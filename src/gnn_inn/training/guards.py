"""Stop a diverged run: the loss and the gradients of every step must be finite.

:func:`check_step` runs after the backward pass and before the optimiser step, so that no
non-finite value reaches the weights; the trainer adds the epoch and step to the error, and
:func:`~gnn_inn.training.checkpoint.save_checkpoint` refuses non-finite weights besides.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class NonFiniteError(RuntimeError):
    """The loss or a gradient is NaN / inf; training stops (the last checkpoint is kept)."""

    def __init__(self, what: str, value: float) -> None:
        self.what, self.value = what, value
        self.epoch: int | None = None
        self.step: int | None = None
        super().__init__(self._text())

    def _text(self) -> str:
        where = (f"epoch {self.epoch}, step {self.step}: " if self.epoch is not None else "")
        return (f"{where}{self.what} is {self.value} (not finite): training stopped; no "
                "weights were saved after the last finite step (lower train.lr, set "
                "train.grad_clip, or check the data)")

    def at(self, epoch: int, step: int) -> NonFiniteError:
        self.epoch, self.step = epoch, step
        self.args = (self._text(),)
        return self


def check_step(loss: float, model: nn.Module) -> None:
    """Raise :class:`NonFiniteError` unless ``loss`` and every gradient of ``model`` are
    finite (one device sync for all gradients)."""
    if not math.isfinite(loss):
        raise NonFiniteError("the loss", loss)
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    if not named:
        return
    vals = [g.coalesce().values() if g.is_sparse else g for _, g in named]
    norms = torch.stack([torch.linalg.vector_norm(v.float()) for v in vals])
    if bool(torch.isfinite(norms).all()):
        return
    i = int((~torch.isfinite(norms)).nonzero()[0])
    raise NonFiniteError(f"the gradient of {named[i][0]}", float(norms[i]))
