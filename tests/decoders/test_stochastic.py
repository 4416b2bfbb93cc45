"""StochasticFlowDecoder: the Gaussian special case, a normalised density, exact two-stage
ranking, candidate / all-entity agreement, reproducible sampling, the head mirror, the
``flow_nll`` loss, a short training run, and the many-answer metrics."""

from __future__ import annotations

import math

import pytest
import torch

from gnn_inn.decoders import DECODERS, StochasticFlowDecoder, build_decoder
from gnn_inn.flows import soft_clamp
from helpers import perturb

N, R, D, B = 17, 3, 6, 5


def _setup(perturb_coupling=True, dim=D, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("rerank_k", 4)
    dec = build_decoder("stochastic_flow", num_relations=R, dim=dim, **kw).double()
    perturb(dec.mean, std=0.3, seed=seed)
    perturb(dec.scale_net, std=0.3, seed=seed + 1)
    with torch.no_grad():
        dec.relation.normal_(generator=torch.Generator().manual_seed(seed + 2))
    if perturb_coupling:
        perturb(dec.coupling, std=0.3, seed=seed + 3)
    dec.eval()
    g = torch.Generator().manual_seed(seed + 4)
    ent = torch.randn(N, dim, generator=g, dtype=torch.float64)
    h, t = torch.randint(N, (B,), generator=g), torch.randint(N, (B,), generator=g)
    r = torch.arange(B) % R
    return dec, ent, h, r, t


def _all(b):
    return torch.arange(N).expand(b, N)


def test_registered():
    assert DECODERS["stochastic_flow"] is StochasticFlowDecoder


@pytest.mark.parametrize("direction", ["tail", "head"])
def test_gaussian_special_case_equals_normal_log_prob(direction):
    # coupling at its (zero-initialised) start: the model is N(μ, diag σ²) exactly
    dec, ent, h, r, t = _setup(perturb_coupling=False, rerank_k="all")
    anchor = h if direction == "tail" else t
    mu, ls, _ = dec.gaussian_params(ent, None, anchor, r, direction)
    assert (ls.std() > 0.05) and (mu - ent[anchor]).abs().max() > 0.1  # non-trivial μ, σ
    ref = torch.distributions.Normal(mu.unsqueeze(1), ls.exp().unsqueeze(1)).log_prob(
        ent.unsqueeze(0)).sum(-1)                                        # [B, N]
    torch.testing.assert_close(dec.log_prob(ent, None, anchor, r, _all(B), direction), ref)
    # stage 1 (one weighted matrix product) is the same density
    torch.testing.assert_close(dec.gaussian_all(mu, ls, ent), ref)
    scores = dec.score_tails(ent, None, h, r) if direction == "tail" else \
        dec.score_heads(ent, None, r, t)
    torch.testing.assert_close(scores, ref)


@pytest.mark.parametrize("coupling", ["affine_coupling", "spline_coupling"])
def test_density_integrates_to_one_in_2d(coupling):
    dec, ent, h, r, t = _setup(dim=2, scale_clamp=1.0, coupling={"name": coupling,
                                                                 "num_blocks": 2, "hidden": 16})
    perturb(dec.coupling, std=0.25, seed=7)
    with torch.no_grad():
        ent.mul_(0.5)
        mu, ls, ctx = dec.gaussian_params(ent, None, h[:1], r[:1])
        # midpoint rule on [-20, 20]² (step 1/30: the splines' steepest bins need it)
        L, n = 20.0, 1201
        xs = torch.linspace(-L, L, n, dtype=torch.float64)
        grid = torch.cartesian_prod(xs, xs).unsqueeze(0)                # [1, n², 2]
        cell = (2 * L / (n - 1)) ** 2
        p = dec.flow_log_prob(mu, ls, ctx, grid)[0].exp()
        gauss = torch.distributions.Normal(mu, ls.exp()).log_prob(grid[0]).sum(-1).exp()
    # far from its Gaussian start: total-variation distance ½∫|p − N| well above 0
    assert 0.5 * float((p - gauss).abs().sum() * cell) > 0.4
    assert float(p.sum() * cell) == pytest.approx(1.0, abs=1e-3)


def test_rerank_all_equals_exact_density_ranking():
    dec, ent, h, r, t = _setup(rerank_k="all")
    exact = dec.log_prob(ent, None, h, r, _all(B))
    torch.testing.assert_close(dec.score_tails(ent, None, h, r), exact)
    exact_h = dec.log_prob(ent, None, t, r, _all(B), "head")
    torch.testing.assert_close(dec.score_heads(ent, None, r, t), exact_h)
    assert torch.equal(dec.score_tails(ent, None, h, r).argsort(1, descending=True),
                       exact.argsort(1, descending=True))


@pytest.mark.parametrize("k", [1, 4, N - 1])
def test_two_stage_merge_keeps_ranks_consistent(k):
    dec, ent, h, r, t = _setup(rerank_k=k, gap=1.0)
    mu, ls, _ = dec.gaussian_params(ent, None, h, r)
    s1 = dec.gaussian_all(mu, ls, ent)
    exact = dec.log_prob(ent, None, h, r, _all(B))
    out = dec.score_tails(ent, None, h, r)
    top = s1.topk(k, dim=1).indices
    inside = torch.zeros(B, N, dtype=torch.bool).scatter_(1, top, True)
    # re-ranked entities get the exact density ...
    torch.testing.assert_close(out[inside], exact[inside])
    for b in range(B):
        # ... and every one of them is ≥ gap above every other entity
        assert out[b][inside[b]].min() >= out[b][~inside[b]].max() + 1.0 - 1e-9
        # the others keep stage 1's scores up to one per-query shift (same order)
        diff = out[b][~inside[b]] - s1[b][~inside[b]]
        torch.testing.assert_close(diff, diff[:1].expand_as(diff))
        assert float(diff[0].detach()) <= 0
    # rerank_k = 0: stage 1 alone
    dec.rerank_k = 0
    torch.testing.assert_close(dec.score_tails(ent, None, h, r), s1)


def test_rerank_statistics_are_recorded():
    dec, ent, h, r, t = _setup(rerank_k=3)
    dec.reset_rerank_statistics()
    dec.score_tails(ent, None, h, r)
    dec.score_heads(ent, None, r, t)
    st = dec.rerank_statistics()
    assert st["queries"] == 2 * B and st["reranked_per_query"] == 3
    assert 0 <= st["top1_change_rate"] <= 1 and st["stage2_seconds"] > 0
    dec.train()
    dec.score_tails(ent, None, h, r)  # training calls are not counted
    assert dec.rerank_statistics()["queries"] == 2 * B


@pytest.mark.parametrize("direction", ["tail", "head"])
def test_score_candidates_consistent_with_score_all(direction):
    dec, ent, h, r, t = _setup(rerank_k="all")
    cand = torch.randint(N, (B, 7), generator=torch.Generator().manual_seed(3))
    sc = dec.score_candidates(ent, None, h, r, t, cand, direction)
    full = dec.score_tails(ent, None, h, r) if direction == "tail" else \
        dec.score_heads(ent, None, r, t)
    torch.testing.assert_close(sc, full.gather(1, cand))
    torch.testing.assert_close(dec.score(ent, None, h, r, t),
                               dec.score_tails(ent, None, h, r)[torch.arange(B), t])
    # with a top-K re-ranker the candidates' full density is what the re-ranked entries show
    dec.rerank_k = 5
    mu, ls, _ = dec.gaussian_params(ent, None, h if direction == "tail" else t, r, direction)
    top = dec.gaussian_all(mu, ls, ent).topk(5, dim=1).indices
    full = dec.score_tails(ent, None, h, r) if direction == "tail" else \
        dec.score_heads(ent, None, r, t)
    torch.testing.assert_close(dec.score_candidates(ent, None, h, r, t, top, direction),
                               full.gather(1, top))


def test_sampling_is_reproducible_and_matches_the_gaussian_at_init():
    dec, ent, h, r, t = _setup()
    s = dec.sample(ent, None, h, r, 6, torch.Generator().manual_seed(11))
    assert s.shape == (B, 6, D)
    torch.testing.assert_close(s, dec.sample(ent, None, h, r, 6,
                                             torch.Generator().manual_seed(11)),
                               rtol=0, atol=0)
    assert not torch.equal(s, dec.sample(ent, None, h, r, 6, torch.Generator().manual_seed(12)))
    ids = dec.sample_entities(ent, None, h, r, 6, torch.Generator().manual_seed(11))
    assert ids.shape == (B, 6) and torch.equal(
        ids, torch.cdist(s.reshape(-1, D), ent).argmin(1).view(B, 6))
    # identity coupling: samples are N(μ, diag σ²)
    dec, ent, h, r, t = _setup(perturb_coupling=False)
    x = dec.sample(ent, None, h[:1], r[:1], 20000, torch.Generator().manual_seed(0))[0]
    mu, ls, _ = dec.gaussian_params(ent, None, h[:1], r[:1])
    sigma = ls.exp()[0]
    assert ((x.mean(0) - mu[0]).abs() / sigma).max() < 0.05
    assert ((x.std(0) / sigma) - 1).abs().max() < 0.03
    # temperature T: the base distribution is N(0, T²I)
    x = dec.sample(ent, None, h[:1], r[:1], 20000, torch.Generator().manual_seed(0),
                   temperature=0.5)[0]
    assert ((x.std(0) / sigma) - 0.5).abs().max() < 0.02
    with pytest.raises(ValueError, match="temperature"):
        dec.sample(ent, None, h, r, 2, temperature=0.0)


def test_samples_have_the_density_of_the_flow():
    # the samples' log-density under the model equals log N(z) − log|det ∂F/∂z| of their z
    dec, ent, h, r, t = _setup()
    g = torch.Generator().manual_seed(5)
    mu, ls, ctx = dec.gaussian_params(ent, None, h, r)
    z = torch.randn(B, D, generator=g, dtype=torch.float64)
    u, ladj = dec.coupling(z, ctx)
    e = mu + ls.exp() * u
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1) - ladj - ls.sum(-1)
    torch.testing.assert_close(dec.flow_log_prob(mu, ls, ctx, e.unsqueeze(1))[:, 0], ref)


