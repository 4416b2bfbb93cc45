"""rank_targets against a brute-force reference: ties, filters, policies, dtypes, NaN/inf."""

from __future__ import annotations

import pytest
import torch
from eval_reference import brute_ranks

from gnn_inn.evaluation import POLICIES, rank_targets


def _random_case(seed: int, b: int = 13, n: int = 29, levels: int = 4, p: int = 60):
    g = torch.Generator().manual_seed(seed)
    # few distinct values -> many ties
    scores = torch.randint(0, levels, (b, n), generator=g).float() / 3.0
    targets = torch.randint(0, n, (b,), generator=g)
    rows = torch.randint(0, b, (p,), generator=g)
    cols = torch.randint(0, n, (p,), generator=g)
    # make sure some filter pairs name the query's own target, and duplicates occur
    rows = torch.cat([rows, torch.arange(0, b, 2), rows[:5]])
    cols = torch.cat([cols, targets[0:b:2], cols[:5]])
    return scores, targets, rows, cols


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(5))
def test_matches_bruteforce_with_ties_and_filters(policy, seed):
    scores, targets, rows, cols = _random_case(seed)
    got = rank_targets(scores, targets, rows, cols, policy=policy)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, brute_ranks(scores, targets, rows, cols, policy))


@pytest.mark.parametrize("policy", POLICIES)
def test_unfiltered_matches_bruteforce(policy):
    scores, targets, _, _ = _random_case(7)
    empty = torch.empty(0, dtype=torch.long)
    ref = brute_ranks(scores, targets, empty, empty, policy)
    torch.testing.assert_close(rank_targets(scores, targets, policy=policy), ref)
    torch.testing.assert_close(rank_targets(scores, targets, empty, empty, policy=policy), ref)


def test_realistic_is_mean_of_optimistic_and_pessimistic():
    scores, targets, rows, cols = _random_case(3)
    o = rank_targets(scores, targets, rows, cols, policy="optimistic")
    p = rank_targets(scores, targets, rows, cols, policy="pessimistic")
    r = rank_targets(scores, targets, rows, cols, policy="realistic")
    torch.testing.assert_close(r, (o + p) / 2)
    assert bool((o <= r).all()) and bool((r <= p).all())


def test_target_listed_in_its_own_filter_keeps_its_score():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3]])
    targets = torch.tensor([1])
    rows, cols = torch.tensor([0, 0]), torch.tensor([1, 2])  # target 1 and a true answer 2
    for policy in POLICIES:
        assert rank_targets(scores, targets, rows, cols, policy=policy).item() == 1.0
    # for target 3, both filtered answers (0.9, 0.5) would otherwise beat it
    assert rank_targets(scores, torch.tensor([3])).item() == 3.0
    assert rank_targets(scores, torch.tensor([3]), rows, cols).item() == 1.0
    assert rank_targets(scores, torch.tensor([3]), rows[1:], cols[1:]).item() == 2.0


def test_constant_scores_give_chance_not_one():
    b, n = 6, 101
    scores = torch.zeros(b, n)
    targets = torch.arange(b)
    rows = torch.tensor([0, 0, 0, 1])  # row 0: 3 other true answers, row 1: target only
    cols = torch.tensor([10, 11, 12, 1])
    r = rank_targets(scores, targets, rows, cols)
    expected = torch.full((b,), (n + 1) / 2, dtype=torch.float64)
    expected[0] = (n - 3 + 1) / 2
    torch.testing.assert_close(r, expected)
    assert rank_targets(scores, targets, policy="optimistic").eq(1).all()
    assert rank_targets(scores, targets, policy="pessimistic").eq(n).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_are_compared_exactly(dtype):
    scores, targets, rows, cols = _random_case(11)
    scores = (scores + torch.randn(scores.shape, generator=torch.Generator().manual_seed(0)) * 1e-3)
    scores = scores.to(dtype)
    for policy in POLICIES:
        got = rank_targets(scores, targets, rows, cols, policy=policy)
        torch.testing.assert_close(got, brute_ranks(scores.double(), targets, rows, cols, policy))


