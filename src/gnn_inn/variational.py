r"""Variational knowledge-graph embeddings: Gaussian latents, KL, the ELBO and its estimator.

After Cowen-Rivers, Minervini et al., "Neural Variational Inference for Embedding Knowledge
Graphs" (2019). Entities and relations have diagonal Gaussian posteriors
``q(z) = N(μ, diag σ²)`` under a standard normal prior; a fact ``x = (h, r, t)`` is true with
probability ``p(x | z) = σ(s(z_h, z_r, z_t))`` for a decoder score ``s`` (DistMult, ComplEx,
the flow decoder, …). The posteriors come from a variational encoder
(:class:`~gnn_inn.encoders.variational.VariationalLookupEncoder`, registry name
``variational``, or :class:`~gnn_inn.encoders.variational.VariationalEncoder`,
``variational_gnn``, re-exported here); the ``elbo`` loss
(:class:`gnn_inn.training.elbo.ELBOLoss`, registered in ``gnn_inn.training.losses.LOSSES``)
trains them with :func:`elbo_terms`.

The full objective
------------------
The training graph is a set ``D⁺`` of true facts; ``D⁻`` is a set of false facts (below). The
evidence lower bound sums over *all* of them:

.. math::
    \mathrm{ELBO} = \sum_{x \in D^+} \mathbb E_q \log \sigma(s_x)
                  + \sum_{x \in D^-} \mathbb E_q \log \sigma(-s_x) - \mathrm{KL}.

Two latent structures (``variant``):

* **LIM** (latent information model): *one* latent vector per entity and per relation, shared
  by every fact that mentions it. ``KL = Σ_i KL(q(z_i) ‖ p) + Σ_r KL(q(z_r) ‖ p)`` — two terms,
  entities and relations, each counted once. One joint sample of all tables per optimisation
  step (the encoder's training-mode output) scores every fact of the step.
* **LFM** (latent fact model): every fact ``x`` has *its own* latent triple
  ``z_x = (z_h, z_r, z_t) ~ q(z_h | h) q(z_r | r) q(z_t | t)`` — the per-fact posterior is
  factorised over the fact's three embeddings and amortised by the same μ / log σ² tables, but
  the three vectors are drawn *jointly for that fact and independently of every other fact*
  (two facts sharing an entity use two independent draws of it). The KL is therefore a
  per-fact term, ``KL_x = KL(h) + KL(r) + KL(t)``, which sits inside the sum over facts —
  negative facts included — and is weighted with its fact by the Bernoulli weights below.

This is how the authors' implementation distinguishes the two (LIM: KL over the whole tables
scaled by the minibatch's share; LFM: KL of the minibatch's positive and negative facts, the
negative part with the negative weight).

Which false facts (``negatives``)
---------------------------------
* ``"corrupt"`` (default, as the authors' code): ``D⁻`` is the multiset of head and tail
  corruptions of the true facts, ``C(x) = {(h', r, t) : h' ≠ h} ∪ {(h, r, t') : t' ≠ t}``
  (``|C(x)| = 2(N − 1)``), minus those that are themselves true training facts. So
  ``|D⁻| ≤ 2(N − 1)|D⁺|``.
* ``"uniform"``: ``D⁻ = (E × R × E) \ D⁺``, ``|D⁻| = N²R − |D⁺|`` — the closed-world full sum.

The minibatch estimator (Bernoulli sampling)
--------------------------------------------
Each epoch partitions ``D⁺`` into minibatches (every positive is used once: ``b⁺ = 1``). For
each positive of a step, ``K`` negatives are drawn — uniformly from ``C(x)`` (``corrupt``) or
from ``E × R × E`` (``uniform``) — and a drawn negative that is a training fact gets weight 0.
Every false fact is thus drawn with probability ``b⁻`` per slot, and its term is weighted by
``1 / b⁻`` (Horvitz–Thompson / Hansen–Hurwitz):

* ``corrupt``: ``1 / b⁻ = 2(N − 1) / K`` (for ``K = 1``: ``|D⁻_raw| / |D⁺|`` with
  ``D⁻_raw = ⊎_x C(x)``, i.e. ``b⁻ = |D⁺| / |D⁻|``: one negative per positive in expectation);
* ``uniform``: ``1 / b⁻ = N²R / (K |D⁺|)``.

The step's estimate is

.. math::
    \widehat{\mathrm{ELBO}}_B = \sum_{x \in B} \ell_x
        + \frac{1}{b^-} \sum_{j} m_j \, \ell^-_{j} - \frac{|B|}{|D^+|}\,\mathrm{KL}
    \quad(\text{LIM}),

with ``ℓ = log σ(±s)`` and ``m_j = 0`` for drawn negatives that are training facts (LFM: every
``ℓ`` has its own ``− KL_x``, and there is no global KL term). The KL share ``|B| / |D⁺|`` is
``1 / M`` for ``M`` equal minibatches and sums to exactly one over an epoch, so the sum of the
step estimates over an epoch is an unbiased estimate of the full ELBO, and each step's estimate
is an unbiased estimate of its share (``tests/test_variational.py`` checks this by enumeration
on a tiny graph). The loss returns ``−ELBO_B / |B|`` (negative ELBO per positive fact, whose
expectation is ``−ELBO / |D⁺|``). ``negative_weight`` replaces ``1 / b⁻`` by a constant — the
usual (biased) negative-sampling objective, an explicit approximation.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from .data.triples import TripleSet
from .encoders.variational import (
    GaussianPosterior,
    VariationalEncoder,
    VariationalLookupEncoder,
    diag_gaussian_kl,
    reparameterise,
    soft_clamp,
)

log = logging.getLogger(__name__)

#: Latent structures of :func:`elbo_terms`.
VARIANTS: tuple[str, ...] = ("lim", "lfm")
#: Which false facts the ELBO sums over (see the module docstring).
NEGATIVE_MODES: tuple[str, ...] = ("corrupt", "uniform")


# ------------------------------------------------------------- negatives / weights
def sample_negatives(h: Tensor, r: Tensor, t: Tensor, num_negatives: int, num_entities: int,
                     num_relations: int, mode: str = "corrupt",
                     generator: torch.Generator | None = None) -> Tensor:
    """``K`` random false-fact candidates per positive, ``LongTensor[B, K, 3]`` (h, r, t).

    ``corrupt``: each slot replaces the head or the tail (probability ½ each) by one of the
    ``N − 1`` *other* entities, uniformly — a uniform draw from ``C(x)``. ``uniform``: a uniform
    draw from ``E × R × E``. Candidates that are true facts are *not* removed here (the
    estimator gives them weight 0, see :class:`TripleSet`). All tensors on CPU.
    """
    if mode not in NEGATIVE_MODES:
        raise ValueError(f"negatives must be one of {NEGATIVE_MODES}, got {mode!r}")
    b, k = h.numel(), int(num_negatives)
    if mode == "uniform":
        return torch.stack([torch.randint(num_entities, (b, k), generator=generator),
                            torch.randint(num_relations, (b, k), generator=generator),
                            torch.randint(num_entities, (b, k), generator=generator)], dim=-1)
    if num_entities < 2:
        raise ValueError("corrupted negatives need at least 2 entities")
    side = torch.randint(2, (b, k), generator=generator).bool()  # True: corrupt the head
    shift = 1 + torch.randint(num_entities - 1, (b, k), generator=generator)
    hh, rr, tt = (x.unsqueeze(1).expand(b, k) for x in (h, r, t))
    new_h = torch.where(side, (hh + shift) % num_entities, hh)
    new_t = torch.where(side, tt, (tt + shift) % num_entities)
    return torch.stack([new_h, rr, new_t], dim=-1)


def bernoulli_weight(mode: str, num_entities: int, num_relations: int, num_positives: int,
                     num_negatives: int) -> float:
    """``1 / b⁻``: the weight of one drawn negative that makes the estimator unbiased.

    ``corrupt``: ``2(N − 1) / K``; ``uniform``: ``N²R / (K |D⁺|)`` (module docstring).
    """
    if mode == "corrupt":
        return 2.0 * (num_entities - 1) / num_negatives
    if mode == "uniform":
        return float(num_entities) ** 2 * num_relations / (num_negatives * num_positives)
    raise ValueError(f"negatives must be one of {NEGATIVE_MODES}, got {mode!r}")


# ------------------------------------------------------------------ scoring facts
def decoder_reads_relations(decoder) -> bool:
    """Whether ``decoder`` reads relation vectors from its ``rel`` argument.

    False for a decoder with its own relation table and for a table-conditioned flow decoder
    (its relation parameters live inside the flow and are indexed by relation id).
    """
    if getattr(decoder, "conditioning", None) == "table":
        return False
    return getattr(decoder, "relation_source", "own") == "encoder"


def fact_queries(decoder, z_h: Tensor, z_r: Tensor | None, r: Tensor) -> Tensor:
    """The decoder's tail-query points of facts with per-fact embeddings, ``[..., B, d_q]``.

    The query map runs on a per-call "virtual" table — fact ``i`` reads head row ``i`` and
    relation row ``i`` (DistMult: ``z_h ∘ z_r``; a flow: ``f(z_h; z_r)``). Decoders that keep
    deterministic relation parameters (own table, table-conditioned flow) get the real
    relation ids ``r`` (``z_r`` is then ignored). A context-conditioned flow decoder reads
    relation ids for its patterns, so its per-fact path calls its flow directly with ``z_r`` as
    context and needs every relation ``free``.

    Args:
        decoder: a :class:`~gnn_inn.decoders.Decoder`.
        z_h: ``[..., B, d]``.  z_r: ``[..., B, d_r]`` or ``None``.  r: ``LongTensor[B]``.
    """
    lead = z_h.shape[:-1]
    m = z_h[..., 0].numel()
    zh = z_h.reshape(m, z_h.shape[-1])
    idx = torch.arange(m, device=z_h.device)
    if z_r is not None and decoder_reads_relations(decoder):
        zr = z_r.reshape(m, z_r.shape[-1])
        if hasattr(decoder, "pattern_summary"):  # flow decoder: ids select patterns
            if set(decoder.pattern_summary()) != {"free"}:
                raise ValueError(
                    "per-fact sampled relation contexts need every relation pattern 'free' "
                    f"(got {decoder.pattern_summary()}); use patterns: free, or "
                    "conditioning: table with encoder relations: false, or variant lim")
            q = decoder.flow.forward(zh, zr)[0]
        else:
            q = decoder.tail_query(zh, zr, idx, idx)
    else:
        q = decoder.tail_query(zh, None, idx, r.to(z_h.device).expand(lead).reshape(m))
    return q.reshape(*lead, q.shape[-1])


def score_facts(decoder, z_h: Tensor, z_r: Tensor | None, z_t: Tensor, r: Tensor,
                t: Tensor) -> Tensor:
    """Decoder scores of facts whose embeddings are given *per fact*, ``[..., B]``.

    Each fact has its own (sampled) head, relation and tail vector: the query points come from
    :func:`fact_queries` and each is compared with its own tail vector by the decoder's
    ``similarity_pairs`` (with the real tail ids ``t`` for per-entity biases). A flow
    decoder's symmetric training score is not used here.

    Args:
        decoder: a :class:`~gnn_inn.decoders.Decoder`.
        z_h, z_t: ``[..., B, d]``.  z_r: ``[..., B, d_r]`` or ``None``.
        r, t: relation and tail ids ``LongTensor[B]``.

    Returns:
        ``[..., B]`` scores (tail direction, ``s(h, r, t)``).
    """
    lead = z_h.shape[:-1]
    q = fact_queries(decoder, z_h, z_r, r)
    m = z_h[..., 0].numel()
    q = q.reshape(m, q.shape[-1])
    zt = z_t.reshape(m, z_t.shape[-1])
    t_ids = t.to(z_h.device).expand(lead).reshape(m)
    s = decoder.similarity_pairs(q, zt.unsqueeze(1), t_ids.unsqueeze(1)).squeeze(1)
    return s.reshape(lead)


def sample_fact_embeddings(post: GaussianPosterior, h: Tensor, r: Tensor, t: Tensor,
                           n: int | None = None, generator: torch.Generator | None = None
                           ) -> tuple[Tensor, Tensor | None, Tensor]:
    """Independent draws of each fact's ``(z_h, z_r, z_t)``: ``[B, d]`` (or ``[n, B, d]``).

    Two facts mentioning the same entity get two independent draws (the LFM structure, and
    the right marginal for a single fact under LIM as well).
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


