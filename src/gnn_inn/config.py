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
A key given twice in one mapping is an error (YAML would silently keep the last one); numbers
written ``1e6`` / ``1.5e-3`` are floats (YAML 1.2; YAML 1.1 reads them as strings); every
numeric setting is checked for type and range (:func:`validate`).

A file may start from pieces: ``base: [data/umls.yaml, model/none_flow_rotation.yaml,
train/small.yaml]`` (each path relative to the file's folder or to the ``configs`` folder above
it). The bases are merged in order, then the file's own keys, then ``--set`` overrides; several
``--config`` files are merged the same way, in order. Merging is deep for mappings, except that a
part spec given with another ``name`` (``model.decoder: {name: transe}`` over
``{name: flow, ...}``) replaces the earlier spec instead of inheriting its options. Bases may have
bases; a cycle is an error naming the chain. Every piece is parsed with the same YAML rules and
its keys are checked on their own, so an error names the piece that holds the key.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or ``--set`` override is wrong; the message says where and how."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and reads ``1e6`` as a float."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader raises its own error for unhashable keys
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]}, again on "
                    f"line {line}); a key may appear once per mapping", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats: also ``1e6`` / ``-2E-3`` without a dot (YAML 1.1 makes those strings)
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in
                                   yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
                |[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str, *, source: str) -> Any:
    """Parse ``text`` with the project's YAML rules (see the module docstring)."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        msg = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{where}: invalid YAML: {msg}") from None


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
    #: also log loss, learning rate and valid metrics to ``RUN_DIR/tensorboard`` for
    #: TensorBoard (needs the ``tensorboard`` package; ``metrics.jsonl`` is written either way)
    tensorboard: bool = False


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
        config = _build(cls, data, prefix="", source=source)
        validate(config, source=source)
        return config

    @classmethod
    def load(cls, path: str | Path | Sequence[str | Path],
             overrides: list[str] | None = None) -> Config:
        """Load one config file, or several merged in order, then apply ``overrides``.

        Each file's ``base:`` pieces are merged before its own keys (module docstring).
        """
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        if not paths:
            raise ConfigError("no config file given")
        data: dict[str, Any] = {}
        for p in paths:
            for piece in former_pieces(p) or [p]:
                merge(data, load_data(piece))
        apply_overrides(data, overrides or [])
        source = " + ".join(str(p) for p in paths)
        return cls.from_dict(data, source=source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def _read_mapping(path: Path, *, referrer: str | None = None) -> dict[str, Any]:
    """Parse one YAML file (project rules) that must hold a mapping (``{}`` if empty)."""
    if path.is_dir():
        what = f"{referrer}: base {path}" if referrer else f"--config {path}"
        raise ConfigError(f"{what}: is a folder; name a YAML config file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason}); a config is "
                          "YAML") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror or e})") from None
    data = load_yaml(text, source=str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _configs_root(path: Path) -> Path | None:
    """The nearest folder named ``configs`` holding ``path`` (``None`` if there is none)."""
    for parent in path.resolve().parents:
        if parent.name == "configs":
            return parent
    return None


def _find_base(entry: Any, referrer: Path) -> Path:
    """The file a ``base:`` entry of ``referrer`` names: relative to ``referrer``'s folder,
    else to the ``configs`` folder above it."""
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"{referrer}: base entries must be file paths, got {entry!r}")
    rel = Path(entry)
    if rel.is_absolute():
        candidates = [rel]
    else:
        candidates = [referrer.parent / rel]
        root = _configs_root(referrer)
        if root is not None:
            candidates.append(root / rel)
    for c in candidates:
        if c.is_file() or c.is_dir():
            return c
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise ConfigError(f"{referrer}: base {entry!r} not found (looked for {looked})")


#: the file beside the configs that names each config file of earlier releases by its pieces
FORMER = "former.yaml"


def former_pieces(path: str | Path) -> list[Path] | None:
    """The pieces of a former config file: ``configs/umls_none_complex.yaml``, no longer a
    file, is ``[configs/data/umls.yaml, configs/model/none_complex.yaml, ...]`` as
    ``configs/former.yaml`` lists it; ``None`` if ``path`` exists or is not listed there."""
    path = Path(path)
    table = path.parent / FORMER
    if path.exists() or path.name == FORMER or not table.is_file():
        return None
    names = _read_mapping(table)
    pieces = names.get(path.name)
    if pieces is None:
        return None
    if not isinstance(pieces, list) or not all(isinstance(x, str) for x in pieces):
        raise ConfigError(f"{table}: {path.name} must list config files, got {pieces!r}")
    return [path.parent / x for x in pieces]


def load_data(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The settings of one config file with its ``base:`` pieces merged in (defaults not
    filled in). Each file's own keys are checked for unknown names and types, with its name
    in the message; a ``base`` cycle is refused naming the chain."""
    path = Path(path)
    key = path.resolve()
    if key in _chain:
        names = [str(p) for p in (*_chain[_chain.index(key):], key)]
        raise ConfigError(f"base cycle: {' -> '.join(names)}")
    data = _read_mapping(path, referrer=str(_chain[-1]) if _chain else None)
    bases = data.pop("base", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not isinstance(bases, list):
        raise ConfigError(f"{path}: base must be a file path or a list of them, got {bases!r}")
    _build(Config, data, prefix="", source=str(path))  # unknown keys / types, named by file
    merged: dict[str, Any] = {}
    for entry in bases:
        merge(merged, load_data(_find_base(entry, path), (*_chain, key)))
    return merge(merged, data)


def merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Merge ``other`` into ``into`` in place and return it: mappings recursively, anything
    else replaced; a mapping whose ``name`` differs from the one it meets replaces it whole (a
    different part does not inherit the options of the one it replaces)."""
    for k, v in other.items():
        old = into.get(k)
        if (isinstance(old, dict) and isinstance(v, dict)
                and not ("name" in old and "name" in v and old["name"] != v["name"])):
            merge(old, v)
        else:
            into[k] = _copy(v)
    return into


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def dump_yaml(config: Config) -> str:
    """The resolved settings as YAML text (what ``gnn-inn config`` prints)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings in place (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = load_yaml(raw, source=f"--set {item!r}") if raw != "" else None
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key part in {key!r} (use a.b.c=value)")
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
            if isinstance(value, bool):
                raise ValueError
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


# ------------------------------------------------------------------ validation
def _num(value: Any, key: str, source: str, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False, optional: bool = False) -> None:
    """Raise unless ``value`` is a finite number in the given range (``None`` if optional)."""
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '≥'} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '≤'} {high:g}"
        want = " and ".join(x for x in (lo, hi) if x) or "finite"
        extra = " (or null)" if optional else ""
        raise ConfigError(f"{source}: {key} must be a number {want}{extra}, got {value!r}")


