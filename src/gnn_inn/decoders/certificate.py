"""Invertibility certificate of a trained flow decoder.

For the trained maps ``f_r`` it measures

* the round-trip error ``‖f_r⁻¹(f_r(x)) − x‖₂`` (max and mean) in float32 and in float64, over
  the entity embeddings and over random points at 10× their scale;
* the largest ``|log|det J| − slogdet(J_autograd)|`` over a sample of (point, relation) pairs,
  in both directions (float64, Jacobians by autograd).

Composed relations (``composition:<r1>,<r2>`` ties, chains included) are among the relations of
the round trips like every other; so that the log-det check cannot miss them in its sample,
``"composed"`` repeats both checks on the composed relations alone (every one of them in the
round trips, up to ``jacobian_samples`` of them in the log-det check).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor


def _round_trip(dec, x: Tensor, r: Tensor, rel: Tensor | None, chunk: int = 65536):
    errs = []
    for i in range(0, x.shape[0], chunk):
        xi, ri = x[i : i + chunk], r[i : i + chunk]
        y, _ = dec.transform(xi, ri, rel, inverse=False)
        back, _ = dec.transform(y, ri, rel, inverse=True)
        errs.append(torch.linalg.vector_norm(back - xi, dim=-1))
    e = torch.cat(errs)
    return {"max": float(e.max()), "mean": float(e.mean())}


@torch.no_grad()
def _points(ent: Tensor, num_relations: int, per_relation: int, scale: float,
            g: torch.Generator) -> tuple[Tensor, Tensor]:
    n = ent.shape[0]
    k = min(per_relation, n)
    idx = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(num_relations)])
    r = torch.arange(num_relations).repeat_interleave(k)
    x = ent[idx.reshape(-1).to(ent.device)]
    if scale != 1.0:
        std = ent.std().clamp_min(1e-6)
        x = torch.randn(x.shape, generator=g, dtype=torch.float64).to(ent) * std * scale
    return x, r.to(ent.device)


def certify(model, *, per_relation: int = 256, jacobian_samples: int = 16, scale: float = 10.0,
            seed: int = 0) -> dict[str, Any]:
    """Certificate of ``model.decoder`` (a :class:`~gnn_inn.decoders.flow.FlowDecoder`).

    Args:
        model: a :class:`~gnn_inn.model.LinkPredictor` with a flow decoder.
        per_relation: entity embeddings sampled per relation for the round trips.
        jacobian_samples: (point, relation) pairs whose log-determinant is checked.
        scale: random points are drawn at ``scale ×`` the embeddings' standard deviation.

    Returns:
        ``{"float32": {...}, "float64": {...}, "float32_random": {...},
        "float64_random": {...}, "logdet_max_abs_error": float, ...}``.
    """
    dec = model.decoder
    if not dec.relation_flows:
        raise ValueError(f"certify needs a flow decoder, got {type(dec).__name__}")
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ent, rel = model.encode()
    R = dec.num_relations
    out: dict[str, Any] = {"num_relations": R, "scale": scale}
    dec64 = copy.deepcopy(dec).double()
    with torch.no_grad():
        for tag, s in (("", 1.0), ("_random", scale)):
            x, r = _points(ent.float(), R, per_relation, s, g)
            out[f"float32{tag}"] = _round_trip(dec, x.float(), r, rel)
            rel64 = None if rel is None else rel.double()
            out[f"float64{tag}"] = _round_trip(dec64, x.double(), r, rel64)
            out[f"num_points{tag}"] = int(x.shape[0])
    # log-determinants against autograd Jacobians, float64, both directions
    x, r = _points(ent.double(), R, 1, 1.0, g)
    pick = torch.randperm(x.shape[0], generator=g)[:jacobian_samples]
    rel64 = None if rel is None else rel.double()
    out["logdet_max_abs_error"] = _logdet_error(dec64, x[pick], r[pick], rel64)
    out["logdet_samples"] = int(pick.numel())
    composed = [i for i, q in enumerate(dec.patterns or []) if q.kind == "composition"]
    if composed:
        xc, rc = _points(ent.double(), R, per_relation, 1.0, g)
        sel = torch.isin(rc, torch.tensor(composed, device=rc.device))
        with torch.no_grad():
            rt = _round_trip(dec64, xc[sel], rc[sel], rel64)
        # one point per composed relation (its first sampled embedding)
        one_each = torch.tensor([int((rc == c).nonzero()[0]) for c in composed])
        one_each = one_each[:jacobian_samples]
        out["composed"] = {
            "relations": len(composed), "float64": rt,
            "logdet_max_abs_error": _logdet_error(dec64, xc[one_each], rc[one_each], rel64),
            "logdet_samples": int(one_each.numel()),
        }
    model.train(was_training)
    return out


def _logdet_error(dec64, x: Tensor, r: Tensor, rel64: Tensor | None) -> float:
    """Largest ``|log|det| − slogdet(autograd Jacobian)|`` over the rows, both directions."""
    worst = 0.0
    for i in range(x.shape[0]):
        xi, ri = x[i : i + 1].double(), r[i : i + 1]
        for inverse in (False, True):
            def f(v, ri=ri, inverse=inverse):
                return dec64.transform(v.unsqueeze(0), ri, rel64, inverse=inverse)[0].squeeze(0)
            jac = torch.autograd.functional.jacobian(f, xi.squeeze(0), vectorize=True)
            ref = torch.linalg.slogdet(jac).logabsdet
            with torch.no_grad():
                got = dec64.transform(xi, ri, rel64, inverse=inverse)[1].squeeze(0)
            worst = max(worst, float((got - ref).abs()))
    return worst
