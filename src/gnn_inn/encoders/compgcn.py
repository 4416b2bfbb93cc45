r"""``CompGCNConv`` and ``CompGCNEncoder`` (registry name ``compgcn``).

CompGCN jointly embeds entities and relations: a message is a *composition*
:math:`\phi(\mathbf{x}_u, \mathbf{z}_r)` of the neighbour's embedding and the edge's relation
embedding, transformed by a direction-specific weight. The direction weight and the per-edge
normalisation are linear, so

.. math::
    \sum_{(u, r) \in \mathcal{N}_\lambda(v)} \alpha_{uv} \mathbf{W}_\lambda \phi(\mathbf{x}_u,
    \mathbf{z}_r) = \mathbf{W}_\lambda \sum_{(u, r) \in \mathcal{N}_\lambda(v)} \alpha_{uv}
    \phi(\mathbf{x}_u, \mathbf{z}_r).

Each layer builds **one** ``[E, d_in]`` message tensor for both directions, scatters it into
a ``[2N, d_in]`` buffer (row ``v`` for original edges, ``N + v`` for inverse edges) and
applies :math:`\mathbf{W}_O` / :math:`\mathbf{W}_I` to the two ``[N, d_in]`` halves. ``corr``
composes in the Fourier domain: ``rfft`` of the ``[N, d]`` entity and ``[2R, d]`` relation
tables, an ``[E, d/2 + 1]`` complex product, a scatter, one ``irfft``.

Measurements and design notes: docs/design-notes.md#encoders-compgcn

References
----------
Vashishth et al., "Composition-based multi-relational graph convolutional networks",
ICLR 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from .base import Encoder, make_activation

COMPOSITIONS = ("sub", "mult", "corr")
NORMS = ("paper", "sym", "mean", "none")


def ccorr(a: Tensor, b: Tensor) -> Tensor:
    r"""Circular correlation along the last dimension.

    .. math::
        (\mathbf{a} \star \mathbf{b})_k = \sum_{i=0}^{d-1} a_i \, b_{(i + k) \bmod d}
        = \mathcal{F}^{-1}\big(\overline{\mathcal{F}(\mathbf{a})} \odot
          \mathcal{F}(\mathbf{b})\big)_k,

    the convention of the CompGCN (and HolE) reference code, ``ccorr(a, b) =
    irfft(conj(rfft(a)) * rfft(b))`` with ``a`` the entity and ``b`` the relation. Broadcasts
    like ``a * b``. Not symmetric: ``ccorr(a, b)[k] = ccorr(b, a)[-k mod d]``.
    """
    d = a.size(-1)
    return torch.fft.irfft(torch.conj(torch.fft.rfft(a, dim=-1)) * torch.fft.rfft(b, dim=-1),
                           n=d, dim=-1)


def compose(x: Tensor, r: Tensor, op: str) -> Tensor:
    r""":math:`\phi(\mathbf{x}, \mathbf{z})`: ``"sub"`` :math:`x - z`, ``"mult"`` :math:`x \odot z`,
    ``"corr"`` :func:`ccorr` ``(x, z)``; real tensors broadcasting like ``x * r``."""
    if op == "sub":
        return x - r
    if op == "mult":
        return x * r
    if op == "corr":
        return ccorr(x, r)
    raise ValueError(f"unknown composition {op!r}; known: {COMPOSITIONS}")


class CompGCNConv(MessagePassing):
    r"""One CompGCN layer with direction-specific weights and a relation update.

    .. math::
        \mathbf{m}_v^{\lambda} &= \sum_{(u, r) \in \mathcal{N}_\lambda(v)} \alpha_{uv}^{\lambda}
            \, \phi(\mathbf{x}_u, \mathbf{z}_r), \qquad \lambda \in \{O, I\}, \\
        \mathbf{x}_v' &= \sigma\Big(\operatorname{BN}\Big(\tfrac13\big[
            \operatorname{drop}(\mathbf{m}_v^{O} \mathbf{W}_O)
            + \operatorname{drop}(\mathbf{m}_v^{I} \mathbf{W}_I)
            + \phi(\mathbf{x}_v, \mathbf{z}_{\text{loop}}) \mathbf{W}_S\big]
            + \mathbf{b}\Big)\Big), \\
        \mathbf{z}_r' &= \mathbf{z}_r \mathbf{W}_{\text{rel}},

    where an edge ``u → v`` of type ``r`` (``edge_index[:, e] = (u, v)``) belongs to direction
    :math:`O` (original) if ``r < R`` and :math:`I` (inverse) if ``r >= R``,
    :math:`\mathbf{z}_{\text{loop}}` is a learned self-loop relation and :math:`\phi` the
    composition (:func:`compose`). The 1/3 averaging, the dropout on the two neighbour terms
    only, batch norm before the activation and ``z' = z W_rel`` follow the reference code.

    Normalisation :math:`\alpha^{\lambda}_{uv}`, computed per direction with
    :math:`D_\lambda(v)` = number of direction-:math:`\lambda` edges into ``v``:

    * ``"paper"`` (reference code): :math:`D_\lambda(v)^{-1/2} D_\lambda(u)^{-1/2}`, with
      :math:`0^{-1/2} := 0` — a message from a node with no incoming edge of the same
      direction is dropped (a quirk of the reference code, kept for fidelity);
    * ``"sym"``: :math:`D_\lambda(v)^{-1/2} D^{\text{out}}_\lambda(u)^{-1/2}` with
      :math:`D^{\text{out}}_\lambda(u)` the number of direction-:math:`\lambda` edges out of
      ``u`` (the directed GCN norm; never zero on an existing edge);
    * ``"mean"``: :math:`1 / D_\lambda(v)`;  ``"none"``: 1.

    Args:
        in_channels: ``d_in``.  out_channels: ``d_out``.
        num_relations: ``R`` forward relations; edge types lie in ``[0, 2R)``.
        composition: ``"corr"`` (default), ``"sub"`` or ``"mult"``.
        norm: see above (default ``"paper"``).
        dropout: dropout on the two transformed neighbour aggregates (training only).
        bias: learn :math:`\mathbf{b}`.
        batch_norm: apply ``BatchNorm1d(d_out)`` over the ``N`` entities.
        activation: :math:`\sigma` (default ``"tanh"``).

    Shapes: ``x [N, d_in]``, ``edge_index [2, E]``, ``edge_type [E]``, ``rel [2R, d_in]`` →
    ``(x' [N, d_out], rel' [2R, d_out])``. See the module docstring for memory.
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_relations: int, *,
        composition: str = "corr", norm: str = "paper", dropout: float = 0.0,
        bias: bool = False, batch_norm: bool = True, activation: str | None = "tanh",
    ) -> None:
        super().__init__(aggr="sum", node_dim=0)
        if composition not in COMPOSITIONS:
            raise ValueError(f"CompGCNConv: composition must be one of {COMPOSITIONS}, "
                             f"got {composition!r}")
        if norm not in NORMS:
            raise ValueError(f"CompGCNConv: norm must be one of {NORMS}, got {norm!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.num_relations = int(num_relations)
        self.composition = composition
        self.norm = norm
        self.dropout = float(dropout)
        self.activation = activation
        self.w_out = nn.Parameter(torch.empty(in_channels, out_channels))   # W_O, types < R
        self.w_in = nn.Parameter(torch.empty(in_channels, out_channels))    # W_I, types >= R
        self.w_loop = nn.Parameter(torch.empty(in_channels, out_channels))  # W_S
        self.w_rel = nn.Parameter(torch.empty(in_channels, out_channels))
        self.loop_rel = nn.Parameter(torch.empty(1, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.bn = nn.BatchNorm1d(out_channels) if batch_norm else None
        self.act = make_activation(activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for w in (self.w_out, self.w_in, self.w_loop, self.w_rel, self.loop_rel):
            nn.init.xavier_normal_(w)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if self.bn is not None:
            self.bn.reset_parameters()

    # ------------------------------------------------------------------ norm
    def edge_norm(self, edge_index: Tensor, direction: Tensor, num_nodes: int,
                  node_degree: Tensor | None = None) -> Tensor | None:
        r"""Per-edge :math:`\alpha^{\lambda}_{uv}` ``[E]`` (``None`` for ``norm="none"``
        without ``node_degree``).

        ``node_degree [num_nodes, 4]`` (float), given for a neighbour-sampled subgraph, holds
        each node's *full-graph* in-degree (directions O, I) and out-degree (O, I). The degrees
        of the norm are then taken from it, and each edge into ``v`` is scaled by
        :math:`D_\lambda(v) / S_\lambda(v)` (``S`` = sampled in-edges of ``v`` in
        ``edge_index``), so the sampled sum estimates the full one and equals it when every
        in-edge of ``v`` was sampled. Without it, the degrees are counted in ``edge_index``
        (full-batch behaviour).
        """
        src, dst = edge_index
        shift = direction * num_nodes
        ones = torch.ones(dst.numel(), dtype=torch.float, device=dst.device)
        if node_degree is not None:
            deg = node_degree.to(dst.device, torch.float)
            sampled = scatter(ones, dst + shift, 0, dim_size=2 * num_nodes, reduce="sum")
            if self.norm == "mean":
                return sampled[dst + shift].reciprocal()
            full_in = deg[:, :2].t().reshape(-1)  # [2N]: row v (direction O), N + v (I)
            scale = full_in[dst + shift] / sampled[dst + shift]
            if self.norm == "none":
                return scale
            d_src = full_in if self.norm == "paper" else deg[:, 2:].t().reshape(-1)
            inv_in = full_in.pow(-0.5).masked_fill_(full_in == 0, 0.0)
            inv_src = d_src.pow(-0.5).masked_fill_(d_src == 0, 0.0)
            return inv_in[dst + shift] * inv_src[src + shift] * scale
        if self.norm == "none":
            return None
        deg_in = scatter(ones, dst + shift, 0, dim_size=2 * num_nodes, reduce="sum")
        if self.norm == "mean":
            return deg_in[dst + shift].reciprocal()
        if self.norm == "paper":
            d_src = deg_in
        else:
            d_src = scatter(ones, src + shift, 0, dim_size=2 * num_nodes, reduce="sum")
        inv_in = deg_in.pow(-0.5).masked_fill_(deg_in == 0, 0.0)
        inv_src = d_src.pow(-0.5).masked_fill_(d_src == 0, 0.0)
        return inv_in[dst + shift] * inv_src[src + shift]

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, edge_index: Tensor, edge_type: Tensor,
                rel: Tensor, node_degree: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x' [N, d_out], rel' [2R, d_out])``; see the class docstring and
        :meth:`edge_norm` for ``node_degree [N, 4]`` (sampled subgraphs)."""
        n = x.size(0)
        direction = (edge_type >= self.num_relations).long()
        norm = self.edge_norm(edge_index, direction, n, node_degree)
        if norm is not None:
            norm = norm.to(x.dtype)
        xs, rs = self.spectral(x), self.spectral(rel)
        agg = self.aggregate_messages(xs, rs, edge_index, edge_type, direction, norm, n)
        return self.update_nodes(agg, x), rel @ self.w_rel

    def spectral(self, x: Tensor) -> Tensor:
        """``rfft(x)`` ``[·, d/2 + 1]`` for ``corr`` (composition in the Fourier domain), else
        ``x`` itself."""
        return torch.fft.rfft(x, dim=-1) if self.composition == "corr" else x

    def aggregate_messages(self, xs: Tensor, rs: Tensor, edge_index: Tensor, edge_type: Tensor,
                           direction: Tensor, norm: Tensor | None, num_dst: int) -> Tensor:
        r"""Normalised composed messages summed per target and direction: ``[2 N_dst, d_in]``
        (row ``v`` original edges, ``N_dst + v`` inverse edges), back in the real domain.

        ``xs [N_src, ·]`` and ``rs [2R, ·]`` come from :meth:`spectral`; ``edge_index[1]``
        indexes ``[0, N_dst)`` (a node batch in layer-wise inference, or all nodes).
        """
        agg = self.propagate(edge_index, x=xs, rel=rs, edge_type=edge_type, norm=norm,
                             direction=direction, size=(xs.size(0), num_dst))
        if self.composition == "corr":
            agg = torch.fft.irfft(agg, n=self.in_channels, dim=-1)
        return agg

    def update_nodes(self, agg: Tensor, x_dst: Tensor) -> Tensor:
        r"""``x' [N_dst, d_out]`` from the aggregate ``[2 N_dst, d_in]`` and the targets' own
        features ``x_dst [N_dst, d_in]`` (self-loop term, bias, batch norm, activation)."""
        n = x_dst.size(0)
        m_o, m_i = agg[:n], agg[n:]
        out = (F.dropout(m_o @ self.w_out, self.dropout, self.training)
               + F.dropout(m_i @ self.w_in, self.dropout, self.training)
               + compose(x_dst, self.loop_rel, self.composition) @ self.w_loop) / 3.0
        if self.bias is not None:
            out = out + self.bias
        if self.bn is not None:
            out = self.bn(out)
        return self.act(out)

    def message(self, x: Tensor, rel: Tensor, edge_index_j: Tensor, edge_type: Tensor,
                norm: Tensor | None) -> Tensor:
        # Gathered here (not via PyG's ``x_j`` lifting) so that ``x_j`` is known to be a fresh
        # tensor and may be updated in place: "sub" then holds two E × d tensors at its peak.
        x_j = x.index_select(0, edge_index_j)
        r = rel.index_select(0, edge_type)
        if self.composition == "sub":
            m = x_j.sub_(r)  # sub keeps nothing for backward
        elif self.composition == "mult":
            m = x_j * r  # keeps x_j and r for backward
        else:  # Fourier domain: F(ccorr(x, r)) = conj(F(x)) * F(r)
            m = torch.conj(x_j) * r
        del x_j, r
        return m if norm is None else m.mul_(norm.unsqueeze(-1))

    def aggregate(self, inputs: Tensor, index: Tensor, direction: Tensor,
                  dim_size: int | None = None) -> Tensor:
        """Sum into ``[2N, ·]``: row ``v`` (original edges) or ``N + v`` (inverse edges)."""
        assert dim_size is not None
        return scatter(inputs, index + direction * dim_size, 0, dim_size=2 * dim_size,
                       reduce="sum")

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_relations={self.num_relations}, composition={self.composition}, "
                f"norm={self.norm})")


class CompGCNEncoder(Encoder):
    r"""CompGCN encoder: a stack of :class:`CompGCNConv` over learned entity and relation tables.

    .. math::
        (\mathbf{X}^{(\ell+1)}, \mathbf{Z}^{(\ell+1)}) =
            \operatorname{CompGCNConv}_\ell(\mathbf{X}^{(\ell)}, \mathbf{Z}^{(\ell)}),
        \quad \mathbf{X}^{(\ell+1)} \leftarrow \operatorname{drop}(\mathbf{X}^{(\ell+1)}),

    with :math:`\mathbf{X}^{(0)} = \mathbf{E}` ``[N, input_dim]`` and
    :math:`\mathbf{Z}^{(0)}` ``[2R, input_dim]`` either a free table or, with ``num_bases=B``,
    :math:`\mathbf{Z}^{(0)} = \mathbf{A} \mathbf{V}` (coefficients ``A [2R, B]``, basis vectors
    ``V [B, input_dim]``) as in the paper. The hidden dropout follows every layer (reference
    code ``hid_drop``). With ``residual=True`` the input table skips the stack,
    :math:`\mathbf{X} = \mathbf{X}^{(L)} + \mathbf{E}` (needs ``input_dim == dim``): every
    entity keeps a free embedding of its own and the layers learn what the neighbourhood adds
    to it, so the plain lookup table is the special case of zero layer output.

    Args:
        num_entities: ``N``.  num_relations: ``R`` (the graph has ``2R`` edge types).
        dim: output entity (and relation) size ``d``.
        num_layers: number of layers (``>= 1``).
        hidden_dim: size of the hidden layers (default ``d``).
        input_dim: size of the input tables (default ``hidden_dim``).
        composition: ``"corr"`` | ``"sub"`` | ``"mult"``.
        norm: edge normalisation, see :class:`CompGCNConv` (default ``"paper"``).
        num_bases: basis relations for the input relation table (``None``: free table).
        dropout: in-layer dropout on the neighbour aggregates.
        hidden_dropout: dropout on each layer's entity output.
        edge_dropout: drop probability per message edge, training only.
        batch_norm, bias, activation: per layer, see :class:`CompGCNConv`.
        rel_dim: if set and ``!= d``, a final linear map ``d → rel_dim`` of the relation output
            (for decoders whose relation parameters have another size).
        residual: add the input entity table to the last layer's output (see above).

    Shapes: ``graph.edge_index [2, E]``, ``graph.edge_type [E]`` in ``[0, 2R)`` →
    ``(ent [N, d], rel [2R, rel_dim or d])``; a subgraph with ``n_id [n]`` (neighbour
    sampling) → ``(ent [n, d], rel)``, its input rows taken from the table by ``n_id`` and,
    when it carries ``node_degree [n, 4]``, normalised with full-graph degrees (see
    :meth:`CompGCNConv.edge_norm`). Batch norm in training mode normalises over the graph it
    is given, i.e. over the subgraph's nodes when sampling. :meth:`inference` computes the
    full-graph output layer by layer in node batches (equal to :meth:`forward` in eval mode).
    """

    provides_relations = True
    layerwise_inference = True
    sparse_tables = ("entity",)
    #: neighbour samplers attach full-graph degrees (``node_degree``) for the edge norms
    uses_node_degree = True

    def __init__(
        self, *, num_entities: int, num_relations: int, dim: int, num_layers: int = 2,
        hidden_dim: int | None = None, input_dim: int | None = None,
        composition: str = "corr", norm: str = "paper", num_bases: int | None = None,
        dropout: float = 0.1, hidden_dropout: float = 0.3, edge_dropout: float = 0.0,
        batch_norm: bool = True, bias: bool = False, activation: str | None = "tanh",
        rel_dim: int | None = None, residual: bool = False,
    ) -> None:
        super().__init__(num_entities=num_entities, dim=dim,
                         rel_dim=rel_dim if rel_dim is not None else dim)
        if num_layers < 1:
            raise ValueError(f"CompGCNEncoder: num_layers must be >= 1, got {num_layers}")
        if num_bases is not None and num_bases < 1:
            raise ValueError(f"CompGCNEncoder: num_bases must be >= 1 or None, got {num_bases}")
        self.num_relations = int(num_relations)
        self.num_layers = int(num_layers)
        self.hidden_dim = int(hidden_dim if hidden_dim is not None else dim)
        self.input_dim = int(input_dim if input_dim is not None else self.hidden_dim)
        self.composition = composition
        self.num_bases = num_bases
        self.hidden_dropout = float(hidden_dropout)
        self.edge_dropout = float(edge_dropout)
        self.residual = bool(residual)
        if self.residual and self.input_dim != self.dim:
            raise ValueError(f"CompGCNEncoder: residual=True adds the input table to the output, "
                             f"so input_dim ({self.input_dim}) must equal dim ({self.dim})")
        self.entity = nn.Parameter(torch.empty(self.num_entities, self.input_dim))
        if num_bases is None:
            self.relation = nn.Parameter(torch.empty(2 * self.num_relations, self.input_dim))
            self.register_parameter("rel_basis", None)
            self.register_parameter("rel_coef", None)
        else:
            self.register_parameter("relation", None)
            self.rel_basis = nn.Parameter(torch.empty(num_bases, self.input_dim))
            self.rel_coef = nn.Parameter(torch.empty(2 * self.num_relations, num_bases))
        sizes = [self.input_dim] + [self.hidden_dim] * (self.num_layers - 1) + [self.dim]
        self.convs = nn.ModuleList(
            CompGCNConv(sizes[i], sizes[i + 1], self.num_relations, composition=composition,
                        norm=norm, dropout=dropout, bias=bias, batch_norm=batch_norm,
                        activation=activation)
            for i in range(self.num_layers)
        )
        self.rel_proj = (nn.Linear(self.dim, self.rel_dim, bias=False)
                         if self.rel_dim != self.dim else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.entity, self.relation, self.rel_basis, self.rel_coef):
            if p is not None:
                nn.init.xavier_normal_(p)
        for conv in self.convs:
            conv.reset_parameters()
        if self.rel_proj is not None:
            self.rel_proj.reset_parameters()

    def input_relations(self) -> Tensor:
        """:math:`\\mathbf{Z}^{(0)}` ``[2R, input_dim]`` (table or basis combination)."""
        if self.relation is not None:
            return self.relation
        return self.rel_coef @ self.rel_basis

    def encode(self, graph: Data) -> tuple[Tensor, Tensor]:
        """``(ent [N, d], rel [2R, rel_dim])`` (graph checked, edge dropout applied by
        :meth:`Encoder.forward`); ``(ent [n, d], rel)`` for a subgraph carrying ``n_id [n]``."""
        edge_index, edge_type = graph.edge_index, graph.edge_type
        x, r = self._input_rows(self.entity, graph), self.input_relations()
        x0 = x
        degree = graph.node_degree if "node_degree" in graph else None
        for conv in self.convs:
            x, r = conv(x, edge_index, edge_type, r, node_degree=degree)
            x = F.dropout(x, self.hidden_dropout, self.training)
        if self.residual:
            x = x + x0
        if self.rel_proj is not None:
            r = self.rel_proj(r)
        return x, r

    @torch.no_grad()
    def inference(self, graph: Data, batch_size: int = 4096) -> tuple[Tensor, Tensor]:
        r"""Full-graph output ``(ent [N, d], rel [2R, rel_dim])`` layer by layer in node batches.

        Per layer: the edge norms of the whole graph (``[E]``, as :meth:`forward` computes
        them), the layer's spectral tables once, then ``batch_size`` target nodes at a time
        from all their incoming edges (:func:`~gnn_inn.encoders.base.dst_blocks`). Equals
        :meth:`forward` in eval mode (batch norm uses its running statistics, which are per
        node) up to float rounding; memory two ``[N, d]`` tables plus one batch's messages.
        Meant for evaluation (no gradient; call it on a module in eval mode).
        """
        if self.training:
            raise RuntimeError("CompGCNEncoder.inference: call it in eval mode (batch norm "
                               "would otherwise normalise each node batch separately)")
        n = self.num_entities
        edge_type, blocks = self._inference_blocks(graph, batch_size)
        edge_index = graph.edge_index
        direction = (edge_type >= self.num_relations).long()
        x, r = self.entity, self.input_relations()
        norm_all: Tensor | None = None
        for i, conv in enumerate(self.convs):
            if i == 0 or conv.norm != self.convs[i - 1].norm:
                norm_all = conv.edge_norm(edge_index, direction, n)
            xs, rs = conv.spectral(x), conv.spectral(r)
            out = x.new_empty(n, conv.out_channels)
            for start, end, eids, local, types in blocks:
                norm = None if norm_all is None else norm_all.index_select(0, eids).to(x.dtype)
                agg = conv.aggregate_messages(xs, rs, local, types,
                                              direction.index_select(0, eids), norm, end - start)
                out[start:end] = conv.update_nodes(agg, x[start:end])
            x, r = out, r @ conv.w_rel
        if self.residual:
            x = x + self.entity
        if self.rel_proj is not None:
            r = self.rel_proj(r)
        return x, r

    def extra_repr(self) -> str:
        return (f"{self.num_entities}, {self.dim}, num_relations={self.num_relations}, "
                f"num_layers={self.num_layers}, num_bases={self.num_bases}, "
                f"hidden_dropout={self.hidden_dropout:g}, edge_dropout={self.edge_dropout:g}"
                + (", residual=True" if self.residual else ""))
