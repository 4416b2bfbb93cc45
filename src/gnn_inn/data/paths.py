"""Where downloaded datasets are cached. Imports nothing of the project."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The download cache: env ``GNN_INN_CACHE``, default ``~/.cache/gnn_inn``."""
    return Path(os.environ.get("GNN_INN_CACHE", Path.home() / ".cache" / "gnn_inn"))


__all__ = ["cache_dir"]
