"""Knowledge graphs: reading, vocabularies, splits, filters, PyG graphs, named datasets, OGB.

Imports nothing else of the project.
"""

from __future__ import annotations

from .datasets import DATASETS, DatasetSpec, load_dataset, sha256_file
from .filters import FilterIndex
from .graph import SPLITS, KnowledgeGraph, check_vocab
from .io import DataFormatError, read_triples
from .ogb import OGB_DATASETS, OGBKnowledgeGraph, load_ogb
from .synthetic import make_synthetic

__all__ = [
    "DATASETS", "DataFormatError", "DatasetSpec", "FilterIndex", "KnowledgeGraph",
    "OGB_DATASETS", "OGBKnowledgeGraph", "SPLITS", "check_vocab", "load_dataset", "load_ogb",
    "make_synthetic", "read_triples", "sha256_file",
]
