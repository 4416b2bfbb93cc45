r"""Coupling layers: NICE (additive), RealNVP (affine) and neural-spline (rational-quadratic).

The input is split into ``x_a = x[:, :k]`` (passed through) and ``x_b = x[:, k:]``
(transformed elementwise with parameters ``θ = NN([x_a, c])``, ``c`` the conditioning vector).
Because ``x_a`` passes unchanged, the inverse recomputes the same ``θ``: exact inversion for
any network. The network's last layer starts at zero, so every block starts as the identity.

Conditioning vector ``c``: nothing (unconditional); a learned per-id embedding of size
``context_embed_dim`` (default 16, table mode ``num_contexts=R``); or the context itself
(``context_dim=c``). The network reads ``[u(x_a), c]`` with the smooth squash
``u(x) = x / sqrt(1 + (x/κ)²)`` (``κ = input_bound``, default 5; ``None`` turns it off):
``u ≈ x`` for ``|x| ≪ κ`` and ``|u| < κ``, so ``|x · du/dx| < κ`` and a rounding error in a large
``x_a`` is not amplified through the network into ``x_b`` — the round trip of stacked
couplings stays at float precision at ``|x| = 10³`` and gradients stay finite at ``10⁶``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import ContextEncoder, Flow, check_context, soft_clamp


class _Conditioner(nn.Module):
    """MLP ``[x_a, c] → θ`` with ``num_layers`` hidden layers; last layer zero-initialised."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, num_layers: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_layers):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(d, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.body:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))


class _Coupling(Flow):
    params_per_dim = 1

    def __init__(self, *, dim: int, num_contexts=None, context_dim=None, hidden: int = 64,
                 num_layers: int = 2, context_embed_dim: int = 16,
                 input_bound: float | None = 5.0) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling layer needs dim ≥ 2, got {dim}")
        if input_bound is not None and not input_bound > 0:
            raise ValueError(f"{type(self).__name__}: input_bound must be > 0 or None, "
                             f"got {input_bound}")
        self.dim = int(dim)
        self.input_bound = None if input_bound is None else float(input_bound)
        self.num_layers = int(num_layers)
        self.k = dim // 2
        self.num_contexts, self.context_dim = num_contexts, context_dim
        self.ctx = ContextEncoder(num_contexts=num_contexts, context_dim=context_dim,
                                  embed_dim=context_embed_dim)
        self.net = _Conditioner(self.k + self.ctx.out_dim,
                                (dim - self.k) * self.params_per_dim, hidden, num_layers)

    def _theta(self, xa: Tensor, context: Tensor | None) -> Tensor:
        check_context(context, num_contexts=self.num_contexts, context_dim=self.context_dim,
                      batch=xa.shape[0], owner=type(self).__name__)
        c = self.ctx(context)
        if self.input_bound is not None:
            xa = xa * torch.rsqrt(1 + (xa / self.input_bound).square())
        inp = xa if c is None else torch.cat([xa, c.to(xa.dtype)], dim=1)
        return self.net(inp).view(xa.shape[0], self.dim - self.k, self.params_per_dim)

    def _transform(self, xb, theta, inverse):  # -> (yb, ladj [B])
        raise NotImplementedError

    def forward(self, x, context=None):
        xa, xb = x[:, : self.k], x[:, self.k:]
        yb, ladj = self._transform(xb, self._theta(xa, context), inverse=False)
        return torch.cat([xa, yb], dim=1), ladj

    def inverse(self, y, context=None):
        ya, yb = y[:, : self.k], y[:, self.k:]
        xb, ladj = self._transform(yb, self._theta(ya, context), inverse=True)
        return torch.cat([ya, xb], dim=1), ladj

    def extra_repr(self) -> str:
        mode = (f"num_contexts={self.num_contexts}" if self.num_contexts else
                f"context_dim={self.context_dim}" if self.context_dim else "unconditional")
        return (f"dim={self.dim}, split={self.k}, {mode}, hidden={self.net.out.in_features}, "
                f"num_layers={self.num_layers}, input_bound={self.input_bound}")


