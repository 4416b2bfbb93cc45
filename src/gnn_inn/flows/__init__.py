"""Invertible transforms (normalising-flow layers); no knowledge of graphs.

Every flow maps ``x [B, d] → (y [B, d], log|det ∂y/∂x| [B])`` with ``forward`` and back with
``inverse``; see :mod:`gnn_inn.flows.base` for the three conditioning modes
(unconditional, per-id table, context vector).

Families (:data:`FLOWS`, built by :func:`build_flow` from a name or ``{"name": ..., **kwargs}``):

=====================  ===================================================================
``translation``        ``x + b``  (TransE as a flow)
``affine``             ``e^{s} ⊙ x + b``, soft-clamped positive scales
``rotation``           rotations in 2-D planes (RotatE as a flow) [+ translation]
``orthogonal``         product of Householder reflections + translation
``lu``                 invertible linear map, LU-parametrised (Glow), with bias
``additive_coupling``  ``num_blocks`` × (NICE coupling, permutation) + affine
``affine_coupling``    ``num_blocks`` × (RealNVP coupling, permutation) + affine
``spline_coupling``    ``num_blocks`` × (rational-quadratic spline coupling, permutation) + affine
=====================  ===================================================================

Coupling families take ``num_blocks`` (2), ``hidden`` (64), ``num_layers`` (2),
``context_embed_dim`` (16), ``input_bound`` (5), ``learned_permutation`` (False),
``final_affine`` (True) and their layer's options (``affine_coupling``: ``scale_clamp`` 2;
``spline_coupling``: ``num_bins`` 8, ``bound`` 5, ``min_slope`` 0.2). Others: ``affine`` /
``lu``: ``scale_clamp`` (3); ``rotation``: ``translate`` (False); ``orthogonal``:
``num_reflections`` (4), ``translate`` (True); ``lu``: ``bias`` (True). Any spec may add
``"involution": "sign" | "swap"`` (``g⁻¹ ∘ σ ∘ g``, :class:`Involution`, ``f ∘ f = id``).

Conditioning (every family): ``num_contexts=R`` — ``context`` is ``LongTensor[B]`` of ids;
``context_dim=c`` — ``context`` is ``Tensor[B, c]``. Every family starts at the identity
(couplings: up to the fixed permutations between blocks).

Measurements and design notes: docs/design-notes.md#flows

References
----------
Dinh et al., "NICE", ICLR 2015 workshop; "Real NVP", ICLR 2017. Kingma & Dhariwal, "Glow",
NeurIPS 2018. Durkan et al., "Neural spline flows", NeurIPS 2019. Sun et al., "RotatE",
ICLR 2019.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..registry import resolve
from .base import Flow, SequentialFlow, soft_clamp
from .coupling import AdditiveCoupling, AffineCoupling, SplineCoupling, rational_quadratic_spline
from .elementwise import ElementwiseAffine, Householder, Permutation, PlaneRotation, Translation
from .involution import Involution, make_involution
from .linear import LULinear


def _translation(*, dim, cond):
    return SequentialFlow(Translation(dim=dim, **cond))


def _affine(*, dim, cond, scale_clamp: float = 3.0):
    return SequentialFlow(ElementwiseAffine(dim=dim, scale_clamp=scale_clamp, **cond))


def _rotation(*, dim, cond, translate: bool = False, init_angles: str = "uniform"):
    flows: list[Flow] = [PlaneRotation(dim=dim, init_angles=init_angles, **cond)]
    if translate:
        flows.append(Translation(dim=dim, **cond))
    return SequentialFlow(*flows)


def _orthogonal(*, dim, cond, num_reflections: int = 4, translate: bool = True):
    flows: list[Flow] = [Householder(dim=dim, num_reflections=num_reflections, **cond)]
    if translate:
        flows.append(Translation(dim=dim, **cond))
    return SequentialFlow(*flows)


def _lu(*, dim, cond, bias: bool = True, scale_clamp: float = 3.0):
    return SequentialFlow(LULinear(dim=dim, bias=bias, permutation="identity",
                                   scale_clamp=scale_clamp, **cond))


def _coupling_family(layer: type) -> Callable[..., SequentialFlow]:
    def build(*, dim, cond, num_blocks: int = 2, learned_permutation: bool = False,
              final_affine: bool = True, hidden: int = 64, num_layers: int = 2,
              context_embed_dim: int = 16, **layer_kwargs):
        flows: list[Flow] = []
        for i in range(num_blocks):
            flows.append(layer(dim=dim, hidden=hidden, num_layers=num_layers,
                               context_embed_dim=context_embed_dim, **layer_kwargs, **cond))
            if learned_permutation:
                flows.append(LULinear(dim=dim, bias=False, seed=i, **cond))
            else:
                flows.append(Permutation(dim=dim, seed=i))
        if final_affine:
            flows.append(ElementwiseAffine(dim=dim, **cond))
        return SequentialFlow(*flows)

    build.__name__ = f"build_{layer.__name__}"
    # the signature the registry checks options against: the builder's own options and the
    # layer's (``layer_kwargs``), so an unknown option is named before anything is built
    own = [p for p in inspect.signature(build).parameters.values() if p.kind is not p.VAR_KEYWORD]
    build.__signature__ = inspect.Signature(own + _layer_options(layer, {p.name for p in own}))
    return build


def _layer_options(layer: type, taken: set[str]) -> list[inspect.Parameter]:
    """Keyword options of ``layer``'s constructors along its MRO (each passes ``**kwargs`` on
    to the next), minus ``taken`` and the conditioning arguments."""
    out: list[inspect.Parameter] = []
    seen = set(taken) | {"self", "num_contexts", "context_dim"}
    for cls in layer.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in seen:
                seen.add(p.name)
                out.append(p.replace(kind=p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return out


#: family name → builder ``(dim, cond, **kwargs) -> SequentialFlow``
FLOWS: dict[str, Callable[..., Flow]] = {
    "translation": _translation,
    "affine": _affine,
    "rotation": _rotation,
    "orthogonal": _orthogonal,
    "lu": _lu,
    "additive_coupling": _coupling_family(AdditiveCoupling),
    "affine_coupling": _coupling_family(AffineCoupling),
    "spline_coupling": _coupling_family(SplineCoupling),
}


def build_flow(spec: str | dict[str, Any], *, dim: int, num_contexts: int | None = None,
               context_dim: int | None = None) -> Flow:
    """Build a flow family from ``"name"`` or ``{"name": ..., **kwargs}`` (see :data:`FLOWS`).

    ``{"name": ..., "involution": "sign" | "swap"}`` wraps the result in :func:`make_involution`.
    An unknown name or option raises ``ValueError`` listing the accepted ones
    (:func:`gnn_inn.registry.resolve`).
    """
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name", None)
    inv = spec.pop("involution", None)
    if num_contexts is not None and context_dim is not None:
        raise ValueError("set at most one of num_contexts and context_dim")
    cond = {"num_contexts": num_contexts, "context_dim": context_dim}
    flow = resolve("flow", FLOWS, name, options=spec, supplied={"dim": dim, "cond": cond})
    return make_involution(flow, sigma=inv) if inv else flow


__all__ = [
    "FLOWS", "AdditiveCoupling", "AffineCoupling", "ElementwiseAffine", "Flow", "Householder",
    "Involution", "LULinear", "Permutation", "PlaneRotation", "SequentialFlow", "SplineCoupling",
    "Translation", "build_flow", "make_involution", "rational_quadratic_spline", "soft_clamp",
]
