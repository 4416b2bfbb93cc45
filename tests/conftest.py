from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    """The tests use tiny tensors: one intra-op thread avoids OpenMP hand-off stalls
    (~10 ms per op when the other core is busy), which otherwise dominate the run time."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def kg():
    """The built-in synthetic knowledge graph (a module may override ``kg`` with its own)."""
    from gnn_inn.data import load_dataset

    return load_dataset("synthetic")
