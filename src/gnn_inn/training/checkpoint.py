"""Checkpoints: atomic writes, loads that cannot run code, and a digest of the tensors.

A checkpoint is a plain dict saved with :func:`torch.save`:
``{"format", "model", "optimizer", "scheduler", "rng", "epoch", "best_metric", "best_epoch",
"bad_evals", "config", "vocab", "extra", "digest"}``, plus ``"sparse_optimizer"`` /
``"sparse_scheduler"`` (``None`` unless ``train.sparse_embeddings``; absent in older
checkpoints, read as ``None``) and ``"data_fingerprint"`` (sha256 of the dataset's split files
when it was loaded from a folder). ``rng`` holds the torch (CPU and CUDA), Python, NumPy and
sampling-generator states so that ``--resume`` continues exactly.

What a checkpoint may contain
-----------------------------
Only tensors, ``int``/``float``/``str``/``bool``/``None``, and dicts, lists and tuples of
those: everything :func:`torch.load` accepts with ``weights_only=True``. The NumPy RNG state is
stored as a tensor and plain numbers (:func:`rng_state`), so no NumPy object is pickled.
Checkpoints are therefore loaded with ``weights_only=True``; checkpoints written before that
change hold a NumPy array and load through a scoped allow-list of exactly the NumPy globals
that rebuild a plain array (:data:`LEGACY_NUMPY_GLOBALS`). Any other global (``os.system``,
a class, a function) is refused before it is called, with a :class:`CheckpointError` that
names the file and the global; ``trusted=True`` (CLI ``--trust-checkpoint``) loads with
``weights_only=False`` for files the user vouches for.

``digest`` is the sha256 of every tensor in the checkpoint (key path, dtype, shape and
bytes, in a fixed order); :func:`load_checkpoint` recomputes it and refuses a file whose
tensors were altered. Files without a digest (older checkpoints) load with a warning.

:func:`load_trained` rebuilds ``(model, kg, config)`` from a checkpoint (the model from its
config, the vocabularies checked against the dataset).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..data import check_vocab
from ..model import LinkPredictor, load_kg, model_from_config

log = logging.getLogger(__name__)

FORMAT = "gnn_inn.checkpoint/1"
DIGEST = "sha256-tensors/1"


class CheckpointError(ValueError):
    """A checkpoint cannot be read or written safely; the message names the file and why."""


# ------------------------------------------------------------------ RNG states
def _numpy_state() -> dict[str, Any]:
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_state(state: Any) -> None:
    if isinstance(state, dict):  # stored as tensor + numbers
        state = (state["bit_generator"], state["key"].cpu().numpy().astype(np.uint32),
                 state["pos"], state["has_gauss"], state["cached_gaussian"])
    np.random.set_state(state)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Torch, CUDA, Python, NumPy and ``generator`` states, as tensors and plain values."""
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "generator": generator.get_state() if generator is not None else None,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"].cpu())
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    _set_numpy_state(state["numpy"])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ------------------------------------------------------------------ digest
def _tensors(obj: Any, path: str = ""):
    """``(key path, tensor)`` for every tensor in ``obj``, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            yield from _tensors(obj[k], f"{path}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{path}/{i}")


def tensor_digest(payload: dict[str, Any]) -> str:
    """sha256 over the key path, dtype, shape and bytes of every tensor of ``payload``
    (the ``digest`` entry itself excluded)."""
    h = hashlib.sha256()
    for path, t in _tensors({k: v for k, v in payload.items() if k != "digest"}):
        t = t.detach()
        if t.is_sparse:
            t = t.coalesce()
            parts = [t.indices(), t.values()]
        else:
            parts = [t]
        h.update(f"{path}|{t.dtype}|{tuple(t.shape)}|{t.layout}\n".encode())
        for p in parts:
            p = p.cpu().contiguous().reshape(-1)
            if p.numel():
                h.update(p.view(torch.uint8).numpy() if p.dtype != torch.bool
                         else p.to(torch.uint8).numpy())
    return h.hexdigest()


def non_finite_tensor(state: dict[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``state`` holding NaN or ±inf."""
    for path, t in _tensors(state):
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            return path.lstrip("/")
    return None


# ------------------------------------------------------------------ save
def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    Refuses a payload whose ``model`` weights are not finite (a diverged run must not replace
    the last good checkpoint); ``format`` and ``digest`` are (re)computed here.
    """
    path = Path(path)
    bad = non_finite_tensor(payload.get("model") or {})
    if bad is not None:
        raise CheckpointError(f"{path}: not written: model weight {bad!r} is not finite "
                              "(NaN or inf); the previous file, if any, is kept")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, **{k: v for k, v in payload.items() if k != "digest"}}
    payload["digest"] = {"algorithm": DIGEST, "value": tensor_digest(payload)}
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write a checkpoint in {path.parent} "
                              f"({e.strerror or e}); is the folder writable?") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except (OSError, RuntimeError) as e:  # disk full: torch says "unexpected pos ..."
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CheckpointError(f"{path}: writing the checkpoint failed ({e}); is the disk full "
                              "or the folder read-only? The previous file, if any, is kept"
                              ) from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------ load
def _legacy_numpy_globals() -> list[Any]:
    """The NumPy globals a pickled ``np.random.get_state()`` array needs (checkpoints written
    before the NumPy state was stored as a tensor): ``_reconstruct``, ``ndarray``, ``dtype``
    and the ``UInt32DType`` class, under numpy 1.x and 2.x module names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    fn = multiarray._reconstruct
    out: list[Any] = [np.ndarray, np.dtype, fn,
                      (fn, "numpy.core.multiarray._reconstruct"),
                      (fn, "numpy._core.multiarray._reconstruct")]
    dtypes = getattr(np, "dtypes", None)  # numpy ≥ 1.25: one class per dtype
    if dtypes is not None:
        out.append(dtypes.UInt32DType)
    return out


