r"""Neighbour-sampled training: encode only the k-hop neighbourhood of each step's entities.

A full-batch step runs the encoder over the whole train graph (``O(E · d)`` activations).
Here each step (config ``train.sampler``):

1. **Queries.** ``batch_size`` training triples ``(h, r, t)``, each a tail query
   ``(h, r, ?)`` and a head query ``(?, r, t)``; ``K`` negative entities drawn uniformly and
   *shared* by all queries of the step (same generator on every rank).
2. **Subgraph.** The seeds ``h ∪ t ∪ negatives`` are expanded ``k`` hops (``k`` = encoder
   layers) with PyG's :class:`~torch_geometric.sampler.NeighborSampler` (fan-out
   ``num_neighbors[i]`` in-edges per node at hop ``i + 1``, ``-1`` = all); edge types ride
   along through the sampled edge ids.
3. **Leak-freedom.** With ``exclude_targets`` (default) the step's supervision triples and
   their inverse edges are removed from the subgraph
   (:func:`~gnn_inn.data.triples.edges_outside`).
4. **Encode** the subgraph ``Data(edge_index [2, E_s], edge_type [E_s], n_id [n_s],
   e_id [E_s], num_nodes=n_s)`` to ``[n_s, d]`` (CompGCN also gets full-graph degrees,
   ``node_degree [n_s, 4]``).
5. **Score** each query against the step's shared candidates with
   :meth:`~gnn_inn.decoders.Decoder.score_shared` (``[2B, C]``) and apply the configured
   ``train.loss`` over the columns that count for the query: ``1vsall`` (sampled softmax),
   ``kvsall`` (binary cross-entropy, known answers labelled 1), ``nssa`` (self-adversarial,
   known answers filtered out). Loss = mean over queries.

**Type constraints** (typed graphs; ``train.loss.type_constrained``): each query drops the
shared candidates outside its relation's tail (head) range — type-constrained sampling by
rejection, keeping ``K · |type| / N`` of the ``K`` uniform draws on average.

Evaluation ranks every entity with the encoder's layer-wise ``inference`` in node batches.
Needs ``torch-sparse`` (``pip install 'gnn-inn[sampling]'``) or ``pyg-lib``
(:func:`require_sampling_backend`).

Measurements and design notes: docs/design-notes.md#training-sampling

References
----------
Hamilton et al., "Inductive representation learning on large graphs" (GraphSAGE),
NeurIPS 2017. Jean et al., "On using very large target vocabulary for neural machine
translation" (sampled softmax), ACL 2015.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from ..config import ConfigError
from ..data.triples import TripleSet, edges_outside
from .capabilities import check_combination
from .distributed import shard_range
from .losses import (
    binary_loss,
    check_type_ranges,
    resolve_type_ranges,
    self_adversarial_loss,
    softmax_loss,
)

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "neighbour sampling (train.sampler) needs torch-sparse or pyg-lib, and neither is "
    "installed: pip install 'gnn-inn[sampling]' (installs torch-sparse; for a CUDA or "
    "non-default torch build take the matching wheel from https://data.pyg.org/whl/), or "
    "install pyg-lib the same way; or set train.sampler: null for full-batch training"
)

#: train.loss names and the options each accepts in sampled training
SAMPLED_LOSSES: dict[str, tuple[str, ...]] = {
    "1vsall": ("label_smoothing",),
    "kvsall": ("label_smoothing",),
    "nssa": ("adversarial_temperature", "filter_negatives", "num_negatives"),
}


def sampling_backend() -> str | None:
    """``"pyg-lib"``, ``"torch-sparse"`` or ``None``: what PyG's neighbour sampler will use."""
    import torch_geometric.typing as pyg_typing

    if getattr(pyg_typing, "WITH_PYG_LIB", False):
        return "pyg-lib"
    if getattr(pyg_typing, "WITH_TORCH_SPARSE", False):
        return "torch-sparse"
    return None


