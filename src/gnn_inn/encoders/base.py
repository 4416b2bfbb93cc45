"""The encoder interface, the edge-dropout helper and node batches for layer-wise inference."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data


class Encoder(nn.Module):
    r"""Base class: ``forward(graph) -> (ent [N, dim], rel [2R, rel_dim] | None)``.

    ``graph`` is the train-only message-passing graph: ``edge_index [2, E]`` (row 0 the
    source, row 1 the target of each message, PyG's ``source_to_target`` flow),
    ``edge_type [E]`` with inverse edges typed ``r + R`` (``2R`` types), ``num_nodes``.
    Relation embeddings, when provided, have ``2R`` rows (forward relations, then inverses).
    Any ``nn.Module`` with this call shape plugs into :class:`~gnn_inn.model.LinkPredictor`.

    **Subgraphs** (neighbour-sampled training, :mod:`gnn_inn.training.sampling`): a graph may
    carry ``n_id [n]``, the global entity id of each of its ``n`` nodes (``edge_index`` then
    holds local ids ``< n``). Message-passing encoders read their input rows
    ``table[n_id]`` and return ``ent [n, d]`` for the subgraph's nodes only; without ``n_id``
    the graph covers all ``N`` entities and nothing changes.

    **Layer-wise inference**: encoders that declare :attr:`layerwise_inference` define
    ``inference(graph, batch_size)``, which computes
    every layer for all ``N`` nodes, ``batch_size`` target nodes at a time, before the next
    layer (memory ``O(N · d + E)`` plus one batch's messages, instead of the ``O(E · d)``
    activations of one full-graph pass). Setting ``inference_batch_size`` makes eval-mode
    :meth:`forward` over a full graph use it (the trainer does so when sampling is
    configured).

    **Sparse gradients** (``train.sparse_embeddings``): an encoder lists its entity tables in
    ``sparse_tables`` and reads them only through :meth:`_input_rows`; with ``sparse_grad``
    set, their gradients are sparse (the rows of the step only) and the trainer updates them
    with ``torch.optim.SparseAdam``.

    Attributes:
        num_entities: ``N``.
        dim: size ``d`` of the returned entity embeddings.
        provides_relations: whether :meth:`forward` returns relation embeddings.
        rel_dim: their size, ``None`` when ``provides_relations`` is false.
    """

    # ---------------------------------------------------------- capability flags
    # Declared here, overridden by the encoders that have them; read by the model builder,
    # the trainer, the sampler and :mod:`gnn_inn.training.capabilities` (never probed).

    #: whether :meth:`forward` returns relation embeddings ``[2R, rel_dim]``
    provides_relations: bool = False
    #: message-passing layers (``num_layers``) with a layer-wise :meth:`inference`: the
    #: encoder trains on sampled neighbourhoods (``train.sampler``)
    layerwise_inference: bool = False
    #: number of message-passing layers (``None``: no message passing)
    num_layers: int | None = None
    #: neighbour samplers attach full-graph degrees ``node_degree [n, 4]`` to subgraphs
    uses_node_degree: bool = False
    #: whether :meth:`forward` keeps a Gaussian posterior (what the ``elbo`` loss needs)
    variational: bool = False
    #: probability of dropping each message edge in training (:meth:`_message_graph`)
    edge_dropout: float = 0.0
    #: when set, eval-mode ``forward`` over a full graph runs ``inference(graph, this)``
    inference_batch_size: int | None = None
    #: names of the ``[N, ·]`` parameters read only through :meth:`_input_rows`, which can
    #: get sparse gradients (``train.sparse_embeddings``)
    sparse_tables: tuple[str, ...] = ()
    #: when set (by the trainer), :meth:`_input_rows` gives those tables sparse gradients
    sparse_grad: bool = False

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

    def forward(self, graph: Data) -> tuple[Tensor, Tensor | None]:
        """``(ent [N, d], rel [2R, rel_dim] | None)``, or ``(ent [n, d], rel)`` for a subgraph
        carrying ``n_id [n]``.

        The prologue every message-passing encoder shares: check ``graph``, hand a full graph
        to :meth:`inference` in eval mode when ``inference_batch_size`` is set, else apply
        edge dropout (training) and run :meth:`encode`. Encoders without message passing
        override ``forward`` itself.
        """
        self._check_graph(graph)
        if self._use_inference(graph):
            return self.inference(graph, self.inference_batch_size)
        return self.encode(self._message_graph(graph))

    def encode(self, graph: Data) -> tuple[Tensor, Tensor | None]:  # pragma: no cover
        """One message-passing pass over ``graph`` (checked, edge dropout applied)."""
        raise NotImplementedError

    @torch.no_grad()
    def inference(self, graph: Data, batch_size: int = 4096
                  ) -> tuple[Tensor, Tensor | None]:  # pragma: no cover
        """Full-graph output computed layer by layer in node batches (encoders that declare
        :attr:`layerwise_inference`; see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} has no layer-wise inference")

    def _inference_blocks(self, graph: Data, batch_size: int
                          ) -> tuple[Tensor, list[tuple[int, int, Tensor, Tensor, Tensor]]]:
        """The node batches of layer-wise inference over the full ``graph``.

        Returns ``edge_type [E]`` and, per batch of target nodes ``[start, end)``, ``(start,
        end, eids [E_b], local_edge_index [2, E_b], edge_type [E_b])``: all incoming edges of
        the batch (:func:`dst_blocks`), targets renumbered from ``start``.
        """
        edge_index, edge_type = self._check_graph(graph)
        blocks = []
        for start, end, eids in dst_blocks(edge_index, self.num_entities, batch_size):
            ei = edge_index.index_select(1, eids)
            local = torch.stack([ei[0], ei[1] - start])
            blocks.append((start, end, eids, local, edge_type.index_select(0, eids)))
        return edge_type, blocks

    def _message_graph(self, graph: Data) -> Data:
        """``graph`` with edge dropout applied in training mode (``self.edge_dropout``), after
        checking that its edge types are ``< 2R`` (``self.num_relations`` forward types)."""
        if self.training and self.edge_dropout > 0:
            graph = edge_dropout(graph, self.edge_dropout)
        edge_type = graph.edge_type
        if edge_type.numel() and int(edge_type.max()) >= 2 * self.num_relations:
            raise ValueError(
                f"{type(self).__name__}: edge_type has id {int(edge_type.max())} but the "
                f"encoder was built for num_relations={self.num_relations} "
                f"(2R={2 * self.num_relations} edge types incl. inverses)"
            )
        return graph

    def _check_graph(self, graph: Data) -> tuple[Tensor, Tensor]:
        """``(edge_index, edge_type)`` of ``graph`` after checking its node count (or its
        ``n_id`` when it is a subgraph)."""
        if graph is None or "edge_index" not in graph or "edge_type" not in graph:
            raise ValueError(
                f"{type(self).__name__} needs a message graph with edge_index and edge_type "
                "(e.g. KnowledgeGraph.message_graph()); pass graph= to LinkPredictor"
            )
        n = graph.num_nodes
        n_id = node_ids(graph)
        if n_id is not None:
            if n is None or n_id.dim() != 1 or n_id.numel() != int(n):
                raise ValueError(
                    f"{type(self).__name__}: a subgraph needs n_id [num_nodes] (one global "
                    f"entity id per node), got n_id {tuple(n_id.shape)} and num_nodes={n}"
                )
            if n_id.numel() and (int(n_id.min()) < 0 or int(n_id.max()) >= self.num_entities):
                raise ValueError(
                    f"{type(self).__name__}: subgraph n_id holds ids outside "
                    f"[0, {self.num_entities}); sample it from this encoder's graph"
                )
        elif n is not None and int(n) != self.num_entities:
            raise ValueError(
                f"{type(self).__name__} was built for num_entities={self.num_entities} but the "
                f"graph has num_nodes={int(n)}; build the encoder from the same KnowledgeGraph"
            )
        return graph.edge_index, graph.edge_type

    def _input_rows(self, table: Tensor, graph: Data | None) -> Tensor:
        """``table [N, ·]`` itself, or its rows ``table[n_id]`` ``[n, ·]`` for a subgraph.

        With :attr:`sparse_grad` set (and autograd recording) the rows are looked up with
        ``F.embedding(..., sparse=True)`` (indices ``n_id``, or ``arange(N)`` for a full
        graph), so ``table.grad`` is a sparse ``[N, ·]`` tensor holding only the rows used.
        """
        n_id = node_ids(graph)
        if self.sparse_grad and table.requires_grad and torch.is_grad_enabled():
            idx = (torch.arange(table.shape[0], device=table.device) if n_id is None
                   else n_id.to(table.device))
            return F.embedding(idx, table, sparse=True)
        return table if n_id is None else table.index_select(0, n_id.to(table.device))

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The tables named in :attr:`sparse_tables` (read through :meth:`_input_rows`)."""
        return [self.get_parameter(name) for name in self.sparse_tables]

    def _use_inference(self, graph: Data) -> bool:
        """Whether :meth:`forward` should hand ``graph`` to ``inference`` (see class doc)."""
        return (not self.training and self.inference_batch_size is not None
                and self.layerwise_inference and node_ids(graph) is None)


def node_ids(graph: Data | None) -> Tensor | None:
    """The ``n_id [n]`` of a subgraph (global entity ids of its nodes), ``None`` otherwise."""
    if graph is None or "n_id" not in graph:
        return None
    return graph.n_id


def dst_blocks(edge_index: Tensor, num_nodes: int, batch_size: int
               ) -> Iterator[tuple[int, int, Tensor]]:
    r"""Node batches for layer-wise inference: ``(start, end, edge ids)`` per batch.

    Target nodes ``[start, end)`` (``end - start <= batch_size``) with the ids ``[E_b]`` of
    *all* their incoming edges (``edge_index[1]`` in the range), like PyG's ``NeighborLoader``
    with ``num_neighbors=[-1]`` but without a sampling backend: one stable ``argsort`` of the
    targets (``O(E)`` memory) and a CSR pointer.

    Args:
        edge_index: ``[2, E]``, row 1 the target of each message.
        num_nodes: ``N``.
        batch_size: target nodes per batch (``>= 1``).
    """
    if batch_size < 1:
        raise ValueError(f"inference batch_size must be >= 1, got {batch_size}")
    dst = edge_index[1]
    perm = torch.argsort(dst, stable=True)
    ptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=dst.device)
    ptr[1:] = torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0)
    bounds = ptr.cpu()
    for start in range(0, num_nodes, batch_size):
        end = min(num_nodes, start + batch_size)
        yield start, end, perm[int(bounds[start]):int(bounds[end])]


def edge_dropout(graph: Data, p: float, generator: torch.Generator | None = None) -> Data:
    r"""A copy of ``graph`` where each edge is dropped independently with probability ``p``.

    Used by the GNN encoders in training mode only (the caller checks ``self.training``).
    Keeps ``num_nodes`` and the node attributes of a subgraph (``n_id``, ``node_degree``;
    ``e_id`` is subset with the edges); an edge and its inverse are dropped independently.
    Randomness comes
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
    out = Data(edge_index=graph.edge_index[:, keep], edge_type=edge_type[keep],
               num_nodes=graph.num_nodes)
    for key in ("n_id", "node_degree"):
        if key in graph:
            out[key] = graph[key]
    if "e_id" in graph:
        out.e_id = graph.e_id[keep]
    return out


def make_activation(name: str | None) -> nn.Module:
    """``"relu" | "tanh" | "leaky_relu" | "gelu" | "elu" | "identity"/None`` as a module."""
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU,
            "elu": nn.ELU, "identity": nn.Identity}
    key = "identity" if name is None else name
    if key not in acts:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(acts)}")
    return acts[key]()