class AdditiveCoupling(_Coupling):
    r"""NICE (Dinh et al., 2015): ``y_b = x_b + t(x_a, c)``; volume preserving, ``log|det| = 0``."""

    params_per_dim = 1

    def _transform(self, xb, theta, inverse):
        t = theta[..., 0]
        return (xb - t if inverse else xb + t), xb.new_zeros(xb.shape[0])


class AffineCoupling(_Coupling):
    r"""RealNVP (Dinh et al., 2017): ``y_b = x_b ⊙ e^{s} + t`` with ``s = c·tanh(ŝ/c)``
    soft-clamped (``scale_clamp``); ``log|det| = Σ s``."""

    params_per_dim = 2

    def __init__(self, *, scale_clamp: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale_clamp = float(scale_clamp)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale_clamp={self.scale_clamp:g}"

    def _transform(self, xb, theta, inverse):
        s = soft_clamp(theta[..., 0], self.scale_clamp)
        t = theta[..., 1]
        if inverse:
            return (xb - t) * torch.exp(-s), -s.sum(-1)
        return xb * torch.exp(s) + t, s.sum(-1)


def rational_quadratic_spline(x: Tensor, w: Tensor, h: Tensor, d: Tensor, *, bound: float,
                              inverse: bool, min_slope: float = 0.2) -> tuple[Tensor, Tensor]:
    r"""Monotone rational-quadratic spline (Durkan et al., 2019) on ``[-B, B]``, identity outside.

    Parametrisation (all slopes confined to ``[m, 1/m]``, ``m = min_slope``):

    * bin widths / heights ``(2B)·(α/K + (1 − α)·softmax(ŵ))`` with
      ``α = mK / (mK + 1 − m)``, so every bin slope ``δ_k = h_k / w_k ∈ [m, 1/m]``;
    * interior knot derivatives ``d = m + (1/m − m)·σ(d̂ + log m) ∈ (m, 1/m)``; the two boundary
      derivatives are 1 (continuous with the identity tails). ``ŵ = ĥ = d̂ = 0`` is the identity.

    With all ``δ, d ∈ [m, 1/m]`` the spline's slope lies in ``[2m³/(1+m²), (1+m²)/(2m³)]``
    (the extreme is ``δ = m, d_k = d_{k+1} = 1/m`` at mid-bin; ``m = 0.2``: ``[0.0154, 65]``),
    which bounds how much the inverse amplifies rounding: the round trip stays at float
    precision (float32 ≤ 1e-4 absolute on ``[-5, 5]`` for logits of any size).
    ``x`` is clipped into ``[-B, B]`` *before* any arithmetic and the tails are
    selected with ``torch.where``, so out-of-domain inputs pass through bit-exactly with finite
    gradients.

    Args:
        x: inputs ``[..., n]``.
        w, h: unnormalised bin widths / heights ``[..., n, K]``.
        d: unnormalised interior knot derivatives ``[..., n, K - 1]``.
        bound: ``B``.  inverse: evaluate the inverse map instead.
        min_slope: ``m ∈ (0, 1]``.
    Returns:
        ``(y, log|dy/dx|)`` elementwise, both ``[..., n]`` (for ``inverse``: ``(x, log|dx/dy|)``).
    """
    K = w.shape[-1]
    m = float(min_slope)
    if not 0.0 < m <= 1.0:
        raise ValueError(f"rational_quadratic_spline: min_slope must be in (0, 1], got {m}")
    alpha = m * K / (m * K + 1.0 - m)
    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound)  # arithmetic only on in-domain values: finite gradients
    widths = alpha / K + (1.0 - alpha) * torch.softmax(w, dim=-1)
    heights = alpha / K + (1.0 - alpha) * torch.softmax(h, dim=-1)
    cw = F.pad(torch.cumsum(widths, -1), (1, 0)) * 2 * bound - bound
    ch = F.pad(torch.cumsum(heights, -1), (1, 0)) * 2 * bound - bound
    cw[..., -1], ch[..., -1] = bound, bound
    cw[..., 0], ch[..., 0] = -bound, -bound
    widths, heights = cw[..., 1:] - cw[..., :-1], ch[..., 1:] - ch[..., :-1]
    derivs = m + (1.0 / m - m) * torch.sigmoid(d + math.log(m))
    derivs = F.pad(derivs, (1, 1), value=1.0)
    knots = ch if inverse else cw
    idx = torch.searchsorted(knots[..., 1:-1].contiguous(), xc.unsqueeze(-1)).clamp_(0, K - 1)

    def g(t):
        return t.gather(-1, idx).squeeze(-1)

    x_k, w_k, y_k, h_k = g(cw[..., :-1]), g(widths), g(ch[..., :-1]), g(heights)
    d_k, d_k1 = g(derivs[..., :-1]), g(derivs[..., 1:])
    delta = h_k / w_k
    s2 = d_k1 + d_k - 2 * delta
    if inverse:
        dy = xc - y_k
        a = h_k * (delta - d_k) + dy * s2
        b = h_k * d_k - dy * s2
        c = -delta * dy
        disc = (b * b - 4 * a * c).clamp_min(0)
        # the root form of Durkan et al. (2019, eq. 29), clamped into the bin against rounding
        theta = ((2 * c) / (-b - torch.sqrt(disc))).clamp(0, 1)
        out = theta * w_k + x_k
    else:
        theta = (xc - x_k) / w_k
    tt = theta * (1 - theta)
    den = delta + s2 * tt
    if not inverse:
        out = y_k + h_k * (delta * theta * theta + d_k * tt) / den
    deriv = delta * delta * (d_k1 * theta * theta + 2 * delta * tt + d_k * (1 - theta) ** 2)
    ladj = torch.log(deriv) - 2 * torch.log(den)
    if inverse:
        ladj = -ladj
    return torch.where(inside, out, x), torch.where(inside, ladj, torch.zeros_like(ladj))


