"""The encoder interface and the edge-dropout helper."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Data


class Encoder(nn.Module):
    r"""Base class: ``forward(graph) -> (ent [N, dim], rel [2R, rel_dim] | None)``.

    ``graph`` is the train-only message-passing graph: ``edge_index [2, E]`` (row 0 the
    source, row 1 the target of each message, PyG's ``source_to_target`` flow),
    ``edge_type [E]`` with inverse edges typed ``r + R`` (``2R`` types), ``num_nodes``.
    Relation embeddings, when provided, have ``2R`` rows (forward relations, then inverses).
    Any ``nn.Module`` with this call shape plugs into :class:`~gnn_inn.model.LinkPredictor`.

    Attributes:
        num_entities: ``N``.
        dim: size ``d`` of the returned entity embeddings.
        provides_relations: whether :meth:`forward` returns relation embeddings.
        rel_dim: their size, ``None`` when ``provides_relations`` is false.
    """

    provides_relations: bool = False

    def __init__(self, *, num_entities: int, dim: int, rel_dim: int | None = None) -> None:
        super().__init__()
        if num_entities <= 0 or dim <= 0:
            raise ValueError(
                f"{type(self).__name__}: num_entities and dim must be positive, got "
                f"num_entities={num_entities}, dim={dim}"
            )
        self.num_entities = int(num_entities)
        self.dim = int(dim)
        self.rel_dim = None if rel_dim is None else int(rel_dim)

    def forward(self, graph: Data) -> tuple[Tensor, Tensor | None]:  # pragma: no cover
        raise NotImplementedError

    def _check_graph(self, graph: Data) -> tuple[Tensor, Tensor]:
        """``(edge_index, edge_type)`` of ``graph`` after checking its node count."""
        if getattr(graph, "edge_index", None) is None or getattr(graph, "edge_type", None) is None:
            raise ValueError(
                f"{type(self).__name__} needs a message graph with edge_index and edge_type "
                "(e.g. KnowledgeGraph.message_graph()); pass graph= to LinkPredictor"
            )
        n = graph.num_nodes
        if n is not None and int(n) != self.num_entities:
            raise ValueError(
                f"{type(self).__name__} was built for num_entities={self.num_entities} but the "
                f"graph has num_nodes={int(n)}; build the encoder from the same KnowledgeGraph"
            )
        return graph.edge_index, graph.edge_type


def edge_dropout(graph: Data, p: float, generator: torch.Generator | None = None) -> Data:
    r"""A copy of ``graph`` where each edge is dropped independently with probability ``p``.

    Used by the GNN encoders in training mode only (the caller checks ``self.training``).
    Keeps ``num_nodes``; an edge and its inverse are dropped independently. Randomness comes
    from ``generator`` (a CPU generator is fine for graphs on any device) or, when ``None``,
    from torch's global generator (seeded by the trainer).

    Args:
        graph: ``Data(edge_index [2, E], edge_type [E], num_nodes)``.
        p: drop probability in ``[0, 1)``; ``p == 0`` returns ``graph`` itself.
        generator: optional ``torch.Generator``.

    Returns:
        ``Data(edge_index [2, E'], edge_type [E'], num_nodes)`` with ``E' ~ Bin(E, 1 - p)``.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"edge_dropout: p must be in [0, 1), got {p}")
    if p == 0.0:
        return graph
    edge_type = graph.edge_type
    dev = edge_type.device if generator is None else generator.device
    keep = torch.rand(edge_type.numel(), generator=generator, device=dev) >= p
    keep = keep.to(edge_type.device)
    return Data(edge_index=graph.edge_index[:, keep], edge_type=edge_type[keep],
                num_nodes=graph.num_nodes)


def make_activation(name: str | None) -> nn.Module:
    """``"relu" | "tanh" | "leaky_relu" | "gelu" | "elu" | "identity"/None`` as a module."""
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU,
            "elu": nn.ELU, "identity": nn.Identity}
    key = "identity" if name is None else name
    if key not in acts:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(acts)}")
    return acts[key]()