def require_sampling_backend() -> str:
    """The backend name; raises ``ImportError`` saying how to install one when there is none."""
    backend = sampling_backend()
    if backend is None:
        raise ImportError(INSTALL_HINT)
    return backend


# ---------------------------------------------------------------------------- config
@dataclass
class SamplerSpec:
    """``train.sampler`` of a config (unknown keys are errors).

    Attributes:
        num_neighbors: in-edges sampled per node and hop, hop 1 first, ``-1`` = all; one
            entry per encoder layer (a single int is repeated). Default ``10`` per layer.
        num_negatives: ``K`` negatives per step, shared by all its queries, drawn uniformly
            with replacement; ``K >= N`` takes every entity once instead. Type-constrained
            losses keep, per query, only those in its type range (module docstring).
        batch_negatives: also use every head and tail of the step's triples as a shared
            candidate (in-batch negatives). They are seeds of the subgraph anyway, so this
            costs scoring only, no extra encoding; with large batches the candidate set
            approaches all entities and the sampled softmax approaches full 1vsAll.
        exclude_targets: remove the step's supervision triples and their inverse edges from
            its subgraph (leak-free; leave on unless you study the leak).
        inference_batch_size: target nodes per batch of the layer-wise full-graph inference
            used for evaluation.
        replace: sample neighbours with replacement.
    """

    num_neighbors: list[int] = field(default_factory=list)
    num_negatives: int = 256
    batch_negatives: bool = True
    exclude_targets: bool = True
    inference_batch_size: int = 4096
    replace: bool = False

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | SamplerSpec, *, num_layers: int,
                  source: str = "train.sampler") -> SamplerSpec:
        """Validate ``spec`` (a mapping from YAML) for an encoder with ``num_layers`` layers."""
        if isinstance(spec, SamplerSpec):
            spec = dict(vars(spec))
        if not isinstance(spec, dict):
            raise ConfigError(f"{source} must be a mapping or null, got {spec!r}")
        known = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(spec) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown key {unknown[0]!r}; known keys: "
                              f"{', '.join(known)}")
        fan = spec.get("num_neighbors")
        if fan is None or fan == []:
            fan = [10] * num_layers
        elif isinstance(fan, int) and not isinstance(fan, bool):
            fan = [fan] * num_layers
        if (not isinstance(fan, list | tuple)
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in fan)):
            raise ConfigError(f"{source}.num_neighbors must be an int or a list of ints, "
                              f"got {fan!r}")
        if len(fan) != num_layers:
            raise ConfigError(f"{source}.num_neighbors has {len(fan)} entries but the encoder "
                              f"has {num_layers} layers; give one fan-out per layer")
        if any(x < -1 for x in fan):
            raise ConfigError(f"{source}.num_neighbors: fan-outs must be >= 0 or -1 (all), "
                              f"got {list(fan)}")
        out = cls(num_neighbors=[int(x) for x in fan])
        for key, kind in (("num_negatives", int), ("inference_batch_size", int),
                          ("exclude_targets", bool), ("replace", bool),
                          ("batch_negatives", bool)):
            if key not in spec:
                continue
            v = spec[key]
            if kind is int and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{source}.{key} must be a positive int, got {v!r}")
            if kind is bool and not isinstance(v, bool):
                raise ConfigError(f"{source}.{key} must be true or false, got {v!r}")
            setattr(out, key, v)
        return out


# --------------------------------------------------------------------------- sampler
def full_degrees(edge_index: Tensor, edge_type: Tensor, num_nodes: int,
                 num_relations: int) -> Tensor:
    """``[N, 4]`` float: in-degree (original, inverse edges) and out-degree (original,
    inverse) of every node in the full graph (CompGCN's per-direction norms)."""
    direction = (edge_type >= num_relations).long()
    src, dst = edge_index
    deg = torch.zeros(num_nodes * 4, dtype=torch.float)
    ones = torch.ones(dst.numel())
    deg.index_add_(0, dst * 4 + direction, ones)
    deg.index_add_(0, src * 4 + 2 + direction, ones)
    return deg.view(num_nodes, 4)


