"""The deterministic encoders (what a variational encoder can wrap) and the one builder
used by every encoder registry. Imports the encoder modules only, so that
:mod:`gnn_inn.encoders.variational` can build its base without importing the package."""

from __future__ import annotations

from typing import Any

from ..registry import resolve
from .base import Encoder
from .compgcn import CompGCNEncoder
from .lookup import LookupEncoder
from .rgcn import RGCNEncoder

#: deterministic encoders by config name
BASE_ENCODERS: dict[str, type[Encoder]] = {
    "none": LookupEncoder,
    "rgcn": RGCNEncoder,
    "compgcn": CompGCNEncoder,
}


def build_from(registry: dict[str, type[Encoder]], name: str, *, num_entities: int,
               num_relations: int, dim: int, **kwargs: Any) -> Encoder:
    """Build the encoder registered as ``name`` in ``registry`` (:func:`gnn_inn.registry.resolve`).

    ``kwargs`` are the encoder's own constructor arguments (a config's ``encoder:`` mapping
    minus ``name``); an unknown name or argument raises ``ValueError`` listing the accepted
    ones (``num_entities``, ``num_relations`` and ``dim`` are supplied here, never listed).
    """
    return resolve("encoder", registry, name, options=kwargs,
                   supplied={"num_entities": num_entities, "num_relations": num_relations,
                             "dim": dim})


__all__ = ["BASE_ENCODERS", "build_from"]
