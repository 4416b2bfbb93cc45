"""The contract every registered encoder keeps: shapes, gradients, determinism, edge dropout."""

from __future__ import annotations

import copy

import pytest
import torch
from enc_helpers import grad_loss, tiny_graph
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import GATConv

from gnn_inn.encoders import build_encoder, edge_dropout

N, R, D = 7, 3, 8

#: one configuration per registered encoder, dropout off so outputs are comparable
CASES: dict[str, dict] = {
    "none": {},
    "rgcn": {"num_bases": 2},
    "compgcn": {"dropout": 0.0, "hidden_dropout": 0.0, "num_bases": 2},
    # variational encoders return their means in eval mode (what these contract tests see)
    "variational": {"reciprocal": True},
    "variational_gnn": {"base": {"name": "rgcn", "num_bases": 2}, "reciprocal": True},
}
GNN = ["rgcn", "compgcn"]


def _build(name, **kw):
    torch.manual_seed(0)
    return build_encoder(name, num_entities=N, num_relations=R, dim=D, **{**CASES[name], **kw})


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_shapes_and_attributes(name):
    enc = _build(name)
    ent, rel = enc(tiny_graph(N, R))
    assert ent.shape == (N, D) and enc.dim == D and enc.num_entities == N
    if enc.provides_relations:
        assert rel is not None and rel.shape == (2 * R, enc.rel_dim)
    else:
        assert rel is None and enc.rel_dim is None


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_reaches_every_parameter(name):
    enc = _build(name)
    grad_loss(*enc(tiny_graph(N, R))).backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(CASES))
def test_eval_is_deterministic(name):
    enc = _build(name, **({"edge_dropout": 0.5} if name in GNN else {})).eval()
    g = tiny_graph(N, R)
    a, ra = enc(g)
    b, rb = enc(g)
    assert torch.equal(a, b)
    assert (ra is None and rb is None) or torch.equal(ra, rb)


@pytest.mark.parametrize("name", GNN)
def test_edge_dropout_only_in_training(name):
    g = tiny_graph(N, R, num_triples=40)
    enc = _build(name, edge_dropout=0.5)
    plain = copy.deepcopy(enc)
    plain.edge_dropout = 0.0
    enc.eval()
    plain.eval()
    assert torch.equal(enc(g)[0], plain(g)[0])  # eval: every edge used
    enc.train()
    plain.train()
    torch.manual_seed(3)
    dropped = enc(g)[0]
    assert not torch.allclose(dropped, plain(g)[0])  # training: edges dropped


def test_edge_dropout_helper():
    g = tiny_graph(50, 4, num_triples=2000)
    assert edge_dropout(g, 0.0) is g
    a = edge_dropout(g, 0.3, torch.Generator().manual_seed(1))
    b = edge_dropout(g, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_type, b.edge_type)
    assert a.num_nodes == 50 and a.edge_index.size(1) == a.edge_type.numel()
    assert 0.6 < a.edge_type.numel() / g.edge_type.numel() < 0.8
    # kept edges keep their types
    pairs = {(int(s), int(t), int(r)) for (s, t), r in zip(g.edge_index.T, g.edge_type)}
    assert all((int(s), int(t), int(r)) in pairs for (s, t), r in zip(a.edge_index.T, a.edge_type))
    with pytest.raises(ValueError, match="p must be in"):
        edge_dropout(g, 1.0)


@pytest.mark.parametrize("name", GNN)
def test_wrong_graph_is_reported(name):
    enc = _build(name)
    with pytest.raises(ValueError, match="num_nodes"):
        enc(tiny_graph(N + 1, R))
    with pytest.raises(ValueError, match="num_relations"):
        enc(tiny_graph(N, R + 1))


def test_build_encoder_by_name_with_kwargs():
    enc = build_encoder("rgcn", num_entities=N, num_relations=R, dim=D, num_layers=3,
                        conv="fast", num_blocks=2)
    assert len(enc.convs) == 3 and type(enc.convs[0]).__name__ == "FastRGCNConv"
    enc = build_encoder("compgcn", num_entities=N, num_relations=R, dim=D, composition="sub")
    assert enc.convs[0].composition == "sub"
    enc = build_encoder("none", num_entities=N, num_relations=R, dim=D, init="normal")
    assert enc.init == "normal"


def test_build_encoder_errors():
    with pytest.raises(ValueError, match="could not resolve encoder 'gat' among choices "
                       "{'compgcn', 'none', 'rgcn'"):
        build_encoder("gat", num_entities=N, num_relations=R, dim=D)
    with pytest.raises(ValueError, match=r"unknown option 'layers'; accepted options: num_layers"):
        build_encoder("rgcn", num_entities=N, num_relations=R, dim=D, layers=2)
    with pytest.raises(ValueError, match="composition"):
        build_encoder("compgcn", num_entities=N, num_relations=R, dim=D, composition="add")


class GATEncoder(nn.Module):
    """A user encoder: GAT over the graph, edge types ignored."""

    def __init__(self, n: int, d: int) -> None:
        super().__init__()
        self.emb, self.conv = nn.Embedding(n, d), GATConv(d, d, heads=1)

    def forward(self, graph: Data):
        return self.conv(self.emb.weight, graph.edge_index), None


def test_plain_user_module_has_the_same_call_shape():
    from gnn_inn.decoders import build_decoder
    from gnn_inn.model import LinkPredictor

    g = tiny_graph(N, R)
    for enc in (GATEncoder(N, D), _build("rgcn"), _build("compgcn")):
        ent, rel = enc(g)
        assert ent.shape == (N, D)
        dec = build_decoder("distmult", num_relations=R, dim=D,
                            relation_source="encoder" if rel is not None else "own")
        model = LinkPredictor(encoder=enc, decoder=dec, graph=g).eval()
        h, r = torch.tensor([0, 1]), torch.tensor([0, 2])
        assert model.score_tails(h, r).shape == (2, N)
        assert model.score_heads(r, h).shape == (2, N)
