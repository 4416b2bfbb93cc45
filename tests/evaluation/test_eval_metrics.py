"""metrics_from_ranks: the one place metrics come from."""

from __future__ import annotations

import math

import pytest
import torch

from gnn_inn.evaluation import METRIC_NAMES, metrics_from_ranks


def test_known_values():
    m = metrics_from_ranks(torch.tensor([1.0, 2.0, 4.0, 10.0, 10.5]))
    assert list(m) == list(METRIC_NAMES)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 10 + 1 / 10.5) / 5)
    assert m["mr"] == pytest.approx(27.5 / 5)
    assert m["hits@1"] == pytest.approx(1 / 5)
    assert m["hits@3"] == pytest.approx(2 / 5)
    assert m["hits@10"] == pytest.approx(4 / 5)  # 10.5 is not a hit at 10


def test_lists_empty_and_invalid():
    assert metrics_from_ranks([1, 1])["mrr"] == 1.0
    assert all(math.isnan(v) for v in metrics_from_ranks(torch.empty(0)).values())
    with pytest.raises(ValueError, match="1-based"):
        metrics_from_ranks(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError):
        metrics_from_ranks(torch.tensor([float("nan")]))
