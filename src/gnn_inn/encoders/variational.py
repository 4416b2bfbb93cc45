r"""Gaussian (variational) entity and relation embeddings.

Every entity ``i`` (and relation ``r``) has a diagonal Gaussian posterior

.. math::
    q(z_i) = \mathcal N\!\left(\mu_i, \operatorname{diag}\sigma_i^2\right), \qquad
    p(z_i) = \mathcal N(0, I),

after Cowen-Rivers, Minervini et al., "Neural Variational Inference for Embedding Knowledge
Graphs" (2019). Two registered encoders produce these posteriors:

* :class:`VariationalLookupEncoder` (``variational``) — the paper's inference network: tables of
  ``μ`` and ``log σ²`` indexed by entity / relation id;
* :class:`VariationalEncoder` (``variational_gnn``) — a GNN encoder (R-GCN, CompGCN, any
  registered one) whose output goes through two linear heads to ``μ`` and ``log σ²`` (a
  variational graph encoder in the sense of Kipf & Welling's VGAE, for typed edges).

Both follow the encoder contract ``forward(graph) -> (ent [N, d], rel [R', d_r] | None)``:

* **training mode** returns one reparameterised sample ``z = μ + σ ⊙ ε``, ``ε ~ N(0, I)``, of
  every table (one joint draw per call, i.e. per optimisation step) and keeps the posterior of
  that call in :attr:`posterior` for the loss (the KL terms, per-fact sampling);
* **eval mode** returns the means ``μ`` (deterministic; ranking uses the posterior means);
* :meth:`sample` draws ``n`` independent samples with an explicit generator (forward sampling
  for predictive uncertainty).

Relation rows: ``R`` rows by default (forward relations — what DistMult, ComplEx, RotatE, TransE
and the flow decoder read); ``reciprocal=True`` adds the ``R`` rows of the inverse relations
``r + R`` (``2R`` rows, for decoders with ``uses_reciprocal`` such as ConvE). Every returned row
is a latent variable with its own KL term, so rows no decoder reads would only add prior mass:
ask for them when needed. ``relations=False`` returns no relation embeddings (decoders then keep
their own deterministic relation parameters — e.g. a table-conditioned flow decoder).

``log σ²`` is soft-clamped to ``[logvar_min, logvar_max]`` with
:func:`~gnn_inn.flows.base.soft_clamp`, ``m + w · tanh((x − m) / w)`` (``m``, ``w`` the
interval's centre and half-width): the variance never underflows or explodes, and the gradient
never vanishes completely (a hard clamp would freeze a coordinate once it left the interval).

Per-fact draws (:func:`sample_fact_embeddings`) and per-fact KL terms (:func:`fact_kl`) of a
posterior serve the ELBO (:mod:`gnn_inn.training.elbo`) and predictive sampling
(:mod:`gnn_inn.evaluation.uncertainty`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from ..flows.base import soft_clamp
from .base import Encoder
from .registry import BASE_ENCODERS, build_from


# ------------------------------------------------------------------------ math
def diag_gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""``KL(N(μ, diag σ²) ‖ N(0, I))`` in closed form, summed over the last dimension.

    .. math::
        \mathrm{KL} = \tfrac12 \sum_k \left(\sigma_k^2 + \mu_k^2 - 1 - \log \sigma_k^2\right)

    Args:
        mu: means ``[..., d]``.
        logvar: log-variances ``log σ²`` ``[..., d]`` (same shape).

    Returns:
        ``[...]`` — one KL value (nats) per row.
    """
    return 0.5 * (logvar.exp() + mu * mu - 1.0 - logvar).sum(-1)


def soft_clamp_inverse(y: float, lo: float, hi: float) -> float:
    """The raw value whose :func:`~gnn_inn.flows.base.soft_clamp` into ``(lo, hi)`` is ``y``
    (``lo < y < hi``), for initialisation."""
    m, w = 0.5 * (lo + hi), 0.5 * (hi - lo)
    if not lo < y < hi:
        raise ValueError(f"init_logvar={y} must lie strictly inside ({lo}, {hi})")
    return m + w * math.atanh((y - m) / w)