def _named(spec: Any, key: str, source: str, *, optional: bool = False) -> None:
    if spec is None and optional:
        return
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ConfigError(f"{source}: {key} must be a mapping with a 'name' (e.g. "
                          f"{{name: ...}}), got {spec!r}")


#: ranges of the numeric options of losses and schedulers that the config may set
_LOSS_RANGES: dict[str, dict[str, Any]] = {
    "num_negatives": {"low": 1}, "adversarial_temperature": {"low": 0},
    "margin": {}, "gaussian_weight": {"low": 0}, "nll_weight": {"low": 0},
}
_SCHEDULER_RANGES: dict[str, dict[str, Any]] = {
    "step_size": {"low": 1}, "gamma": {"low": 0, "low_open": True}, "T_max": {"low": 1},
    "eta_min": {"low": 0}, "factor": {"low": 0, "high": 1, "low_open": True, "high_open": True},
    "patience": {"low": 0}, "cooldown": {"low": 0}, "min_lr": {"low": 0},
}


def validate(config: Config, *, source: str = "<config>") -> None:
    """Check the type and range of every setting; :class:`ConfigError` names the key."""
    m, t, e = config.model, config.train, config.eval
    if not config.dataset.name:
        raise ConfigError(f"{source}: dataset.name must not be empty")
    _num(m.dim, "model.dim", source, low=1)
    _named(m.encoder, "model.encoder", source)
    _named(m.decoder, "model.decoder", source)
    _named(t.loss, "train.loss", source)
    if "label_smoothing" in t.loss:
        _num(t.loss["label_smoothing"], "train.loss.label_smoothing", source, low=0, high=1,
             high_open=True)
    for k, kw in _LOSS_RANGES.items():
        if k in t.loss:
            _num(t.loss[k], f"train.loss.{k}", source, **kw)
    _num(t.epochs, "train.epochs", source, low=1)
    _num(t.batch_size, "train.batch_size", source, low=1)
    _num(t.lr, "train.lr", source, low=0, low_open=True)
    _num(t.weight_decay, "train.weight_decay", source, low=0)
    if t.optimizer.lower() not in ("adam", "adamw", "adagrad"):
        raise ConfigError(f"{source}: train.optimizer: unknown optimizer {t.optimizer!r} "
                          "(adam, adamw, adagrad)")
    _named(t.scheduler, "train.scheduler", source, optional=True)
    if t.scheduler is not None:
        names = ("step", "exponential", "cosine", "plateau")
        if t.scheduler["name"] not in names:
            raise ConfigError(f"{source}: train.scheduler.name: unknown scheduler "
                              f"{t.scheduler['name']!r} ({', '.join(names)})")
        for k, v in t.scheduler.items():
            if isinstance(v, str) and k != "name" and k not in ("mode", "threshold_mode"):
                raise ConfigError(f"{source}: train.scheduler.{k} must be a number, got {v!r}")
        for k, kw in _SCHEDULER_RANGES.items():
            if k in t.scheduler:
                _num(t.scheduler[k], f"train.scheduler.{k}", source, **kw)
    _num(t.grad_clip, "train.grad_clip", source, low=0, low_open=True, optional=True)
    _num(t.eval_every, "train.eval_every", source, low=0)
    _num(t.patience, "train.patience", source, low=0)
    _num(t.time_budget, "train.time_budget", source, low=0, low_open=True, optional=True)
    for key in ("sparse_embeddings", "fused_optimizer", "tensorboard"):
        if not isinstance(getattr(t, key), bool):
            raise ConfigError(f"{source}: train.{key} must be true or false, got "
                              f"{getattr(t, key)!r}")
    if t.sampler is not None and not isinstance(t.sampler, dict):
        raise ConfigError(f"{source}: train.sampler must be a mapping or null, got {t.sampler!r}")
    _num(e.batch_size, "eval.batch_size", source, low=1)
    if e.tie_policy not in ("realistic", "optimistic", "pessimistic"):
        raise ConfigError(f"{source}: eval.tie_policy must be realistic, optimistic or "
                          f"pessimistic, got {e.tie_policy!r}")


