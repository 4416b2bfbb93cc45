"""Tiny knowledge graphs for the encoder tests (not a test module)."""

from __future__ import annotations

import torch
from torch_geometric.data import Data


def tiny_graph(num_nodes: int = 7, num_relations: int = 3, num_triples: int = 16,
               seed: int = 0) -> Data:
    """A random message graph as the data layer builds it: train triples plus inverses."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randint(num_nodes, (num_triples,), generator=g)
    t = torch.randint(num_nodes, (num_triples,), generator=g)
    r = torch.randint(num_relations, (num_triples,), generator=g)
    edge_index = torch.stack([torch.cat([h, t]), torch.cat([t, h])])
    edge_type = torch.cat([r, r + num_relations])
    return Data(edge_index=edge_index, edge_type=edge_type, num_nodes=num_nodes)


def grad_loss(ent: torch.Tensor, rel: torch.Tensor | None, seed: int = 1) -> torch.Tensor:
    """A loss with a generic gradient (a plain sum is blind to batch norm's centring)."""
    g = torch.Generator().manual_seed(seed)
    loss = (ent * torch.randn(ent.shape, generator=g, dtype=ent.dtype)).sum()
    if rel is not None:
        loss = loss + (rel * torch.randn(rel.shape, generator=g, dtype=rel.dtype)).sum()
    return loss
