"""LookupEncoder: a table, independent of the graph."""

from __future__ import annotations

import pytest
import torch
from enc_helpers import tiny_graph
from torch_geometric.data import Data

from gnn_inn.encoders import LookupEncoder

ENCODERS_UNDER_TEST = ("none",)


def test_returns_its_table_and_ignores_edges():
    enc = LookupEncoder(num_entities=5, dim=4).eval()
    empty = Data(edge_index=torch.empty(2, 0, dtype=torch.long),
                 edge_type=torch.empty(0, dtype=torch.long), num_nodes=5)
    ent, rel = enc(tiny_graph(5, 2))
    assert rel is None and ent is enc.weight
    assert torch.equal(enc(empty)[0], ent) and torch.equal(enc(None)[0], ent)
    assert torch.equal(enc(Data(num_nodes=5))[0], ent)


@pytest.mark.parametrize("init", ["xavier", "normal", "uniform"])
def test_init_options(init):
    torch.manual_seed(0)
    enc = LookupEncoder(num_entities=400, dim=50, init=init, init_std=0.05)
    std = enc.weight.std().item()
    expected = {"xavier": (6 / 450) ** 0.5 / 3 ** 0.5, "normal": 0.05,
                "uniform": 0.05 / 3 ** 0.5}[init]
    assert abs(std - expected) < 0.1 * expected
    with pytest.raises(ValueError, match="init must be"):
        LookupEncoder(num_entities=4, dim=2, init="zeros")


def test_dropout_only_in_training():
    torch.manual_seed(0)
    enc = LookupEncoder(num_entities=20, dim=10, dropout=0.5)
    assert (enc(None)[0] == 0).any()
    assert torch.equal(enc.eval()(None)[0], enc.weight)