def reparameterise(mu: Tensor, logvar: Tensor, n: int | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    r"""Samples ``μ + σ ⊙ ε`` with ``ε ~ N(0, I)`` (differentiable in ``μ`` and ``log σ²``).

    Args:
        mu, logvar: ``[..., d]``.
        n: ``None`` for one sample of shape ``[..., d]``; an int for ``[n, ..., d]``.
        generator: explicit ``torch.Generator`` (its device is used to draw ``ε``, which is
            then moved to ``mu``'s device); ``None`` draws from torch's global generator
            (seeded by the trainer).
    """
    shape = tuple(mu.shape) if n is None else (int(n), *mu.shape)
    dev = generator.device if generator is not None else mu.device
    eps = torch.randn(shape, generator=generator, device=dev, dtype=mu.dtype).to(mu.device)
    return mu + (0.5 * logvar).exp() * eps


@dataclass
class GaussianPosterior:
    """Diagonal Gaussian posteriors of all entities and relations (one encoder call).

    Attributes:
        ent_mu, ent_logvar: ``[N, d]``.
        rel_mu, rel_logvar: ``[R', d_r]`` or ``None`` when the encoder provides no relations.
    """

    ent_mu: Tensor
    ent_logvar: Tensor
    rel_mu: Tensor | None = None
    rel_logvar: Tensor | None = None

    def kl_entities(self) -> Tensor:
        """Per-entity KL to the standard normal prior, ``[N]``."""
        return diag_gaussian_kl(self.ent_mu, self.ent_logvar)

    def kl_relations(self) -> Tensor | None:
        """Per-relation-row KL, ``[R']``, or ``None``."""
        if self.rel_mu is None:
            return None
        return diag_gaussian_kl(self.rel_mu, self.rel_logvar)

    def mean(self) -> tuple[Tensor, Tensor | None]:
        """``(ent_mu [N, d], rel_mu [R', d_r] | None)``."""
        return self.ent_mu, self.rel_mu

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor | None]:
        """One joint draw ``([N, d], [R', d_r] | None)`` or ``n`` draws ``([n, N, d], ...)``."""
        ent = reparameterise(self.ent_mu, self.ent_logvar, n, generator)
        rel = (None if self.rel_mu is None
               else reparameterise(self.rel_mu, self.rel_logvar, n, generator))
        return ent, rel


def sample_fact_embeddings(post: GaussianPosterior, h: Tensor, r: Tensor, t: Tensor,
                           n: int | None = None, generator: torch.Generator | None = None
                           ) -> tuple[Tensor, Tensor | None, Tensor]:
    """Independent draws of each fact's ``(z_h, z_r, z_t)``: ``[B, d]`` (or ``[n, B, d]``).

    Two facts mentioning the same entity get two independent draws (the LFM structure, and
    the right marginal for a single fact under LIM as well).

    Args:
        post: the posterior to draw from.  h, r, t: ``LongTensor[B]``.
        n: ``None`` for one draw per fact, an int for ``n`` draws (leading dimension).
        generator: explicit ``torch.Generator`` (see :func:`reparameterise`).
    """
    z_h = reparameterise(post.ent_mu[h], post.ent_logvar[h], n, generator)
    z_t = reparameterise(post.ent_mu[t], post.ent_logvar[t], n, generator)
    z_r = (None if post.rel_mu is None
           else reparameterise(post.rel_mu[r], post.rel_logvar[r], n, generator))
    return z_h, z_r, z_t