LEGACY_NUMPY_GLOBALS = _legacy_numpy_globals()

TRUST_HINT = "pass --trust-checkpoint to load a file you trust"


def _refused_global(e: Exception) -> str:
    """The global torch's weights-only unpickler refused, from its long message."""
    text = str(e)
    for marker in ("Unsupported global: GLOBAL ", "GLOBAL "):
        if marker in text:
            name = text.split(marker, 1)[1].split()[0]
            return name.rstrip(".,")
    return "?"


def _load(path: Path, map_location, trusted: bool) -> Any:
    if trusted:
        return torch.load(path, map_location=map_location, weights_only=False)
    with torch.serialization.safe_globals(LEGACY_NUMPY_GLOBALS):
        return torch.load(path, map_location=map_location, weights_only=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    trusted: bool = False) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the ``.pt`` file.
        map_location: device for the tensors.
        trusted: load with ``weights_only=False`` (the pickle may run code): only for files you
            made or trust. The default loads tensors and plain values only.

    Raises:
        CheckpointError: one line naming the file: a refused global, a truncated / empty /
            non-checkpoint file, or tensors that do not match the stored digest.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file (a checkpoint is a .pt file)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a gnn_inn checkpoint")
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic.startswith((b"PK\x03\x04", b"\x80")):  # torch's zip format, or a pickle
        raise CheckpointError(f"{path}: not a gnn_inn checkpoint (neither a torch zip archive "
                              f"nor a pickle; starts with {magic!r})")
    try:
        ckpt = _load(path, map_location, trusted)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e) and "GLOBAL " in str(e):
            raise CheckpointError(
                f"{path}: refused to load global {_refused_global(e)!r} (not a gnn_inn "
                f"checkpoint, or one that is untrusted); {TRUST_HINT}") from None
        reason = next((ln.split("error:", 1)[-1].strip() for ln in str(e).splitlines()
                       if "WeightsUnpickler error" in ln), str(e).splitlines()[0] if str(e) else "")
        raise CheckpointError(f"{path}: not a gnn_inn checkpoint (unreadable pickle: "
                              f"{reason[:120]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError,
            AttributeError, ImportError, IndexError, MemoryError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointError(f"{path}: not a readable gnn_inn checkpoint (truncated, empty "
                              f"or another kind of file: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gnn_inn checkpoint (format {FORMAT!r} expected)")
    digest = ckpt.get("digest")
    if digest is None:
        log.warning("%s: no tensor digest (written by an older version): integrity not "
                    "checked", path)
    else:
        if not isinstance(digest, dict) or digest.get("algorithm") != DIGEST:
            raise CheckpointError(f"{path}: unknown digest {digest!r} ({DIGEST!r} expected)")
        if tensor_digest(ckpt) != digest.get("value"):
            raise CheckpointError(f"{path}: the tensors do not match the checkpoint's digest: "
                                  "the file was altered or corrupted after it was written")
    return ckpt


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def load_trained(checkpoint: str | Path, *, data_dir: str | None = None,
                 map_location: str = "cpu", trusted: bool = False
                 ) -> tuple[LinkPredictor, Any, Config]:
    """Rebuild ``(model, kg, config)`` from a checkpoint; the vocabularies must match.

    ``trusted``: see :func:`~gnn_inn.training.checkpoint.load_checkpoint`. A warning names the
    split files that differ from those the checkpoint was trained with (when it recorded them).
    """
    ckpt = load_checkpoint(checkpoint, map_location=map_location, trusted=trusted)
    config = Config.from_dict(ckpt["config"], source=str(checkpoint))
    kg = load_kg(config, data_dir)
    check_vocab(ckpt["vocab"], kg, source=str(checkpoint))
    saved, now = ckpt.get("data_fingerprint"), kg.fingerprint
    if saved and now:
        differ = sorted(s for s in set(saved) | set(now) if saved.get(s) != now.get(s))
        if differ:
            log.warning("%s: the dataset's %s file(s) differ from those the checkpoint was "
                        "trained with (sha256); results are not comparable with its run",
                        checkpoint, ", ".join(f"{s}.txt" for s in differ))
    model = model_from_config(config, kg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, kg, config
