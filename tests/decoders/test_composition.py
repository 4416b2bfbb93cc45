"""Composition by construction: f_r3 = f_r2 ∘ f_r1 (chains, inverted bodies, residual flows)."""

from __future__ import annotations

import pytest
import torch

from gnn_inn.data import make_synthetic
from gnn_inn.data.rules import mine_rules
from gnn_inn.decoders import FlowDecoder, build_decoder
from gnn_inn.decoders.certificate import certify
from gnn_inn.decoders.flow import _SNAP
from gnn_inn.decoders.patterns import (
    RelationPattern,
    adopt_compositions,
    infer_patterns,
    parse_patterns,
    resolution_order,
)
from gnn_inn.encoders import LookupEncoder
from gnn_inn.flows import FLOWS
from gnn_inn.model import LinkPredictor

D = 6
# r0, r1 free; r2 = f1 ∘ f0; r3 = f2⁻¹ ∘ f1 (chains through a composed relation, inverted);
# r4 = f3⁻¹ (tied inverse of a composed map); r5 involution; r6 = g6 ∘ f5 ∘ f4 (residual)
CHAIN = {2: "composition:0,1", 3: "composition:1,2^-1", 4: "tied-inverse:3", 5: "involution",
         6: "composition:4,5,residual"}
R = 7


def _dec(flow="affine_coupling", conditioning="table", patterns=CHAIN, seed=0, **kw):
    torch.manual_seed(seed)
    dec = FlowDecoder(num_relations=R, dim=D, flow=flow, conditioning=conditioning,
                      patterns=patterns, **kw).double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # away from the identity, residual flows included
        for p in dec.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return dec


def _f(dec, x, r, inverse=False):
    return dec.transform(x, torch.full((x.shape[0],), r), inverse=inverse)


def _x(b=5, seed=3, scale=1.0):
    return torch.randn(b, D, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) * scale