class SubgraphSampler:
    r"""``k``-hop neighbourhoods of seed entities in a typed message graph.

    Args:
        graph: ``Data(edge_index [2, E], edge_type [E])``, the train-only message graph
            (inverse edges typed ``r + R``); kept on CPU.
        num_neighbors: fan-out per hop (hop 1 first, ``-1`` = all in-edges).
        num_entities: ``N``.  num_relations: ``R``.
        replace: sample with replacement.
        node_degree: attach full-graph degrees ``node_degree [n, 4]`` to each subgraph.

    Memory: PyG keeps a CSC copy of the graph (``row [E]``, ``colptr [N + 1]``, ``perm [E]``
    int64) next to ``edge_index`` / ``edge_type``.
    """

    def __init__(self, graph: Data, num_neighbors: list[int], *, num_entities: int,
                 num_relations: int, replace: bool = False, node_degree: bool = False) -> None:
        self.backend = require_sampling_backend()
        from torch_geometric.sampler import NeighborSampler

        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        self.num_neighbors = list(num_neighbors)
        self.edge_index = graph.edge_index.cpu()
        self.edge_type = graph.edge_type.cpu()
        with warnings.catch_warnings():  # "without pyg-lib is deprecated": torch-sparse is fine
            warnings.filterwarnings("ignore", message=".*pyg-lib.*")
            self._sampler = NeighborSampler(
                Data(edge_index=self.edge_index, num_nodes=self.num_entities),
                self.num_neighbors, replace=replace, subgraph_type="directional")
        self._perm = self._sampler.edge_permutation  # CSC position -> edge id (or None)
        self.node_degree = (full_degrees(self.edge_index, self.edge_type, self.num_entities,
                                         self.num_relations) if node_degree else None)

    def sample(self, seeds: Tensor, exclude: Tensor | None = None) -> Data:
        r"""The sampled subgraph of ``seeds``.

        Args:
            seeds: ``LongTensor[S]`` distinct global entity ids.
            exclude: ``LongTensor[M, 3]`` triples whose edges (both directions) are removed.

        Returns:
            ``Data(edge_index [2, E_s], edge_type [E_s], e_id [E_s], n_id [n_s],
            num_nodes=n_s)`` (plus ``node_degree [n_s, 4]`` if asked); ``edge_index`` holds
            local ids, ``n_id[:S] == seeds``, ``edge_type == graph.edge_type[e_id]`` and
            ``n_id[edge_index] == graph.edge_index[:, e_id]``.
        """
        from torch_geometric.sampler import NodeSamplerInput

        seeds = seeds.cpu()
        out = self._sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=seeds))
        n_id, row, col = out.node, out.row, out.col
        e_id = out.edge if self._perm is None else self._perm[out.edge]
        edge_type = self.edge_type[e_id]
        if exclude is not None and exclude.numel() and e_id.numel():
            keep = edges_outside(torch.stack([n_id[row], n_id[col]]), edge_type,
                                 exclude.cpu(), self.num_entities, self.num_relations)
            row, col, e_id, edge_type = row[keep], col[keep], e_id[keep], edge_type[keep]
        sub = Data(edge_index=torch.stack([row, col]), edge_type=edge_type, e_id=e_id,
                   n_id=n_id, num_nodes=int(n_id.numel()))
        if self.node_degree is not None:
            sub.node_degree = self.node_degree[n_id]
        return sub


# ------------------------------------------------------------------------- objective
@dataclass
class SampledBatch:
    """One step of sampled training (identical on every rank)."""

    triples: Tensor  # [B, 3] training triples (h, r, t) of the global step
    negatives: Tensor  # [K] entity ids shared by all queries of the step


