"""Elementwise and volume-preserving linear transforms (hand-written: they need per-relation
parameter tables and context hypernetworks, which general flow libraries do not provide)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Flow, ParamSource, check_context, soft_clamp


class _Parametrised(Flow):
    def __init__(self, dim: int, size: int, *, num_contexts=None, context_dim=None,
                 init: Tensor | None = None) -> None:
        super().__init__()
        self.dim = int(dim)
        self.num_contexts, self.context_dim = num_contexts, context_dim
        self.params = ParamSource(size, num_contexts=num_contexts, context_dim=context_dim,
                                  init=init)

    def _p(self, x: Tensor, context: Tensor | None) -> Tensor:
        check_context(context, num_contexts=self.num_contexts, context_dim=self.context_dim,
                      batch=x.shape[0], owner=type(self).__name__)
        return self.params(context, x.shape[0]).to(x.dtype)

    def extra_repr(self) -> str:
        mode = (f"num_contexts={self.num_contexts}" if self.num_contexts else
                f"context_dim={self.context_dim}" if self.context_dim else "unconditional")
        return f"dim={self.dim}, {mode}"


class Translation(_Parametrised):
    r"""``y = x + b`` (TransE as a flow); ``log|det| = 0``."""

    def __init__(self, *, dim: int, num_contexts=None, context_dim=None) -> None:
        super().__init__(dim, dim, num_contexts=num_contexts, context_dim=context_dim)

    def forward(self, x, context=None):
        return x + self._p(x, context), x.new_zeros(x.shape[0])

    def inverse(self, y, context=None):
        return y - self._p(y, context), y.new_zeros(y.shape[0])


class ElementwiseAffine(_Parametrised):
    r"""``y = exp(s) ⊙ x + b`` with ``s = c·tanh(ŝ / c)`` (positive scales, soft-clamped);
    ``log|det| = Σ s``."""

    def __init__(self, *, dim: int, num_contexts=None, context_dim=None,
                 scale_clamp: float = 3.0) -> None:
        super().__init__(dim, 2 * dim, num_contexts=num_contexts, context_dim=context_dim)
        self.scale_clamp = float(scale_clamp)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale_clamp={self.scale_clamp:g}"

    def _sb(self, x, context):
        p = self._p(x, context)
        return soft_clamp(p[:, : self.dim], self.scale_clamp), p[:, self.dim:]

    def forward(self, x, context=None):
        s, b = self._sb(x, context)
        return x * torch.exp(s) + b, s.sum(-1)

    def inverse(self, y, context=None):
        s, b = self._sb(y, context)
        return (y - b) * torch.exp(-s), -s.sum(-1)


class PlaneRotation(_Parametrised):
    r"""Rotation in the 2-D planes ``(x_i, x_{i+d/2})`` by angles ``θ_i`` (RotatE as a flow):

    .. math:: (x_i, x_{i+k}) ↦ (x_i\cos θ_i − x_{i+k}\sin θ_i,\; x_i\sin θ_i + x_{i+k}\cos θ_i)

    Orthogonal, so ``log|det| = 0``. An odd last coordinate is left unchanged.

    ``init_angles="uniform"`` (default) starts from seeded angles uniform in ``[−π, π]`` as
    RotatE does, because identical identity maps make every relation start symmetric
    (docs/design-notes.md#flows-elementwise); ``"zero"`` starts at the identity.
    """

    def __init__(self, *, dim: int, num_contexts=None, context_dim=None,
                 init_angles: str = "uniform") -> None:
        k = dim // 2
        if init_angles == "uniform":
            g = torch.Generator().manual_seed(0)
            init = (torch.rand(k, generator=g) * 2 - 1) * torch.pi
        elif init_angles == "zero":
            init = None
        else:
            raise ValueError(f"init_angles must be 'uniform' or 'zero', got {init_angles!r}")
        super().__init__(dim, k, num_contexts=num_contexts, context_dim=context_dim, init=init)
        self.k = k
        self.init_angles = init_angles

    def _rot(self, x, context, sign):
        th = self._p(x, context)
        c, s = torch.cos(th), sign * torch.sin(th)
        k = self.k
        a, b = x[:, :k], x[:, k: 2 * k]
        out = [a * c - b * s, a * s + b * c]
        if x.shape[1] > 2 * k:
            out.append(x[:, 2 * k:])
        return torch.cat(out, dim=1), x.new_zeros(x.shape[0])

    def forward(self, x, context=None):
        return self._rot(x, context, 1.0)

    def inverse(self, y, context=None):
        return self._rot(y, context, -1.0)


class Householder(_Parametrised):
    r"""Orthogonal map as a product of ``k`` Householder reflections
    ``H_j = I − 2 v_j v_jᵀ / ‖v_j‖²`` (Tomczak & Welling, 2016); ``log|det| = 0``.

    ``H_j`` is its own inverse, so the inverse applies the reflections in reverse order.
    The vectors start as equal pairs (``v_{2i+1} = v_{2i}``, seeded), so ``H_{2i} H_{2i+1} = I``
    and the map starts at the identity when ``num_reflections`` is even (the default, 4).
    """

    def __init__(self, *, dim: int, num_reflections: int = 4, num_contexts=None,
                 context_dim=None) -> None:
        if num_reflections < 1:
            raise ValueError(f"Householder: num_reflections must be ≥ 1, got {num_reflections}")
        g = torch.Generator().manual_seed(1)
        v = torch.randn((num_reflections + 1) // 2, dim, generator=g)
        init = v.repeat_interleave(2, dim=0)[:num_reflections].reshape(-1)
        super().__init__(dim, num_reflections * dim, num_contexts=num_contexts,
                         context_dim=context_dim, init=init)
        self.num_reflections = int(num_reflections)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_reflections={self.num_reflections}"

    def _reflect(self, x, context, order):
        v = self._p(x, context).view(x.shape[0], self.num_reflections, self.dim)
        v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-6)
        for j in order:
            vj = v[:, j]
            x = x - 2.0 * (x * vj).sum(-1, keepdim=True) * vj
        return x, x.new_zeros(x.shape[0])

    def forward(self, x, context=None):
        return self._reflect(x, context, range(self.num_reflections))

    def inverse(self, y, context=None):
        return self._reflect(y, context, reversed(range(self.num_reflections)))


class Permutation(Flow):
    """A fixed permutation of the coordinates (seeded, stored as a buffer); ``log|det| = 0``.

    ``kind="random"`` draws one with ``seed``; ``kind="reverse"`` reverses the order.
    """

    def __init__(self, *, dim: int, kind: str = "random", seed: int = 0, **_: object) -> None:
        super().__init__()
        self.dim = int(dim)
        if kind == "random":
            perm = torch.randperm(dim, generator=torch.Generator().manual_seed(seed))
        elif kind == "reverse":
            perm = torch.arange(dim - 1, -1, -1)
        else:
            raise ValueError(f"Permutation kind must be 'random' or 'reverse', got {kind!r}")
        self.kind = kind
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x, context=None):
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, y, context=None):
        return y[:, self.inv_perm], y.new_zeros(y.shape[0])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kind={self.kind}"
