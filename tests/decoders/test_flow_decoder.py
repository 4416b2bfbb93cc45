"""FlowDecoder: exact inverse head queries, patterns by construction, naive agreement."""

from __future__ import annotations

import pytest
import torch

from gnn_inn.decoders import build_decoder
from gnn_inn.decoders.patterns import RelationPattern
from gnn_inn.flows import FLOWS
from helpers import perturb

N, R, D, B = 13, 4, 6, 5


def _setup(flow="affine_coupling", conditioning="table", patterns="free", **kw):
    torch.manual_seed(0)
    dec = build_decoder("flow", num_relations=R, dim=D, flow=flow, conditioning=conditioning,
                        patterns=patterns, **kw).double()
    perturb(dec, std=0.3, seed=0)
    g = torch.Generator().manual_seed(1)
    ent = torch.randn(N, D, generator=g, dtype=torch.float64)
    h, t = torch.randint(N, (B,), generator=g), torch.randint(N, (B,), generator=g)
    r = torch.arange(B) % R
    return dec, ent, h, r, t


MIXED = [RelationPattern("free"), RelationPattern("involution"),
         RelationPattern("tied-inverse", 0), RelationPattern("free")]


@pytest.mark.parametrize("flow", sorted(FLOWS))
@pytest.mark.parametrize("conditioning", ["table", "context"])
def test_scores_match_naive_per_candidate(flow, conditioning):
    dec, ent, h, r, t = _setup(flow, conditioning, patterns=MIXED, margin=1.5)
    tails = dec.score_tails(ent, None, h, r)
    heads = dec.score_heads(ent, None, r, t)
    for e in range(N):
        ee = torch.full((B,), e)
        fwd = dec.transform(ent[h], r)[0]
        ref_t = 1.5 - torch.linalg.vector_norm(fwd - ent[ee], dim=-1)
        torch.testing.assert_close(tails[:, e], ref_t)
        # head queries use the exact inverse: ‖f⁻¹(e_t) − e_h‖
        inv = dec.transform(ent[t], r, inverse=True)[0]
        torch.testing.assert_close(heads[:, e], 1.5 - torch.linalg.vector_norm(inv - ent[ee],
                                                                               dim=-1))


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_inverse_is_exact_and_patterns_hold(flow):
    dec, ent, h, r, t = _setup(flow, "table", patterns=MIXED)
    x = ent[h]
    y, ld = dec.transform(x, r)
    back, ld_inv = dec.transform(y, r, inverse=True)
    torch.testing.assert_close(back, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(ld, -ld_inv, atol=1e-6, rtol=0)
    # involution: f_1(f_1(x)) = x ; tied inverse: f_2 = f_0^{-1}
    r1 = torch.ones(B, dtype=torch.long)
    torch.testing.assert_close(dec.transform(dec.transform(x, r1)[0], r1)[0], x, atol=1e-6,
                               rtol=0)
    r0, r2 = torch.zeros(B, dtype=torch.long), torch.full((B,), 2)
    torch.testing.assert_close(dec.transform(x, r2)[0], dec.transform(x, r0, inverse=True)[0])


def test_involution_relation_scores_symmetric():
    # an isometric involution (orthogonal g) gives s(h, r, t) = s(t, r, h) exactly
    dec, ent, h, r, t = _setup("orthogonal", "table", patterns="involution", p=2.0)
    torch.testing.assert_close(dec.score(ent, None, h, r, t), dec.score(ent, None, t, r, h))
    # any involution with the symmetric training score: ½(‖f(h)−t‖ + ‖h−f(t)‖) is symmetric
    dec, ent, h, r, t = _setup("spline_coupling", "table", patterns="involution",
                               symmetric_score=True)
    dec.train()
    s_ht = dec.score_candidates(ent, None, h, r, t, t[:, None], "tail")
    s_th = dec.score_candidates(ent, None, t, r, h, h[:, None], "tail")
    torch.testing.assert_close(s_ht, s_th)
    dec.eval()
    assert not torch.allclose(dec.score(ent, None, h, r, t), dec.score(ent, None, t, r, h))


def test_symmetric_training_score_and_gradients():
    dec, ent, h, r, t = _setup("affine_coupling", "context", symmetric_score=True)
    cand = torch.randint(N, (B, 3), generator=torch.Generator().manual_seed(2))
    dec.train()
    s_train = dec.score_candidates(ent, None, h, r, t, cand, "tail")
    dec.eval()
    s_eval = dec.score_candidates(ent, None, h, r, t, cand, "tail")
    back = dec.transform(ent[cand].reshape(-1, D), r.repeat_interleave(3), inverse=True)[0]
    ref_back = -torch.linalg.vector_norm(ent[h].repeat_interleave(3, 0) - back, dim=-1)
    torch.testing.assert_close(s_train, 0.5 * (s_eval + ref_back.view(B, 3)))
    dec.train()
    s_train.sum().backward()
    missing = [n for n, p in dec.named_parameters() if p.grad is None]
    assert not missing, missing


def test_context_mode_uses_encoder_relations():
    torch.manual_seed(0)
    dec = build_decoder("flow", num_relations=R, dim=D, conditioning="context", context_dim=D,
                        relation_source="encoder")
    assert dec.relation is None
    g = torch.Generator().manual_seed(0)
    ent, rel = torch.randn(N, D, generator=g), torch.randn(2 * R, D, generator=g)
    perturb(dec, std=0.3, seed=0)
    h, r = torch.arange(3), torch.tensor([0, 1, 3])
    a = dec.score_tails(ent, rel, h, r)
    b = dec.score_tails(ent, rel + 1.0, h, r)
    assert a.shape == (3, N) and not torch.allclose(a, b)


def test_auto_patterns_from_training_triples():
    a = torch.arange(20)
    b = (a + 3) % 20
    train = torch.cat([torch.stack([a, torch.zeros_like(a), b], 1),
                       torch.stack([b, torch.zeros_like(a), a], 1),
                       torch.stack([a, torch.ones_like(a), b], 1),
                       torch.stack([a, torch.full_like(a, 2), (a * 7) % 20], 1)])
    dec = build_decoder("flow", num_relations=3, dim=4, patterns="auto", train_triples=train)
    assert dec.pattern_table() == ["involution", "free", "free"]


def test_entity_bias_adds_per_candidate_prior():
    dec, ent, h, r, t = _setup("rotation", entity_bias=True, num_entities=N)
    with torch.no_grad():
        dec.entity_bias.copy_(torch.linspace(-1, 1, N, dtype=torch.float64))
    tails = dec.score_tails(ent, None, h, r)
    heads = dec.score_heads(ent, None, r, t)
    for e in range(N):
        fwd = dec.transform(ent[h], r)[0]
        ref = -torch.linalg.vector_norm(fwd - ent[e], dim=-1) + dec.entity_bias[e]
        torch.testing.assert_close(tails[:, e], ref)
        inv = dec.transform(ent[t], r, inverse=True)[0]
        ref = -torch.linalg.vector_norm(inv - ent[e], dim=-1) + dec.entity_bias[e]
        torch.testing.assert_close(heads[:, e], ref)
    cand = torch.randint(N, (B, 4), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(dec.score_candidates(ent, None, h, r, t, cand, "tail"),
                               tails.gather(1, cand))
    torch.testing.assert_close(dec.score_candidates(ent, None, h, r, t, cand, "head"),
                               heads.gather(1, cand))
    with pytest.raises(ValueError, match="num_entities"):
        build_decoder("flow", num_relations=R, dim=D, entity_bias=True)


@pytest.mark.parametrize("conditioning", ["table", "context"])
def test_relation_scale_multiplies_each_relations_distances(conditioning):
    dec, ent, h, r, t = _setup("affine_coupling", conditioning, relation_scale=True,
                               entity_bias=True, num_entities=N, margin=0.5)
    with torch.no_grad():
        dec.log_scale.copy_(torch.tensor([-1.0, 0.0, 0.7, 10.0], dtype=torch.float64))
        dec.entity_bias.normal_(generator=torch.Generator().manual_seed(2))
    tau = torch.tanh(dec.log_scale / 3.0) * 3.0  # soft clamp at |log τ| ≤ 3
    tails = dec.score_tails(ent, None, h, r)
    heads = dec.score_heads(ent, None, r, t)
    fwd = dec.transform(ent[h], r)[0]
    inv = dec.transform(ent[t], r, inverse=True)[0]
    for e in range(N):
        for got, q in ((tails, fwd), (heads, inv)):
            ref = 0.5 - tau[r].exp() * torch.linalg.vector_norm(q - ent[e], dim=-1)
            torch.testing.assert_close(got[:, e], ref + dec.entity_bias[e])
    cand = torch.randint(N, (B, 3), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(dec.score_candidates(ent, None, h, r, t, cand, "tail"),
                               tails.gather(1, cand))
    torch.testing.assert_close(dec.score_candidates(ent, None, h, r, t, cand, "head"),
                               heads.gather(1, cand))
    assert torch.isfinite(tails).all() and tau.abs().max() <= 3.0