def test_head_mirror_shares_the_map_and_uses_its_own_context_row():
    dec, ent, h, r, t = _setup(rerank_k="all")
    mu_h, ls_h, ctx_h = dec.gaussian_params(ent, None, t, r, "head")
    # the head query's mean is the exact inverse of the tail map
    torch.testing.assert_close(dec.transform(mu_h, r)[0], ent[t])
    # naive reference: same networks, relation context row r + R, anchor = the tail
    ctx = torch.cat([dec.relation[r + R], ent[t]], 1)
    torch.testing.assert_close(ctx_h, ctx)
    torch.testing.assert_close(ls_h, soft_clamp(dec.scale_net(ctx), dec.scale_clamp))
    ref = []
    for e in range(N):
        u = (ent[e].expand(B, D) - mu_h) * torch.exp(-ls_h)
        z, ladj = dec.coupling.inverse(u, ctx)
        ref.append(-0.5 * (z * z).sum(-1) - 0.5 * D * math.log(2 * math.pi) + ladj
                   - ls_h.sum(-1))
    torch.testing.assert_close(dec.score_heads(ent, None, r, t), torch.stack(ref, 1))
    # the head rows change head scores only; the tail rows change tail scores only
    before_t, before_h = dec.score_tails(ent, None, h, r), dec.score_heads(ent, None, r, t)
    with torch.no_grad():
        dec.relation[R:] += 1.0
    torch.testing.assert_close(dec.score_tails(ent, None, h, r), before_t)
    assert not torch.allclose(dec.score_heads(ent, None, r, t), before_h)
    s = dec.sample(ent, None, t, r, 4, torch.Generator().manual_seed(0), direction="head")
    assert s.shape == (B, 4, D) and torch.isfinite(s).all()
    for call in (lambda: dec.sample(ent, None, t, r, 4, direction="heads"),
                 lambda: dec.score_candidates(ent, None, h, r, t, _all(B), direction="x")):
        with pytest.raises(ValueError, match="direction must be 'head' or 'tail', got"):
            call()


