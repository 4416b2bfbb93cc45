r"""Involutions: ``f = g⁻¹ ∘ σ ∘ g`` with σ a fixed involution, so ``f ∘ f = id`` exactly.

``f(f(x)) = g⁻¹ σ g g⁻¹ σ g x = g⁻¹ σ σ g x = x`` for any invertible ``g``, whatever its weights
— a symmetric relation modelled this way is symmetric by construction. Hand-written: no flow
library offers it.

σ choices: ``"sign"`` flips the sign of the last ``⌈d/2⌉`` coordinates, ``"swap"`` exchanges the
two halves (``d`` even). Both have ``|det σ| = 1``, so
``log|det ∂f/∂x| = log|det ∂g/∂x|(x) − log|det ∂g/∂x|(f(x))``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Flow


def sigma(x: Tensor, kind: str) -> Tensor:
    d = x.shape[1]
    if kind == "sign":
        k = d // 2
        return torch.cat([x[:, :k], -x[:, k:]], dim=1)
    if kind == "swap":
        k = d // 2
        return torch.cat([x[:, k:], x[:, :k]], dim=1)
    raise ValueError(f"sigma must be 'sign' or 'swap', got {kind!r}")


class Involution(Flow):
    """``f = g⁻¹ ∘ σ ∘ g``; ``forward`` and ``inverse`` are the same map."""

    def __init__(self, g: Flow, *, sigma: str = "sign") -> None:
        super().__init__()
        if sigma not in ("sign", "swap"):
            raise ValueError(f"sigma must be 'sign' or 'swap', got {sigma!r}")
        if sigma == "swap" and g.dim % 2:
            raise ValueError(f"sigma='swap' needs an even dim, got {g.dim}")
        self.g = g
        self.sigma = sigma
        self.dim = g.dim

    def forward(self, x, context=None):
        z, l1 = self.g(x, context)
        y, l2 = self.g.inverse(sigma(z, self.sigma), context)
        return y, l1 + l2

    def inverse(self, y, context=None):
        return self.forward(y, context)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"

    def __repr__(self) -> str:
        inner = "\n  ".join(repr(self.g).splitlines())
        return f"{type(self).__name__}(sigma={self.sigma}, g={inner})"


def make_involution(g: Flow, *, sigma: str = "sign") -> Involution:
    """Wrap any flow ``g`` into the involution ``g⁻¹ ∘ σ ∘ g``."""
    return Involution(g, sigma=sigma)