def posterior_of(model) -> GaussianPosterior:
    """The Gaussian posterior of ``model.encoder``'s latest forward pass (training)."""
    post = getattr(model.encoder, "posterior", None)
    if post is None:
        raise ValueError(
            "the elbo loss needs a variational encoder that ran forward this step: use "
            "model.encoder: {name: variational} (or variational_gnn); got "
            f"{type(model.encoder).__name__}"
        )
    return post


# --------------------------------------------------------------------- the ELBO
def _full(x: Tensor) -> Tensor:
    """float16 / bfloat16 → float32 (the objective is never summed in reduced precision)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def elbo_terms(model, ent: Tensor, rel: Tensor | None, pos: Tensor, neg: Tensor, *,
               variant: str, neg_weight: float, neg_mask: Tensor, kl_share: float,
               kl_weight: float = 1.0) -> dict[str, Tensor]:
    r"""One step's Bernoulli-weighted ELBO estimate (module docstring), as a dict of scalars.

    Args:
        model: a :class:`~gnn_inn.model.LinkPredictor` with a variational encoder whose forward
            pass produced ``ent`` / ``rel`` (its ``posterior`` is read).
        ent, rel: the encoder's training-mode output, one joint sample ``[N, d]``,
            ``[R', d_r] | None`` (used by LIM).
        pos: positive facts ``LongTensor[B, 3]``.
        neg: drawn negatives ``LongTensor[B, K, 3]``.
        variant: ``"lim"`` or ``"lfm"``.
        neg_weight: ``1 / b⁻`` (or a chosen constant).
        neg_mask: ``[B, K]`` — 1 for drawn negatives that are not training facts, else 0.
        kl_share: the step's share of the global KL, ``|B| / |D⁺|`` (LIM).
        kl_weight: ``β`` multiplying every KL term (1 = the ELBO).

    Returns:
        ``{"loglik_pos", "loglik_neg", "loglik", "kl", "elbo"}`` — ``loglik`` is the weighted
        log-likelihood estimate (LFM: per-fact expected log-likelihood), ``kl`` the KL terms the
        step subtracts (already multiplied by ``kl_weight``; LFM: weighted per-fact KLs),
        ``elbo = loglik − kl``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    dec = model.decoder
    dev = ent.device
    pos, neg = pos.to(dev), neg.to(dev)
    b, k = neg.shape[0], neg.shape[1]
    negf = neg.reshape(b * k, 3)
    post = posterior_of(model)
    if variant == "lim":
        s_pos = _full(dec.score(ent, rel, *pos.unbind(1)))
        s_neg = _full(dec.score(ent, rel, *negf.unbind(1)))
        mask = neg_mask.to(dev, s_neg.dtype).reshape(b * k)
        lp = F.logsigmoid(s_pos).sum()
        ln = neg_weight * (mask * F.logsigmoid(-s_neg)).sum()
        kl = post.kl_entities().sum()
        kl_rel = post.kl_relations()
        if kl_rel is not None:
            kl = kl + kl_rel.sum()
        kl = kl_weight * kl_share * _full(kl)
    else:
        facts = torch.cat([pos, negf])
        h, r, t = facts.unbind(1)
        z_h, z_r, z_t = sample_fact_embeddings(post, h, r, t)
        s = _full(score_facts(dec, z_h, z_r, z_t, r, t))
        mask = neg_mask.to(dev, s.dtype).reshape(b * k)
        kl_x = kl_weight * _full(fact_kl(post, h, r, t))
        lp = F.logsigmoid(s[:b]).sum()
        ln = neg_weight * (mask * F.logsigmoid(-s[b:])).sum()
        kl = kl_x[:b].sum() + neg_weight * (mask * kl_x[b:]).sum()
    loglik = lp + ln
    return {"loglik_pos": lp, "loglik_neg": ln, "loglik": loglik, "kl": kl,
            "elbo": loglik - kl}


# ------------------------------------------------------------ predictive uncertainty
@torch.no_grad()
def predict_with_uncertainty(model, h: Tensor, r: Tensor, t: Tensor, n_samples: int = 64,
                             generator: torch.Generator | None = None, *,
                             probability: bool = False, batch_size: int = 1024
                             ) -> tuple[Tensor, Tensor]:
    r"""Predictive mean and variance of each fact's score by forward sampling the embeddings.

    For every query fact ``(h, r, t)``, ``n_samples`` independent draws
    ``z_h ~ q(z_h), z_r ~ q(z_r), z_t ~ q(z_t)`` are scored; the sample mean and (unbiased)
    variance of the score — or of ``σ(score)`` with ``probability=True`` — are returned. The
    encoder's posterior is computed in eval mode (deterministic GNN pass), the mode restored.

    Args:
        model: a :class:`~gnn_inn.model.LinkPredictor` with a variational encoder.
        h, r, t: ``LongTensor[B]``.
        n_samples: draws per fact (≥ 2).
        generator: explicit ``torch.Generator`` for reproducible draws.
        probability: moments of ``σ(s)`` instead of ``s``.
        batch_size: facts per chunk (memory ``≈ n_samples · batch_size · d`` floats).

    Returns:
        ``(mean [B], variance [B])`` (float32, on the model's device).
    """
    enc = model.encoder
    if not hasattr(enc, "gaussian"):
        raise ValueError(f"predict_with_uncertainty needs a variational encoder, got "
                         f"{type(enc).__name__}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be ≥ 2 for a variance, got {n_samples}")
    was = enc.training
    enc.eval()
    try:
        post = enc.gaussian(model.graph)
    finally:
        enc.train(was)
    dev = post.ent_mu.device
    means, variances = [], []
    for i in range(0, h.numel(), batch_size):
        hh, rr, tt = (x[i : i + batch_size].to(dev) for x in (h, r, t))
        z_h, z_r, z_t = sample_fact_embeddings(post, hh, rr, tt, n_samples, generator)
        s = score_facts(model.decoder, z_h, z_r, z_t, rr, tt).float()  # [S, B]
        if probability:
            s = torch.sigmoid(s)
        means.append(s.mean(0))
        variances.append(s.var(0))
    if not means:
        e = torch.empty(0, device=dev)
        return e, e
    return torch.cat(means), torch.cat(variances)


def mean_variances(post: GaussianPosterior) -> tuple[Tensor, Tensor | None]:
    """Mean variance ``mean_k σ²_k`` of every entity ``[N]`` and relation row ``[R']``."""
    ent = post.ent_logvar.exp().mean(-1)
    rel = None if post.rel_logvar is None else post.rel_logvar.exp().mean(-1)
    return ent, rel


def frequencies(triples: Tensor, num_entities: int, num_relations: int
                ) -> tuple[Tensor, Tensor]:
    """Occurrence counts in ``triples[M, 3]``: entities ``[N]`` (as head or tail) and relations
    ``[R]``."""
    ent = torch.bincount(torch.cat([triples[:, 0], triples[:, 2]]), minlength=num_entities)
    rel = torch.bincount(triples[:, 1], minlength=num_relations)
    return ent, rel


def check_variant(variant: str, negatives: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"elbo loss: variant must be one of {VARIANTS}, got {variant!r}")
    if negatives not in NEGATIVE_MODES:
        raise ValueError(f"elbo loss: negatives must be one of {NEGATIVE_MODES}, got {negatives!r}")


__all__ = [
    "GaussianPosterior", "NEGATIVE_MODES", "TripleSet", "VARIANTS",
    "VariationalEncoder", "VariationalLookupEncoder", "bernoulli_weight", "decoder_reads_relations",
    "diag_gaussian_kl", "elbo_terms", "fact_kl", "fact_queries", "frequencies", "mean_variances",
    "predict_with_uncertainty", "reparameterise", "sample_fact_embeddings", "sample_negatives",
    "score_facts", "soft_clamp",
]