class NeighborSampledObjective:
    r"""Batches, subgraphs and loss of neighbour-sampled training (see the module docstring).

    Args:
        graph: train-only message graph (``edge_index``, ``edge_type``).
        train: ``LongTensor[T, 3]`` training triples (queries, and the train-only filter of
            negatives).
        num_entities, num_relations: ``N``, ``R``.
        num_layers: encoder layers ``k`` (hops sampled).
        spec: :class:`SamplerSpec` or its mapping.
        loss: the ``train.loss`` mapping (``name`` in ``1vsall`` / ``kvsall`` / ``nssa`` and
            its options).
        node_degree: attach full-graph degrees to subgraphs (CompGCN).
        type_ranges: ``LongTensor[R, 2, 2]`` head / tail id range per relation
            (:func:`~gnn_inn.training.losses.relation_type_ranges`): each query ignores the
            shared negatives outside its range; ``None``: no type constraints. The loss
            mapping's ``type_constrained: false`` turns it off, ``true`` requires it.

    ``__call__(model, batch, rank, world_size)`` returns this rank's share of the step's mean
    loss (its queries' summed losses divided by the *global* query count ``2B``), so that the
    shares of all ranks add up to the one-process loss; ``None`` when the rank's slice is
    empty. :attr:`last_subgraph` holds ``(n_s, E_s)`` of the latest subgraph.
    """

    def __init__(self, *, graph: Data, train: Tensor, num_entities: int, num_relations: int,
                 num_layers: int, spec: SamplerSpec | dict[str, Any], loss: dict[str, Any],
                 node_degree: bool = False, type_ranges: Tensor | None = None) -> None:
        self.spec = SamplerSpec.from_dict(spec, num_layers=num_layers)
        loss = dict(loss)
        name = loss.pop("name", None)
        type_constrained = loss.pop("type_constrained", None)
        if type_constrained and type_ranges is None:
            raise ConfigError("train.loss.type_constrained: true needs a typed graph "
                              "(type_ranges from relation_types and entity_type_ranges)")
        if type_constrained is False:
            type_ranges = None
        if name not in SAMPLED_LOSSES:
            raise ConfigError(f"train.loss.name {name!r} is not available with train.sampler; "
                              f"use one of {', '.join(SAMPLED_LOSSES)}")
        unknown = sorted(set(loss) - set(SAMPLED_LOSSES[name]))
        if unknown:
            raise ConfigError(f"train.loss: option {unknown[0]!r} is not used by sampled "
                              f"'{name}'; known: {', '.join(SAMPLED_LOSSES[name])}")
        if "num_negatives" in loss:
            log.warning("train.loss.num_negatives is ignored with train.sampler; the step's "
                        "shared negatives are train.sampler.num_negatives=%d",
                        self.spec.num_negatives)
        self.loss_name = name
        self.label_smoothing = float(loss.get("label_smoothing", 0.0))
        self.alpha = float(loss.get("adversarial_temperature", 1.0))
        self.filter_negatives = bool(loss.get("filter_negatives", True))
        self.train = train.cpu()
        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        self.sampler = SubgraphSampler(graph, self.spec.num_neighbors, num_entities=num_entities,
                                       num_relations=num_relations, replace=self.spec.replace,
                                       node_degree=node_degree)
        self.known = TripleSet(self.train, num_entities, num_relations)
        self.type_ranges = (None if type_ranges is None else
                            check_type_ranges(type_ranges, self.train, self.num_entities,
                                              self.num_relations))
        self.last_subgraph: tuple[int, int] = (0, 0)

    # ---------------------------------------------------------------- batches
    def num_batches(self, batch_size: int) -> int:
        return (self.train.shape[0] + batch_size - 1) // batch_size

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[SampledBatch]:
        """One epoch: every training triple once (both directions), in random order."""
        perm = torch.randperm(self.train.shape[0], generator=generator)
        every = self.spec.num_negatives >= self.num_entities
        for i in range(0, perm.numel(), batch_size):
            if every:  # as many negatives as entities: take each entity once
                neg = torch.arange(self.num_entities)
            else:
                neg = torch.randint(self.num_entities, (self.spec.num_negatives,),
                                    generator=generator)
            triples = self.train[perm[i:i + batch_size]]
            if self.spec.batch_negatives and not every:
                # the global batch's entities (not this rank's slice): every rank scores the
                # same candidates, so the split over ranks does not change the objective
                neg = torch.unique(torch.cat([neg, triples[:, 0], triples[:, 2]]))
            yield SampledBatch(triples, neg)

    # ------------------------------------------------------------------ loss
    def subgraph(self, batch: SampledBatch, rank: int = 0, world_size: int = 1
                 ) -> tuple[Data, Tensor, Tensor]:
        """``(subgraph, seeds [S], part [B_k, 3])`` of this rank's slice of ``batch``."""
        start, end = shard_range(batch.triples.shape[0], rank, world_size)
        part = batch.triples[start:end]
        seeds = torch.unique(torch.cat([part[:, 0], part[:, 2], batch.negatives]))
        exclude = batch.triples if self.spec.exclude_targets else None
        sub = self.sampler.sample(seeds, exclude)
        self.last_subgraph = (int(sub.num_nodes), int(sub.edge_index.size(1)))
        return sub, seeds, part

    def __call__(self, model, batch: SampledBatch, rank: int = 0,
                 world_size: int = 1) -> Tensor | None:
        """This rank's share of the step loss (scalar), ``None`` for an empty slice."""
        sub, seeds, part = self.subgraph(batch, rank, world_size)
        if part.numel() == 0:
            return None
        dev = next(model.parameters()).device
        ent, rel = model.encode(sub.to(dev))
        scores, target, ok, known = self.scores(model.decoder, ent, rel, seeds, part,
                                                batch.negatives)
        per_query = self.per_query_loss(scores.float(), target, ok, known)
        return per_query.sum() / (2 * batch.triples.shape[0])

    def per_query_loss(self, scores: Tensor, target: Tensor, ok: Tensor,
                       known: Tensor) -> Tensor:
        """Per-query loss ``[2b]`` of :meth:`scores`' output, by the objectives of
        :mod:`gnn_inn.training.losses` — as the full-batch losses treat other known *training*
        answers: ``nssa`` drops them from the negatives (with ``filter_negatives``); ``kvsall``
        labels them 1; ``1vsall`` keeps them as negatives (1vsAll has no filter either)."""
        if self.loss_name == "1vsall":
            return softmax_loss(scores, target, ok, self.label_smoothing)
        if self.loss_name == "kvsall":
            return binary_loss(scores, known, ok, self.label_smoothing)
        # nssa: the answer column against the other kept candidates
        s_pos = scores.gather(1, target.unsqueeze(1))[:, 0]
        mask = ok & ~known if self.filter_negatives else ok.clone()
        mask.scatter_(1, target.unsqueeze(1), False)
        return self_adversarial_loss(s_pos, scores, mask, self.alpha)

    def scores(self, dec, ent: Tensor, rel: Tensor | None, seeds: Tensor, part: Tensor,
               negatives: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""Scores of the slice's queries against the step's shared candidates.

        The candidates are the subgraph's seeds (``seeds [C]``, sorted global ids, rows
        ``0..C-1`` of ``ent``): the step's negatives and the slice's heads and tails, so every
        query's own answer is a column. Scored with the decoder's one shared-candidate method
        :meth:`~gnn_inn.decoders.Decoder.score_shared` (tail queries, then head queries).

        Returns:
            ``(scores [2b, C], target [2b] column of each query's answer, ok [2b, C] columns
            that count for the query — drawn negatives and the own answer, in its type range —,
            known [2b, C] known training answers of the query, the own answer included; for
            ``1vsall``, which does not read it, the own answer only)``.
        """
        dev = ent.device
        h, r, t = (c.contiguous() for c in part.unbind(1))
        lh, lt = torch.searchsorted(seeds, h), torch.searchsorted(seeds, t)
        cand = torch.arange(seeds.numel())
        rd, ids = r.to(dev), seeds.to(dev)
        scores = torch.cat([
            dec.score_shared(ent, rel, lh.to(dev), rd, lt.to(dev), cand.to(dev), "tail", ids),
            dec.score_shared(ent, rel, lh.to(dev), rd, lt.to(dev), cand.to(dev), "head", ids),
        ])
        target = torch.cat([lt, lh])
        b = h.numel()
        own = torch.zeros(2 * b, seeds.numel(), dtype=torch.bool)
        own[torch.arange(2 * b), target] = True
        ok = torch.isin(seeds, negatives).unsqueeze(0) | own
        if self.type_ranges is not None:  # candidates outside the query's type range
            ok = ok & ~self.out_of_type(r, seeds)
        known = own.clone()
        # known training answers among the candidates: labels of kvsall, the filter of nssa;
        # 1vsall keeps them as negatives, so the [2b, C] lookups are skipped
        if self.loss_name == "kvsall" or (self.loss_name == "nssa" and self.filter_negatives):
            known |= torch.cat([self.known.contains_answers(h, r, seeds, "tail"),
                                self.known.contains_answers(t, r, seeds, "head")])
        return scores, target.to(dev), ok.to(dev), known.to(dev)

    def out_of_type(self, r: Tensor, neg: Tensor) -> Tensor:
        """``BoolTensor[2b, K]``: shared negative ``neg [K]`` lies outside the type range of
        query ``i`` — rows ``[:b]`` the tail queries of relations ``r [b]`` (tail range), rows
        ``[b:]`` their head queries (head range). All ``False`` without type constraints."""
        if self.type_ranges is None:
            return torch.zeros(2 * r.numel(), neg.numel(), dtype=torch.bool)
        rng = self.type_ranges[r.cpu()]  # [b, 2 (head, tail), 2 (start, end)]
        lo = torch.cat([rng[:, 1, 0], rng[:, 0, 0]]).unsqueeze(1)
        hi = torch.cat([rng[:, 1, 1], rng[:, 0, 1]]).unsqueeze(1)
        ng = neg.cpu().unsqueeze(0)
        return (ng < lo) | (ng >= hi)


def build_sampled_objective(spec: dict[str, Any], *, model, kg,
                            loss: dict[str, Any]) -> NeighborSampledObjective:
    """The objective for ``train.sampler = spec`` with ``model`` and ``kg``'s train split.

    The encoder must be a message-passing one with layer-wise ``inference`` (``rgcn``,
    ``compgcn``) and the decoder a query-map + similarity one (all classic and flow
    decoders); the encoder's ``inference_batch_size`` is set for evaluation.
    """
    enc, dec = model.encoder, model.decoder
    check_combination(encoder=enc, decoder=dec, loss=str(dict(loss).get("name")), sampled=True)
    num_layers = enc.num_layers
    graph = model.graph
    type_ranges = resolve_type_ranges(kg, dict(loss).get("type_constrained"),
                                      loss_name=str(dict(loss).get("name")))
    objective = NeighborSampledObjective(
        graph=graph, train=kg.train, num_entities=kg.num_entities,
        num_relations=kg.num_relations, num_layers=int(num_layers), spec=spec, loss=loss,
        node_degree=enc.uses_node_degree, type_ranges=type_ranges)
    enc.inference_batch_size = objective.spec.inference_batch_size
    log.info("neighbour sampling (%s): fan-out %s, %d shared negatives per step, "
             "exclude_targets=%s, type-constrained=%s", objective.sampler.backend,
             objective.spec.num_neighbors, objective.spec.num_negatives,
             objective.spec.exclude_targets, objective.type_ranges is not None)
    return objective


__all__ = [
    "INSTALL_HINT", "NeighborSampledObjective", "SampledBatch", "SamplerSpec",
    "SubgraphSampler", "build_sampled_objective", "full_degrees", "require_sampling_backend",
    "sampling_backend",
]
