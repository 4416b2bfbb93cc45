"""build_optimizer: names, the opt-in fused Adam kernel."""

from __future__ import annotations

import pytest
import torch

from gnn_inn.config import Config
from gnn_inn.training.optim import build_optimizer


def _cfg(**train):
    return Config.from_dict({"train": {"lr": 0.01, **train}}).train


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_kernel_only_when_asked_and_same_update(name):
    w = torch.nn.Parameter(torch.randn(7, 5, generator=torch.Generator().manual_seed(0)))
    plain = build_optimizer(_cfg(optimizer=name), [w])
    assert not plain.defaults.get("fused")
    w2 = torch.nn.Parameter(w.detach().clone())
    fused = build_optimizer(_cfg(optimizer=name, fused_optimizer=True), [w2])
    assert fused.defaults.get("fused") is True
    for opt, p in ((plain, w), (fused, w2)):
        for _ in range(3):
            opt.zero_grad()
            (p ** 3).sum().backward()
            opt.step()
    # same algorithm, different rounding: close, not bit-equal
    torch.testing.assert_close(w, w2, rtol=1e-5, atol=1e-6)


def test_unknown_optimizer_is_an_error():
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(_cfg(optimizer="sgdx"), [torch.nn.Parameter(torch.zeros(2))])
