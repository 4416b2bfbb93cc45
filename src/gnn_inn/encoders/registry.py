"""The deterministic encoders (what a variational encoder can wrap) and the one builder
used by every encoder registry. Imports the encoder modules only, so that
:mod:`gnn_inn.encoders.variational` can build its base without importing the package."""

from __future__ import annotations

import inspect
from typing import Any

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
    """Build the encoder registered as ``name`` in ``registry``.

    ``kwargs`` are the encoder's own constructor arguments (a config's ``encoder:`` mapping
    minus ``name``); an unknown name or argument raises ``ValueError`` listing the known ones.
    """
    try:
        cls = registry[name]
    except KeyError:
        raise ValueError(
            f"unknown encoder {name!r}; known encoders: {', '.join(sorted(registry))}"
        ) from None
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else sorted(set(kwargs) - set(params))
    if unknown:
        known = sorted(p for p in params if p not in ("self", "num_entities", "num_relations",
                                                      "dim"))
        raise ValueError(f"encoder {name!r}: unknown arguments {unknown}; known: {known}")
    return cls(num_entities=num_entities, num_relations=num_relations, dim=dim, **kwargs)


__all__ = ["BASE_ENCODERS", "build_from"]
