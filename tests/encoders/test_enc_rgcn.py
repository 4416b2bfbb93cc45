"""RGCNEncoder: PyG's R-GCN layers against a dense per-relation reference."""

from __future__ import annotations

import pytest
import torch
from enc_helpers import tiny_graph
from torch_geometric.nn import FastRGCNConv, RGCNConv

from gnn_inn.encoders import RGCNEncoder, TypedRGCNConv

ENCODERS_UNDER_TEST = ("rgcn",)

N, R, D = 6, 2, 4
DECOMP = {"full": {}, "bases": {"num_bases": 3}, "blocks": {"num_blocks": 2}}


def dense_weights(conv) -> torch.Tensor:
    """``W_r [2R, d_in, d_out]`` composed from the layer's own parameters."""
    if conv.num_bases is not None:
        return torch.einsum("rb,bio->rio", conv.comp, conv.weight)
    if conv.num_blocks is not None:
        return torch.stack([torch.block_diag(*blocks) for blocks in conv.weight])
    return conv.weight


def dense_rgcn(conv, x, edge_index, edge_type) -> torch.Tensor:
    """h_i' = W_0 h_i + sum_r sum_{j in N_r(i)} 1/c_{i,r} W_r h_j + b  (row-vector convention)."""
    n, num_types = x.size(0), conv.num_relations
    w = dense_weights(conv)
    out = x @ conv.root + conv.bias
    for r in range(num_types):
        adj = torch.zeros(n, n, dtype=x.dtype)
        for (j, i), t in zip(edge_index.T.tolist(), edge_type.tolist()):
            if t == r:
                adj[i, j] += 1.0
        c = adj.sum(1, keepdim=True).clamp(min=1.0)
        out = out + (adj / c) @ x @ w[r]
    return out


@pytest.mark.parametrize("conv_name", ["rgcn", "fast", "typed"])
@pytest.mark.parametrize("decomp", sorted(DECOMP))
def test_layer_matches_dense_reference(conv_name, decomp):
    torch.manual_seed(0)
    enc = RGCNEncoder(num_entities=N, num_relations=R, dim=D, conv=conv_name,
                      **DECOMP[decomp]).double()
    for conv in enc.convs:
        torch.nn.init.normal_(conv.bias)  # non-zero bias to test it too
    g = tiny_graph(N, R, num_triples=14, seed=2)
    conv = enc.convs[0]
    x = enc.entity
    got = conv(x, g.edge_index, g.edge_type)
    torch.testing.assert_close(got, dense_rgcn(conv, x, g.edge_index, g.edge_type))
    # whole encoder: activation between layers, none after the last
    h = torch.relu(dense_rgcn(enc.convs[0], x, g.edge_index, g.edge_type))
    ref = dense_rgcn(enc.convs[1], h, g.edge_index, g.edge_type)
    torch.testing.assert_close(enc.eval()(g)[0], ref)


