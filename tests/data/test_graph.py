"""KnowledgeGraph on the real benchmark files; message graph and filter index."""

from __future__ import annotations

import os

import pytest
import torch

from gnn_inn.data import FilterIndex, KnowledgeGraph, load_dataset, sha256_file
from gnn_inn.data.datasets import DATASETS, verify
from helpers import DATA, needs_data


@needs_data
@pytest.mark.parametrize("name,counts", [
    ("fb15k-237", (14541, 237, 272115, 17535, 20466, 9, 28)),
    ("wn18rr", (40943, 11, 86835, 3034, 3134, 210, 210)),
    ("umls", (135, 46, 5216, 652, 661, 0, 0)),
    ("nations", (14, 55, 1592, 199, 201, 0, 0)),
])
def test_benchmark_counts(name, counts):
    s = load_dataset(name, data_dir=DATA).stats()
    assert (s["num_entities"], s["num_relations"], s["num_train"], s["num_valid"], s["num_test"],
            s["unseen_valid_triples"], s["unseen_test_triples"]) == counts


@needs_data
def test_fb15k237_is_crlf_and_verified():
    raw = open(os.path.join(DATA, "fb15k-237", "valid.txt"), "rb").read(4096)
    assert b"\r\n" in raw
    for split, digest in DATASETS["fb15k-237"].sha256.items():
        assert sha256_file(os.path.join(DATA, "fb15k-237", f"{split}.txt")) == digest


def test_tampered_file_fails_verification(tmp_path):
    spec = DATASETS["umls"]
    for s in ("train", "valid", "test"):
        (tmp_path / f"{s}.txt").write_text("a\tr\tb\n")
    with pytest.raises(ValueError, match="sha256 mismatch for umls train"):
        verify(tmp_path, spec)


def test_custom_folder_and_unknown_name(tmp_path):
    for s in ("train", "valid", "test"):
        (tmp_path / f"{s}.txt").write_text("a\tr\tb\n")
    assert load_dataset(str(tmp_path)).num_entities == 2
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*fb15k-237"):
        load_dataset("nope")


def _kg():
    g = torch.Generator().manual_seed(0)
    tr = torch.stack([torch.randint(20, (80,), generator=g), torch.randint(3, (80,), generator=g),
                      torch.randint(20, (80,), generator=g)], 1)
    return KnowledgeGraph(name="t", entity_names=[str(i) for i in range(20)],
                          relation_names=list("abc"), train=tr[:60], valid=tr[60:70],
                          test=tr[70:])


def test_message_graph_is_train_only_with_inverses():
    kg = _kg()
    g = kg.message_graph()
    assert g.edge_index.shape == (2, 120) and g.num_nodes == 20
    fwd = g.edge_type < 3
    edges = {(s, int(r), d) for s, r, d in zip(g.edge_index[0][fwd].tolist(),
                                                 g.edge_type[fwd], g.edge_index[1][fwd].tolist())}
    assert edges == {tuple(x) for x in kg.train.tolist()}
    inv = {(d, int(r) - 3, s) for s, r, d in zip(g.edge_index[0][~fwd].tolist(),
                                                   g.edge_type[~fwd],
                                                   g.edge_index[1][~fwd].tolist())}
    assert inv == edges
    held = {tuple(x) for x in torch.cat([kg.valid, kg.test]).tolist()} - edges
    assert held and not held & edges


def test_filter_index_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    trip = torch.stack([torch.randint(30, (500,), generator=g),
                        torch.randint(4, (500,), generator=g),
                        torch.randint(30, (500,), generator=g)], 1)
    fi = FilterIndex(trip, 30, 4)
    h, r, t = torch.randint(30, (50,), generator=g), torch.randint(4, (50,), generator=g), \
        torch.randint(30, (50,), generator=g)
    s = {tuple(x) for x in trip.tolist()}
    rows, cols = fi.tails(h, r)
    got = {(int(a), int(b)) for a, b in zip(rows, cols)}
    ref = {(i, e) for i in range(50) for e in range(30) if (int(h[i]), int(r[i]), e) in s}
    assert got == ref and len(rows) == len(got)
    rows, cols = fi.heads(r, t)
    got = {(int(a), int(b)) for a, b in zip(rows, cols)}
    ref = {(i, e) for i in range(50) for e in range(30) if (e, int(r[i]), int(t[i])) in s}
    assert got == ref


def test_relation_categories():
    tr = torch.tensor([[0, 0, 1], [2, 0, 3],            # 1-1
                       [0, 1, 1], [0, 1, 2], [0, 1, 3],  # 1-N
                       [1, 2, 0], [2, 2, 0], [3, 2, 0],  # N-1
                       [0, 3, 1], [0, 3, 2], [1, 3, 1], [1, 3, 2]])  # N-N
    kg = KnowledgeGraph(name="c", entity_names=list("abcd"), relation_names=list("wxyz"),
                        train=tr, valid=tr[:1], test=tr[:1])
    assert kg.relation_categories() == ["1-1", "1-N", "N-1", "N-N"]