def test_encoder_relations_need_two_rows_per_relation():
    dec = build_decoder("stochastic_flow", num_relations=R, dim=D, relation_source="encoder",
                        context_dim=8)
    ent = torch.randn(N, D)
    h, r = torch.tensor([0, 1]), torch.tensor([0, 2])
    assert dec.relation is None
    assert dec.score_tails(ent, torch.randn(2 * R, 8), h, r).shape == (2, N)
    with pytest.raises(ValueError, match=r"\[2R, 8\]"):
        dec.score_tails(ent, torch.randn(R, 8), h, r)


def test_bad_rerank_k_is_rejected():
    with pytest.raises(ValueError, match="rerank_k"):
        build_decoder("stochastic_flow", num_relations=R, dim=D, rerank_k=-1)
    with pytest.raises(ValueError, match="train_rerank_k"):
        build_decoder("stochastic_flow", num_relations=R, dim=D, train_rerank_k="some")


def test_flow_nll_loss_reaches_every_parameter():
    from gnn_inn.encoders import LookupEncoder
    from gnn_inn.model import LinkPredictor
    from gnn_inn.training.losses import LOSSES, QueryBatch, build_loss

    assert "flow_nll" in LOSSES
    torch.manual_seed(0)
    dec = build_decoder("stochastic_flow", num_relations=R, dim=D, train_rerank_k=4)
    perturb(dec.coupling, std=0.1, seed=1)
    perturb(dec.scale_net, std=0.1, seed=2)  # zero-initialised last layers pass no gradient on
    model = LinkPredictor(encoder=LookupEncoder(num_entities=N, dim=D), decoder=dec)
    train = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 2, 5], [6, 0, 7]])
    loss_fn = build_loss("flow_nll", train, N, R, gaussian_weight=0.5, nll_weight=0.1)
    model.train()
    ent, rel = model.encode()
    h, r, t = train.unbind(1)
    total = loss_fn(model, QueryBatch("tail", h, r, target=t), ent, rel) + \
        loss_fn(model, QueryBatch("head", t, r, target=h), ent, rel)
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing
    # the plain 1vsall loss runs with the decoder too; flow_nll refuses other decoders
    assert torch.isfinite(build_loss("1vsall", train, N, R)(
        model, QueryBatch("tail", h, r, target=t), *model.encode()))
    other = LinkPredictor(encoder=LookupEncoder(num_entities=N, dim=D),
                          decoder=build_decoder("transe", num_relations=R, dim=D))
    with pytest.raises(ValueError, match="stochastic_flow"):
        loss_fn(other, QueryBatch("tail", h, r, target=t), *other.encode())


