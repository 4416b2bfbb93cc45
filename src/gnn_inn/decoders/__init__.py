"""Relation decoders: turn (entity embeddings, relation) into scores.

``DECODERS`` maps config names to classes; :func:`build_decoder` builds one by name. A new
decoder is one file plus one line here.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..registry import resolve
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


def build_decoder(name: str, *, num_relations: int, dim: int, num_entities: int | None = None,
                  train_triples: Tensor | None = None, relation_names: list[str] | None = None,
                  **kwargs: Any) -> Decoder:
    """Build the decoder registered as ``name`` (see :data:`DECODERS`).

    ``kwargs`` are the decoder's own options (a config's ``decoder:`` mapping minus ``name``);
    an unknown name or option raises ``ValueError`` listing the accepted ones
    (:func:`gnn_inn.registry.resolve`). ``num_entities`` (``N``), ``train_triples``
    (``LongTensor[M, 3]``) and ``relation_names`` are context passed only to decoders whose
    constructor takes them (per-entity biases, patterns chosen from data); they are never
    reported as options.
    """
    return resolve("decoder", DECODERS, name, options=kwargs,
                   supplied={"num_relations": num_relations, "dim": dim},
                   offered={"num_entities": num_entities, "train_triples": train_triples,
                            "relation_names": relation_names})


__all__ = [
    "DECODERS", "Decoder", "build_decoder", "TransE", "DistMult", "ComplEx", "RotatE",
    "ConvE", "FlowDecoder", "StochasticFlowDecoder",
]