# ------------------------------------------------------------------ resuming
#: settings a resumed run may change (they decide how long it runs and how it is evaluated,
#: not what the saved state means); any other difference is refused by name
RESUMABLE = ("train.epochs", "train.time_budget", "train.patience", "train.eval_every",
             "train.device", "eval.batch_size", "dataset.data_dir", "train.tensorboard")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and prefix.count(".") < 1:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_config(saved: dict[str, Any], config: Config, *, source: str) -> list[str]:
    """Compare a checkpoint's config with the one a resumed run was given.

    Changes of :data:`RESUMABLE` keys are returned (and applied by simply running with the
    new config); any other change raises :class:`ConfigError` naming the key, both values and
    the checkpoint, so that the recorded config is always the one that ran.
    """
    old = _flat(Config.from_dict(saved, source=source).to_dict())
    new = _flat(config.to_dict())
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    refused = [k for k in changed if k not in RESUMABLE]
    sched = config.train.scheduler or {}
    if "train.epochs" in changed and sched.get("name") == "cosine" and "T_max" not in sched:
        refused.insert(0, "train.epochs")  # the saved cosine schedule's T_max is the old value
    if refused:
        k = refused[0]
        more = f" (and {', '.join(refused[1:])})" if len(refused) > 1 else ""
        raise ConfigError(
            f"--resume: {source} was trained with {k}={old.get(k)!r}, the config now says "
            f"{new.get(k)!r}{more}; a resumed run keeps the settings it was started with "
            f"(changeable: {', '.join(RESUMABLE)}). Resume without the change, or start a "
            "new run (another --out, or --overwrite)")
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed]
