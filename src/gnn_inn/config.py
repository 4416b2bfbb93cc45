"""YAML ↔ dataclasses. One config file describes a run; keys map one-to-one onto constructors.

```yaml
seed: 0
dataset: {name: umls, data_dir: null}
model:
  dim: 200
  encoder: {name: none}            # + constructor kwargs of the encoder
  decoder: {name: distmult}        # + constructor kwargs of the decoder
train:
  loss: {name: kvsall, label_smoothing: 0.1}
  epochs: 100
  batch_size: 128
  lr: 0.003
eval: {batch_size: 256, tie_policy: realistic}
```
Unknown keys are errors that name the key path (and the file), never silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or ``--set`` override is wrong; the message says where and how."""


@dataclass
class DatasetConfig:
    #: a registered name (``umls``, ``fb15k-237``, ``synthetic``, …) or a directory path
    name: str = "synthetic"
    #: folder holding ``<name>/{train,valid,test}.txt``; default: env ``GNN_INN_DATA``
    data_dir: str | None = None
    #: extra keyword arguments for generated datasets (e.g. the synthetic suite's size)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    dim: int = 200
    encoder: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    decoder: dict[str, Any] = field(default_factory=lambda: {"name": "distmult"})
    #: remove each step's own supervision triples from the message graph (GNN encoders)
    mask_targets: bool = False


@dataclass
class TrainConfig:
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "kvsall", "label_smoothing": 0.1})
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.003
    weight_decay: float = 0.0
    optimizer: str = "adam"
    #: ``null`` or ``{name: step|cosine|exponential|plateau, ...kwargs}``
    scheduler: dict[str, Any] | None = None
    grad_clip: float | None = None
    #: evaluate on valid every this many epochs (0 = only at the end)
    eval_every: int = 5
    #: stop after this many evaluations without improvement of valid MRR (0 = never)
    patience: int = 5
    #: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``
    device: str = "auto"
    #: cap on wall-clock training seconds (``null`` = no cap)
    time_budget: float | None = None
    #: ``null`` = full-batch encoder; or neighbour-sampled training, e.g.
    #: ``{num_neighbors: [10, 10], num_negatives: 256}`` (keys: see
    #: :class:`gnn_inn.training.sampling.SamplerSpec`)
    sampler: dict[str, Any] | None = None
    #: sparse gradients for the encoder's entity table (R-GCN / CompGCN ``entity``, lookup
    #: ``weight``): a step touches and updates only the rows it used, so its memory does not
    #: grow with the number of entities. The table is trained by ``torch.optim.SparseAdam``
    #: (``lr``, no weight decay: ``weight_decay`` must be 0), everything else by
    #: ``optimizer``; the scheduler drives both. Not supported under ``torchrun``.
    sparse_embeddings: bool = False
    #: Adam / AdamW with torch's fused kernel (one kernel per tensor instead of ~10 ops;
    #: 60 → 11 ms per step for a 7.6 M-parameter R-GCN on one CPU thread). Off by default:
    #: its rounding differs from the reference implementation, so results are not bit-equal
    #: to runs made without it.
    fused_optimizer: bool = False


@dataclass
class EvalConfig:
    batch_size: int = 256
    tie_policy: str = "realistic"


@dataclass
class Config:
    seed: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # ------------------------------------------------------------------ io
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<config>") -> Config:
        return _build(cls, data, prefix="", source=source)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> Config:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ConfigError(f"{where}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        apply_overrides(data, overrides or [])
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings in place (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ConfigError(f"--set {item!r}: {p!r} is not a mapping")
            node = node[p]
        node[parts[-1]] = value
    return data


def _build(cls, data: Any, *, prefix: str, source: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or 'top level'} must be a mapping")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {prefix + unknown[0]!r}; known keys here: {', '.join(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        f = known[name]
        sub = _dataclass_type(f)
        if sub is not None:
            kwargs[name] = _build(sub, value, prefix=f"{prefix}{name}.", source=source)
        else:
            kwargs[name] = _coerce(value, f, f"{prefix}{name}", source)
    return cls(**kwargs)


_NESTED = {
    "dataset": DatasetConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig,
}


def _dataclass_type(f: dataclasses.Field):
    return _NESTED.get(f.name) if f.type in ("DatasetConfig", "ModelConfig", "TrainConfig",
                                             "EvalConfig") else None


def _coerce(value: Any, f: dataclasses.Field, key: str, source: str) -> Any:
    t = str(f.type)
    if value is None:
        if "None" in t:
            return None
        raise ConfigError(f"{source}: {key} must not be null")
    try:
        if t.startswith("int"):
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError
            return int(value)
        if t.startswith("float"):
            return float(value)
        if t.startswith("bool"):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if t.startswith("str"):
            return str(value)
        if t.startswith("dict"):
            if not isinstance(value, dict):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} must be {t}, got {value!r}") from None
    return value
