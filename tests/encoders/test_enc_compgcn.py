"""CompGCN: compositions, and the layer against a naive per-edge loop."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from enc_helpers import tiny_graph

from gnn_inn.encoders import CompGCNConv, CompGCNEncoder, ccorr, compose

ENCODERS_UNDER_TEST = ("compgcn",)

N, R, D = 6, 2, 5


def naive_ccorr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = a.numel()
    return torch.stack([sum(a[i] * b[(i + k) % d] for i in range(d)) for k in range(d)])


@pytest.mark.parametrize("d", [5, 8])
def test_corr_equals_naive_circular_correlation(d):
    g = torch.Generator().manual_seed(d)
    a, b = torch.randn(3, d, generator=g, dtype=torch.double), torch.randn(3, d, generator=g,
                                                                           dtype=torch.double)
    got = ccorr(a, b)
    for i in range(3):
        torch.testing.assert_close(got[i], naive_ccorr(a[i], b[i]))
    torch.testing.assert_close(compose(a, b, "corr"), got)
    # not symmetric: corr(a, b)[k] = corr(b, a)[-k]
    torch.testing.assert_close(ccorr(b, a), got[:, (-torch.arange(d)) % d])


def test_sub_and_mult_compositions():
    a, b = torch.randn(4, 3), torch.randn(1, 3)
    torch.testing.assert_close(compose(a, b, "sub"), a - b)
    torch.testing.assert_close(compose(a, b, "mult"), a * b)
    with pytest.raises(ValueError, match="unknown composition"):
        compose(a, b, "add")


def naive_layer(conv: CompGCNConv, x, edge_index, edge_type, rel, bn_batch_stats=False):
    """Per-edge loop of the CompGCN layer (reference-code semantics, dropout off)."""
    n, R_ = x.size(0), conv.num_relations
    edges = [(s, t, r) for (s, t), r in zip(edge_index.T.tolist(), edge_type.tolist())]
    lam = [("O" if r < R_ else "I") for _, _, r in edges]
    deg_in = Counter((t, l) for (_, t, _), l in zip(edges, lam))
    deg_out = Counter((s, l) for (s, _, _), l in zip(edges, lam))

    def inv_sqrt(c):
        return 0.0 if c == 0 else c ** -0.5

    acc = {"O": torch.zeros(n, conv.out_channels, dtype=x.dtype),
           "I": torch.zeros(n, conv.out_channels, dtype=x.dtype)}
    for (s, t, r), l in zip(edges, lam):
        if conv.norm == "paper":
            a = inv_sqrt(deg_in[(t, l)]) * inv_sqrt(deg_in[(s, l)])
        elif conv.norm == "sym":
            a = inv_sqrt(deg_in[(t, l)]) * inv_sqrt(deg_out[(s, l)])
        elif conv.norm == "mean":
            a = 1.0 / deg_in[(t, l)]
        else:
            a = 1.0
        w = conv.w_out if l == "O" else conv.w_in
        if conv.composition == "corr":
            phi = naive_ccorr(x[s], rel[r])
        else:
            phi = compose(x[s], rel[r], conv.composition)
        acc[l][t] += a * (phi @ w)
    loop = torch.stack([compose(x[v:v + 1], conv.loop_rel, conv.composition)[0]
                        for v in range(n)]) @ conv.w_loop
    out = (acc["O"] + acc["I"] + loop) / 3
    if conv.bias is not None:
        out = out + conv.bias
    if bn_batch_stats:
        out = F.batch_norm(out, None, None, conv.bn.weight, conv.bn.bias, training=True,
                           eps=conv.bn.eps)
    return torch.tanh(out), rel @ conv.w_rel


@pytest.mark.parametrize("composition", ["corr", "sub", "mult"])
@pytest.mark.parametrize("norm", ["paper", "sym", "mean", "none"])
def test_layer_matches_naive_per_edge_loop(composition, norm):
    torch.manual_seed(0)
    conv = CompGCNConv(D, 4, R, composition=composition, norm=norm, bias=True,
                       batch_norm=False).double()
    torch.nn.init.normal_(conv.bias)
    g = tiny_graph(N, R, num_triples=12, seed=1)
    x = torch.randn(N, D, dtype=torch.double)
    rel = torch.randn(2 * R, D, dtype=torch.double)
    got_x, got_r = conv(x, g.edge_index, g.edge_type, rel)
    ref_x, ref_r = naive_layer(conv, x, g.edge_index, g.edge_type, rel)
    torch.testing.assert_close(got_x, ref_x)
    torch.testing.assert_close(got_r, ref_r)


def test_layer_with_batch_norm_matches_reference_and_ignores_edge_order():
    torch.manual_seed(0)
    conv = CompGCNConv(D, 4, R, composition="corr", batch_norm=True).double()
    g = tiny_graph(N, R, num_triples=12, seed=4)
    x = torch.randn(N, D, dtype=torch.double)
    rel = torch.randn(2 * R, D, dtype=torch.double)
    got, _ = conv(x, g.edge_index, g.edge_type, rel)
    ref, _ = naive_layer(conv, x, g.edge_index, g.edge_type, rel, bn_batch_stats=True)
    torch.testing.assert_close(got, ref)
    perm = torch.randperm(g.edge_type.numel())
    shuffled, _ = conv(x, g.edge_index[:, perm], g.edge_type[perm], rel)
    torch.testing.assert_close(shuffled, got)


def test_paper_norm_drops_messages_from_nodes_without_same_direction_in_edges():
    # 0 -r0-> 1 only: node 0 has no incoming original edge, so under "paper" its message
    # to 1 is zero; under "sym" it is not.
    ei = torch.tensor([[0, 1], [1, 0]])
    et = torch.tensor([0, R])
    for norm, zero in [("paper", True), ("sym", False)]:
        conv = CompGCNConv(D, D, R, norm=norm)
        a = conv.edge_norm(ei, (et >= R).long(), 3)
        assert (a[0] == 0).item() is zero


def test_encoder_relations_bases_and_rel_dim():
    torch.manual_seed(0)
    enc = CompGCNEncoder(num_entities=N, num_relations=R, dim=D, num_bases=3, rel_dim=4,
                         hidden_dim=6, input_dim=7, num_layers=3)
    assert enc.relation is None and enc.rel_coef.shape == (2 * R, 3)
    torch.testing.assert_close(enc.input_relations(), enc.rel_coef @ enc.rel_basis)
    assert [(c.in_channels, c.out_channels) for c in enc.convs] == [(7, 6), (6, 6), (6, D)]
    ent, rel = enc.eval()(tiny_graph(N, R))
    assert ent.shape == (N, D) and rel.shape == (2 * R, 4) and enc.rel_dim == 4
    assert "composition=corr" in repr(enc.convs[0])


def test_encoder_equals_its_layers_in_eval():
    torch.manual_seed(0)
    enc = CompGCNEncoder(num_entities=N, num_relations=R, dim=D, composition="mult").eval()
    g = tiny_graph(N, R)
    x, r = enc.entity, enc.relation
    for conv in enc.convs:
        x, r = conv(x, g.edge_index, g.edge_type, r)
    ent, rel = enc(g)
    torch.testing.assert_close(ent, x)
    torch.testing.assert_close(rel, r)


def test_residual_adds_the_input_table_and_reduces_to_lookup():
    torch.manual_seed(0)
    enc = CompGCNEncoder(num_entities=N, num_relations=R, dim=D, residual=True).eval()
    plain = CompGCNEncoder(num_entities=N, num_relations=R, dim=D).eval()
    plain.load_state_dict(enc.state_dict())
    g = tiny_graph(N, R)
    ent, rel = enc(g)
    ref, ref_rel = plain(g)
    torch.testing.assert_close(ent, ref + enc.entity)
    torch.testing.assert_close(rel, ref_rel)
    assert "residual=True" in repr(enc)
    # zero layer output: every entity is its own table row (the lookup encoder)
    with torch.no_grad():
        for conv in enc.convs:
            for w in (conv.w_in, conv.w_out, conv.w_loop):
                w.zero_()
            conv.bn.running_mean.zero_()
            conv.bn.weight.zero_()
            conv.bn.bias.zero_()
    torch.testing.assert_close(enc(g)[0], enc.entity)
    # gradients reach the table directly, not only through the layers
    enc.train()
    enc(g)[0].sum().backward()
    assert enc.entity.grad is not None and enc.entity.grad.abs().min() > 0


def test_constructor_errors():
    with pytest.raises(ValueError, match="norm must be"):
        CompGCNConv(4, 4, 2, norm="gcn")
    with pytest.raises(ValueError, match="num_layers"):
        CompGCNEncoder(num_entities=3, num_relations=1, dim=4, num_layers=0)
    with pytest.raises(ValueError, match="num_bases"):
        CompGCNEncoder(num_entities=3, num_relations=1, dim=4, num_bases=0)
    with pytest.raises(ValueError, match=r"input_dim \(3\) must equal dim \(4\)"):
        CompGCNEncoder(num_entities=3, num_relations=1, dim=4, input_dim=3, residual=True)
