"""Type-constrained training on a typed graph (ogbl-biokg-like fixture).

``nssa`` draws every corruption inside its relation's head / tail type range, ``1vsall`` /
``kvsall`` give out-of-type candidates ``-inf`` (and leave them out of the loss), neighbour-
sampled training drops out-of-type shared negatives, and the trainer switches all of it on
for typed graphs (config ``train.loss.type_constrained``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gnn_inn.config import ConfigError
from gnn_inn.data import load_ogb
from gnn_inn.model import model_from_config
from gnn_inn.training import trainer_from_config
from gnn_inn.training.losses import (
    KvsAllLoss,
    NegativeSamplingLoss,
    OneVsAllLoss,
    kg_type_ranges,
    relation_type_ranges,
    sample_in_ranges,
    type_candidate_mask,
)
from gnn_inn.training.sampling import NeighborSampledObjective
from helpers import needs_backend


def _load_ogb_fixtures():
    """tests/data/test_ogb.py's fixture writers (tests/ is not a package: load by path)."""
    path = Path(__file__).resolve().parents[1] / "data" / "test_ogb.py"
    spec = importlib.util.spec_from_file_location("_ogb_test_fixtures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fx = _load_ogb_fixtures()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("typed")
    fx.write_biokg(root)
    fx.write_wikikg2(root)
    return root


@pytest.fixture(scope="module")
def kg(data_dir):
    """The typed ogbl-biokg fixture (in place of conftest's synthetic ``kg``)."""
    return load_ogb("ogbl-biokg", data_dir, allow_download=False)


def _biokg_model(kg):
    return model_from_config(fx._tiny_config(Path("."), "ogbl-biokg"), kg)


def _all_scores(model, b, ent, rel) -> torch.Tensor:
    """``[B, N]`` scores of batch ``b``'s queries against every entity."""
    if b.direction == "tail":
        return model.decoder.score_tails(ent, rel, b.anchor, b.relation)
    return model.decoder.score_heads(ent, rel, b.relation, b.anchor)


def _side_ranges(kg, r: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(start [B], end [B])`` of side ``0`` (head) / ``1`` (tail) of relations ``r``, from
    the graph's own type bookkeeping (independent of the losses' helper)."""
    names = kg.entity_type_names
    ty = kg.relation_types[r, side]
    start = torch.tensor([kg.entity_type_ranges[names[i]][0] for i in ty.tolist()])
    end = torch.tensor([kg.entity_type_ranges[names[i]][1] for i in ty.tolist()])
    return start, end


# ------------------------------------------------------------------ ranges
def test_type_ranges_of_the_fixture(kg):
    # disease [0, 4), drug [4, 9), protein [9, 16); relation_types [[1, 2], [0, 2], [1, 0], [2, 2]]
    expected = torch.tensor([[[4, 9], [9, 16]], [[0, 4], [9, 16]], [[4, 9], [0, 4]],
                             [[9, 16], [9, 16]]])
    assert torch.equal(kg_type_ranges(kg), expected)
    # every training head / tail lies in its relation's range
    tr = kg_type_ranges(kg)
    h, r, t = kg.train.unbind(1)
    assert bool(((h >= tr[r, 0, 0]) & (h < tr[r, 0, 1])).all())
    assert bool(((t >= tr[r, 1, 0]) & (t < tr[r, 1, 1])).all())


def test_unknown_relation_type_gets_the_full_range_and_bad_ranges_are_refused(kg):
    out = relation_type_ranges(torch.tensor([[0, 1], [-1, 1]]), [(0, 3), (3, 10)], 10)
    assert out.tolist() == [[[0, 3], [3, 10]], [[0, 10], [3, 10]]]
    wrong = kg_type_ranges(kg).clone()
    wrong[0, 1] = torch.tensor([0, 4])  # drug-protein tails said to be diseases
    with pytest.raises(ValueError, match="tail outside relation 0"):
        NegativeSamplingLoss(kg.train, kg.num_entities, kg.num_relations, type_ranges=wrong)
    with pytest.raises(ValueError, match=r"\[R, 2, 2\]"):
        OneVsAllLoss(kg.train, kg.num_entities, kg.num_relations,
                     type_ranges=kg_type_ranges(kg)[:2])


def test_sample_in_ranges_stays_inside_and_is_uniform():
    g = torch.Generator().manual_seed(0)
    start = torch.tensor([0, 5, 7, 2**40])
    end = torch.tensor([3, 6, 17, 2**40 + 3])
    ids = sample_in_ranges(start, end, 30_000, g)
    assert ids.shape == (4, 30_000)
    assert bool(((ids >= start[:, None]) & (ids < end[:, None])).all())
    assert bool((ids[1] == 5).all())  # a one-entity range
    for row, lo, hi in zip(ids, start.tolist(), end.tolist()):
        counts = torch.bincount(row - lo, minlength=hi - lo).float()
        assert counts.numel() == hi - lo and bool((counts > 0).all())
        expected = row.numel() / (hi - lo)
        assert float((counts - expected).abs().max()) < 0.1 * expected


# ------------------------------------------------------------------ nssa
def test_nssa_negatives_lie_in_the_relation_type_range(kg):
    tr = kg_type_ranges(kg)
    loss = NegativeSamplingLoss(kg.train, kg.num_entities, kg.num_relations,
                                num_negatives=200, type_ranges=tr)
    g = torch.Generator().manual_seed(0)
    seen = {"tail": [], "head": []}
    for step in loss.batches(10, g):
        for b in step:
            side = 1 if b.direction == "tail" else 0
            start, end = _side_ranges(kg, b.relation, side)
            assert b.other.shape == (b.anchor.numel(), 200)
            assert bool(((b.other >= start[:, None]) & (b.other < end[:, None])).all()), b.direction
            # the type of every negative is the type of the entity it replaces
            assert torch.equal(kg.entity_type[b.other],
                               kg.entity_type[b.target][:, None].expand_as(b.other))
            seen[b.direction].append(torch.stack([b.relation[:, None].expand_as(b.other), b.other],
                                            -1).reshape(-1, 2))
    # each relation's whole range gets drawn, nothing else
    for direction, side in (("tail", 1), ("head", 0)):
        pairs = torch.unique(torch.cat(seen[direction]), dim=0)
        for r in range(kg.num_relations):
            got = pairs[pairs[:, 0] == r, 1]
            assert got.tolist() == list(range(*tr[r, side].tolist())), (direction, r)
    # without type ranges corruptions leave the type (the check above is not vacuous)
    plain = NegativeSamplingLoss(kg.train, kg.num_entities, kg.num_relations,
                                 num_negatives=200)
    b = next(plain.batches(10, torch.Generator().manual_seed(0)))[0]
    assert not torch.equal(kg.entity_type[b.other],
                           kg.entity_type[b.target][:, None].expand_as(b.other))


def test_nssa_with_all_negatives_filtered_has_no_negative_term(kg):
    """A one-entity range whose only entity is the answer: every negative is masked."""
    model = _biokg_model(kg)
    tr = kg_type_ranges(kg)
    train = kg.train[kg.train[:, 1] == 3][:1]  # one protein-protein triple
    one = tr.clone()
    one[3, 1] = torch.tensor([int(train[0, 2]), int(train[0, 2]) + 1])
    loss = NegativeSamplingLoss(train, kg.num_entities, kg.num_relations, num_negatives=8,
                                adversarial_temperature=1.0, type_ranges=one)
    tail = next(loss.batches(4, torch.Generator().manual_seed(0)))[0]
    assert bool((tail.other == train[0, 2]).all())
    ent, rel = model.encode()
    s = model.decoder.score_candidates(ent, rel, tail.anchor, tail.relation, tail.target,
                                       tail.target[:, None], "tail")[:, 0]
    torch.testing.assert_close(loss(model, tail, ent, rel), -F.logsigmoid(s.float()).mean())


# ------------------------------------------------------------------ 1vsall / kvsall masking
@pytest.mark.parametrize("cls", [OneVsAllLoss, KvsAllLoss])
def test_out_of_type_scores_do_not_change_the_loss(kg, cls, monkeypatch):
    model = _biokg_model(kg)
    loss = cls(kg.train, kg.num_entities, kg.num_relations, type_ranges=kg_type_ranges(kg))
    ent, rel = model.encode()
    dec = model.decoder
    cols = torch.arange(kg.num_entities)
    g = torch.Generator().manual_seed(1)

    def shifted(b, add: torch.Tensor) -> torch.Tensor:
        """The loss on its own scoring path, with ``add [B, N]`` added to the scores."""
        with monkeypatch.context() as m:
            for name in ("score_tails", "score_heads"):
                orig = getattr(dec, name)
                m.setattr(dec, name, lambda *a, _o=orig: _o(*a) + add)
            return loss(model, b, ent, rel)

    for step in loss.batches(7, torch.Generator().manual_seed(0)):
        for b in step:
            start, end = _side_ranges(kg, b.relation, 1 if b.direction == "tail" else 0)
            inside = (cols >= start[:, None]) & (cols < end[:, None])
            assert torch.equal(inside, type_candidate_mask(
                loss.type_ranges, b.relation, b.direction, kg.num_entities))
            noise = 100.0 * torch.randn(inside.shape, generator=g)
            base = loss(model, b, ent, rel)
            torch.testing.assert_close(shifted(b, noise * ~inside), base)
            assert not torch.allclose(shifted(b, noise * inside), base)


def _row_blocks(kg, b):
    """Per query: ``(in-type columns, their offset)`` for slicing a score row."""
    start, end = _side_ranges(kg, b.relation, 1 if b.direction == "tail" else 0)
    return list(zip(start.tolist(), end.tolist()))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_masked_1vsall_is_cross_entropy_over_the_type(kg, eps):
    model = _biokg_model(kg)
    loss = OneVsAllLoss(kg.train, kg.num_entities, kg.num_relations, label_smoothing=eps,
                        type_ranges=kg_type_ranges(kg))
    ent, rel = model.encode()
    for b in next(loss.batches(9, torch.Generator().manual_seed(1))):
        raw = _all_scores(model, b, ent, rel)
        per_row = [F.cross_entropy(raw[i, lo:hi][None], (b.target[i] - lo)[None],
                                   label_smoothing=eps)
                   for i, (lo, hi) in enumerate(_row_blocks(kg, b))]
        value = loss(model, b, ent, rel)
        torch.testing.assert_close(value, torch.stack(per_row).mean())
        value.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()
                   if p.grad is not None)
        model.zero_grad()
        ent, rel = model.encode()


def test_masked_kvsall_is_bce_over_the_type(kg):
    eps = 0.2
    model = _biokg_model(kg)
    loss = KvsAllLoss(kg.train, kg.num_entities, kg.num_relations, label_smoothing=eps,
                      type_ranges=kg_type_ranges(kg))
    ent, rel = model.encode()
    for b in next(loss.batches(9, torch.Generator().manual_seed(1))):
        raw = _all_scores(model, b, ent, rel)
        y = torch.zeros_like(raw)
        y[b.rows, b.cols] = 1.0
        per_row = []
        for i, (lo, hi) in enumerate(_row_blocks(kg, b)):
            assert float(y[i].sum()) == float(y[i, lo:hi].sum())  # answers are in type
            target = (1 - eps) * y[i, lo:hi] + eps / (hi - lo)
            per_row.append(F.binary_cross_entropy_with_logits(raw[i, lo:hi], target))
        value = loss(model, b, ent, rel)
        assert torch.isfinite(value)
        torch.testing.assert_close(value, torch.stack(per_row).mean())


# ------------------------------------------------------------------ trainer and config
def _config(data_dir, name="ogbl-biokg", **loss):
    return fx._tiny_config(data_dir, name, epochs=2, batch_size=8,
                           loss={"name": "nssa", "num_negatives": 16, **loss})


def test_trainer_type_constrains_by_default_on_a_typed_graph(data_dir, kg):
    tr = trainer_from_config(_config(data_dir), quiet=True)
    assert torch.equal(tr.loss.type_ranges, kg_type_ranges(kg))
    res = tr.fit()
    assert 0 < res["test"]["mrr"] <= 1 and res["epochs"] == 2
    assert torch.equal(trainer_from_config(_config(data_dir, type_constrained=True),
                                           quiet=True).loss.type_ranges, kg_type_ranges(kg))
    assert trainer_from_config(_config(data_dir, type_constrained=False),
                               quiet=True).loss.type_ranges is None


@pytest.mark.parametrize("name", ["1vsall", "kvsall"])
def test_short_training_run_with_masked_all_entity_losses(data_dir, name):
    cfg = fx._tiny_config(data_dir, "ogbl-biokg", epochs=2, batch_size=8,
                          loss={"name": name, "type_constrained": True})
    tr = trainer_from_config(cfg, quiet=True)
    assert tr.loss.type_ranges is not None
    losses = [tr.train_epoch() for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert 0 < tr.evaluate("test").metrics()["mrr"] <= 1


def test_type_constrained_errors_and_unsupported_losses(data_dir):
    with pytest.raises(ConfigError, match="needs a typed graph"):
        trainer_from_config(_config(data_dir, "ogbl-wikikg2", type_constrained=True),
                            quiet=True)
    # untyped graph, auto: uniform corruptions as before
    assert trainer_from_config(_config(data_dir, "ogbl-wikikg2"),
                               quiet=True).loss.type_ranges is None
    with pytest.raises(ConfigError, match="true, false or null"):
        trainer_from_config(_config(data_dir, type_constrained="yes"), quiet=True)
    flow_nll = fx._tiny_config(data_dir, "ogbl-biokg", loss={"name": "flow_nll",
                                                             "type_constrained": True})
    flow_nll.model.decoder = {"name": "stochastic_flow"}  # flow_nll needs a density decoder
    with pytest.raises(ConfigError, match="no type"):
        trainer_from_config(flow_nll, quiet=True)
    flow_nll.train.loss.pop("type_constrained")  # auto: a loss without types just trains
    assert trainer_from_config(flow_nll, quiet=True).loss.type_ranges is None


# ------------------------------------------------------------------ neighbour sampling
def _sampled_config(data_dir, loss="nssa", **extra):
    cfg = fx._tiny_config(data_dir, "ogbl-biokg", epochs=1, batch_size=8,
                          loss={"name": loss, **extra},
                          sampler={"num_neighbors": [3, 3], "num_negatives": 6,
                                   "inference_batch_size": 5})
    cfg.model.encoder = {"name": "rgcn", "num_layers": 2}
    cfg.model.decoder = {"name": "distmult"}
    return cfg


@needs_backend
def test_sampled_training_drops_out_of_type_shared_negatives(data_dir, kg):
    tr = trainer_from_config(_sampled_config(data_dir), quiet=True)
    obj = tr.sampler
    assert isinstance(obj, NeighborSampledObjective)
    assert torch.equal(obj.type_ranges, kg_type_ranges(kg))
    g = torch.Generator().manual_seed(0)
    for step in obj.batches(8, g):
        h, r, t = step.triples.unbind(1)
        out = obj.out_of_type(r, step.negatives)
        assert out.shape == (2 * r.numel(), step.negatives.numel())
        neg_type = kg.entity_type[step.negatives][None]
        assert torch.equal(out[:r.numel()], neg_type != kg.entity_type[t][:, None])
        assert torch.equal(out[r.numel():], neg_type != kg.entity_type[h][:, None])
    assert 0 < tr.fit()["test"]["mrr"] <= 1
    off = trainer_from_config(_sampled_config(data_dir, type_constrained=False), quiet=True)
    assert off.sampler.type_ranges is None


@needs_backend
@pytest.mark.parametrize("loss", ["1vsall", "kvsall", "nssa"])
def test_sampled_loss_ignores_out_of_type_negatives(data_dir, kg, loss):
    """Out-of-type shared negatives are dropped from every query's loss: changing their
    scores (or their known-answer flags) changes nothing."""
    tr = trainer_from_config(_sampled_config(data_dir, loss), quiet=True)
    obj, model = tr.sampler, tr.model
    step = next(obj.batches(16, torch.Generator().manual_seed(3)))
    _, seeds, part = obj.subgraph(step)
    out = obj.out_of_type(part[:, 1], seeds)  # [2b, C] over the step's candidates
    assert out.any() and not out.all()
    seen = {}
    inner = obj.per_query_loss

    def spy(scores, target, ok, known):
        seen.update(scores=scores, target=target, ok=ok, known=known)
        return inner(scores, target, ok, known)

    obj.per_query_loss = spy
    value = obj(model, step)
    assert torch.isfinite(value)
    scores, target, ok, known = (seen[k] for k in ("scores", "target", "ok", "known"))
    assert not bool((ok & out).any())  # no out-of-type candidate counts
    assert not bool(out.gather(1, target.unsqueeze(1)).any())  # answers are in type
    base = inner(scores, target, ok, known)
    noise = torch.randn(scores.shape, generator=torch.Generator().manual_seed(0)) * 10
    moved = inner(torch.where(out, scores + noise, scores), target, ok, known | out)
    torch.testing.assert_close(moved, base)
    # and without type constraints the same perturbation does change the loss
    plain = trainer_from_config(_sampled_config(data_dir, loss, type_constrained=False),
                                quiet=True).sampler
    plain_ok = ok | (out & torch.isin(seeds, step.negatives)[None])
    assert not torch.allclose(
        plain.per_query_loss(torch.where(out, scores + noise, scores), target, plain_ok, known),
        plain.per_query_loss(scores, target, plain_ok, known))
