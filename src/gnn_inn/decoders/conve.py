r"""``ConvE`` (registry name ``conve``): a 2-D convolution over the stacked head and relation.

ConvE (Dettmers et al., AAAI 2018) is the decoder of the best CompGCN results (Vashishth et al.,
ICLR 2020, "CompGCN + ConvE"). It is not invertible and has no closed-form head query, so head
queries ``(?, r, t)`` are answered as tail queries of the reciprocal relation ``r + R``
(:attr:`ConvE.uses_reciprocal`): the own relation table has ``2R`` rows, and an encoder's
``[2R, d]`` relation output (CompGCN: inverse relations at ``r + R``) is indexed the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Decoder, dot_all, dot_pairs


def _factor(dim: int) -> tuple[int, int]:
    """``(k_h, k_w)`` with ``k_h · k_w = dim``, ``k_w`` the largest divisor ``<= √dim``."""
    k_w = max(w for w in range(1, int(dim**0.5) + 1) if dim % w == 0)
    return dim // k_w, k_w


class ConvE(Decoder):
    r"""ConvE (Dettmers et al., 2018):

    .. math::
        s(h, r, t) = \operatorname{ReLU}\Big(\operatorname{BN}\big(\operatorname{drop}_{hid}
            \big(\operatorname{vec}(\operatorname{drop}_{feat}(\operatorname{ReLU}(
            \operatorname{BN}(\operatorname{drop}_{in}(\operatorname{BN}(
            [\bar{\mathbf{e}}_h; \bar{\mathbf{w}}_r])) * \omega))))\, \mathbf{W}\big)\big)\Big)
            \cdot \mathbf{e}_t + b_t,

    where :math:`\bar{\mathbf{e}}_h, \bar{\mathbf{w}}_r \in \mathbb{R}^{k_h \times k_w}` are the
    head and relation vectors reshaped to images (``k_h · k_w = d``), stacked along the height
    to one ``[2 k_h, k_w]`` image, :math:`*\,\omega` a ``Conv2d`` with ``num_filters`` filters of
    size ``kernel_size`` (no padding, stride 1), :math:`\mathbf{W}` a linear map of the
    flattened feature maps to ``ℝ^d`` and :math:`b_t` a learned per-entity bias.

    Query map + similarity: the tail query is the ``d``-vector left of :math:`\cdot`; the head
    query ``(?, r, t)`` is the same map applied to :math:`(\mathbf{e}_t, \mathbf{w}_{r+R})`
    (reciprocal relation); the similarity is :math:`\mathbf{q} \cdot \mathbf{e} + b_e`, one
    ``[B, d] × [d, N]`` product for all entities.

    Layer order follows the ConvE reference code: batch norm, then input dropout on the
    stacked image (the original code meant ``bn0 → inp_drop``); convolution, batch norm, ReLU,
    feature-map dropout; linear map, hidden dropout, batch norm, ReLU. In training mode a batch
    of a single query uses the batch norms' running statistics (batch statistics of one sample
    are undefined).

    Defaults (``d = 200``) are those of the CompGCN code for FB15k-237: ``k_w = 10``,
    ``k_h = 20``, ``num_filters = 200``, ``kernel_size = 7``, ``feature_dropout = 0.3``
    (``feat_drop``), ``hidden_dropout = 0.3`` (``hid_drop2``). CompGCN applies no dropout to
    the stacked image (its encoder already drops entity features); ``input_dropout = 0.2`` is
    ConvE's own value for a lookup-table model — set it to 0 to mirror CompGCN exactly. The
    image is ConvE's plain stacking; the CompGCN code instead interleaves the two vectors
    element by element into a ``[2 k_w, k_h]`` image (same sizes, different neighbourhoods).

    Args:
        num_relations: ``R`` forward relations (own table ``[2R, d]``).
        dim: ``d = k_h · k_w``.
        num_entities: ``N``, size of the per-entity bias (required when ``entity_bias``;
            :func:`gnn_inn.model.build_model` passes it).
        k_h, k_w: image height and width of one embedding; ``None`` picks the most square
            factorisation with ``k_h >= k_w`` (``d = 200`` → ``20 × 10``), one given → the
            other is ``d`` divided by it.
        num_filters: convolution output channels.
        kernel_size: ``int`` or ``(height, width)``; must fit into the ``[2 k_h, k_w]`` image.
        input_dropout, feature_dropout, hidden_dropout: dropout on the stacked image, on the
            feature maps (element-wise, as the reference code) and on the ``d``-vector.
        conv_bias: bias of the convolution (redundant before batch norm; CompGCN omits it).
        entity_bias: learn :math:`b_e` (initialised to 0).
        relation_source: ``"own"`` or ``"encoder"`` (``rel [2R, d]``, inverses at ``r + R``).

    Shapes: ``ent [N, d]``, ``rel [2R, d] | None``, ``h, r, t: LongTensor[B]`` → queries
    ``[B, d]``, ``score_tails / score_heads [B, N]``.
    """

    uses_reciprocal = True
    head_queries = "reciprocal"
    batch_statistics = True

    def __init__(
        self, *, num_relations: int, dim: int, num_entities: int | None = None,
        k_h: int | None = None, k_w: int | None = None, num_filters: int = 200,
        kernel_size: int | tuple[int, int] = 7, input_dropout: float = 0.2,
        feature_dropout: float = 0.3, hidden_dropout: float = 0.3, conv_bias: bool = True,
        entity_bias: bool = True, relation_source: str = "own",
    ) -> None:
        if k_h is None and k_w is None:
            k_h, k_w = _factor(int(dim))
        elif k_h is None or k_w is None:
            given = k_w if k_h is None else k_h
            if given < 1 or dim % given:
                raise ValueError(f"ConvE: {'k_w' if k_h is None else 'k_h'}={given} does not "
                                 f"divide dim={dim}")
            k_h, k_w = (dim // given, given) if k_h is None else (given, dim // given)
        if k_h < 1 or k_w < 1 or k_h * k_w != dim:
            raise ValueError(f"ConvE: k_h * k_w must equal dim, got k_h={k_h}, k_w={k_w} "
                             f"(product {k_h * k_w}) for dim={dim}")
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if not (1 <= kh <= 2 * k_h and 1 <= kw <= k_w):
            raise ValueError(f"ConvE: kernel_size ({kh}, {kw}) does not fit the stacked "
                             f"[2*k_h, k_w] = [{2 * k_h}, {k_w}] image; use a smaller kernel or "
                             "other k_h, k_w")
        if entity_bias and num_entities is None:
            raise ValueError("ConvE: num_entities is required for the per-entity bias "
                             "(or set entity_bias=False)")
        super().__init__(num_relations=num_relations, dim=dim, relation_source=relation_source)
        self.num_entities = None if num_entities is None else int(num_entities)
        self.k_h, self.k_w = int(k_h), int(k_w)
        self.num_filters = int(num_filters)
        self.kernel_size = (int(kh), int(kw))
        self.input_dropout = float(input_dropout)
        self.feature_dropout = float(feature_dropout)
        self.hidden_dropout = float(hidden_dropout)
        self.bn0 = nn.BatchNorm2d(1)
        self.conv = nn.Conv2d(1, self.num_filters, self.kernel_size, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(self.num_filters)
        self.flat_size = self.num_filters * (2 * self.k_h - kh + 1) * (self.k_w - kw + 1)
        self.fc = nn.Linear(self.flat_size, self.dim)
        self.bn2 = nn.BatchNorm1d(self.dim)
        if entity_bias:
            self.bias = nn.Parameter(torch.empty(self.num_entities))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for m in (self.bn0, self.conv, self.bn1, self.fc, self.bn2):
            m.reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    # ------------------------------------------------------------------ query map
    def _bn(self, bn: nn.Module, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:  # one sample: use running statistics
            return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                training=False, eps=bn.eps)
        return bn(x)

    def query(self, e: Tensor, w: Tensor) -> Tensor:
        """Query points ``[B, d]`` from anchor embeddings ``e [B, d]`` and relations ``w [B, d]``.
        """
        if w.shape[-1] != self.dim:
            raise ValueError(f"ConvE: relation vectors have size {w.shape[-1]}, expected "
                             f"dim={self.dim} (encoder rel_dim must equal dim)")
        b = e.shape[0]
        x = torch.cat([e.reshape(b, 1, self.k_h, self.k_w), w.reshape(b, 1, self.k_h, self.k_w)],
                      dim=2)                                       # [B, 1, 2 k_h, k_w]
        x = F.dropout(self._bn(self.bn0, x), self.input_dropout, self.training)
        x = F.relu(self._bn(self.bn1, self.conv(x)))               # [B, F, H', W']
        x = F.dropout(x, self.feature_dropout, self.training)
        x = self.fc(x.reshape(b, self.flat_size))                  # [B, d]
        x = F.dropout(x, self.hidden_dropout, self.training)
        return F.relu(self._bn(self.bn2, x))

    def tail_query(self, ent, rel, h, r):
        return self.query(ent[h], self.relation_embedding(rel, r))

    def head_query(self, ent, rel, r, t):
        return self.query(ent[t], self.relation_embedding(rel, r + self.num_relations))

    # ------------------------------------------------------------------ similarity
    def similarity_all(self, q, ent):
        s = dot_all(q, ent)
        return s if self.bias is None else s + self.bias

    def similarity_pairs(self, q, cand, cand_idx):
        s = dot_pairs(q, cand)
        return s if self.bias is None else s + self.bias[cand_idx]

    def similarity_shared(self, q, cand, cand_idx):
        s = dot_all(q, cand)
        return s if self.bias is None else s + self.bias[cand_idx]

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, image=[2x{self.k_h}, {self.k_w}], "
                f"num_filters={self.num_filters}, kernel_size={self.kernel_size}, "
                f"dropout=({self.input_dropout:g}, {self.feature_dropout:g}, "
                f"{self.hidden_dropout:g})")


__all__ = ["ConvE"]
