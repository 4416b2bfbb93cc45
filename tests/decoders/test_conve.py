"""ConvE: shapes, batched paths, reciprocal head queries, CompGCN relations, a training run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gnn_inn.config import Config
from gnn_inn.decoders import DECODERS, ConvE, build_decoder
from gnn_inn.model import build_model
from helpers import DATA, needs_data

N, R, D, B = 13, 4, 16, 6
SMALL = {"k_h": 4, "k_w": 4, "num_filters": 5, "kernel_size": 3}


def _setup(seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    dec = build_decoder("conve", num_relations=R, dim=D, num_entities=N, **{**SMALL, **kw})
    with torch.no_grad():
        dec.relation.copy_(torch.randn(dec.relation.shape, generator=g))
        dec.bias.copy_(torch.randn(N, generator=g))
    ent = torch.randn(N, D, generator=g)
    h, t = torch.randint(N, (B,), generator=g), torch.randint(N, (B,), generator=g)
    r = torch.randint(R, (B,), generator=g)
    return dec, ent, h, r, t


def _reference(dec: ConvE, e: torch.Tensor, w: torch.Tensor, ent: torch.Tensor) -> torch.Tensor:
    """Eval-mode ConvE written out layer by layer: ``[B, N]`` scores."""
    x = torch.cat([e.view(-1, 1, dec.k_h, dec.k_w), w.view(-1, 1, dec.k_h, dec.k_w)], 2)
    x = F.relu(dec.bn1(dec.conv(dec.bn0(x))))
    x = F.relu(dec.bn2(dec.fc(x.flatten(1))))
    return x @ ent.T + dec.bias


def test_registered():
    assert DECODERS["conve"] is ConvE and ConvE.uses_reciprocal


def test_shapes_and_formula():
    dec, ent, h, r, t = _setup()
    dec.eval()
    tails, heads = dec.score_tails(ent, None, h, r), dec.score_heads(ent, None, r, t)
    assert tails.shape == heads.shape == (B, N)
    assert dec.relation.shape == (2 * R, D) and dec.bias.shape == (N,)
    torch.testing.assert_close(tails, _reference(dec, ent[h], dec.relation[r], ent))
    torch.testing.assert_close(heads, _reference(dec, ent[t], dec.relation[r + R], ent))
    torch.testing.assert_close(dec.score(ent, None, h, r, t), tails[torch.arange(B), t])


def test_candidates_match_all_columns():
    dec, ent, h, r, t = _setup()
    dec.eval()
    cand = torch.randint(N, (B, 5), generator=torch.Generator().manual_seed(1))
    rows = torch.arange(B).unsqueeze(1)
    torch.testing.assert_close(dec.score_candidates(ent, None, h, r, t, cand, "tail"),
                               dec.score_tails(ent, None, h, r)[rows, cand])
    torch.testing.assert_close(dec.score_candidates(ent, None, h, r, t, cand, "head"),
                               dec.score_heads(ent, None, r, t)[rows, cand])


def test_head_queries_use_the_reciprocal_row():
    dec, ent, h, r, t = _setup()
    dec.eval()
    r = torch.zeros(B, dtype=torch.long)
    tails, heads = dec.score_tails(ent, None, h, r), dec.score_heads(ent, None, r, t)
    with torch.no_grad():
        dec.relation[R] += 1.0  # the reciprocal of relation 0
    torch.testing.assert_close(dec.score_tails(ent, None, h, r), tails)
    assert not torch.allclose(dec.score_heads(ent, None, r, t), heads)
    heads = dec.score_heads(ent, None, r, t)
    with torch.no_grad():
        dec.relation[0] += 1.0
    torch.testing.assert_close(dec.score_heads(ent, None, r, t), heads)
    assert not torch.allclose(dec.score_tails(ent, None, h, r), tails)


def test_training_mode_gradients_and_single_query():
    dec, ent, h, r, t = _setup()
    dec.train()
    ent.requires_grad_(True)
    (dec.score_tails(ent, None, h, r).sum() + dec.score_heads(ent, None, r, t).sum()).backward()
    assert ent.grad is not None and torch.isfinite(ent.grad).all()
    for name, p in dec.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # batch norm over one sample has no batch statistics: running statistics are used
    assert dec.score_heads(ent, None, r[:1], t[:1]).shape == (1, N)


@pytest.mark.parametrize("kw,match", [
    ({"k_h": 3, "k_w": 5}, "k_h \\* k_w must equal dim"),
    ({"k_h": None, "k_w": 3}, "does not divide"),
    ({"kernel_size": 5}, "does not fit"),
    ({"num_entities": None}, "num_entities"),
])
def test_bad_arguments_raise(kw, match):
    args = {"num_entities": N, **SMALL, **kw}
    with pytest.raises(ValueError, match=match):
        ConvE(num_relations=R, dim=D, **args)


def test_default_image_shape():
    dec = ConvE(num_relations=R, dim=200, num_entities=N)
    assert (dec.k_h, dec.k_w, dec.kernel_size, dec.num_filters) == (20, 10, (7, 7), 200)
    assert ConvE(num_relations=R, dim=200, num_entities=N, k_w=20).k_h == 10
    dec = ConvE(num_relations=R, dim=200, entity_bias=False)
    assert dec.bias is None


def test_encoder_relations_from_compgcn():
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(0)
    h, t = torch.randint(N, (30,), generator=g), torch.randint(N, (30,), generator=g)
    r = torch.randint(R, (30,), generator=g)
    graph = Data(edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
                 edge_type=torch.cat([r, r + R]), num_nodes=N)
    model = build_model(num_entities=N, num_relations=R, dim=D,
                        encoder={"name": "compgcn", "num_layers": 1, "composition": "corr"},
                        decoder={"name": "conve", **SMALL}, graph=graph)
    dec = model.decoder
    assert dec.relation_source == "encoder" and dec.relation is None
    assert dec.bias.shape == (N,)  # num_entities injected by build_model
    q = torch.arange(B) % R
    model.train()
    loss = model.score_tails(q, q).sum() + model.score_heads(q, q).sum()
    loss.backward()
    assert model.encoder.relation.grad is not None
    assert model.encoder.relation.grad[R:].abs().sum() > 0  # reciprocal rows are used
    model.eval()
    assert model.score_tails(q, q).shape == model.score_heads(q, q).shape == (B, N)
    # head queries read the encoder's row r + R, tail queries row r
    ent, rel = model.encode()
    rel2 = rel.clone()
    rel2[R:] += 1.0
    torch.testing.assert_close(dec.score_tails(ent, rel2, q, q), dec.score_tails(ent, rel, q, q))
    assert not torch.allclose(dec.score_heads(ent, rel2, q, q), dec.score_heads(ent, rel, q, q))
    with pytest.raises(ValueError, match="relation_source"):
        dec.score_tails(ent, None, q, q)


@needs_data
@pytest.mark.parametrize("encoder", [{"name": "none"}, {"name": "compgcn", "num_layers": 1}])
def test_training_on_umls_beats_random(encoder):
    from gnn_inn.training import trainer_from_config

    cfg = Config.from_dict({
        "seed": 0,
        "dataset": {"name": "umls", "data_dir": DATA},
        "model": {"dim": 32, "encoder": encoder,
                  "decoder": {"name": "conve", "k_h": 8, "k_w": 4, "num_filters": 16,
                              "kernel_size": 3}},
        "train": {"epochs": 10, "batch_size": 128, "lr": 0.01, "eval_every": 0, "patience": 0,
                  "loss": {"name": "kvsall", "label_smoothing": 0.1}, "device": "cpu"},
        "eval": {"batch_size": 512},
    })
    trainer = trainer_from_config(cfg, quiet=True)
    before = trainer.evaluate("valid").metrics()["mrr"]  # untrained: ~ random ranking
    trainer.fit()
    after = trainer.evaluate("valid").metrics()["mrr"]
    assert before < 0.1
    assert after > 0.3 and after > 4 * before, (before, after)