def fact_kl(post: GaussianPosterior, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
    """Per-fact KL ``KL(h) + KL(r) + KL(t)``, ``[B]`` (relation part only if present)."""
    kl = (diag_gaussian_kl(post.ent_mu[h], post.ent_logvar[h])
          + diag_gaussian_kl(post.ent_mu[t], post.ent_logvar[t]))
    if post.rel_mu is not None:
        kl = kl + diag_gaussian_kl(post.rel_mu[r], post.rel_logvar[r])
    return kl


# --------------------------------------------------------------------- encoders
class _GaussianEncoder(Encoder):
    """Shared behaviour: sample in training, means in eval, keep the last posterior."""

    variational = True

    def __init__(self, *, num_entities: int, dim: int, rel_dim: int | None,
                 logvar_min: float, logvar_max: float, init_logvar: float) -> None:
        super().__init__(num_entities=num_entities, dim=dim, rel_dim=rel_dim)
        if not logvar_min < logvar_max:
            raise ValueError(f"logvar_min={logvar_min} must be < logvar_max={logvar_max}")
        self.logvar_min = float(logvar_min)
        self.logvar_max = float(logvar_max)
        self.init_logvar = float(init_logvar)
        soft_clamp_inverse(self.init_logvar, self.logvar_min, self.logvar_max)  # validates
        self._posterior: GaussianPosterior | None = None

    def _clamp(self, raw: Tensor) -> Tensor:
        return soft_clamp(raw, self.logvar_min, self.logvar_max)

    def gaussian(self, graph: Data | None = None) -> GaussianPosterior:  # pragma: no cover
        """The posterior of every entity (and relation) for ``graph``."""
        raise NotImplementedError

    @property
    def posterior(self) -> GaussianPosterior | None:
        """The posterior computed by the latest :meth:`forward` (with its autograd graph)."""
        return self._posterior

    def forward(self, graph: Data | None = None) -> tuple[Tensor, Tensor | None]:
        """Training: ``(z_ent [N, d], z_rel [R', d_r] | None)`` one joint sample; eval: means."""
        post = self.gaussian(graph)
        self._posterior = post
        if self.training:
            return post.rsample()
        return post.mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               graph: Data | None = None) -> tuple[Tensor, Tensor | None]:
        """``n`` independent draws ``(ent [n, N, d], rel [n, R', d_r] | None)`` (no gradient).

        GNN-based encoders need ``graph``; the posterior is computed in the current mode (call
        ``.eval()`` first for a deterministic GNN pass).
        """
        return self.gaussian(graph).rsample(n, generator)

    def __getstate__(self) -> dict[str, Any]:
        # the last posterior holds non-leaf tensors, which deepcopy / pickle refuse
        state = self.__dict__.copy()
        state["_posterior"] = None
        return state


