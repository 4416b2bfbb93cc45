"""Relation-pattern statistics and their parsing."""

from __future__ import annotations

import pytest
import torch

from gnn_inn.decoders.patterns import (
    infer_patterns,
    inverse_overlap,
    parse_patterns,
    symmetry_share,
)


def _kg():
    # r0 symmetric, r1 / r2 an inverse pair (r2 smaller), r3 random
    g = torch.Generator().manual_seed(0)
    n = 40
    a = torch.randint(n, (60,), generator=g)
    b = (a + 1 + torch.randint(n - 1, (60,), generator=g)) % n
    sym = torch.cat([torch.stack([a, torch.zeros_like(a), b], 1),
                     torch.stack([b, torch.zeros_like(a), a], 1)])
    r1 = torch.stack([a, torch.ones_like(a), b], 1)
    r2 = torch.stack([b[:40], torch.full((40,), 2), a[:40]], 1)
    r3 = torch.stack([a[:30], torch.full((30,), 3), torch.randint(n, (30,), generator=g)], 1)
    return torch.unique(torch.cat([sym, r1, r2, r3]), dim=0)


def test_symmetry_share_brute_force():
    t = _kg()
    share = symmetry_share(t, 4)
    s = {tuple(x) for x in t.tolist()}
    for r in range(4):
        rows = [x for x in t.tolist() if x[1] == r and x[0] != x[2]]
        ref = sum((x[2], r, x[0]) in s for x in rows) / max(len(rows), 1)
        assert share[r].item() == pytest.approx(ref)
    assert share[0] == 1.0


def test_inverse_overlap_brute_force():
    t = _kg()
    ov = inverse_overlap(t, 4)
    pairs = {r: {(x[0], x[2]) for x in t.tolist() if x[1] == r} for r in range(4)}
    for r1 in range(4):
        for r2 in range(4):
            inter = len(pairs[r1] & {(b, a) for a, b in pairs[r2]})
            ref = inter / max(min(len(pairs[r1]), len(pairs[r2])), 1)
            assert ov[r1, r2].item() == pytest.approx(ref), (r1, r2)


def test_infer_patterns_finds_symmetry_and_inverse_pair():
    pats = infer_patterns(_kg(), 4)
    assert pats[0].kind == "involution"
    assert pats[2].kind == "tied-inverse" and pats[2].partner == 1
    assert pats[1].kind == "free" and pats[3].kind == "free"


def test_parse_patterns_forms_and_errors():
    names = ["a", "b", "c"]
    assert [p.as_str() for p in parse_patterns("involution", 3)] == ["involution"] * 3
    got = parse_patterns({"a": "involution", "c": "tied-inverse:b"}, 3, relation_names=names)
    assert [p.as_str() for p in got] == ["involution", "free", "tied-inverse:1"]
    with pytest.raises(ValueError, match="unknown relation"):
        parse_patterns({"zz": "free"}, 3, relation_names=names)
    with pytest.raises(ValueError, match="itself"):
        parse_patterns({0: "tied-inverse:0"}, 3)
    with pytest.raises(ValueError, match="unknown pattern"):
        parse_patterns({0: "weird"}, 3)
    with pytest.raises(ValueError, match="expected 3"):
        parse_patterns(["free"], 3)
    with pytest.raises(ValueError, match="itself tied"):
        parse_patterns({0: "tied-inverse:1", 1: "tied-inverse:2"}, 3)