@pytest.mark.parametrize("flow", sorted(FLOWS))
@pytest.mark.parametrize("conditioning", ["table", "context"])
def test_composed_maps_are_the_compositions(flow, conditioning):
    dec = _dec(flow, conditioning)
    x = _x()
    f0, f1 = _f(dec, x, 0), None
    f1 = _f(dec, f0[0], 1)
    y2, l2 = _f(dec, x, 2)
    torch.testing.assert_close(y2, f1[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(l2, f0[1] + f1[1], atol=1e-10, rtol=0)
    # r3 = f2⁻¹ ∘ f1 and r4 = r3⁻¹ = f1⁻¹ ∘ f2
    a = _f(dec, x, 1)
    b = _f(dec, a[0], 2, inverse=True)
    y3, l3 = _f(dec, x, 3)
    torch.testing.assert_close(y3, b[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(l3, a[1] + b[1], atol=1e-10, rtol=0)
    y4, _ = _f(dec, y3, 4)
    torch.testing.assert_close(y4, x, atol=1e-9, rtol=0)


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_round_trip_and_logdet_of_composed_maps(flow):
    """float64: f_r⁻¹(f_r(x)) = x within 1e-6 and log|det| equal to autograd's slogdet within
    1e-6 in both directions, for every composed, chained and residual relation."""
    dec = _dec(flow)
    for r in (2, 3, 4, 6):
        x = _x(4, seed=r, scale=3.0)
        y, ld = _f(dec, x, r)
        back, ld_inv = _f(dec, y, r, inverse=True)
        assert (back - x).abs().max() <= 1e-6
        assert (ld + ld_inv).abs().max() <= 1e-6
        for inverse in (False, True):
            for i in range(2):
                def fn(v, inverse=inverse, r=r):
                    return _f(dec, v.unsqueeze(0), r, inverse)[0].squeeze(0)
                jac = torch.autograd.functional.jacobian(fn, x[i])
                ref = torch.linalg.slogdet(jac).logabsdet
                got = _f(dec, x[i: i + 1], r, inverse)[1][0]
                assert abs(float((got - ref).detach())) <= 1e-6, (flow, r, inverse)


def test_mixed_batch_equals_per_relation_and_gradients_reach_the_body():
    dec = _dec("affine_coupling")
    x = _x(14)
    r = torch.arange(14) % R
    y, ld = dec.transform(x, r)
    yi, ldi = dec.transform(x, r, inverse=True)
    for k in range(14):
        one, l1 = _f(dec, x[k: k + 1], int(r[k]))
        torch.testing.assert_close(y[k], one[0], atol=1e-10, rtol=0)
        torch.testing.assert_close(ld[k], l1[0], atol=1e-10, rtol=0)
        inv, _ = _f(dec, x[k: k + 1], int(r[k]), inverse=True)
        torch.testing.assert_close(yi[k], inv[0], atol=1e-10, rtol=0)
    # a loss on the composed relation 2 alone trains the maps of 0 and 1 (table rows 0, 1)
    dec.zero_grad()
    _f(dec, x, 2)[0].square().sum().backward()
    table = dec.flow[-1].params.table  # the final elementwise affine's per-relation rows
    assert table.grad[0].abs().sum() > 0 and table.grad[1].abs().sum() > 0
    assert table.grad[2:].abs().sum() == 0


def test_residual_starts_at_the_identity_and_learns():
    torch.manual_seed(0)
    dec = FlowDecoder(num_relations=R, dim=D, flow="rotation", patterns=CHAIN).double()
    x = _x()
    body = _f(dec, _f(dec, x, 4)[0], 5)[0]
    torch.testing.assert_close(_f(dec, x, 6)[0], body, atol=1e-10, rtol=0)
    assert dec.residual is not None and sum(p.numel() for p in dec.residual.parameters()) > 0
    with torch.no_grad():
        for p in dec.residual.parameters():
            p.add_(0.2)
    assert (_f(dec, x, 6)[0] - body).abs().max() > 1e-3
    # a residual family that does not start at the identity is refused
    with pytest.raises(ValueError, match="identity"):
        FlowDecoder(num_relations=R, dim=D, flow="rotation", patterns=CHAIN,
                    residual_flow="rotation")


def test_cycles_and_bad_specs_are_errors_that_name_them():
    names = ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="cycle: a -> c -> b -> a|cycle: .*a.*b.*c"):
        parse_patterns({"a": "composition:b,c", "b": "composition:c,d",
                        "c": "composition:d,a"}, 4, relation_names=names)
    with pytest.raises(ValueError, match="cycle"):
        parse_patterns({"a": "tied-inverse:b", "b": "composition:a^-1,c"}, 4,
                       relation_names=names)
    with pytest.raises(ValueError, match="composition of itself"):
        parse_patterns({"a": "composition:a,b"}, 4, relation_names=names)
    with pytest.raises(ValueError, match="two body relations"):
        parse_patterns({"a": "composition:b"}, 4, relation_names=names)
    with pytest.raises(ValueError, match="unknown relation"):
        parse_patterns({"a": "composition:b,zz"}, 4, relation_names=names)
    got = parse_patterns({"c": "composition:a^-1,b,residual"}, 4, relation_names=names)
    assert got[2] == RelationPattern("composition", None, body=((0, True), (1, False)),
                                     residual=True)
    assert got[2].as_str() == "composition:0^-1,1,residual"
    # the string form parses back to the same pattern
    assert parse_patterns({2: got[2].as_str()}, 4)[2] == got[2]
    order = resolution_order(parse_patterns(CHAIN, R))
    pos = {r: i for i, r in enumerate(order)}
    assert pos[0] < pos[2] < pos[3] < pos[4] < pos[6] and pos[5] < pos[6]


def test_adoption_skips_heads_in_their_body_and_cycles():
    kg = make_synthetic()
    names = kg.relation_names
    rules = mine_rules(kg.train, kg.num_relations, kg.num_entities, min_support=10)
    pats = [RelationPattern() for _ in names]
    adopted = adopt_compositions(pats, rules, kg.num_relations, confidence=0.75,
                                 head_coverage=0.3)
    got = {names[q.head] for q in adopted}
    # compose_3 = compose_2 ∘ compose_1 first (head coverage 1.0); the backward readings of the
    # same chain (compose_1 = compose_2⁻¹ ∘ compose_3, ...) would close a cycle; transitivity
    # (subclass_of ∘ subclass_of → subclass_of, confidence 0.8) has its head in its body
    assert got == {"compose_3"}
    assert pats[names.index("compose_3")].body == ((5, False), (6, False))
    assert pats[names.index("subclass_of")].kind == "free"


def test_auto_on_the_synthetic_suite_records_the_rule():
    kg = make_synthetic()
    dec = build_decoder("flow", num_relations=kg.num_relations, dim=8, flow="rotation",
                        patterns="auto", train_triples=kg.train, relation_names=kg.relation_names,
                        num_entities=kg.num_entities)
    table = dict(zip(kg.relation_names, dec.pattern_table()))
    assert table["compose_3"] == "composition:5,6"
    assert table["symmetric_0"] == "involution" and table["inverse_b"] == "tied-inverse:3"
    (rule,) = dec.composition_rules()
    assert rule["head"] == "compose_3" and rule["body"] == ["compose_1", "compose_2"]
    assert rule["pca_confidence"] == 1.0 and rule["support"] == 248
    # the threshold is configurable: above every rule's confidence nothing is tied
    dec = build_decoder("flow", num_relations=kg.num_relations, dim=8, flow="rotation",
                        patterns="auto", train_triples=kg.train, relation_names=kg.relation_names,
                        composition_confidence=None)
    assert "composition" not in dec.pattern_summary()
    pats = infer_patterns(kg.train, kg.num_relations, composition_confidence=0.9,
                          composition_residual=True)
    assert pats[7].residual and pats[7].kind == "composition"


def test_certificate_covers_composed_maps_and_state_dict_round_trip():
    torch.manual_seed(0)
    m = LinkPredictor(encoder=LookupEncoder(num_entities=30, dim=D),
                      decoder=FlowDecoder(num_relations=R, dim=D, flow="spline_coupling",
                                          patterns=CHAIN))
    with torch.no_grad():
        for p in m.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    c = certify(m, per_relation=10, jacobian_samples=2)
    comp = c["composed"]
    assert comp["relations"] == 3 and comp["logdet_samples"] == 2
    assert comp["float64"]["max"] < 1e-9 and comp["logdet_max_abs_error"] < 1e-8
    # programs are rebuilt from the patterns, not saved: a plain state dict loads
    sd = m.decoder.state_dict()
    assert not any(k.startswith("prog") for k in sd)
    fresh = FlowDecoder(num_relations=R, dim=D, flow="spline_coupling", patterns=CHAIN)
    fresh.load_state_dict(sd)
    x = torch.randn(4, D)
    r = torch.full((4,), 6)
    torch.testing.assert_close(fresh.transform(x, r)[0], m.decoder.transform(x, r)[0])


# ------------------------------------------------------------------ snapping between body maps
def _nearest(y, ent):
    return ent[torch.cdist(y, ent).argmin(dim=1)]


@pytest.mark.parametrize("flow", ["rotation", "affine_coupling"])
def test_snap_chains_through_the_nearest_entity_both_directions(flow):
    dec = _dec(flow, composition_snap=0.0).eval()
    ent = _x(b=40, seed=7, scale=2.0)
    h = torch.arange(6)
    # r2 = f1 ∘ f0: tail queries snap after f0; head queries after f1⁻¹
    want_t = _f(dec, _nearest(_f(dec, ent[h], 0)[0], ent), 1)[0]
    got_t = dec.tail_query(ent, None, h, torch.full((6,), 2))
    torch.testing.assert_close(got_t, want_t, atol=1e-10, rtol=0)
    want_h = _f(dec, _nearest(_f(dec, ent[h], 1, inverse=True)[0], ent), 0, inverse=True)[0]
    got_h = dec.head_query(ent, None, torch.full((6,), 2), h)
    torch.testing.assert_close(got_h, want_h, atol=1e-10, rtol=0)
    # r6 = g6 ∘ f5 ∘ f4 with r4 = f3⁻¹ = f0 ∘ snap ∘ f1 ∘ snap ∘ f1⁻¹ (nested ties keep their
    # snaps): three snaps, the last between the body relations r4 and r5
    assert dec.prog_op[6].tolist().count(_SNAP) == 3
    y = _nearest(_f(dec, ent[h], 0)[0], ent)
    y = _nearest(_f(dec, y, 1)[0], ent)
    y = _nearest(_f(dec, y, 1, inverse=True)[0], ent)
    y = _f(dec, y, 5)[0]
    want6 = dec.residual(y, torch.full((6,), 6))[0]
    got6 = dec.tail_query(ent, None, h, torch.full((6,), 6))
    torch.testing.assert_close(got6, want6, atol=1e-10, rtol=0)
    # a free relation and a relation without composition are unaffected by snapping
    for r in (0, 1, 5):
        rr = torch.full((6,), r)
        torch.testing.assert_close(dec.tail_query(ent, None, h, rr), _f(dec, ent[h], r)[0])


def test_one_to_one_snaps_only_chains_of_one_to_one_bodies():
    g = torch.Generator().manual_seed(0)
    n = 20
    trip = []
    for r in range(R):
        heads = torch.arange(n)
        if r in (4, 5):  # N-N: every head has three tails, every tail three heads
            heads = heads.repeat(3)
            tails = (heads + torch.tensor([1, 2, 3]).repeat_interleave(n)) % n
        else:  # 1-1: a permutation
            tails = torch.randperm(n, generator=g)
        trip.append(torch.stack([heads, torch.full_like(heads, r), tails], 1))
    train = torch.cat(trip)
    dec = FlowDecoder(num_relations=R, dim=D, patterns=CHAIN, train_triples=train,
                      num_entities=n)  # composition_snap: "one-to-one" by default
    assert dec.snapped == {2, 3}  # r6's body (r4, r5) is N-N
    assert {q["head"]: q["snap"] for q in dec.composition_rules()} == {
        "2": True, "3": True, "6": False}
    assert dec.prog_op[2].tolist().count(_SNAP) == 1 and dec.prog_op[6].tolist().count(_SNAP) == 2
    assert FlowDecoder(num_relations=R, dim=D, patterns=CHAIN, train_triples=train,
                       composition_snap=None).snapped == frozenset()
    assert FlowDecoder(num_relations=R, dim=D, patterns=CHAIN, train_triples=train,
                       composition_snap=0.1).snapped == {2, 3, 6}
    # without training triples there is nothing to tell 1-1 bodies by: no snapping
    assert FlowDecoder(num_relations=R, dim=D, patterns=CHAIN).snapped == frozenset()
    for bad in ("always", -1.0, True):
        with pytest.raises(ValueError, match="composition_snap"):
            FlowDecoder(num_relations=R, dim=D, patterns=CHAIN, composition_snap=bad)


def test_without_snap_to_the_map_is_the_exact_flow():
    plain, snapped = _dec("affine_coupling"), _dec("affine_coupling", composition_snap=0.5)
    x = _x()
    for r in range(R):
        rr = torch.full((x.shape[0],), r)
        y0, l0 = plain.transform(x, rr)
        y1, l1 = snapped.transform(x, rr)  # no snap_to: snap steps are the identity
        torch.testing.assert_close(y1, y0, atol=1e-12, rtol=0)
        torch.testing.assert_close(l1, l0, atol=1e-12, rtol=0)
        back, lb = snapped.transform(y1, rr, inverse=True)
        torch.testing.assert_close(back, x, atol=1e-8, rtol=0)
        torch.testing.assert_close(lb, -l1, atol=1e-8, rtol=0)


def test_soft_snap_temperature_and_gradients():
    ent = _x(b=30, seed=11, scale=2.0)
    y = _x(b=4, seed=12, scale=2.0)
    cold = _dec("rotation", composition_snap=1e-4)._snap(y, ent)
    torch.testing.assert_close(cold, _nearest(y, ent), atol=1e-8, rtol=0)
    hot = _dec("rotation", composition_snap=1e6)._snap(y, ent)
    torch.testing.assert_close(hot, ent.mean(0).expand_as(hot), atol=1e-3, rtol=0)
    # training snaps only with composition_snap_train; then the hard snap passes gradients
    # straight through to the first body map and to the entities
    h, r2 = torch.arange(4), torch.full((4,), 2)
    dec = _dec("rotation", composition_snap=0.0)
    plain = _f(dec, _f(dec, ent[h], 0)[0], 1)[0]
    torch.testing.assert_close(dec.tail_query(ent, None, h, r2), plain)  # training: no snap
    snapped = _f(dec, _nearest(_f(dec, ent[h], 0)[0], ent), 1)[0]
    torch.testing.assert_close(dec.eval().tail_query(ent, None, h, r2), snapped)
    dec = _dec("rotation", composition_snap=0.0, composition_snap_train=True)
    torch.testing.assert_close(dec.tail_query(ent, None, h, r2), snapped)
    ent = ent.clone().requires_grad_(True)
    s = dec.score_tails(ent, None, torch.arange(4), torch.full((4,), 2))
    s.logsumexp(1).sum().backward()
    assert ent.grad.abs().sum() > 0
    first = [p for n, p in dec.named_parameters() if p.grad is not None]
    assert first and all(torch.isfinite(p.grad).all() for p in first)


@pytest.mark.slow
def test_snapped_composition_answers_the_synthetic_suite():
    """The acceptance row of the pattern suite: ``patterns: auto`` (its default snapping of
    chains of 1-1 relations) answers the held-out compose_3 facts (test MRR ≥ 0.9); the
    continuous map (``composition_snap: null``) does not."""
    from gnn_inn.config import Config
    from gnn_inn.training import trainer_from_config
    from gnn_inn.training.trainer import per_pattern

    def run(snap):
        dec = {"name": "flow", "flow": "rotation", "patterns": "auto", "p": 2.0}
        if snap != "default":
            dec["composition_snap"] = snap
        cfg = Config.from_dict({
            "seed": 0, "dataset": {"name": "synthetic"},
            "model": {"dim": 64, "encoder": {"name": "none"}, "decoder": dec},
            # the settings of scripts/pattern_table.py
            "train": {"loss": {"name": "1vsall"}, "epochs": 200, "batch_size": 128, "lr": 0.01,
                      "eval_every": 20, "patience": 3, "grad_clip": 5.0, "device": "cpu"}})
        tr = trainer_from_config(cfg, quiet=True)
        tr.fit()
        return per_pattern(tr.evaluate("test"), tr.kg.relation_patterns)["composition"]["mrr"]

    assert run("default") >= 0.9
    assert run(None) < 0.5
