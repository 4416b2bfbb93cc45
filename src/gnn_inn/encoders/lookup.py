"""``LookupEncoder`` (registry name ``none``): a plain embedding table, no message passing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from .base import Encoder


class LookupEncoder(Encoder):
    r"""Entity embeddings from a table: :math:`e_i = E[i]`, the graph is ignored.

    Args:
        num_entities: ``N``.  dim: ``d``.
        num_relations: accepted for a uniform constructor, unused.
        init: ``"xavier"`` (uniform), ``"normal"`` (std ``init_std``) or ``"uniform"``
            (``±init_std``).
        dropout: dropout on the embeddings in training mode.
    """

    sparse_tables = ("weight",)

    def __init__(self, *, num_entities: int, dim: int, num_relations: int | None = None,
                 init: str = "xavier", init_std: float = 0.1, dropout: float = 0.0) -> None:
        super().__init__(num_entities=num_entities, dim=dim)
        if init not in ("xavier", "normal", "uniform"):
            raise ValueError(f"init must be 'xavier', 'normal' or 'uniform', got {init!r}")
        self.init = init
        self.init_std = float(init_std)
        self.dropout = float(dropout)
        self.weight = nn.Parameter(torch.empty(num_entities, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "xavier":
            nn.init.xavier_uniform_(self.weight)
        elif self.init == "normal":
            nn.init.normal_(self.weight, std=self.init_std)
        else:
            nn.init.uniform_(self.weight, -self.init_std, self.init_std)

    def forward(self, graph: Data | None = None) -> tuple[Tensor, None]:
        return F.dropout(self._input_rows(self.weight, None), self.dropout, self.training), None

    def extra_repr(self) -> str:
        return f"{self.num_entities}, {self.dim}, init={self.init}, dropout={self.dropout:g}"