class VariationalLookupEncoder(_GaussianEncoder):
    r"""Gaussian embedding tables: :math:`q(z_i) = N(\mu_i, \mathrm{diag}\,\sigma_i^2)`.

    The inference network of the paper's LIM and LFM models: ``μ`` and ``log σ²`` are free
    parameters indexed by id (the graph is ignored). See the module docstring for what the
    forward pass returns in each mode.

    Args:
        num_entities: ``N``.  dim: entity size ``d``.
        num_relations: ``R``.
        rel_dim: relation size ``d_r`` (default ``d``: DistMult / ComplEx / TransE; RotatE
            reads the first ``d / 2``; a context-conditioned flow decoder needs
            ``rel_dim == context_dim``).
        relations: provide Gaussian relation embeddings (``provides_relations``).
        reciprocal: also return rows for inverse relations (``2R`` rows instead of ``R``).
        init: mean initialisation, ``"xavier"`` (uniform) or ``"normal"`` (std ``init_std``).
        init_logvar: initial ``log σ²`` of every coordinate (``-6``: ``σ ≈ 0.05``, small
            against Xavier means so early samples carry the signal).
        logvar_min, logvar_max: soft-clamp interval of ``log σ²``.

    Shapes: ``forward(graph=None) -> (ent [N, d], rel [R or 2R, d_r] | None)``.
    """

    def __init__(
        self, *, num_entities: int, dim: int, num_relations: int | None = None,
        rel_dim: int | None = None, relations: bool = True, reciprocal: bool = False,
        init: str = "xavier", init_std: float = 0.1, init_logvar: float = -6.0,
        logvar_min: float = -16.0, logvar_max: float = 2.0,
    ) -> None:
        if relations and (num_relations is None or num_relations <= 0):
            raise ValueError("VariationalLookupEncoder: relations=True needs num_relations > 0")
        if init not in ("xavier", "normal"):
            raise ValueError(f"init must be 'xavier' or 'normal', got {init!r}")
        super().__init__(num_entities=num_entities, dim=dim,
                         rel_dim=(rel_dim or dim) if relations else None,
                         logvar_min=logvar_min, logvar_max=logvar_max, init_logvar=init_logvar)
        self.provides_relations = bool(relations)
        self.reciprocal = bool(reciprocal)
        self.num_relations = int(num_relations or 0)
        self.init = init
        self.init_std = float(init_std)
        self.ent_mu = nn.Parameter(torch.empty(num_entities, dim))
        self.ent_logvar = nn.Parameter(torch.empty(num_entities, dim))
        if relations:
            rows = self.num_relations * (2 if reciprocal else 1)
            self.rel_mu = nn.Parameter(torch.empty(rows, self.rel_dim))
            self.rel_logvar = nn.Parameter(torch.empty(rows, self.rel_dim))
        else:
            self.register_parameter("rel_mu", None)
            self.register_parameter("rel_logvar", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        raw = soft_clamp_inverse(self.init_logvar, self.logvar_min, self.logvar_max)
        for mu, lv in ((self.ent_mu, self.ent_logvar), (self.rel_mu, self.rel_logvar)):
            if mu is None:
                continue
            if self.init == "xavier":
                nn.init.xavier_uniform_(mu)
            else:
                nn.init.normal_(mu, std=self.init_std)
            nn.init.constant_(lv, raw)

    def gaussian(self, graph: Data | None = None) -> GaussianPosterior:
        """``GaussianPosterior`` of the tables (``graph`` is ignored)."""
        rel_lv = None if self.rel_logvar is None else self._clamp(self.rel_logvar)
        return GaussianPosterior(self.ent_mu, self._clamp(self.ent_logvar), self.rel_mu, rel_lv)

    def extra_repr(self) -> str:
        rel = (f", relations={self.rel_mu.shape[0]}x{self.rel_dim}" if self.rel_mu is not None
               else ", relations=None")
        return (f"{self.num_entities}, {self.dim}{rel}, init_logvar={self.init_logvar:g}, "
                f"logvar in [{self.logvar_min:g}, {self.logvar_max:g}]")


class VariationalEncoder(_GaussianEncoder):
    r"""A GNN encoder followed by Gaussian heads: :math:`\mu = W_\mu h + b_\mu`,
    :math:`\log\sigma^2 = \mathrm{clamp}(W_\sigma h + b_\sigma)`, with ``h`` the base encoder's
    entity output.

    Relations: when the base encoder provides relation embeddings (CompGCN), two more heads map
    them to ``μ_r`` / ``log σ²_r`` (rows ``[:R]``, or all ``2R`` with ``reciprocal``); otherwise,
    with ``relations=True``, Gaussian relation tables as in :class:`VariationalLookupEncoder`.
    The ``log σ²`` heads start with zero weights and bias ``init_logvar`` (every variance starts
    at ``exp(init_logvar)``), so early training sees the GNN's signal, not noise.

    Args:
        num_entities: ``N``.  num_relations: ``R``.  dim: output size ``d`` (also the base
            encoder's size).
        base: the wrapped encoder, a registry name or ``{"name": ..., **kwargs}``
            (default ``"rgcn"``; ``"compgcn"`` supplies relation states).
        relations, reciprocal, rel_dim, init_logvar, logvar_min, logvar_max: as in
            :class:`VariationalLookupEncoder` (``rel_dim`` defaults to the base encoder's
            relation size, else ``d``).

    Shapes: ``forward(graph) -> (ent [N, d], rel [R or 2R, d_r] | None)``; ``graph`` is the
    train-only message graph the base encoder needs.
    """

    def __init__(
        self, *, num_entities: int, num_relations: int, dim: int,
        base: str | dict[str, Any] = "rgcn", relations: bool = True, reciprocal: bool = False,
        rel_dim: int | None = None, init_logvar: float = -6.0, logvar_min: float = -16.0,
        logvar_max: float = 2.0,
    ) -> None:
        spec = {"name": base} if isinstance(base, str) else dict(base)
        name = spec.pop("name", "rgcn")
        if name in ("variational", "variational_gnn"):
            raise ValueError(
                f"VariationalEncoder: base must be a deterministic encoder, not {name!r}")
        enc = build_from(BASE_ENCODERS, name, num_entities=num_entities,
                         num_relations=num_relations, dim=dim, **spec)
        base_rel = bool(enc.provides_relations)
        if rel_dim is None:
            rel_dim = (enc.rel_dim if base_rel else dim) if relations else None
        super().__init__(num_entities=num_entities, dim=dim, rel_dim=rel_dim if relations else None,
                         logvar_min=logvar_min, logvar_max=logvar_max, init_logvar=init_logvar)
        self.base = enc
        self.base_name = name
        self.num_relations = int(num_relations)
        self.provides_relations = bool(relations)
        self.reciprocal = bool(reciprocal)
        self.mu_head = nn.Linear(enc.dim, dim)
        self.logvar_head = nn.Linear(enc.dim, dim)
        self.rel_mu_head = self.rel_logvar_head = None
        self.rel_mu = self.rel_logvar = None
        if relations and base_rel:
            self.rel_mu_head = nn.Linear(enc.rel_dim, self.rel_dim)
            self.rel_logvar_head = nn.Linear(enc.rel_dim, self.rel_dim)
        elif relations:  # the base gives no relation states: Gaussian relation tables
            rows = self.num_relations * (2 if reciprocal else 1)
            self.rel_mu = nn.Parameter(torch.empty(rows, self.rel_dim))
            self.rel_logvar = nn.Parameter(torch.empty(rows, self.rel_dim))
        self._reset_heads()

    def _reset_heads(self) -> None:
        raw = soft_clamp_inverse(self.init_logvar, self.logvar_min, self.logvar_max)
        for head in (self.logvar_head, self.rel_logvar_head):
            if head is not None:
                nn.init.zeros_(head.weight)
                nn.init.constant_(head.bias, raw)
        if self.rel_mu is not None:
            nn.init.xavier_uniform_(self.rel_mu)
            nn.init.constant_(self.rel_logvar, raw)

    def reset_parameters(self) -> None:
        self.base.reset_parameters()
        for head in (self.mu_head, self.rel_mu_head):
            if head is not None:
                head.reset_parameters()
        self._reset_heads()

    def gaussian(self, graph: Data | None = None) -> GaussianPosterior:
        """Run the base encoder on ``graph`` and map its output to Gaussian parameters."""
        h, rel = self.base(graph)
        ent_mu, ent_lv = self.mu_head(h), self._clamp(self.logvar_head(h))
        rel_mu = rel_lv = None
        if self.rel_mu_head is not None:
            rows = rel if self.reciprocal else rel[: self.num_relations]
            rel_mu, rel_lv = self.rel_mu_head(rows), self._clamp(self.rel_logvar_head(rows))
        elif self.rel_mu is not None:
            rel_mu, rel_lv = self.rel_mu, self._clamp(self.rel_logvar)
        return GaussianPosterior(ent_mu, ent_lv, rel_mu, rel_lv)

    def extra_repr(self) -> str:
        return (f"base={self.base_name}, {self.num_entities}, {self.dim}, "
                f"relations={self.provides_relations}, reciprocal={self.reciprocal}")


__all__ = [
    "GaussianPosterior", "VariationalEncoder", "VariationalLookupEncoder", "diag_gaussian_kl",
    "fact_kl", "reparameterise", "sample_fact_embeddings", "soft_clamp_inverse",
]