def test_nearby_float32_values_are_not_tied():
    x = torch.tensor(1.0)
    up = torch.nextafter(x, torch.tensor(2.0))
    scores = torch.tensor([[1.0, up.item(), 1.0]])
    assert rank_targets(scores, torch.tensor([0])).item() == 2.5  # one better, one tie
    assert rank_targets(scores, torch.tensor([1])).item() == 1.0


@pytest.mark.parametrize("policy", POLICIES)
def test_infinite_scores(policy):
    inf = float("inf")
    scores = torch.tensor(
        [
            [-inf, -inf, 0.0, 1.0, -inf],
            [inf, inf, 0.0, inf, -inf],
            [0.0, inf, -inf, 2.0, 0.0],
            [-inf, -inf, -inf, -inf, -inf],
        ]
    )
    targets = torch.tensor([0, 0, 0, 2])
    rows, cols = torch.tensor([0, 1, 3]), torch.tensor([1, 3, 0])
    got = rank_targets(scores, targets, rows, cols, policy=policy)
    torch.testing.assert_close(got, brute_ranks(scores, targets, rows, cols, policy))


def test_nan_scores_raise():
    scores = torch.rand(3, 8)
    scores[1, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN scores in query rows \\[1\\]"):
        rank_targets(scores, torch.tensor([0, 0, 0]))
    with pytest.raises(ValueError, match="target score is NaN"):
        rank_targets(scores, torch.tensor([0, 4, 0]))
    for policy in ("optimistic", "pessimistic"):
        with pytest.raises(ValueError, match="NaN"):
            rank_targets(scores, torch.tensor([0, 0, 0]), policy=policy)
    # a NaN on a filtered-out answer does not influence any rank
    r = rank_targets(scores, torch.tensor([0, 0, 0]), torch.tensor([1]), torch.tensor([4]))
    assert torch.isfinite(r).all()


def test_scratch_is_reused_and_scores_untouched():
    scores, targets, rows, cols = _random_case(5)
    before = scores.clone()
    scratch = torch.empty(64, scores.shape[1])
    ptr = scratch.data_ptr()
    a = rank_targets(scores, targets, rows, cols, scratch=scratch)
    torch.testing.assert_close(a, rank_targets(scores, targets, rows, cols))
    assert torch.equal(scores, before)
    assert scratch.data_ptr() == ptr


def test_bad_inputs():
    s = torch.rand(2, 5)
    with pytest.raises(ValueError, match="policy"):
        rank_targets(s, torch.tensor([0, 1]), policy="average")
    with pytest.raises(IndexError):
        rank_targets(s, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="targets for 2"):
        rank_targets(s, torch.tensor([0]))
    with pytest.raises(IndexError):
        rank_targets(s, torch.tensor([0, 1]), torch.tensor([2]), torch.tensor([0]))
    with pytest.raises(ValueError, match="both"):
        rank_targets(s, torch.tensor([0, 1]), torch.tensor([0]), None)
    with pytest.raises(TypeError):
        rank_targets(torch.ones(2, 5, dtype=torch.long), torch.tensor([0, 1]))


def test_agrees_with_pykeen_when_installed():
    ranks_mod = pytest.importorskip("pykeen.evaluation.ranks")
    scores, targets, rows, cols = _random_case(2, b=40, n=50)
    keep = cols != targets[rows]
    filtered = scores.clone()
    filtered[rows[keep], cols[keep]] = float("nan")  # PyKEEN marks filtered entries with NaN
    true = scores.gather(1, targets[:, None])
    pk = ranks_mod.Ranks.from_scores(true, filtered)
    for policy, ref in (
        ("optimistic", pk.optimistic), ("pessimistic", pk.pessimistic),
        ("realistic", pk.realistic),
    ):
        got = rank_targets(scores, targets, rows, cols, policy=policy)
        torch.testing.assert_close(got, ref.double())
