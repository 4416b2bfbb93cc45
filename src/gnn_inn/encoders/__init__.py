"""Encoders: entity (and relation) embeddings from ids and the train-only message graph.

``ENCODERS`` maps config names to classes; :func:`build_encoder` builds one by name. A new
encoder is one file plus one line here. Any ``nn.Module`` with the call shape
``forward(graph) -> (ent [N, d], rel [2R, d_r] | None)`` can be passed from Python instead.
"""

from __future__ import annotations

from typing import Any

from .base import Encoder, edge_dropout
from .compgcn import CompGCNConv, CompGCNEncoder, ccorr, compose
from .lookup import LookupEncoder
from .registry import BASE_ENCODERS, build_from
from .rgcn import RGCNEncoder, TypedRGCNConv
from .variational import VariationalEncoder, VariationalLookupEncoder

ENCODERS: dict[str, type[Encoder]] = {
    **BASE_ENCODERS,
    "variational": VariationalLookupEncoder,
    "variational_gnn": VariationalEncoder,
}


def build_encoder(name: str, *, num_entities: int, num_relations: int, dim: int,
                  **kwargs: Any) -> Encoder:
    """Build the encoder registered as ``name`` (see :data:`ENCODERS`).

    ``kwargs`` are the encoder's own constructor arguments (a config's ``encoder:`` mapping
    minus ``name``); an unknown name or argument raises ``ValueError`` listing the known ones.
    """
    return build_from(ENCODERS, name, num_entities=num_entities, num_relations=num_relations,
                      dim=dim, **kwargs)


__all__ = [
    "ENCODERS", "CompGCNConv", "CompGCNEncoder", "Encoder", "LookupEncoder", "RGCNEncoder",
    "TypedRGCNConv", "VariationalEncoder", "VariationalLookupEncoder", "build_encoder", "ccorr",
    "compose", "edge_dropout",
]