@pytest.mark.parametrize("other", ["fast", "typed"])
@pytest.mark.parametrize("aggr", ["mean", "add"])
@pytest.mark.parametrize("decomp", sorted(DECOMP))
def test_rgcn_variants_agree_with_the_same_weights(decomp, aggr, other):
    torch.manual_seed(0)
    kw = {"num_entities": N, "num_relations": R, "dim": D, "aggr": aggr, **DECOMP[decomp]}
    slow = RGCNEncoder(conv="rgcn", **kw)
    fast = RGCNEncoder(conv=other, **kw)
    fast.load_state_dict(slow.state_dict())
    cls = {"fast": FastRGCNConv, "typed": TypedRGCNConv}[other]
    assert type(slow.convs[0]) is RGCNConv and type(fast.convs[0]) is cls
    g = tiny_graph(N, R, num_triples=20, seed=5)
    torch.testing.assert_close(slow.eval()(g)[0], fast.eval()(g)[0])
    # gradients agree too
    for enc in (slow, fast):
        enc(g)[0].pow(2).sum().backward()
    for (name, a), b in zip(slow.named_parameters(), fast.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_convs_see_inverse_types_and_options():
    enc = RGCNEncoder(num_entities=N, num_relations=R, dim=D, hidden_dim=6, num_layers=3,
                      self_loop=False, bias=False, init="normal", init_std=0.01)
    assert [c.num_relations for c in enc.convs] == [2 * R] * 3
    assert [(c.in_channels, c.out_channels) for c in enc.convs] == [(6, 6), (6, 6), (6, D)]
    assert enc.convs[0].root is None and enc.convs[0].bias is None
    assert enc.entity.shape == (N, 6) and enc.entity.std() < 0.05
    assert "num_relations=2" in repr(enc)


def test_constructor_errors():
    kw = {"num_entities": N, "num_relations": R, "dim": D}
    for bad, msg in [({"conv": "gcn"}, "conv must be"), ({"num_layers": 0}, "num_layers"),
                     ({"num_bases": 2, "num_blocks": 2}, "not both"),
                     ({"num_blocks": 3}, "must divide"), ({"aggr": "max"}, "aggr")]:
        with pytest.raises(ValueError, match=msg):
            RGCNEncoder(**kw, **bad)


@pytest.mark.parametrize("aggr", ["mean", "add"])
def test_typed_basis_first_and_per_type_orders_agree(aggr, monkeypatch):
    """TypedRGCNConv picks the cheaper evaluation order of a basis decomposition; both orders
    must give the same output and the same gradients (and match the dense reference)."""
    torch.manual_seed(0)
    conv = TypedRGCNConv(5, 3, 2 * R, num_bases=3, aggr=aggr).double()
    torch.nn.init.normal_(conv.bias)
    g = tiny_graph(N, R, num_triples=20, seed=7)
    x = torch.randn(N, 5, dtype=torch.float64, requires_grad=True)
    results = []
    for first in (True, False):
        monkeypatch.setattr(TypedRGCNConv, "_basis_first", lambda self, p, n, f=first: f)
        conv.zero_grad()
        x.grad = None
        out = conv(x, g.edge_index, g.edge_type)
        out.pow(2).sum().backward()
        results.append((out.detach(), x.grad.clone(), conv.comp.grad.clone(),
                        conv.weight.grad.clone()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    if aggr == "mean":
        ref = dense_rgcn(conv, x.detach(), g.edge_index, g.edge_type)
        torch.testing.assert_close(results[0][0], ref)


def test_typed_basis_order_choice_follows_the_cost():
    conv = TypedRGCNConv(500, 500, 92, num_bases=14)
    assert conv._basis_first(num_pairs=10_000, n=135)  # UMLS-sized: basis first
    assert not conv._basis_first(num_pairs=100, n=100_000)  # few pairs, many nodes: per type


def test_typed_basis_order_choice_on_measured_shapes():
    """Shapes scripts/bench_rgcn_order.py measured (CPU): FB15k-237's train graph is 1.8x
    faster per type (723 vs 1281 ms) although basis-first needs fewer multiply-adds; UMLS's
    train graph (1,560 cache-resident pairs) is 1.7x faster basis-first; a small subgraph
    touching ~1k types is faster basis-first (34 vs 41 ms)."""
    fb = TypedRGCNConv(64, 64, 474, num_bases=4)
    assert not fb._basis_first(num_pairs=149_689, n=14_541)
    assert not fb._basis_first(num_pairs=99_258, n=14_541)
    many_types = TypedRGCNConv(64, 64, 1070, num_bases=8)
    assert many_types._basis_first(num_pairs=4_994, n=2_000)
    assert not many_types._basis_first(num_pairs=15_985, n=15_400)
    umls = TypedRGCNConv(500, 500, 92, num_bases=20)
    assert umls._basis_first(num_pairs=1_560, n=135)
    nations = TypedRGCNConv(500, 500, 110, num_bases=22)
    assert nations._basis_first(num_pairs=909, n=14)
