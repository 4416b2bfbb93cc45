"""Classic decoders: every batched scoring path agrees with per-triple scoring."""

from __future__ import annotations

import pytest
import torch

from gnn_inn.decoders import build_decoder

N, R, D, B = 17, 5, 8, 6


def _setup(name, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    dec = build_decoder(name, num_relations=R, dim=D, **kw)
    with torch.no_grad():
        for p in dec.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    ent = torch.randn(N, D, generator=g, dtype=torch.float32)
    h = torch.randint(N, (B,), generator=g)
    r = torch.randint(R, (B,), generator=g)
    t = torch.randint(N, (B,), generator=g)
    return dec, ent, h, r, t


# naive references, written from the papers' formulas
def _ref(name, dec, ent, h, r, t):
    eh, et = ent[h], ent[t]
    k = D // 2
    if name == "transe":
        return dec.margin - torch.linalg.vector_norm(eh + dec.relation[r] - et, ord=dec.p, dim=-1)
    if name == "distmult":
        return (eh * dec.relation[r] * et).sum(-1)
    if name == "complex":
        c = lambda x: torch.complex(x[..., :k], x[..., k:])  # noqa: E731
        return (c(eh) * c(dec.relation[r]) * c(et).conj()).real.sum(-1)
    if name == "rotate":
        c = lambda x: torch.complex(x[..., :k], x[..., k:])  # noqa: E731
        rot = torch.polar(torch.ones(B, k), dec.relation[r])
        return dec.margin - (c(eh) * rot - c(et)).abs().sum(-1)
    raise AssertionError(name)


KWARGS = {"transe": [{"p": 1.0}, {"p": 2.0, "margin": 3.0}], "distmult": [{}], "complex": [{}],
          "rotate": [{"margin": 2.0}]}
CLASSIC = ["transe", "distmult", "complex", "rotate"]
CASES = [(n, kw) for n in CLASSIC for kw in KWARGS[n]]


@pytest.mark.parametrize("name,kw", CASES)
def test_score_matches_formula(name, kw):
    dec, ent, h, r, t = _setup(name, **kw)
    torch.testing.assert_close(dec.score(ent, None, h, r, t), _ref(name, dec, ent, h, r, t),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,kw", CASES)
def test_all_tails_and_heads_match_per_candidate(name, kw):
    dec, ent, h, r, t = _setup(name, **kw)
    tails = dec.score_tails(ent, None, h, r)
    heads = dec.score_heads(ent, None, r, t)
    assert tails.shape == heads.shape == (B, N)
    for e in range(N):
        ee = torch.full((B,), e)
        torch.testing.assert_close(tails[:, e], _ref(name, dec, ent, h, r, ee), rtol=1e-4,
                                   atol=1e-4)
        torch.testing.assert_close(heads[:, e], _ref(name, dec, ent, ee, r, t), rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("name,kw", CASES)
def test_candidates_match_all(name, kw):
    dec, ent, h, r, t = _setup(name, **kw)
    cand = torch.randint(N, (B, 4), generator=torch.Generator().manual_seed(1))
    rows = torch.arange(B).unsqueeze(1)
    torch.testing.assert_close(dec.score_candidates(ent, None, h, r, t, cand, "tail"),
                               dec.score_tails(ent, None, h, r)[rows, cand], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dec.score_candidates(ent, None, h, r, t, cand, "head"),
                               dec.score_heads(ent, None, r, t)[rows, cand], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", CLASSIC)
def test_gradients_reach_relations_and_entities(name):
    dec, ent, h, r, t = _setup(name)
    ent.requires_grad_(True)
    dec.score_tails(ent, None, h, r).sum().backward()
    assert ent.grad is not None and torch.isfinite(ent.grad).all()
    for p in dec.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", CLASSIC)
def test_encoder_relations_replace_own_table(name):
    dec = build_decoder(name, num_relations=R, dim=D, relation_source="encoder")
    assert sum(p.numel() for p in dec.parameters()) == 0
    g = torch.Generator().manual_seed(0)
    ent = torch.randn(N, D, generator=g)
    rel = torch.randn(2 * R, D, generator=g)
    h = torch.arange(3)
    r = torch.tensor([0, 1, 4])
    assert dec.score_tails(ent, rel, h, r).shape == (3, N)
    with pytest.raises(ValueError, match="relation_source"):
        dec.score_tails(ent, None, h, r)


def test_unknown_decoder_and_bad_kwargs():
    with pytest.raises(ValueError, match="could not resolve decoder 'nope' among choices"):
        build_decoder("nope", num_relations=2, dim=4)
    with pytest.raises(ValueError, match="decoder 'distmult': unknown option 'bogus'; "
                       "accepted options: relation_source"):
        build_decoder("distmult", num_relations=2, dim=4, bogus=1)
    with pytest.raises(ValueError, match="even"):
        build_decoder("complex", num_relations=2, dim=5)


@pytest.mark.parametrize("name", ["transe", "distmult"])
def test_direction_keyword_selects_the_query_and_rejects_other_values(name):
    dec, ent, h, r, t = _setup(name)
    cand = torch.randint(N, (B, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        heads = dec.score_candidates(ent, None, h, r, t, cand, direction="head")
        tails = dec.score_candidates(ent, None, h, r, t, cand, direction="tail")
        torch.testing.assert_close(heads, dec.score_heads(ent, None, r, t).gather(1, cand))
        torch.testing.assert_close(tails, dec.score_tails(ent, None, h, r).gather(1, cand))
        shared = dec.score_shared(ent, None, h, r, t, cand[0], direction="head")
        torch.testing.assert_close(shared, dec.score_heads(ent, None, r, t)[:, cand[0]])
        for call in (lambda: dec.score_candidates(ent, None, h, r, t, cand, direction="tails"),
                     lambda: dec.score_shared(ent, None, h, r, t, cand[0], direction="mode"),
                     lambda: dec.query_points(ent, None, h, r, t, "both")):
            with pytest.raises(ValueError, match="direction must be 'head' or 'tail'"):
                call()
