"""The encoder interface and the edge-dropout helper."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Data


class Encoder(nn.Module):
    r"""Base class: ``forward(graph) -> (ent [N, dim], rel [2R, rel_dim] | None)``.

    ``graph`` is the train-only message-passing graph: ``edge_index [2, E]``,
    ``edge_type [E]`` with inverse edges typed ``r + R`` (``2R`` types), ``num_nodes``.
    Relation embeddings, when provided, have ``2R`` rows (forward relations, then inverses).
    Any ``nn.Module`` with this call shape plugs into :class:`~gnn_inn.model.LinkPredictor`.
    """

    provides_relations: bool = False

    def __init__(self, *, num_entities: int, dim: int, rel_dim: int | None = None) -> None:
        super().__init__()
        self.num_entities = int(num_entities)
        self.dim = int(dim)
        self.rel_dim = rel_dim

    def forward(self, graph: Data) -> tuple[Tensor, Tensor | None]:  # pragma: no cover
        raise NotImplementedError


def edge_dropout(edge_index: Tensor, edge_type: Tensor, p: float,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Drop each edge with probability ``p`` (training only; the caller checks the mode)."""
    if p <= 0:
        return edge_index, edge_type
    keep = torch.rand(edge_type.numel(), generator=generator,
                      device=edge_type.device if generator is None else "cpu") >= p
    keep = keep.to(edge_type.device)
    return edge_index[:, keep], edge_type[keep]