class SplineCoupling(_Coupling):
    r"""Neural-spline coupling: each ``x_b`` coordinate goes through a monotone rational-quadratic
    spline with ``num_bins`` bins on ``[-bound, bound]`` (identity outside), whose
    ``3K − 1`` parameters per coordinate come from the conditioner.

    All slopes are confined to ``[min_slope, 1/min_slope]`` (see
    :func:`rational_quadratic_spline`): a well-conditioned spline whose inverse is exact to
    float precision. Zero network output (the initialisation) is the identity map.

    Hand-written rather than taken from ``zuko.transforms.MonotonicRQSTransform`` (zuko 1.6).
    Measured round trips ``max|f⁻¹(f(x)) − x|`` on 80 000 inputs (``B = 5``, 8 bins, 4 coords,
    inputs in ``[-B, B]``, ``|x| ≤ 10³`` and ``±B ± 10⁻³``), logits ``~ N(0, σ²)``:

    ====================  ========  ========  ========  =========
    σ                     1         3         10        100
    zuko, float32         6.3e-5    2.7e-2    NaN       NaN
    zuko, float64         1.3e-13   6.2e-11   1.1e-8    2.5e-6
    here (m=0.2), f32     4.3e-6    1.4e-5    3.2e-5    3.1e-5
    here (m=0.2), f64     5.3e-15   3.2e-14   6.4e-14   6.3e-14
    ====================  ========  ========  ========  =========

    zuko's minimum slope (1e-3) lets bins be 10⁶× steeper than others, so its float32 inverse
    misses 1e-4 once a trained network's logits grow, and it has no per-id tables; hence no
    zuko dependency.
    """

    def __init__(self, *, num_bins: int = 8, bound: float = 5.0, min_slope: float = 0.2,
                 **kwargs) -> None:
        self.num_bins = int(num_bins)
        self.params_per_dim = 3 * self.num_bins - 1
        super().__init__(**kwargs)
        if not 0.0 < min_slope <= 1.0:
            raise ValueError(f"SplineCoupling: min_slope must be in (0, 1], got {min_slope}")
        self.bound = float(bound)
        self.min_slope = float(min_slope)

    def _transform(self, xb, theta, inverse):
        K = self.num_bins
        w, h, d = theta.split([K, K, K - 1], dim=-1)
        y, ladj = rational_quadratic_spline(xb, w, h, d, bound=self.bound, inverse=inverse,
                                            min_slope=self.min_slope)
        return y, ladj.sum(-1)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, bins={self.num_bins}, bound={self.bound:g}, "
                f"min_slope={self.min_slope:g}")
