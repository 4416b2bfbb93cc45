"""Variational embeddings: KL, sampling, the Bernoulli-weighted ELBO estimator, uncertainty."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from gnn_inn.data.triples import TripleSet, sample_negatives
from gnn_inn.decoders.base import score_facts
from gnn_inn.encoders import build_encoder
from gnn_inn.encoders.variational import diag_gaussian_kl, fact_kl, reparameterise
from gnn_inn.evaluation.uncertainty import (
    area_under_precision_coverage,
    expected_calibration_error,
    link_prediction_confidence,
    precision_at_coverage,
    precision_coverage,
    predict_with_uncertainty,
    reliability_diagram,
    triple_classification_calibration,
    type_free_negatives,
)
from gnn_inn.model import build_model
from gnn_inn.training.elbo import ELBOLoss, bernoulli_weight
from gnn_inn.training.losses import LOSSES, QueryBatch
from helpers import DATA, needs_data


def _graph(n, r, m=12, seed=0):
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(seed)
    h, t = torch.randint(n, (m,), generator=g), torch.randint(n, (m,), generator=g)
    rel = torch.randint(r, (m,), generator=g)
    return Data(edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
                edge_type=torch.cat([rel, rel + r]), num_nodes=n)


def _model(n=4, r=2, dim=6, decoder="distmult", seed=0, **enc):
    torch.manual_seed(seed)
    return build_model(num_entities=n, num_relations=r, dim=dim,
                       encoder={"name": "variational", **enc}, decoder={"name": decoder},
                       graph=_graph(n, r)).double()


# ----------------------------------------------------------------------------- KL
def test_kl_matches_closed_form_and_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 7, generator=g, dtype=torch.float64)
    logvar = torch.randn(5, 7, generator=g, dtype=torch.float64)
    ours = diag_gaussian_kl(mu, logvar)
    var = logvar.exp()
    by_hand = 0.5 * (var + mu**2 - 1 - logvar).sum(-1)
    q = torch.distributions.Normal(mu, var.sqrt())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    assert ours.shape == (5,)
    torch.testing.assert_close(ours, by_hand)
    torch.testing.assert_close(ours, ref)
    assert diag_gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0


def test_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64)
    logvar = torch.tensor([-0.5, 0.3, -1.2], dtype=torch.float64)
    z = reparameterise(mu, logvar, 200_000, g)  # [S, 3]
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(0.0, 1.0)
    terms = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    se = terms.std() / math.sqrt(terms.numel())
    assert abs(terms.mean() - diag_gaussian_kl(mu, logvar)) < 4 * se


# ----------------------------------------------------------------------- encoders
def test_build_model_reads_relations_from_the_variational_encoder():
    model = _model()
    assert model.decoder.relation_source == "encoder" and model.decoder.relation is None
    model.eval()
    ent, rel = model.encode()
    h, r, t = torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([2, 3])
    expected = (ent[h] * rel[r] * ent[t]).sum(-1)
    torch.testing.assert_close(model.score(h, r, t), expected)


def test_sampling_is_reproducible_with_a_fixed_generator():
    enc = build_encoder("variational", num_entities=5, num_relations=3, dim=4).eval()
    a = enc.sample(3, torch.Generator().manual_seed(7))
    b = enc.sample(3, torch.Generator().manual_seed(7))
    c = enc.sample(3, torch.Generator().manual_seed(8))
    assert a[0].shape == (3, 5, 4) and a[1].shape == (3, 3, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    model = _model()
    h, r, t = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]), torch.tensor([3, 2, 0])
    m1, v1 = predict_with_uncertainty(model, h, r, t, 16, torch.Generator().manual_seed(3))
    m2, v2 = predict_with_uncertainty(model, h, r, t, 16, torch.Generator().manual_seed(3))
    assert torch.equal(m1, m2) and torch.equal(v1, v2) and (v1 > 0).all()


# --------------------------------------------------------- the ELBO estimator
def _tiny_kg():
    """4 entities, 2 relations, 4 true facts."""
    return torch.tensor([[0, 0, 1], [1, 0, 2], [2, 1, 3], [0, 1, 2]])


def _full_loglik(model, train, n, r, negatives):
    """The full sum over D⁺ and D⁻, by brute force (means, eval mode)."""
    model.eval()
    ent, rel = model.encode()
    pos = {tuple(x) for x in train.tolist()}

    def s(x):
        x = torch.tensor([x])
        return model.decoder.score(ent, rel, x[:, 0], x[:, 1], x[:, 2])[0]

    total = sum(F.logsigmoid(s(x)) for x in pos)
    if negatives == "corrupt":  # every head / tail corruption of every true fact (a multiset)
        for x in pos:
            for c in _corruptions(x, n):
                if c not in pos:
                    total = total + F.logsigmoid(-s(c))
    else:  # every triple of E × R × E that is not true
        for x in itertools.product(range(n), range(r), range(n)):
            if x not in pos:
                total = total + F.logsigmoid(-s(x))
    return total


def _corruptions(x, n):
    h, r, t = x
    return [(e, r, t) for e in range(n) if e != h] + [(h, r, e) for e in range(n) if e != t]


@pytest.mark.parametrize("variant", ["lim", "lfm"])
def test_minibatch_estimate_is_unbiased_by_enumeration_corrupt(variant):
    """Average of the estimator over all equally likely draws = the full sum (K = 1).

    Two minibatches of two positives; every partition and every choice of one corruption per
    positive is enumerated. The first step's expectation must be half the full ELBO (LIM: the
    log-likelihood part and the KL share; LFM: per-fact KLs inside the sums).
    """
    n, r = 4, 2
    train = _tiny_kg()
    model = _model(n, r, init_logvar=-9.0, logvar_min=-30.0)
    if variant == "lfm":  # make per-fact samples equal to the means (up to ~1e-8)
        with torch.no_grad():
            model.encoder.ent_logvar.fill_(-36.0)
            model.encoder.rel_logvar.fill_(-36.0)
    loss = ELBOLoss(train, n, r, variant=variant, num_negatives=1)
    assert loss.neg_weight == pytest.approx(2 * (n - 1))
    full = _full_loglik(model, train, n, r, "corrupt")
    model.eval()
    ent, rel = model.encode()
    model.encoder(None)  # posterior of the same (mean) tables for the KL terms
    post = model.encoder.posterior
    kl_tables = post.kl_entities().sum() + post.kl_relations().sum()
    facts = [tuple(x) for x in train.tolist()]
    pos_set = set(facts)
    ests, elbos = [], []
    for first in itertools.combinations(range(4), 2):
        batch = [facts[i] for i in first]
        for negs in itertools.product(*[_corruptions(x, n) for x in batch]):
            b = torch.tensor(batch)
            qb = QueryBatch("tail", b[:, 0], b[:, 1], target=b[:, 2],
                            other=torch.tensor(negs).unsqueeze(1))
            terms = loss.terms(model, qb, ent, rel)
            ests.append(terms["loglik"])
            elbos.append(terms["elbo"])
    est = torch.stack(ests).mean()
    if variant == "lim":
        torch.testing.assert_close(est, full / 2)
        torch.testing.assert_close(torch.stack(elbos).mean(), (full - kl_tables) / 2)
    else:  # LFM: E[loglik] ≈ full/2 (means), E[elbo] = (full − Σ_x KL_x over D⁺ ∪ D⁻) / 2
        every = facts + [c for x in facts for c in _corruptions(x, n) if c not in pos_set]
        kl_all = fact_kl(post, *torch.tensor(every).unbind(1)).sum()
        torch.testing.assert_close(est, full / 2, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.stack(elbos).mean(), (full - kl_all) / 2,
                                   rtol=1e-5, atol=1e-5)


def test_minibatch_estimate_is_unbiased_by_enumeration_uniform():
    n, r = 4, 2
    train = _tiny_kg()[:2]
    model = _model(n, r)
    loss = ELBOLoss(train, n, r, negatives="uniform", num_negatives=1)
    assert loss.neg_weight == pytest.approx(n * n * r / 2)
    full = _full_loglik(model, train, n, r, "uniform")
    model.eval()
    ent, rel = model.encode()
    model.encoder(None)
    every = list(itertools.product(range(n), range(r), range(n)))
    b = train
    total = torch.zeros((), dtype=torch.float64)
    for negs in itertools.product(every, every):  # all N²R × N²R equally likely draws
        qb = QueryBatch("tail", b[:, 0], b[:, 1], target=b[:, 2],
                        other=torch.tensor(negs).unsqueeze(1))
        total = total + loss.terms(model, qb, ent, rel)["loglik"]
    torch.testing.assert_close(total / len(every) ** 2, full)


@pytest.mark.parametrize("negatives", ["corrupt", "uniform"])
def test_sampler_and_weights_are_unbiased_monte_carlo(negatives):
    """The real batching path (generator, sampler, mask, weights) over many epochs."""
    n, r = 4, 2
    train = _tiny_kg()
    model = _model(n, r)
    full = _full_loglik(model, train, n, r, negatives)
    loss = ELBOLoss(train, n, r, negatives=negatives, num_negatives=3)
    ent, rel = model.encode()
    model.encoder(None)
    g = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(400):
        epochs.append(sum(loss.terms(model, step[0], ent, rel)["loglik"]
                          for step in loss.batches(3, g)))
    est = torch.stack(epochs)
    se = est.std() / math.sqrt(est.numel())
    assert abs(est.mean() - full) < 4 * se + 1e-9


@pytest.mark.parametrize("variant", ["lim", "lfm"])
def test_negative_weight_replaces_the_bernoulli_weight(variant):
    """``negative_weight`` rescales exactly the negative facts' terms (LFM: with their KLs).

    The wn18rr configs count each drawn negative once instead of ``2(N - 1) / K``: same batch,
    same sample, only the negative part of the estimate changes, by the ratio of the weights.
    """
    n, r = 4, 2
    train = _tiny_kg()
    model = _model(n, r, init_logvar=-36.0, logvar_min=-40.0)  # LFM samples = means (~1e-8)
    unbiased = ELBOLoss(train, n, r, variant=variant, num_negatives=2)
    plain = ELBOLoss(train, n, r, variant=variant, num_negatives=2, negative_weight=1.0)
    assert unbiased.neg_weight == pytest.approx(2 * (n - 1) / 2) and plain.neg_weight == 1.0
    assert plain.unbiased_weight == unbiased.neg_weight
    b = train[:3]
    neg = torch.tensor([[[3, 0, 1], [0, 0, 3]], [[1, 0, 0], [2, 0, 2]], [[2, 1, 0], [2, 1, 1]]])
    qb = QueryBatch("tail", b[:, 0], b[:, 1], target=b[:, 2], other=neg)
    model.eval()  # means: both losses score the same embeddings
    ent, rel = model.encode()
    model.encoder(None)
    a, c = unbiased.terms(model, qb, ent, rel), plain.terms(model, qb, ent, rel)
    w = unbiased.neg_weight
    torch.testing.assert_close(c["loglik_pos"], a["loglik_pos"], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(c["loglik_neg"] * w, a["loglik_neg"], rtol=1e-6, atol=1e-8)
    assert a["loglik_neg"] < 0
    if variant == "lim":  # the KL share does not depend on the negatives
        torch.testing.assert_close(c["kl"], a["kl"])
    else:
        post = model.encoder.posterior
        kl_pos = fact_kl(post, *b.unbind(1)).sum()
        mask = (~unbiased.known.contains(neg)).double().reshape(-1)
        kl_neg = (mask * fact_kl(post, *neg.reshape(-1, 3).unbind(1))).sum()
        torch.testing.assert_close(a["kl"], kl_pos + w * kl_neg)
        torch.testing.assert_close(c["kl"], kl_pos + kl_neg)


def test_corruption_sampler_is_uniform_over_corruptions():
    n = 5
    h, r, t = torch.tensor([1]), torch.tensor([0]), torch.tensor([3])
    neg = sample_negatives(h, r, t, 40_000, n, 2, "corrupt", torch.Generator().manual_seed(0))
    keys = [tuple(x) for x in neg[0].tolist()]
    allowed = set(_corruptions((1, 0, 3), n))
    assert set(keys) == allowed  # never the positive itself, every corruption reachable
    counts = torch.tensor([keys.count(c) for c in sorted(allowed)], dtype=torch.float64)
    expected = 40_000 / len(allowed)
    assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all()
    assert bernoulli_weight("corrupt", n, 2, 10, 1) == 2 * (n - 1)


def test_elbo_is_registered_and_trains_every_parameter():
    assert LOSSES["elbo"] is ELBOLoss
    n, r = 6, 2
    g = torch.Generator().manual_seed(0)
    train = torch.stack([torch.randint(n, (15,), generator=g), torch.randint(r, (15,), generator=g),
                         torch.randint(n, (15,), generator=g)], 1)
    for variant, decoder in (("lim", "distmult"), ("lfm", "complex")):
        model = _model(n, r, decoder=decoder)
        loss = ELBOLoss(train, n, r, variant=variant)
        model.train()
        step = next(iter(loss.batches(8, g)))
        ent, rel = model.encode()
        value = loss(model, step[0], ent, rel)
        value.backward()
        assert torch.isfinite(value)
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (variant, name)


def test_elbo_needs_a_variational_encoder():
    model = build_model(num_entities=4, num_relations=2, dim=4, encoder={"name": "none"},
                        decoder={"name": "distmult"})
    loss = ELBOLoss(_tiny_kg(), 4, 2)
    step = next(iter(loss.batches(4, torch.Generator().manual_seed(0))))
    with pytest.raises(ValueError, match="variational encoder"):
        loss(model, step[0], *model.encode())


def test_flow_decoder_with_variational_relations_as_context():
    torch.manual_seed(0)
    n, r, d = 6, 2, 4
    model = build_model(
        num_entities=n, num_relations=r, dim=d, encoder={"name": "variational", "rel_dim": 8},
        decoder={"name": "flow", "flow": "affine_coupling", "conditioning": "context",
                 "context_dim": 8})
    assert model.decoder.context_source == "encoder"
    train = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 0, 5]])
    for variant in ("lim", "lfm"):
        loss = ELBOLoss(train, n, r, variant=variant)
        model.train()
        ent, rel = model.encode()
        value = loss(model, next(iter(loss.batches(3, torch.Generator())))[0], ent, rel)
        value.backward()
        assert torch.isfinite(value)
        assert model.encoder.rel_mu.grad.abs().sum() > 0
    # per-fact scoring equals table scoring when the per-fact vectors are the table rows
    model.eval()
    ent, rel = model.encode()
    h, rr, t = train.unbind(1)
    torch.testing.assert_close(score_facts(model.decoder, ent[h], rel[rr], ent[t], rr, t),
                               model.score(h, rr, t))
    # table-conditioned flows keep their own relation maps: no relation latents needed
    table = build_model(num_entities=n, num_relations=r, dim=d,
                        encoder={"name": "variational", "relations": False},
                        decoder={"name": "flow", "flow": "rotation"}).eval()
    ent, _ = table.encode()
    torch.testing.assert_close(score_facts(table.decoder, ent[h], None, ent[t], rr, t),
                               table.score(h, rr, t))


# ------------------------------------------------------------------ uncertainty
def test_precision_coverage_on_known_inputs():
    conf = torch.tensor([0.9, 0.8, 0.7, 0.6])
    correct = torch.tensor([1, 0, 1, 0])
    cov, prec = precision_coverage(conf, correct)
    torch.testing.assert_close(cov, torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    torch.testing.assert_close(prec, torch.tensor([1.0, 0.5, 2 / 3, 0.5], dtype=torch.float64))
    assert float(precision_at_coverage(conf, correct, 0.5)) == pytest.approx(0.5)
    assert area_under_precision_coverage(conf, correct) == pytest.approx((1 + .5 + 2 / 3 + .5) / 4)
    # ties are broken at random in expectation: a constant confidence gives a flat curve
    _, flat = precision_coverage(torch.ones(4), correct)
    torch.testing.assert_close(flat, torch.full((4,), 0.5, dtype=torch.float64))
    # a tie group straddling the cut: [0.9 (1)], then {0.5: 1, 0, 0}
    _, p = precision_coverage(torch.tensor([0.9, 0.5, 0.5, 0.5]), torch.tensor([1, 1, 0, 0]))
    torch.testing.assert_close(p, torch.tensor([1.0, (1 + 1 / 3) / 2, (1 + 2 / 3) / 3, 0.5],
                                               dtype=torch.float64))


def test_expected_calibration_error_on_known_inputs():
    # perfectly calibrated: in the 0.75 bin three of four are right
    prob = torch.tensor([0.75, 0.75, 0.75, 0.75])
    label = torch.tensor([1, 1, 1, 0])
    assert expected_calibration_error(prob, label) == pytest.approx(0.0)
    # over-confident: p = 0.95 for positives of which half are right → |0.5 − 0.95| = 0.45
    assert expected_calibration_error(torch.tensor([0.95, 0.95]),
                                      torch.tensor([1, 0])) == pytest.approx(0.45)
    # two bins: top-label confidences 0.93 (right) and 0.65 (wrong), weights ½ each
    prob, label = torch.tensor([0.93, 0.35], dtype=torch.float64), torch.tensor([1, 1])
    assert expected_calibration_error(prob, label) == pytest.approx(0.5 * 0.07 + 0.5 * 0.65)
    d = reliability_diagram(prob, label, n_bins=10)
    assert d["count"].sum() == 2 and d["count"][9] == 1 and d["count"][6] == 1
    # 'positive' kind compares p with the frequency of positives
    assert expected_calibration_error(torch.tensor([0.3, 0.3]), torch.tensor([0, 1]),
                                      kind="positive") == pytest.approx(0.2)


def test_type_free_negatives_avoid_known_facts():
    n = 6
    known = torch.tensor([[0, 0, 1], [0, 0, 2], [3, 1, 4]])
    neg = type_free_negatives(known, n, known, torch.Generator().manual_seed(0))
    assert neg.shape == known.shape and not TripleSet(known, n, 2).contains(neg).any()
    assert ((neg[:, 0] == known[:, 0]) | (neg[:, 2] == known[:, 2])).all()


def test_uncertainty_helpers_run_on_a_model():
    from gnn_inn.data.filters import FilterIndex

    n, r = 5, 2
    model = _model(n, r)
    triples = torch.tensor([[0, 0, 1], [1, 1, 2], [3, 0, 4]])
    out = link_prediction_confidence(model, triples, FilterIndex(triples, n, r), n_samples=8,
                                     generator=torch.Generator().manual_seed(0))
    assert all(v.shape == (6,) for v in out.values())
    assert ((out["score"] > 0) & (out["score"] < 1)).all() and (out["variance"] >= 0).all()
    cal = triple_classification_calibration(model, triples, triples, n_samples=8,
                                            generator=torch.Generator().manual_seed(0))
    assert 0 <= cal["ece_mean"] <= 1 and 0 <= cal["ece_predictive"] <= 1
    assert cal["label"].sum() == 3 and cal["prob_mean"].shape == (6,)


# --------------------------------------------------------------- a real dataset
@needs_data
def test_short_nations_run_beats_random():
    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config

    cfg = Config.from_dict({
        "seed": 0, "dataset": {"name": "nations", "data_dir": DATA},
        "model": {"dim": 64, "encoder": {"name": "variational"}, "decoder": {"name": "distmult"}},
        "train": {"epochs": 20, "batch_size": 128, "lr": 0.01, "eval_every": 20, "device": "cpu",
                  "loss": {"name": "elbo", "variant": "lim", "negatives": "uniform"}},
    })
    res = trainer_from_config(cfg, quiet=True).fit()
    # 14 entities: random ranking gives MRR ≈ 0.25 (filtered a bit higher)
    assert res["test"]["mrr"] > 0.55, res["test"]
