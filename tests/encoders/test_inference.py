"""Layer-wise inference (node batches, all in-edges) equals the full-batch forward pass."""

from __future__ import annotations

import pytest
import torch
from enc_helpers import tiny_graph

from gnn_inn.encoders import CompGCNEncoder, RGCNEncoder
from gnn_inn.encoders.base import dst_blocks

N, R, D = 23, 3, 8


def _graph():
    return tiny_graph(N, R, num_triples=70, seed=4)


def test_dst_blocks_cover_every_edge_once():
    g = _graph()
    seen = []
    for start, end, eids in dst_blocks(g.edge_index, N, 5):
        assert end - start <= 5
        dst = g.edge_index[1, eids]
        assert bool(((dst >= start) & (dst < end)).all())
        seen.append(eids)
    got = torch.sort(torch.cat(seen)).values
    assert torch.equal(got, torch.arange(g.edge_index.size(1)))


@pytest.mark.parametrize("conv", ["rgcn", "fast", "typed"])
@pytest.mark.parametrize("extra", [{}, {"num_bases": 2}, {"num_blocks": 2}, {"aggr": "add"}])
@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_rgcn_inference_equals_forward(conv, extra, batch_size):
    torch.manual_seed(0)
    enc = RGCNEncoder(num_entities=N, num_relations=R, dim=D, num_layers=2, conv=conv,
                      dropout=0.3, edge_dropout=0.2, **extra).eval()
    g = _graph()
    ref, _ = enc(g)
    got, rel = enc.inference(g, batch_size)
    assert rel is None
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("composition", ["sub", "mult", "corr"])
@pytest.mark.parametrize("norm", ["paper", "sym", "mean", "none"])
@pytest.mark.parametrize("residual", [False, True])
def test_compgcn_inference_equals_forward(composition, norm, residual):
    torch.manual_seed(0)
    enc = CompGCNEncoder(num_entities=N, num_relations=R, dim=D, num_layers=2,
                         composition=composition, norm=norm, bias=True, rel_dim=6,
                         residual=residual)
    for conv in enc.convs:  # non-trivial running statistics for eval-mode batch norm
        conv.bn.running_mean.normal_()
        conv.bn.running_var.uniform_(0.5, 2.0)
    enc.eval()
    g = _graph()
    ref, ref_rel = enc(g)
    got, rel = enc.inference(g, 4)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rel, ref_rel, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["rgcn", "compgcn"])
def test_inference_batch_size_switches_eval_forward(name):
    torch.manual_seed(0)
    cls = RGCNEncoder if name == "rgcn" else CompGCNEncoder
    enc = cls(num_entities=N, num_relations=R, dim=D).eval()
    g = _graph()
    ref, _ = enc(g)
    enc.inference_batch_size = 3
    calls = []
    orig = enc.inference
    enc.inference = lambda graph, bs: calls.append(bs) or orig(graph, bs)
    got, _ = enc(g)
    assert calls == [3]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    enc.train()  # training mode never uses the inference path
    enc(g)
    assert calls == [3]


def test_compgcn_inference_refuses_training_mode():
    enc = CompGCNEncoder(num_entities=N, num_relations=R, dim=D)
    with pytest.raises(RuntimeError, match="eval mode"):
        enc.inference(_graph(), 4)
