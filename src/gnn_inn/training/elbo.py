"""The ``elbo`` loss: negative ELBO of variational embeddings (estimator in
:mod:`gnn_inn.variational`)."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from ..data.triples import TripleSet
from ..variational import bernoulli_weight, check_variant, elbo_terms, sample_negatives
from .batches import QueryBatch

log = logging.getLogger(__name__)


class ELBOLoss:
    r"""Negative ELBO of variational (Gaussian) embeddings, LIM or LFM (loss name ``elbo``).

    Registered in :data:`gnn_inn.training.losses.LOSSES` and used by the trainer like every
    loss there (same interface as :class:`gnn_inn.training.losses.Loss`); the estimator it
    runs lives in :mod:`gnn_inn.variational`.

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

    One ``QueryBatch`` per step: ``kind='tail'``, ``anchor = h``, ``relation = r``,
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


__all__ = ["ELBOLoss"]
