"""Where datasets are looked for and where downloads are cached. Imports nothing of the
project."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The download cache: env ``GNN_INN_CACHE``, default ``~/.cache/gnn_inn``."""
    return Path(os.environ.get("GNN_INN_CACHE", Path.home() / ".cache" / "gnn_inn"))


def data_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The folders that hold ``<name>/`` dataset folders, in lookup order, as ``(what, path)``:
    the ``data_dir`` argument (``--data-dir`` / ``dataset.data_dir``), then env ``GNN_INN_DATA``
    (unset or empty ones left out)."""
    roots = [("data_dir", data_dir), ("GNN_INN_DATA", os.environ.get("GNN_INN_DATA"))]
    return [(what, Path(base)) for what, base in roots if base]


__all__ = ["cache_dir", "data_roots"]
