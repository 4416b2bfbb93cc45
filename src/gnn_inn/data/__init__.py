"""Knowledge graphs: reading, vocabularies, splits, filters, PyG graphs, named datasets.

Imports nothing else of the project.
"""

from __future__ import annotations

from .datasets import DATASETS, DatasetSpec, load_dataset, sha256_file
from .filters import FilterIndex
from .graph import SPLITS, KnowledgeGraph, check_vocab
from .io import DataFormatError, read_triples
from .synthetic import make_synthetic

__all__ = [
    "DATASETS", "DataFormatError", "DatasetSpec", "FilterIndex", "KnowledgeGraph", "SPLITS",
    "check_vocab", "load_dataset", "make_synthetic", "read_triples", "sha256_file",
]
