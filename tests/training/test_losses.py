"""Loss batching covers the training set exactly; objectives match their formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gnn_inn.decoders import build_decoder
from gnn_inn.encoders import build_encoder
from gnn_inn.model import LinkPredictor
from gnn_inn.training.losses import KvsAllLoss, NegativeSamplingLoss, OneVsAllLoss
from gnn_inn.training.trainer import _positives, remove_triples_from_graph

N, R = 30, 4


def _train(seed=0, m=120):
    g = torch.Generator().manual_seed(seed)
    t = torch.stack([torch.randint(N, (m,), generator=g), torch.randint(R, (m,), generator=g),
                     torch.randint(N, (m,), generator=g)], 1)
    return torch.unique(t, dim=0)


def _as_set(t):
    return {tuple(x) for x in t.tolist()}


@pytest.mark.parametrize("cls", [KvsAllLoss, OneVsAllLoss, NegativeSamplingLoss])
def test_one_epoch_covers_every_triple_in_both_directions(cls):
    train = _train()
    loss = cls(train, N, R)
    g = torch.Generator().manual_seed(0)
    seen = {"tail": [], "head": []}
    steps = 0
    for step in loss.batches(16, g):
        steps += 1
        for b in step:
            seen[b.direction].append(_positives(b))
    assert steps == loss.num_batches(16)
    for direction in ("tail", "head"):
        got = torch.cat(seen[direction])
        assert got.shape[0] == train.shape[0], direction  # each exactly once
        assert _as_set(got) == _as_set(train)


def _model(name="distmult"):
    torch.manual_seed(0)
    enc = build_encoder("none", num_entities=N, num_relations=R, dim=8)
    dec = build_decoder(name, num_relations=R, dim=8)
    return LinkPredictor(encoder=enc, decoder=dec)


def test_kvsall_equals_bce_on_dense_targets():
    train = _train()
    loss = KvsAllLoss(train, N, R, label_smoothing=0.2)
    model = _model()
    step = next(loss.batches(8, torch.Generator().manual_seed(1)))
    b = step[0]
    ent, rel = model.encode()
    if b.direction == "tail":
        logits = model.decoder.score_tails(ent, rel, b.anchor, b.relation)
        ans = [train[(train[:, 0] == a) & (train[:, 1] == r)][:, 2] for a, r in
               zip(b.anchor.tolist(), b.relation.tolist())]
    else:
        logits = model.decoder.score_heads(ent, rel, b.relation, b.anchor)
        ans = [train[(train[:, 2] == a) & (train[:, 1] == r)][:, 0] for a, r in
               zip(b.anchor.tolist(), b.relation.tolist())]
    y = torch.zeros_like(logits)
    for i, a in enumerate(ans):
        y[i, a] = 1
    y = 0.8 * y + 0.2 / N
    torch.testing.assert_close(loss(model, b, ent, rel),
                               F.binary_cross_entropy_with_logits(logits, y))


def test_negative_sampling_masks_training_triples_and_weights():
    train = _train(m=400)
    loss = NegativeSamplingLoss(train, N, R, num_negatives=50, adversarial_temperature=0.0)
    model = _model("transe")
    step = next(loss.batches(32, torch.Generator().manual_seed(2)))
    b = step[0]
    assert b.direction == "tail"
    h = b.anchor.unsqueeze(1).expand_as(b.other)
    r = b.relation.unsqueeze(1).expand_as(b.other)
    hit = loss.known.contains_hrt(h, r, b.other)
    ref = _as_set(train)
    brute = torch.tensor([[(hh, rr, tt) in ref for hh, rr, tt in zip(x, y, z)]
                          for x, y, z in zip(h.tolist(), r.tolist(), b.other.tolist())])
    assert torch.equal(hit, brute) and hit.any()
    ent, rel = model.encode()
    s = model.decoder.score_candidates(ent, rel, b.anchor, b.relation, b.target,
                                       torch.cat([b.target[:, None], b.other], 1), "tail")
    mask = (~hit).float()
    w = mask / mask.sum(1, keepdim=True)
    ref_loss = (-F.logsigmoid(s[:, 0]) - (w * F.logsigmoid(-s[:, 1:])).sum(1)).mean()
    torch.testing.assert_close(loss(model, b, ent, rel), ref_loss)


def test_remove_triples_from_graph_drops_edges_and_inverses():
    train = _train()
    src = torch.cat([train[:, 0], train[:, 2]])
    dst = torch.cat([train[:, 2], train[:, 0]])
    et = torch.cat([train[:, 1], train[:, 1] + R])
    hide = train[:5]
    keep = remove_triples_from_graph(torch.stack([src, dst]), et, hide, N, R)
    assert int((~keep).sum()) == 10
    kept = {(s, e % R, d) if e < R else (d, e % R, s)
            for s, d, e in zip(src[keep].tolist(), dst[keep].tolist(), et[keep].tolist())}
    assert not kept & _as_set(hide)
