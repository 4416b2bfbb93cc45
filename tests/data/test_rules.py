"""Composition-rule mining against brute force, and on the synthetic suite's known rules."""

from __future__ import annotations

import pytest
import torch

from gnn_inn.data import make_synthetic
from gnn_inn.data.rules import Rule, mine_rules, rule_support


def _brute(train: torch.Tensor, R: int) -> dict[tuple[int, int, int], tuple]:
    """Every rule with support ≥ 1 by enumeration: (support, hc, std conf, PCA conf, body)."""
    facts = {tuple(t) for t in train.tolist()}
    edges: dict[int, set] = {}
    for h, r, t in facts:
        edges.setdefault(r, set()).add((h, t))
        edges.setdefault(r + R, set()).add((t, h))
    rel = {r: {(h, t) for h, rr, t in facts if rr == r} for r in range(R)}
    out = {}
    for b1 in range(2 * R):
        for b2 in range(2 * R):
            body = {(x, z) for x, y in edges.get(b1, ()) for y2, z in edges.get(b2, ())
                    if y == y2 and y not in (x, z)}
            for r in range(R):
                s = len(body & rel[r])
                if s:
                    subj = {h for h, _ in rel[r]}
                    pca_den = sum(x in subj for x, _ in body)
                    out[(r, b1, b2)] = (s, s / len(rel[r]), s / len(body), s / pca_den,
                                        len(body))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_mined_rules_equal_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n, R, m = 18, 3, 110
    t = torch.stack([torch.randint(n, (m,), generator=g), torch.randint(R, (m,), generator=g),
                     torch.randint(n, (m,), generator=g)], 1)
    t = torch.cat([t, t[:5]])  # duplicates count once; random draws include self-loops
    assert (t[:, 0] == t[:, 2]).any()
    ref = _brute(t, R)
    got = {(q.head, q.body1, q.body2): q
           for q in mine_rules(t, R, n, min_support=1, min_head_coverage=0.0)}
    assert set(got) == set(ref) and len(ref) > 50
    for k, (s, hc, conf, pca, body) in ref.items():
        q = got[k]
        assert (q.support, q.body_size) == (s, body)
        assert q.head_coverage == pytest.approx(hc)
        assert q.std_confidence == pytest.approx(conf)
        assert q.pca_confidence == pytest.approx(pca)
    keys, sup = rule_support(t, R, n)
    R2 = 2 * R
    assert {(int(k) // (R2 * R2), int(k) // R2 % R2, int(k) % R2): int(s)
            for k, s in zip(keys, sup)} == {k: v[0] for k, v in ref.items()}


def test_thresholds_filter_and_order():
    g = torch.Generator().manual_seed(2)
    t = torch.stack([torch.randint(15, (90,), generator=g), torch.randint(3, (90,), generator=g),
                     torch.randint(15, (90,), generator=g)], 1)
    rules = mine_rules(t, 3, 15, min_support=2, min_head_coverage=0.05, min_confidence=0.1)
    assert rules
    assert all(q.support >= 2 and q.head_coverage >= 0.05 and q.pca_confidence >= 0.1
               for q in rules)
    keys = [(-q.pca_confidence, -q.head_coverage, -q.support) for q in rules]
    assert keys == sorted(keys)


def test_synthetic_composition_rule_is_found_exactly():
    kg = make_synthetic()
    names = kg.relation_names
    rules = mine_rules(kg.train, kg.num_relations, kg.num_entities, min_support=10)
    best = rules[0]
    assert best.format(names) == "compose_3(x,z) <= compose_1(x,y) ∧ compose_2(y,z)"
    # compose_1 and compose_2 are complete in train: every held-in compose_3 pair is explained
    # (head coverage 1) and every body pair whose head has a known compose_3 fact is one
    assert best.head_coverage == 1.0 and best.pca_confidence == 1.0
    n3 = int((kg.train[:, 1] == names.index("compose_3")).sum())
    assert best.support == n3 and best.body_size == kg.num_entities
    assert best.std_confidence == pytest.approx(n3 / kg.num_entities)
    # the same chain read backwards, with an inverted body atom
    back = {q.format(names) for q in rules if q.pca_confidence == 1.0}
    assert "compose_1(x,z) <= compose_3(x,y) ∧ compose_2^-1(y,z)" in back
    # transitivity of the hierarchy is mined too (head in its own body)
    sub = names.index("subclass_of")
    assert any(q.head == sub and q.body1 == sub and q.body2 == sub for q in rules)


def test_rule_atoms_and_dict():
    q = Rule(head=2, body1=1, body2=3, support=5, head_coverage=0.5, std_confidence=0.25,
             pca_confidence=1.0, body_size=20)
    assert q.atoms(3) == ((1, False), (0, True))
    d = q.as_dict(["a", "b", "c"])
    assert d["rule"] == "c(x,z) <= b(x,y) ∧ a^-1(y,z)" and d["support"] == 5
