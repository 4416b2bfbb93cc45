"""The variational encoders (``variational``, ``variational_gnn``): shapes, modes, gradients.

The ELBO, the KL and the uncertainty metrics are tested in ``tests/test_variational.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from enc_helpers import tiny_graph

from gnn_inn.encoders import ENCODERS, build_encoder
from gnn_inn.encoders.variational import (
    VariationalEncoder,
    VariationalLookupEncoder,
    soft_clamp_inverse,
)
from gnn_inn.flows import soft_clamp

ENCODERS_UNDER_TEST = ["variational", "variational_gnn"]


def test_lookup_encoder_shapes_modes_and_registry():
    assert ENCODERS["variational"] is VariationalLookupEncoder
    assert ENCODERS["variational_gnn"] is VariationalEncoder
    enc = build_encoder("variational", num_entities=5, num_relations=3, dim=4)
    assert enc.provides_relations and enc.rel_dim == 4
    ent, rel = enc()
    assert ent.shape == (5, 4) and rel.shape == (3, 4)
    assert enc.posterior is not None and enc.posterior.kl_entities().shape == (5,)
    assert not torch.equal(ent, enc.ent_mu)  # training mode samples
    enc.eval()
    a, ra = enc()
    b, rb = enc()
    assert torch.equal(a, enc.ent_mu) and torch.equal(a, b) and torch.equal(ra, rb)  # means
    two = build_encoder("variational", num_entities=5, num_relations=3, dim=4, reciprocal=True)
    assert two()[1].shape == (6, 4)
    none = build_encoder("variational", num_entities=5, num_relations=3, dim=4, relations=False)
    assert none()[1] is None and not none.provides_relations and none.rel_dim is None
    # log σ² is soft-clamped and starts at init_logvar
    torch.testing.assert_close(enc.posterior.ent_logvar, torch.full((5, 4), -6.0))
    with torch.no_grad():
        enc.ent_logvar.fill_(1e4)
    assert enc.gaussian().ent_logvar.max() <= enc.logvar_max
    copy.deepcopy(enc)  # the stored posterior does not block deepcopy


@pytest.mark.parametrize("base", ["rgcn", {"name": "compgcn", "num_bases": 2, "dropout": 0.0,
                                           "hidden_dropout": 0.0}])
def test_gnn_variational_encoder(base):
    torch.manual_seed(0)
    n, r, d = 7, 3, 8
    enc = build_encoder("variational_gnn", num_entities=n, num_relations=r, dim=d, base=base)
    g = tiny_graph(n, r, num_triples=20)
    ent, rel = enc(g)
    assert ent.shape == (n, d) and rel.shape == (r, enc.rel_dim)
    gen = torch.Generator().manual_seed(0)
    loss = (ent * torch.randn(ent.shape, generator=gen)).sum() + (
        rel * torch.randn(rel.shape, generator=gen)).sum()
    (loss + enc.posterior.kl_entities().sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    enc.eval()
    a, ra = enc(g)
    b, rb = enc(g)
    assert torch.equal(a, b) and torch.equal(ra, rb)
    torch.testing.assert_close(a, enc.posterior.ent_mu)


def test_soft_clamp_bounds_and_inverse():
    x = torch.linspace(-1e3, 1e3, 101, dtype=torch.float64)
    y = soft_clamp(x, -16.0, 2.0)
    assert (y >= -16).all() and (y <= 2).all() and (y.diff() >= 0).all()
    assert float(soft_clamp(torch.tensor(soft_clamp_inverse(-6.0, -16.0, 2.0)), -16.0, 2.0)) \
        == pytest.approx(-6.0)
    with pytest.raises(ValueError, match="init_logvar"):
        soft_clamp_inverse(3.0, -16.0, 2.0)


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="num_relations"):
        VariationalLookupEncoder(num_entities=3, dim=2, num_relations=0)
    with pytest.raises(ValueError, match="deterministic encoder"):
        build_encoder("variational_gnn", num_entities=3, num_relations=2, dim=4,
                      base="variational")
