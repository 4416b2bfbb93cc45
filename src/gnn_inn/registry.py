"""One resolver for every pluggable family (after PyG's ``torch_geometric/resolver.py``).

A *family* is a plain dict ``name -> class or factory`` kept beside its members:

* ``encoder``: :data:`gnn_inn.encoders.ENCODERS`, built by ``build_encoder``;
* ``decoder``: :data:`gnn_inn.decoders.DECODERS`, built by ``build_decoder``;
* ``flow``: :data:`gnn_inn.flows.FLOWS`, built by ``build_flow``;
* ``loss``: :data:`gnn_inn.training.losses.LOSSES`, built by ``build_loss``;
* ``optimizer`` / ``scheduler``: :data:`gnn_inn.training.optim.OPTIMIZERS` /
  :data:`~gnn_inn.training.optim.SCHEDULERS`, built by ``build_optimizer`` /
  ``build_scheduler``.

Adding a member is one file plus one line in its registry. Every builder goes through
:func:`resolve`, so all families behave alike:

* names are normalised (:func:`normalize`: case-insensitive, ``-`` and ``_`` equivalent);
* an unknown name raises ``ValueError: could not resolve decoder 'x' among choices {...}``;
* an unknown or missing option raises ``ValueError`` naming it and listing the accepted
  options — only the user's options: what the builder supplies itself (sizes, training
  triples, parameters) is never reported as if the user had given it.

This module imports nothing of the project.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["accepted_options", "lookup", "normalize", "resolve"]


def normalize(name: str) -> str:
    """The registry key ``name`` stands for: lower case, ``-`` read as ``_``, no padding."""
    return name.strip().lower().replace("-", "_")


def _choices(registry: Mapping[str, Any]) -> str:
    return "{" + ", ".join(repr(k) for k in sorted(registry)) + "}"


def lookup(family: str, registry: Mapping[str, T], name: str) -> tuple[str, T]:
    """``(key, member)`` of the member of ``registry`` that ``name`` resolves to.

    Raises:
        ValueError: ``could not resolve <family> 'name' among choices {...}``.
    """
    if isinstance(name, str):
        key = normalize(name)
        for k, member in registry.items():
            if normalize(k) == key:
                return k, member
    raise ValueError(f"could not resolve {family} {name!r} among choices {_choices(registry)}")


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: accept anything
        return [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]


def accepted_options(factory: Callable[..., Any], *, num_args: int = 0,
                     supplied: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Keyword options ``factory`` accepts beyond its first ``num_args`` positional
    arguments and the names in ``supplied`` (what the caller passes itself), in order."""
    out, positional = [], 0
    for p in _parameters(factory):
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and positional < num_args:
            positional += 1
            continue
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in supplied:
            out.append(p.name)
    return out


def resolve(family: str, registry: Mapping[str, Callable[..., T]], query: Any, *args: Any,
            options: Mapping[str, Any] | None = None,
            supplied: Mapping[str, Any] | None = None,
            offered: Mapping[str, Any] | None = None) -> T:
    """Build the member of ``registry`` that ``query`` names.

    The call is ``factory(*args, **supplied, **offered', **options)`` where ``offered'`` keeps
    the entries of ``offered`` that the factory's signature names.

    Args:
        family: what the registry holds, for messages (``"decoder"``, ``"loss"``, ...).
        registry: ``{name: class or factory}``.
        query: a name (see :func:`normalize`), a class (used as the factory, registered or
            not) or an already built object (returned as it is; ``args`` and ``options``
            are then ignored, as in PyG).
        args: positional arguments the caller supplies (e.g. the parameters to optimise).
        options: the user's options (a config mapping minus ``name``); checked against the
            factory's signature.
        supplied: keyword arguments the caller always passes (sizes, ids); never listed as
            options.
        offered: keyword arguments passed only to factories that take them (e.g.
            ``num_entities`` for a decoder with per-entity biases, the training triples for
            one that chooses its structure from data); never listed as options.

    Raises:
        ValueError: unknown name (choices listed), unknown or missing options (accepted
            options listed).
    """
    options = dict(options or {})
    supplied = dict(supplied or {})
    if isinstance(query, str):
        name, factory = lookup(family, registry, query)
    elif isinstance(query, type):
        name, factory = query.__name__, query
    else:
        return query
    params = _parameters(factory)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    taken = {k: v for k, v in (offered or {}).items() if k in named}
    caller = set(supplied) | set(offered or {})
    accepted = accepted_options(factory, num_args=len(args), supplied=frozenset(caller))
    where = f"{family} {name!r}"
    unknown = sorted(set(options) - set(accepted)) if not takes_any else sorted(
        set(options) & caller)
    if unknown:
        raise ValueError(f"{where}: unknown option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; accepted options: "
                         f"{', '.join(accepted) or 'none'}")
    given = set(options) | set(supplied) | set(taken)
    missing = [p.name for p in params[_num_positional(params, len(args)):]
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and p.name not in given]
    if missing:
        raise ValueError(f"{where}: missing option{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(map(repr, missing))}; accepted options: "
                         f"{', '.join(accepted) or 'none'}")
    return factory(*args, **supplied, **taken, **options)


def _num_positional(params: list[inspect.Parameter], num_args: int) -> int:
    """How many leading entries of ``params`` the ``num_args`` positional arguments fill."""
    n = 0
    for p in params:
        if n >= num_args or p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        n += 1
    return n
