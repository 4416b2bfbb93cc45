"""Invertible linear map with an LU parametrisation (Glow; Kingma & Dhariwal, 2018).

Hand-written because it needs per-relation tables and context hypernetworks.
"""

from __future__ import annotations

import torch

from .base import soft_clamp
from .elementwise import _Parametrised


class LULinear(_Parametrised):
    r"""``y = P L (U + diag(e^{s})) x + b`` with ``P`` a fixed permutation, ``L`` unit lower
    triangular, ``U`` strictly upper triangular, ``s = c·tanh(ŝ/c)`` soft-clamped;
    ``log|det| = Σ s``. The inverse is two triangular solves, exact to float precision.

    Starts as the permutation ``P`` (``L = U = 0``, ``s = 0``): with ``permutation="random"``
    it is the learned-permutation layer between couplings.

    Memory: per-sample matrices ``[B, d, d]`` are built for the batch (``d = 200, B = 512``:
    ~160 MB in float32); the context mode's hypernetwork has ``c · (d² + d)`` weights.
    """

    def __init__(self, *, dim: int, num_contexts=None, context_dim=None, bias: bool = True,
                 permutation: str = "random", seed: int = 0, scale_clamp: float = 3.0) -> None:
        n_tri = dim * (dim - 1) // 2
        super().__init__(dim, 2 * n_tri + dim + dim, num_contexts=num_contexts,
                         context_dim=context_dim)
        self.n_tri = n_tri
        self.use_bias = bias
        self.scale_clamp = float(scale_clamp)
        if permutation == "random":
            perm = torch.randperm(dim, generator=torch.Generator().manual_seed(seed))
        elif permutation == "identity":
            perm = torch.arange(dim)
        else:
            raise ValueError(f"permutation must be 'random' or 'identity', got {permutation!r}")
        self.permutation = permutation
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))
        self.register_buffer("tril", torch.tril_indices(dim, dim, -1), persistent=False)
        self.register_buffer("triu", torch.triu_indices(dim, dim, 1), persistent=False)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, bias={self.use_bias}, permutation={self.permutation}, "
                f"scale_clamp={self.scale_clamp:g}")

    def _mats(self, x, context):
        p = self._p(x, context)
        B, d, n = x.shape[0], self.dim, self.n_tri
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        L = eye.expand(B, d, d).clone()
        L[:, self.tril[0], self.tril[1]] = p[:, :n]
        s = soft_clamp(p[:, 2 * n: 2 * n + d], self.scale_clamp)
        U = torch.diag_embed(torch.exp(s))
        U[:, self.triu[0], self.triu[1]] = p[:, n: 2 * n]
        b = p[:, 2 * n + d:] if self.use_bias else torch.zeros_like(x)
        return L, U, s, b

    def forward(self, x, context=None):
        L, U, s, b = self._mats(x, context)
        z = torch.bmm(L, torch.bmm(U, x.unsqueeze(-1))).squeeze(-1)
        return z[:, self.perm] + b, s.sum(-1)

    def inverse(self, y, context=None):
        L, U, s, b = self._mats(y, context)
        z = (y - b)[:, self.inv_perm].unsqueeze(-1)
        z = torch.linalg.solve_triangular(L, z, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(U, z, upper=True)
        return x.squeeze(-1), -s.sum(-1)
