"""``RGCNEncoder`` (registry name ``rgcn``): R-GCN layers from PyG over learned entity inputs."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import FastRGCNConv, RGCNConv
from torch_geometric.utils import scatter

from .base import Encoder, make_activation

log = logging.getLogger(__name__)


class TypedRGCNConv(RGCNConv):
    r"""R-GCN layer with :class:`RGCNConv`'s parameters and math, for graphs with many types.

    Same formula, weights and decompositions as :class:`RGCNConv` (state dicts are
    interchangeable); only the evaluation order differs. Messages are first averaged per
    (target, type) pair, :math:`\mathbf{a}_{i,r} = \frac{1}{c_{i,r}} \sum_{j \in
    \mathcal{N}_r(i)} \mathbf{h}_j` (``[P, d_in]``, ``P <= E`` distinct pairs, sorted by type),
    then each type's contiguous block of pairs is multiplied by :math:`\mathbf{W}_r` and the
    ``[P, d_out]`` result is summed into the targets.

    Memory: one transient ``[E, d_in]`` gather plus ``[P, d_in]`` and ``[P, d_out]`` kept for
    backward, against :class:`RGCNConv`'s ``[N, d]`` aggregate kept per type (``2R · N · d``
    floats per layer; see docs/design-notes.md#encoders-rgcn) and
    :class:`FastRGCNConv`'s ``E · d_in · d_out``. Inputs must be float features.
    """

    def forward(self, x: Tensor | tuple[Tensor, Tensor], edge_index: Tensor,
                edge_type: Tensor) -> Tensor:
        """``x [N, d_in]`` or bipartite ``(x_src [N_src, d_in], x_dst [N_dst, d_in])`` (edges
        ``src → dst`` with ``edge_index[1] < N_dst``, as in layer-wise inference) →
        ``[N_dst, d_out]``."""
        x_src, x_dst = x if isinstance(x, tuple) else (x, x)
        if not torch.is_floating_point(x_src):
            raise ValueError("TypedRGCNConv needs float node features [N, d_in]")
        n = x_dst.size(0)
        src, dst = edge_index
        uniq, pair = torch.unique(edge_type * n + dst, return_inverse=True)  # sorted by type
        pair_type, pair_dst = uniq // n, uniq % n
        reduce = "mean" if self.aggr == "mean" else "sum"
        agg = scatter(x_src.index_select(0, src), pair, 0, dim_size=uniq.numel(), reduce=reduce)
        if self.num_bases is not None and self._basis_first(agg.size(0), n):
            out = self._basis_messages(agg, pair_type, pair_dst, n)
        else:
            out = self._typed_messages(agg, pair_type, pair_dst, n)
        if self.root is not None:
            out = out + x_dst @ self.root
        if self.bias is not None:
            out = out + self.bias
        return out

    # Cost model of the two evaluation orders in multiply-add units, calibrated on CPU with
    # scripts/bench_rgcn_order.py (one layer, forward + backward; 17 shapes from Nations to
    # wikikg2-sized sampled steps, these constants pick the faster order in all of them).
    # Basis-first makes B passes over the [P, d_in] pair aggregates (scale, scatter, and their
    # backward): while they fit in cache (P * d_in <= SCATTER_CACHE_ELEMENTS) an element costs
    # about one multiply-add, beyond it ~20 (memory-bound). Per type, each non-empty type runs
    # a few small kernels (split, matmul, their backward) worth ~1e5 multiply-adds. Counting
    # multiply-adds alone picked basis-first on FB15k-237's train graph, 1.8x slower than per
    # type.
    SCATTER_CACHE_ELEMENTS = 4 * 2**20
    SCATTER_COST = 20
    TYPE_COST = 100_000

    def _basis_first(self, num_pairs: int, n: int) -> bool:
        """Whether combining the pair aggregates per basis first is cheaper than
        materialising the ``2R`` per-type weights and multiplying per type (see the cost
        constants above; the number of non-empty types is bounded by ``min(2R, P)``)."""
        b, d_in, d_out = self.num_bases, self.in_channels_l, self.out_channels
        scatter = self.SCATTER_COST if num_pairs * d_in > self.SCATTER_CACHE_ELEMENTS else 1
        basis_first = scatter * b * num_pairs * d_in + n * b * d_in * d_out
        per_type = (num_pairs * d_in * d_out + self.num_relations * b * d_in * d_out
                    + self.TYPE_COST * min(self.num_relations, num_pairs))
        return basis_first < per_type

    def _basis_messages(self, agg: Tensor, pair_type: Tensor, pair_dst: Tensor,
                        n: int) -> Tensor:
        r"""Basis decomposition evaluated basis-first:
        :math:`\sum_r \mathbf{W}_r \mathbf{a}_{i,r} = \sum_b \mathbf{V}_b^\top
        \mathbf{c}_{i,b}` with :math:`\mathbf{c}_{i,b} = \sum_r a_{rb} \mathbf{a}_{i,r}`
        (``[N, B, d_in]``), then one ``[N, B·d_in] × [B·d_in, d_out]`` product. Costs
        ``B·P·d_in + N·B·d_in·d_out`` instead of ``P·d_in·d_out + 2R·B·d_in·d_out``; on UMLS
        (``P ≈ 10k``, ``N = 135``, ``d = 500``, ``B = 14``) about 5× fewer multiply-adds."""
        nb, d_in = self.num_bases, agg.size(1)
        coef = self.comp.index_select(0, pair_type)  # [P, B]
        comb = torch.stack([scatter(agg * coef[:, b : b + 1], pair_dst, 0, dim_size=n,
                                    reduce="sum") for b in range(nb)], dim=1)
        return comb.reshape(n, nb * d_in) @ self.weight.reshape(nb * d_in, self.out_channels)

    def _typed_messages(self, agg: Tensor, pair_type: Tensor, pair_dst: Tensor,
                        n: int) -> Tensor:
        """Per-type weights ``W_r`` (materialised from the bases or blocks) times each type's
        contiguous block of pair aggregates, summed into the targets: ``[N, d_out]``."""
        num_types = self.num_relations
        sizes = torch.bincount(pair_type, minlength=num_types).tolist()
        weight = self.weight
        if self.num_bases is not None:
            weight = (self.comp @ weight.view(self.num_bases, -1)).view(
                num_types, self.in_channels_l, self.out_channels)
        # split / unbind, not agg[s:e] / weight[r]: their backward writes one full-size
        # gradient per type (2R · P · d floats), split's and unbind's concatenate once.
        parts = []
        for a, w in zip(agg.split(sizes), weight.unbind(0)):
            if a.size(0) == 0:
                continue
            if self.num_blocks is not None:
                b = self.num_blocks
                a = torch.einsum("pbi,bio->pbo", a.view(-1, b, a.size(1) // b), w)
                parts.append(a.reshape(-1, self.out_channels))
            else:
                parts.append(a @ w)
        out = agg.new_zeros(n, self.out_channels)
        if parts:
            out = out + scatter(torch.cat(parts), pair_dst, 0, dim_size=n, reduce="sum")
        return out


_CONVS = {"rgcn": RGCNConv, "fast": FastRGCNConv, "typed": TypedRGCNConv}


class RGCNEncoder(Encoder):
    r"""Relational GCN (Schlichtkrull et al., 2018) over a learned entity embedding table.

    Layer :math:`\ell` (PyG :class:`~torch_geometric.nn.conv.RGCNConv`, ``aggr="mean"``):

    .. math::
        \mathbf{h}_i^{(\ell+1)} = \mathbf{W}_0^{(\ell)} \mathbf{h}_i^{(\ell)}
        + \sum_{r=0}^{2R-1} \sum_{j \in \mathcal{N}_r(i)} \frac{1}{c_{i,r}}
          \mathbf{W}_r^{(\ell)} \mathbf{h}_j^{(\ell)} + \mathbf{b}^{(\ell)},
        \qquad c_{i,r} = |\mathcal{N}_r(i)|,

    with :math:`\mathbf{h}^{(0)} = \mathbf{E}` (the learned ``[N, hidden_dim]`` table), the
    activation and dropout between layers (not after the last one) and ``2R`` relation types
    (inverse edges ``r + R`` have their own :math:`\mathbf{W}_{r+R}`). :math:`\mathbf{W}_0` is
    the self-loop ("root") weight. Decompositions of :math:`\mathbf{W}_r`:

    * basis: :math:`\mathbf{W}_r = \sum_{b=1}^{B} a_{rb} \mathbf{V}_b` (``num_bases=B``);
    * block-diagonal: :math:`\mathbf{W}_r = \operatorname{diag}(\mathbf{Q}_{r1}, \dots,
      \mathbf{Q}_{rB})` (``num_blocks=B``; ``dim`` and ``hidden_dim`` divisible by ``B``).

    Args:
        num_entities: ``N``.
        num_relations: ``R`` forward relations; the convolutions see ``2R`` edge types.
        dim: output size ``d``.
        num_layers: number of R-GCN layers (``>= 1``).
        hidden_dim: size of the input table and of the hidden layers (default ``d``).
        conv: ``"rgcn"`` (:class:`RGCNConv`, loops over the ``2R`` types and keeps an
            ``[N, d]`` aggregate per type for backward: ``2R · N · d`` floats per layer, fine
            for UMLS, > 12 GB at ``d = 64`` for FB15k-237) or ``"fast"`` (:class:`FastRGCNConv`, one
            batched matmul over edges but it materialises ``W[edge_type]`` — ``E · d_in · d_out``
            floats without blocks, e.g. 87 GB for FB15k-237 at ``d = 200``; use it with
            ``num_blocks`` or on small graphs) or ``"typed"`` (:class:`TypedRGCNConv`, same
            weights, aggregates per (target, type) pair first: ``O((E + P) d)`` memory; the
            choice for FB15k-237-sized graphs).
        num_bases, num_blocks: weight decomposition (at most one of them).
        self_loop: add the root weight :math:`\mathbf{W}_0 \mathbf{h}_i`.
        aggr: ``"mean"`` (:math:`1 / c_{i,r}`, the paper's normalisation) or ``"add"``.
        bias: learn an additive bias per layer.
        activation: between layers (``"relu"``, ``"tanh"``, ...).
        dropout: feature dropout between layers (training only).
        edge_dropout: probability of dropping each message edge, training only.
        init: input table initialisation, ``"xavier"`` (uniform) or ``"normal"`` (std
            ``init_std``).

    Shapes: ``graph.edge_index [2, E]``, ``graph.edge_type [E]`` in ``[0, 2R)`` →
    ``(ent [N, d], None)``; a subgraph with ``n_id [n]`` (neighbour sampling) →
    ``(ent [n, d], None)``, its input rows taken from the table by ``n_id``.

    Sampled subgraphs: with ``aggr="mean"`` the per-(target, type) average over the sampled
    neighbours estimates the full one (exact when every in-edge is sampled); ``aggr="add"``
    sums the sampled neighbours only. :meth:`inference` computes the full-graph output
    layer by layer in node batches (equal to :meth:`forward` in eval mode).
    """

    provides_relations = False
    layerwise_inference = True
    #: read through ``_input_rows``: sparse gradients with ``train.sparse_embeddings``
    sparse_tables = ("entity",)

    def __init__(
        self, *, num_entities: int, num_relations: int, dim: int, num_layers: int = 2,
        hidden_dim: int | None = None, conv: str = "rgcn", num_bases: int | None = None,
        num_blocks: int | None = None, self_loop: bool = True, aggr: str = "mean",
        bias: bool = True, activation: str = "relu", dropout: float = 0.0,
        edge_dropout: float = 0.0, init: str = "xavier", init_std: float = 0.1,
    ) -> None:
        super().__init__(num_entities=num_entities, dim=dim)
        if conv not in _CONVS:
            raise ValueError(f"RGCNEncoder: conv must be one of {sorted(_CONVS)}, got {conv!r}")
        if num_layers < 1:
            raise ValueError(f"RGCNEncoder: num_layers must be >= 1, got {num_layers}")
        if num_bases is not None and num_blocks is not None:
            raise ValueError("RGCNEncoder: give num_bases or num_blocks, not both")
        if init not in ("xavier", "normal"):
            raise ValueError(f"RGCNEncoder: init must be 'xavier' or 'normal', got {init!r}")
        if aggr not in ("mean", "add"):
            raise ValueError(f"RGCNEncoder: aggr must be 'mean' or 'add', got {aggr!r}")
        self.num_relations = int(num_relations)
        self.num_layers = int(num_layers)
        self.hidden_dim = int(hidden_dim if hidden_dim is not None else dim)
        self.conv_name = conv
        if num_blocks is not None:
            bad = [s for s in (self.hidden_dim, self.dim) if s % num_blocks]
            if bad:
                raise ValueError(
                    f"RGCNEncoder: num_blocks={num_blocks} must divide hidden_dim="
                    f"{self.hidden_dim} and dim={self.dim}"
                )
        self.dropout = float(dropout)
        self.edge_dropout = float(edge_dropout)
        self.init = init
        self.init_std = float(init_std)
        self.entity = nn.Parameter(torch.empty(self.num_entities, self.hidden_dim))
        sizes = [self.hidden_dim] * self.num_layers + [self.dim]
        self.convs = nn.ModuleList(
            _CONVS[conv](sizes[i], sizes[i + 1], 2 * self.num_relations, num_bases=num_bases,
                         num_blocks=num_blocks, aggr=aggr, root_weight=self_loop, bias=bias)
            for i in range(self.num_layers)
        )
        self.act = make_activation(activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "xavier":
            nn.init.xavier_uniform_(self.entity)
        else:
            nn.init.normal_(self.entity, std=self.init_std)
        for conv in self.convs:
            conv.reset_parameters()

    def encode(self, graph: Data) -> tuple[Tensor, None]:
        """``(ent [N, d], None)`` from ``graph`` (checked, edge dropout applied by
        :meth:`Encoder.forward`); ``(ent [n, d], None)`` for a subgraph carrying ``n_id [n]``."""
        edge_index, edge_type = graph.edge_index, graph.edge_type
        if self.conv_name == "fast" and self.convs[0].num_blocks is None:
            gib = edge_type.numel() * self.hidden_dim * max(self.hidden_dim, self.dim) * 4 / 2**30
            if gib > 4:
                log.warning("FastRGCNConv will materialise W[edge_type] (~%.0f GiB); use "
                            "conv='rgcn' or num_blocks on a graph this large", gib)
        x = self._input_rows(self.entity, graph)
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index, edge_type)
            if i < self.num_layers - 1:
                x = F.dropout(self.act(x), self.dropout, self.training)
        return x, None

    @torch.no_grad()
    def inference(self, graph: Data, batch_size: int = 4096) -> tuple[Tensor, None]:
        r"""Full-graph output ``(ent [N, d], None)`` computed layer by layer in node batches.

        Layer :math:`\ell` is computed for all ``N`` nodes, ``batch_size`` target nodes at a
        time from *all* their incoming edges (:func:`~gnn_inn.encoders.base.dst_blocks`),
        before layer :math:`\ell + 1` starts — PyG's ``inference`` pattern. Equals
        :meth:`forward` in eval mode (no dropout, no edge dropout) up to float rounding; peak
        memory is two ``[N, d]`` tables plus one batch's ``[E_b, d]`` messages instead of a
        full pass's ``O(E · d)``. No gradient (evaluation only).

        Args:
            graph: the full message graph (``edge_index [2, E]``, ``edge_type [E]``).
            batch_size: target nodes per batch.
        """
        _, blocks = self._inference_blocks(graph, batch_size)
        x = self.entity
        for i, conv in enumerate(self.convs):
            out = x.new_empty(self.num_entities, conv.out_channels)
            for start, end, _, local, types in blocks:
                out[start:end] = conv((x, x[start:end]), local, types)
            x = self.act(out) if i < self.num_layers - 1 else out
        return x, None

    def extra_repr(self) -> str:
        return (f"{self.num_entities}, {self.dim}, num_relations={self.num_relations}, "
                f"conv={self.conv_name}, num_layers={self.num_layers}, dropout={self.dropout:g}, "
                f"edge_dropout={self.edge_dropout:g}")