def test_density_terms_mask_the_duplicate_target():
    dec, ent, h, r, t = _setup(train_rerank_k=N - 2)
    dec.train()
    terms = dec.density_terms(ent, None, h, r, t)
    assert terms["candidates"].shape == (B, N - 1) and terms["gaussian"].shape == (B, N)
    assert torch.equal(terms["candidates"][:, 0], t)
    finite = torch.isfinite(terms["candidate_scores"]).sum(1)
    in_top = (terms["candidates"][:, 1:] == t[:, None]).any(1)
    assert torch.equal(finite, N - 1 - in_top.long())
    torch.testing.assert_close(terms["target_log_prob"],
                               dec.log_prob(ent, None, h, r, t[:, None])[:, 0])


def test_short_training_on_the_synthetic_suite(tmp_path):
    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config

    cfg = Config.from_dict({
        "seed": 0, "dataset": {"name": "synthetic"},
        "model": {"dim": 16, "encoder": {"name": "none"}, "decoder": {
            "name": "stochastic_flow", "flow": "rotation", "patterns": "auto",
            "coupling": {"name": "affine_coupling", "num_blocks": 2, "hidden": 16},
            "rerank_k": 8, "train_rerank_k": 4}},
        "train": {"epochs": 2, "batch_size": 512, "lr": 0.01, "eval_every": 1, "patience": 0,
                  "loss": {"name": "flow_nll"}, "device": "cpu"},
        "eval": {"batch_size": 512},
    })
    trainer = trainer_from_config(cfg, out_dir=tmp_path, quiet=True)
    res = trainer.fit()
    assert res["epochs"] == 2 and 0 < res["test"]["mrr"] <= 1
    assert "one-to-many" in res["test_per_pattern"]
    assert res["relation_patterns"]["member_of"].startswith("tied-inverse")
    assert res["certificate"]["float64"]["max"] < 1e-6   # the mean map stays invertible
    assert (tmp_path / "best.pt").is_file()


