"""Flow base class, composition, and the conditioning machinery shared by all transforms.

Every transform maps ``x [B, d] → (y [B, d], log|det ∂y/∂x| [B])`` and back. Parameters can be

* **unconditional** (``num_contexts=None, context_dim=None``): one parameter vector;
* **table** (``num_contexts=R``): a parameter table ``[R, P]``; ``context`` is ``LongTensor[B]``
  of ids, each row gathers its own parameters (per-relation flows for few relations);
* **context** (``context_dim=c``): ``context`` is ``Tensor[B, c]``; parameters are an affine
  function of it (a linear hypernetwork whose weight starts at zero, so every context starts at
  the same initial transform), or — for coupling layers — the context is fed to the
  conditioner network (shared weights for many relations).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Flow(nn.Module):
    """An invertible map ``ℝ^d → ℝ^d`` with its log-absolute-determinant."""

    dim: int

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x [B, d] → (y [B, d], log|det ∂y/∂x| [B])``."""
        raise NotImplementedError

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``y [B, d] → (x [B, d], log|det ∂x/∂y| [B])`` (the negative forward log-det at x)."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Re-initialise every sub-module (recursing through containers such as ModuleList)."""
        _reset_children(self)

    def __repr__(self) -> str:  # compact, one line per transform (PyG style)
        return f"{type(self).__name__}({self.extra_repr()})"


def _reset_children(module: nn.Module) -> None:
    for m in module.children():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        else:
            _reset_children(m)


class SequentialFlow(Flow):
    """``f = f_k ∘ … ∘ f_1``; log-dets add, the inverse runs in reverse order."""

    def __init__(self, *flows: Flow) -> None:
        super().__init__()
        if not flows:
            raise ValueError("SequentialFlow needs at least one flow")
        self.flows = nn.ModuleList(flows)
        self.dim = flows[0].dim

    def forward(self, x, context=None):
        ladj = x.new_zeros(x.shape[0])
        for f in self.flows:
            x, l = f(x, context)
            ladj = ladj + l
        return x, ladj

    def inverse(self, y, context=None):
        ladj = y.new_zeros(y.shape[0])
        for f in reversed(self.flows):
            y, l = f.inverse(y, context)
            ladj = ladj + l
        return y, ladj

    def __repr__(self) -> str:
        inner = "".join(f"\n  {line}" for f in self.flows for line in repr(f).splitlines())
        return f"{type(self).__name__}({inner}\n)"

    def __len__(self) -> int:
        return len(self.flows)

    def __getitem__(self, i: int) -> Flow:
        return self.flows[i]


def check_context(context: Tensor | None, *, num_contexts: int | None, context_dim: int | None,
                  batch: int, owner: str) -> None:
    """Raise a clear error when ``context`` does not fit the transform's conditioning mode."""
    if num_contexts is None and context_dim is None:
        return
    if context is None:
        mode = f"num_contexts={num_contexts}" if num_contexts else f"context_dim={context_dim}"
        raise ValueError(f"{owner} was built with {mode} and needs a context; got None")
    if context.shape[0] != batch:
        raise ValueError(f"{owner}: context has {context.shape[0]} rows for a batch of {batch}")
    if num_contexts is not None:
        if context.dtype not in (torch.int64, torch.int32) or context.ndim != 1:
            raise ValueError(f"{owner} (table mode) expects context = LongTensor[B] of ids, got "
                             f"{context.dtype} with shape {tuple(context.shape)}")
        if context.numel() and (int(context.min()) < 0 or int(context.max()) >= num_contexts):
            raise ValueError(f"{owner}: context ids must be in [0, {num_contexts}), got range "
                             f"[{int(context.min())}, {int(context.max())}]")
    else:
        if not torch.is_floating_point(context) or context.ndim != 2 \
                or context.shape[1] != context_dim:
            raise ValueError(f"{owner} (context mode) expects context = Tensor[B, {context_dim}], "
                             f"got {context.dtype} with shape {tuple(context.shape)}")


class ParamSource(nn.Module):
    """Per-sample parameters ``[B, P]`` in one of the three conditioning modes.

    ``init`` (a tensor ``[P]``) is the parameter value at initialisation for every context.
    """

    def __init__(self, size: int, *, num_contexts: int | None = None,
                 context_dim: int | None = None, init: Tensor | None = None) -> None:
        super().__init__()
        if num_contexts is not None and context_dim is not None:
            raise ValueError("set at most one of num_contexts and context_dim")
        self.size = int(size)
        self.num_contexts = num_contexts
        self.context_dim = context_dim
        self.register_buffer("init", torch.zeros(size) if init is None else init.clone(),
                             persistent=False)
        if num_contexts is not None:
            self.table = nn.Parameter(torch.empty(num_contexts, size))
        elif context_dim is not None:
            self.hyper = nn.Linear(context_dim, size)
        else:
            self.param = nn.Parameter(torch.empty(size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.num_contexts is not None:
                self.table.copy_(self.init.expand_as(self.table))
            elif self.context_dim is not None:
                self.hyper.weight.zero_()
                self.hyper.bias.copy_(self.init)
            else:
                self.param.copy_(self.init)

    def forward(self, context: Tensor | None, batch: int) -> Tensor:
        if self.num_contexts is not None:
            return self.table[context]
        if self.context_dim is not None:
            return self.hyper(context)
        return self.param.expand(batch, -1)


class ContextEncoder(nn.Module):
    """The context vector a coupling conditioner reads: ``[B, e]`` or ``None``.

    Table mode: a learned embedding per id (``embed_dim``). Context mode: the context itself.
    """

    def __init__(self, *, num_contexts: int | None, context_dim: int | None,
                 embed_dim: int = 16) -> None:
        super().__init__()
        self.num_contexts = num_contexts
        self.context_dim = context_dim
        if num_contexts is not None:
            self.embedding = nn.Embedding(num_contexts, embed_dim)
            self.out_dim = embed_dim
        else:
            self.out_dim = context_dim or 0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.num_contexts is not None:
            nn.init.normal_(self.embedding.weight, std=1.0)

    def forward(self, context: Tensor | None) -> Tensor | None:
        if self.num_contexts is not None:
            return self.embedding(context)
        return context if self.context_dim is not None else None


def soft_clamp(x: Tensor, low: float, high: float | None = None) -> Tensor:
    """Smooth clamp of ``x`` into ``(low, high)``: ``m + w · tanh((x − m) / w)`` with centre
    ``m = (low + high) / 2`` and half-width ``w = (high − low) / 2``; same shape as ``x``.

    With one bound, ``soft_clamp(x, c)`` clamps into ``(−c, c)``: ``c · tanh(x / c)``. Monotone,
    identity-like near ``m``, and its gradient never vanishes completely (a hard clamp would
    freeze a coordinate once it left the interval).
    """
    if high is None:
        return low * torch.tanh(x / low)
    m, w = 0.5 * (low + high), 0.5 * (high - low)
    return m + w * torch.tanh((x - m) / w)
