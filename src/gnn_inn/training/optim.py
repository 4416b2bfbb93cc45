"""Optimisers, learning-rate schedulers, gradient clipping and the sparse-table split.

``OPTIMIZERS`` and ``SCHEDULERS`` are plain registries (name → ``torch.optim`` class) resolved
through :func:`gnn_inn.registry.resolve`: ``train.optimizer`` names an optimiser (``lr``,
``weight_decay`` and ``fused_optimizer`` come from ``train``), ``train.scheduler`` is
``{name: ..., **options}`` (the scheduler's own constructor options).

Sparse embeddings (``train.sparse_embeddings``): the encoder tables listed in
:attr:`~gnn_inn.encoders.Encoder.sparse_tables` get sparse gradients and are updated by
``torch.optim.SparseAdam``; :func:`split_sparse_parameters` separates them, and
:func:`clip_grad_norm` counts their rows in the global norm.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..config import ConfigError
from ..encoders import Encoder
from ..registry import lookup, resolve

#: ``train.optimizer`` names
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
}

#: optimisers with an opt-in fused kernel (``train.fused_optimizer``)
FUSED_OPTIMIZERS = ("adam", "adamw")

#: ``train.scheduler.name`` names
SCHEDULERS: dict[str, type] = {
    "step": torch.optim.lr_scheduler.StepLR,
    "exponential": torch.optim.lr_scheduler.ExponentialLR,
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
    "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau,
}


def _fused(params: list, wanted: bool) -> dict:
    """``{"fused": True}`` when asked (``train.fused_optimizer``) and torch has a fused Adam
    kernel for these parameters (float tensors on one CPU or CUDA device): one kernel per
    tensor instead of ~10 elementwise ops (docs/design-notes.md#training-trainer)."""
    if not wanted:
        return {}
    devices = {p.device.type for p in params}
    ok = (len(devices) == 1 and devices <= {"cpu", "cuda"}
          and all(p.is_floating_point() for p in params))
    version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    return {"fused": True} if ok and version >= (2, 4) else {}


def build_optimizer(cfg, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` (a :class:`~gnn_inn.config.TrainConfig`) over ``params``
    with ``cfg.lr`` and ``cfg.weight_decay``; fused kernel with ``cfg.fused_optimizer``."""
    params = list(params)
    try:
        key, _ = lookup("optimizer", OPTIMIZERS, cfg.optimizer)
    except ValueError as e:
        raise ConfigError(f"train.optimizer: {e}") from None
    options = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if key in FUSED_OPTIMIZERS:
        options.update(_fused(params, cfg.fused_optimizer))
    return resolve("optimizer", OPTIMIZERS, key, params, options=options)


def build_scheduler(cfg, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """The scheduler ``cfg.scheduler`` (``{name, **options}``) of ``optimizer``, or ``None``.

    Defaults: ``cosine`` anneals over ``T_max = cfg.epochs``; ``plateau`` maximises (it is
    stepped with the validation MRR). ``steps_per_epoch``: schedulers step once per epoch.
    """
    spec = cfg.scheduler
    if not spec:
        return None
    spec = dict(spec)
    name = spec.pop("name", None)
    try:
        key, _ = lookup("scheduler", SCHEDULERS, name)
    except ValueError as e:
        raise ConfigError(f"train.scheduler.name: {e}") from None
    if key == "cosine":
        spec.setdefault("T_max", cfg.epochs)
    if key == "plateau":
        spec.setdefault("mode", "max")
    try:
        return resolve("scheduler", SCHEDULERS, key, optimizer, options=spec)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train.scheduler ({key}): {e}") from None


def clip_grad_norm(params, max_norm: float) -> Tensor:
    """``clip_grad_norm_`` that also accepts sparse gradients; returns the total norm.

    The global L2 norm counts dense gradients and the coalesced values of sparse ones (a
    sparse gradient is replaced by its coalesced form, duplicate rows summed); every
    gradient is scaled by ``min(1, max_norm / (norm + 1e-6))``. Without sparse gradients
    this is ``torch.nn.utils.clip_grad_norm_``.
    """
    params = [p for p in params if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norms = []
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            norms.append(torch.linalg.vector_norm(p.grad.values()))
        else:
            norms.append(torch.linalg.vector_norm(p.grad))
    total = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))
    coef = min(1.0, float(max_norm) / (float(total) + 1e-6))
    if coef < 1.0:
        for p in params:
            if p.grad.is_sparse:
                p.grad.values().mul_(coef)
            else:
                p.grad.mul_(coef)
    return total


def table_encoders(model: nn.Module) -> list[Encoder]:
    """The encoder (sub)modules of ``model`` that list entity tables in
    :attr:`~gnn_inn.encoders.Encoder.sparse_tables`."""
    return [m for m in model.modules() if isinstance(m, Encoder) and m.sparse_tables]


def entity_tables(model: nn.Module) -> list[nn.Parameter]:
    """The trainable ``[N, ·]`` entity tables of ``model``'s encoders (exchanged as touched
    rows under ``torchrun``)."""
    return [p for m in table_encoders(model) for p in m.sparse_parameters() if p.requires_grad]


def split_sparse_parameters(model: nn.Module) -> tuple[list, list]:
    """``(sparse, dense)`` parameters of ``model`` for ``train.sparse_embeddings``.

    Sets ``sparse_grad`` on every encoder (sub)module that lists tables in
    ``sparse_tables`` (see :class:`~gnn_inn.encoders.base.Encoder`); those tables are the
    sparse parameters, every other trainable parameter is dense.
    """
    for module in table_encoders(model):
        module.sparse_grad = True
    sparse = entity_tables(model)
    ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in ids]
    return sparse, dense


__all__ = ["FUSED_OPTIMIZERS", "OPTIMIZERS", "SCHEDULERS", "build_optimizer",
           "build_scheduler", "clip_grad_norm", "entity_tables", "split_sparse_parameters",
           "table_encoders"]