# ----------------------------------------------------------- many-answer metrics
class _Oracle(torch.nn.Module):
    """Scores 1 for every known answer, 0 otherwise (or constant scores)."""

    def __init__(self, kg, constant=False):
        super().__init__()
        self.kg, self.constant = kg, constant
        self.w = torch.nn.Parameter(torch.zeros(1))

    def _mask(self, rows_cols, b):
        out = torch.zeros(b, self.kg.num_entities)
        if not self.constant:
            out[rows_cols[0], rows_cols[1]] = 1.0
        return out

    def score_tails(self, h, r):
        return self._mask(self.kg.filter_index.tails(h, r), h.numel())

    def score_heads(self, r, t):
        return self._mask(self.kg.filter_index.heads(r, t), t.numel())


def test_set_recall_of_an_oracle_and_of_constant_scores():
    from gnn_inn.data import load_dataset
    from gnn_inn.evaluation.many_answers import answer_sets, set_recall

    kg = load_dataset("synthetic")
    hm = kg.relation_names.index("has_member")
    sets = answer_sets(kg, direction="tail", relations=[hm])
    assert len(sets) > 0 and bool((sets.sizes == 4).all())  # a leader has 4 members
    assert answer_sets(kg, direction="head", relations=[hm]).anchor.numel() == 0  # 1 leader
    rec = set_recall(_Oracle(kg), sets)
    assert bool((rec["set_recall"] == 1).all()) and bool((rec["heldout_recall"] == 1).all())
    # constant scores: ties broken at random in expectation, recall |S| / N
    rec = set_recall(_Oracle(kg, constant=True), sets)
    torch.testing.assert_close(rec["set_recall"], torch.full((len(sets),), 4 / kg.num_entities,
                                                             dtype=torch.float64))


def test_many_answer_report_for_stochastic_and_deterministic_decoders():
    from gnn_inn.config import Config
    from gnn_inn.data import load_dataset
    from gnn_inn.evaluation.many_answers import category_mrr, many_answer_report
    from gnn_inn.model import model_from_config

    kg = load_dataset("synthetic")
    rels = [kg.relation_names.index("has_member"), kg.relation_names.index("member_of")]
    out = {}
    for dec in ({"name": "stochastic_flow", "rerank_k": 4}, {"name": "flow", "flow": "rotation"}):
        cfg = Config.from_dict({"model": {"dim": 8, "encoder": {"name": "none"},
                                          "decoder": dec}})
        model = model_from_config(cfg, kg)
        rep = many_answer_report(model, kg, n_samples=5, seed=0, relations=rels)
        assert rep["tail"]["queries"] > 0 and rep["head"]["queries"] > 0
        assert rep["both"]["queries"] == rep["tail"]["queries"] + rep["head"]["queries"]
        for key in ("set_recall", "heldout_recall", "sample_recall", "sample_precision"):
            assert 0 <= rep["both"][key] <= 1
        again = many_answer_report(model, kg, n_samples=5, seed=0, relations=rels)
        assert again == rep  # seeded sampling: the same report
        out[dec["name"]] = rep
        cats = category_mrr(model, kg, relations=rels)
        assert set(cats) == {"1-N", "N-1"} and 0 < cats["1-N"]["tail"] <= 1
    assert out["flow"]["both"]["distinct_hits"] == 1.0  # a point mass hits one entity
    assert out["stochastic_flow"]["both"]["distinct_hits"] > 1.0
