"""Relation decoders: turn (entity embeddings, relation) into scores.

``DECODERS`` maps config names to classes; :func:`build_decoder` builds one by name. A new
decoder is one file plus one line here.
"""

from __future__ import annotations

from typing import Any

from .base import Decoder
from .classic import ComplEx, DistMult, RotatE, TransE
from .conve import ConvE
from .flow import FlowDecoder
from .stochastic import StochasticFlowDecoder

DECODERS: dict[str, type[Decoder]] = {
    "transe": TransE,
    "distmult": DistMult,
    "complex": ComplEx,
    "rotate": RotatE,
    "conve": ConvE,
    "flow": FlowDecoder,
    "stochastic_flow": StochasticFlowDecoder,
}


def build_decoder(name: str, *, num_relations: int, dim: int, **kwargs: Any) -> Decoder:
    """Build the decoder registered as ``name`` (see :data:`DECODERS`)."""
    try:
        cls = DECODERS[name]
    except KeyError:
        raise ValueError(
            f"unknown decoder {name!r}; known decoders: {', '.join(sorted(DECODERS))}"
        ) from None
    try:
        return cls(num_relations=num_relations, dim=dim, **kwargs)
    except TypeError as e:
        raise ValueError(f"decoder {name!r}: bad arguments {sorted(kwargs)}: {e}") from None


__all__ = [
    "DECODERS", "Decoder", "build_decoder", "TransE", "DistMult", "ComplEx", "RotatE",
    "ConvE", "FlowDecoder", "StochasticFlowDecoder",
]
