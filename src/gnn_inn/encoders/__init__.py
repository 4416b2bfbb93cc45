"""Encoders: entity (and relation) embeddings from ids and the train-only message graph.

``ENCODERS`` maps config names to classes; :func:`build_encoder` builds one by name. A new
encoder is one file plus one line here. Any ``nn.Module`` with the call shape
``forward(graph) -> (ent [N, d], rel [2R, d_r] | None)`` can be passed from Python instead.
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import Encoder, edge_dropout
from .compgcn import CompGCNConv, CompGCNEncoder, ccorr, compose
from .lookup import LookupEncoder
from .rgcn import RGCNEncoder, TypedRGCNConv
from .variational import VariationalEncoder, VariationalLookupEncoder

ENCODERS: dict[str, type[Encoder]] = {
    "none": LookupEncoder,
    "rgcn": RGCNEncoder,
    "compgcn": CompGCNEncoder,
    "variational": VariationalLookupEncoder,
    "variational_gnn": VariationalEncoder,
}


def build_encoder(name: str, *, num_entities: int, num_relations: int, dim: int,
                  **kwargs: Any) -> Encoder:
    """Build the encoder registered as ``name`` (see :data:`ENCODERS`).

    ``kwargs`` are the encoder's own constructor arguments (a config's ``encoder:`` mapping
    minus ``name``); an unknown name or argument raises ``ValueError`` listing the known ones.
    """
    try:
        cls = ENCODERS[name]
    except KeyError:
        raise ValueError(
            f"unknown encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}"
        ) from None
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else sorted(set(kwargs) - set(params))
    if unknown:
        known = sorted(p for p in params if p not in ("self", "num_entities", "num_relations",
                                                      "dim"))
        raise ValueError(f"encoder {name!r}: unknown arguments {unknown}; known: {known}")
    return cls(num_entities=num_entities, num_relations=num_relations, dim=dim, **kwargs)


__all__ = [
    "ENCODERS", "CompGCNConv", "CompGCNEncoder", "Encoder", "LookupEncoder", "RGCNEncoder",
    "TypedRGCNConv", "VariationalEncoder", "VariationalLookupEncoder", "build_encoder", "ccorr",
    "compose", "edge_dropout",
]
