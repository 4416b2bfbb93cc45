r"""The ``elbo`` loss: negative ELBO of variational embeddings and its minibatch estimator.

After Cowen-Rivers, Minervini et al., "Neural Variational Inference for Embedding Knowledge
Graphs" (2019). Entities and relations have diagonal Gaussian posteriors
``q(z) = N(μ, diag σ²)`` under a standard normal prior; a fact ``x = (h, r, t)`` is true with
probability ``p(x | z) = σ(s(z_h, z_r, z_t))`` for a decoder score ``s`` (DistMult, ComplEx,
the flow decoder, …). The posteriors come from a variational encoder
(:class:`~gnn_inn.encoders.variational.VariationalLookupEncoder`, registry name
``variational``, or :class:`~gnn_inn.encoders.variational.VariationalEncoder`,
``variational_gnn``); the ``elbo`` loss (:class:`ELBOLoss`, registered in
``gnn_inn.training.losses.LOSSES``) trains them with :func:`elbo_terms`. Predictive sampling
lives in :mod:`gnn_inn.evaluation.uncertainty`.

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

Which false facts (``negatives``: ``corrupt`` or ``uniform``) and the unbiased Bernoulli
minibatch estimator (weights ``1 / b⁻``, KL share ``|B| / |D⁺|``; ``negative_weight`` replaces
``1 / b⁻`` by a constant): docs/design-notes.md#training-elbo.
"""


from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.triples import NEGATIVE_MODES, TripleSet, sample_negatives
from ..decoders.base import score_facts
from ..encoders.variational import GaussianPosterior, fact_kl, sample_fact_embeddings
from .batches import QueryBatch

log = logging.getLogger(__name__)

#: Latent structures of :func:`elbo_terms`.
VARIANTS: tuple[str, ...] = ("lim", "lfm")


# ------------------------------------------------------------------ negative weights
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


def posterior_of(model) -> GaussianPosterior:
    """The Gaussian posterior of ``model.encoder``'s latest forward pass (training)."""
    post = model.encoder.posterior if model.encoder.variational else None
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


def check_variant(variant: str, negatives: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"elbo loss: variant must be one of {VARIANTS}, got {variant!r}")
    if negatives not in NEGATIVE_MODES:
        raise ValueError(f"elbo loss: negatives must be one of {NEGATIVE_MODES}, got {negatives!r}")



class ELBOLoss:
    r"""Negative ELBO of variational (Gaussian) embeddings, LIM or LFM (loss name ``elbo``).

    Registered in :data:`gnn_inn.training.losses.LOSSES` and used by the trainer like every
    loss there (same interface as :class:`gnn_inn.training.losses.Loss`); it runs the
    estimator :func:`elbo_terms` (module docstring).

    Per step: a minibatch ``B`` of positive facts (each used once per epoch, ``b⁺ = 1``) and
    ``K`` drawn negatives per positive, each weighted by ``1 / b⁻`` (Bernoulli sampling,
    unbiased for the full sum over false facts), minus the KL terms — the step's share
    ``|B| / |D⁺|`` of the global KL (LIM) or the per-fact KLs (LFM). Returns ``−ELBO_B / |B|``.
    Needs a variational encoder (``variational`` or ``variational_gnn``).

    Args:
        train: training triples ``LongTensor[M, 3]`` (deduplicated: ``|D⁺|`` counts distinct
            facts).  num_entities: ``N``.  num_relations: ``R``.
        variant: ``"lim"`` (latent information model) or ``"lfm"`` (latent fact model).
        num_negatives: ``K`` negatives per positive.
        negatives: ``"corrupt"`` (head / tail corruptions, ``1/b⁻ = 2(N−1)/K``) or
            ``"uniform"`` (all of ``E × R × E``, ``1/b⁻ = N²R / (K|D⁺|)``).
        negative_weight: ``None`` for the unbiased ``1 / b⁻``; a number replaces it (the usual,
            biased negative-sampling approximation).
        kl_weight: ``β`` on every KL term (1 = the ELBO).
        filter_negatives: drawn negatives that are training facts get weight 0 (the estimator
            stays unbiased for a ``D⁻`` without true facts).

    One ``QueryBatch`` per step: ``direction='tail'``, ``anchor = h``, ``relation = r``,
    ``target = t``, ``other = negatives [B, K, 3]``.
    """

    name = "elbo"

    def __init__(self, train: Tensor, num_entities: int, num_relations: int, *,
                 variant: str = "lim", num_negatives: int = 1, negatives: str = "corrupt",
                 negative_weight: float | None = None, kl_weight: float = 1.0,
                 filter_negatives: bool = True) -> None:
        check_variant(variant, negatives)
        if num_negatives < 1:
            raise ValueError(f"elbo loss: num_negatives must be ≥ 1, got {num_negatives}")
        self.train = torch.unique(torch.as_tensor(train, dtype=torch.long).cpu(), dim=0)
        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        self.variant = variant
        self.num_negatives = int(num_negatives)
        self.negatives = negatives
        self.kl_weight = float(kl_weight)
        self.filter_negatives = bool(filter_negatives)
        self.known = TripleSet(self.train, num_entities, num_relations)
        self.unbiased_weight = bernoulli_weight(negatives, num_entities, num_relations,
                                                self.train.shape[0], self.num_negatives)
        self.neg_weight = (self.unbiased_weight if negative_weight is None
                           else float(negative_weight))
        log.info("elbo loss: %s, %d %s negative(s) per positive, weight %.4g (1/b- = %.4g)",
                 variant, self.num_negatives, negatives, self.neg_weight, self.unbiased_weight)

    def num_batches(self, batch_size: int) -> int:
        return (self.train.shape[0] + batch_size - 1) // batch_size

    def batches(self, batch_size: int, generator: torch.Generator):
        """Per step ``[QueryBatch]``: a random partition of ``D⁺`` plus drawn negatives."""
        perm = torch.randperm(self.train.shape[0], generator=generator)
        for i in range(0, perm.numel(), batch_size):
            h, r, t = self.train[perm[i : i + batch_size]].unbind(1)
            neg = sample_negatives(h, r, t, self.num_negatives, self.num_entities,
                                   self.num_relations, self.negatives, generator)
            yield [QueryBatch("tail", h, r, target=t, other=neg)]

    def negative_mask(self, neg: Tensor) -> Tensor:
        """``BoolTensor[B, K]``: drawn negatives that count (not training facts)."""
        if not self.filter_negatives:
            return torch.ones(neg.shape[:-1], dtype=torch.bool, device=neg.device)
        return ~self.known.contains(neg)

    def terms(self, model, batch, ent: Tensor, rel: Tensor | None) -> dict[str, Tensor]:
        """The step's ELBO estimate and its parts (:func:`elbo_terms`)."""
        pos = torch.stack([batch.anchor, batch.relation, batch.target], 1)
        return elbo_terms(model, ent, rel, pos, batch.other, variant=self.variant,
                          neg_weight=self.neg_weight, neg_mask=self.negative_mask(batch.other),
                          kl_share=pos.shape[0] / self.train.shape[0],
                          kl_weight=self.kl_weight)

    def __call__(self, model, batch, ent: Tensor, rel: Tensor | None) -> Tensor:
        """``−ELBO_B / |B|`` (scalar)."""
        return -self.terms(model, batch, ent, rel)["elbo"] / batch.anchor.numel()


__all__ = [
    "ELBOLoss", "NEGATIVE_MODES", "VARIANTS", "bernoulli_weight", "check_variant", "elbo_terms",
    "posterior_of",
]
