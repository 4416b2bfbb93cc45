r"""Uncertainty metrics: selective prediction (precision–coverage) and calibration (ECE).

* :func:`precision_coverage` — sort predictions by a confidence measure, keep the most confident
  fraction ``c`` (the *coverage*) and report the precision among them, for every ``c``. Ties in
  the confidence are broken at random *in expectation* (the curve is the expected precision
  over random orders of tied predictions, the same idea as the realistic rank), so a constant
  confidence gives a flat curve at the overall precision.
* :func:`expected_calibration_error` — ``Σ_b (n_b / n) · |acc_b − conf_b|`` over equal-width
  confidence bins (Guo et al., 2017); :func:`reliability_diagram` returns the per-bin numbers.
* :func:`link_prediction_confidence` — for filtered link prediction: per query, whether the
  top-1 entity is right, and two confidence measures of that prediction — the magnitude of its
  score (``σ(s)`` under the posterior means) and its sampling variance (forward sampling of
  the Gaussian embeddings, :func:`predict_with_uncertainty`).
* :func:`type_free_negatives` / :func:`triple_classification_calibration` — triple
  classification of test facts against random corruptions (no type constraints; negatives that
  are known facts are redrawn) and the ECE of the predicted probabilities.
* :func:`predict_with_uncertainty` — predictive mean and variance of fact scores by forward
  sampling a variational encoder's posterior; :func:`mean_variances` and :func:`frequencies`
  relate posterior variances to how often an entity or relation occurs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from ..data.triples import TripleSet, sample_negatives
from ..decoders.base import score_facts
from ..encoders.variational import GaussianPosterior, sample_fact_embeddings

log = logging.getLogger(__name__)

# ------------------------------------------------------------- precision–coverage
def precision_coverage(confidence: Tensor, correct: Tensor) -> tuple[Tensor, Tensor]:
    """Precision among the ``k`` most confident predictions, for every ``k = 1 … M``.

    Args:
        confidence: ``[M]`` — higher means more confident.
        correct: ``[M]`` — 1 / 0 (bool or float; fractional values are averaged like counts).

    Returns:
        ``(coverage [M], precision [M])`` in float64: ``coverage_k = k / M``; ``precision_k`` is
        the expected fraction of correct predictions among the ``k`` most confident ones when
        ties in ``confidence`` are ordered uniformly at random.
    """
    conf = torch.as_tensor(confidence, dtype=torch.float64).flatten().cpu()
    corr = torch.as_tensor(correct, dtype=torch.float64).flatten().cpu()
    if conf.shape != corr.shape:
        raise ValueError(f"confidence {tuple(conf.shape)} and correct {tuple(corr.shape)} differ")
    m = conf.numel()
    if m == 0:
        e = torch.empty(0, dtype=torch.float64)
        return e, e
    if torch.isnan(conf).any():
        raise ValueError("precision_coverage: NaN confidence")
    order = torch.argsort(conf, descending=True, stable=True)
    conf, corr = conf[order], corr[order]
    _, inverse, counts = torch.unique_consecutive(conf, return_inverse=True, return_counts=True)
    group_sum = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, inverse, corr)
    group_start = torch.cumsum(counts, 0) - counts  # predictions before each tie group
    before = torch.cumsum(group_sum, 0) - group_sum  # correct ones before each tie group
    k = torch.arange(1, m + 1, dtype=torch.float64)
    inside = k - group_start[inverse].double()  # how many of the tie group are taken
    expected = before[inverse] + inside * group_sum[inverse] / counts[inverse].double()
    return k / m, expected / k


def precision_at_coverage(confidence: Tensor, correct: Tensor,
                          coverage: float | Sequence[float]) -> Tensor:
    """Precision at the given coverage level(s) in ``(0, 1]`` (the ``⌈c·M⌉`` most confident).

    Returns a float64 tensor shaped like ``coverage`` (0-d for a float).
    """
    cov, prec = precision_coverage(confidence, correct)
    c = torch.as_tensor(coverage, dtype=torch.float64)
    if ((c <= 0) | (c > 1)).any():
        raise ValueError(f"coverage must lie in (0, 1], got {coverage}")
    k = torch.ceil(c * cov.numel() - 1e-9).long().clamp(1, cov.numel())
    return prec[k - 1]


def area_under_precision_coverage(confidence: Tensor, correct: Tensor) -> float:
    """Mean precision over all coverage levels ``k / M`` (1 = perfect ranking of confidence)."""
    return float(precision_coverage(confidence, correct)[1].mean())


# ------------------------------------------------------------------- calibration
def _binary_confidence(prob: Tensor, label: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    p = torch.as_tensor(prob, dtype=torch.float64).flatten().cpu()
    y = torch.as_tensor(label, dtype=torch.float64).flatten().cpu()
    if p.shape != y.shape:
        raise ValueError(f"prob {tuple(p.shape)} and label {tuple(y.shape)} differ")
    if ((p < 0) | (p > 1)).any() or torch.isnan(p).any():
        raise ValueError("probabilities must lie in [0, 1]")
    if kind == "top_label":
        return torch.maximum(p, 1 - p), ((p >= 0.5).double() == y).double()
    if kind == "positive":
        return p, y
    raise ValueError(f"kind must be 'top_label' or 'positive', got {kind!r}")


def reliability_diagram(prob: Tensor, label: Tensor, n_bins: int = 10,
                        kind: str = "top_label") -> dict[str, Tensor]:
    """Per-bin ``count``, mean ``confidence`` and ``accuracy`` over ``n_bins`` equal bins of
    ``[0, 1]`` (bin ``i`` holds ``[i/n, (i+1)/n)``, the last one includes 1).

    Args:
        prob: ``[M]`` predicted probability that each example is positive.
        label: ``[M]`` 1 / 0.
        kind: ``"top_label"`` — confidence ``max(p, 1 − p)`` of the predicted class
            (``p ≥ ½`` → positive) against whether that prediction is right (Guo et al.);
            ``"positive"`` — ``p`` against the observed frequency of positives.

    Returns:
        ``{"count": [n_bins], "confidence": [n_bins], "accuracy": [n_bins]}`` (float64; empty
        bins have NaN confidence / accuracy).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be ≥ 1, got {n_bins}")
    conf, acc = _binary_confidence(prob, label, kind)
    b = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, torch.ones_like(conf))
    s_conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, conf)
    s_acc = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, acc)
    return {"count": count, "confidence": s_conf / count, "accuracy": s_acc / count}


def expected_calibration_error(prob: Tensor, label: Tensor, n_bins: int = 10,
                               kind: str = "top_label") -> float:
    r"""``ECE = Σ_b (n_b / n) |acc_b − conf_b|`` (see :func:`reliability_diagram`)."""
    d = reliability_diagram(prob, label, n_bins, kind)
    n = d["count"].sum()
    if n == 0:
        return float("nan")
    keep = d["count"] > 0
    gap = (d["accuracy"][keep] - d["confidence"][keep]).abs()
    return float((d["count"][keep] / n * gap).sum())


# ------------------------------------------------------------ predictive sampling
@torch.no_grad()
def predict_with_uncertainty(model, h: Tensor, r: Tensor, t: Tensor, n_samples: int = 64,
                             generator: torch.Generator | None = None, *,
                             probability: bool = False, batch_size: int = 1024
                             ) -> tuple[Tensor, Tensor]:
    r"""Predictive mean and variance of each fact's score by forward sampling the embeddings.

    For every query fact ``(h, r, t)``, ``n_samples`` independent draws
    ``z_h ~ q(z_h), z_r ~ q(z_r), z_t ~ q(z_t)`` are scored; the sample mean and (unbiased)
    variance of the score — or of ``σ(score)`` with ``probability=True`` — are returned. The
    encoder's posterior is computed in eval mode (deterministic GNN pass), the mode restored.

    Args:
        model: a :class:`~gnn_inn.model.LinkPredictor` with a variational encoder.
        h, r, t: ``LongTensor[B]``.
        n_samples: draws per fact (≥ 2).
        generator: explicit ``torch.Generator`` for reproducible draws.
        probability: moments of ``σ(s)`` instead of ``s``.
        batch_size: facts per chunk (memory ``≈ n_samples · batch_size · d`` floats).

    Returns:
        ``(mean [B], variance [B])`` (float32, on the model's device).
    """
    enc = model.encoder
    if not enc.variational:
        raise ValueError(f"predict_with_uncertainty needs a variational encoder, got "
                         f"{type(enc).__name__}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be ≥ 2 for a variance, got {n_samples}")
    was = enc.training
    enc.eval()
    try:
        post = enc.gaussian(model.graph)
    finally:
        enc.train(was)
    dev = post.ent_mu.device
    means, variances = [], []
    for i in range(0, h.numel(), batch_size):
        hh, rr, tt = (x[i : i + batch_size].to(dev) for x in (h, r, t))
        z_h, z_r, z_t = sample_fact_embeddings(post, hh, rr, tt, n_samples, generator)
        s = score_facts(model.decoder, z_h, z_r, z_t, rr, tt).float()  # [S, B]
        if probability:
            s = torch.sigmoid(s)
        means.append(s.mean(0))
        variances.append(s.var(0))
    if not means:
        e = torch.empty(0, device=dev)
        return e, e
    return torch.cat(means), torch.cat(variances)


def mean_variances(post: GaussianPosterior) -> tuple[Tensor, Tensor | None]:
    """Mean variance ``mean_k σ²_k`` of every entity ``[N]`` and relation row ``[R']``."""
    ent = post.ent_logvar.exp().mean(-1)
    rel = None if post.rel_logvar is None else post.rel_logvar.exp().mean(-1)
    return ent, rel


def frequencies(triples: Tensor, num_entities: int, num_relations: int
                ) -> tuple[Tensor, Tensor]:
    """Occurrence counts in ``triples[M, 3]``: entities ``[N]`` (as head or tail) and relations
    ``[R]``."""
    ent = torch.bincount(torch.cat([triples[:, 0], triples[:, 2]]), minlength=num_entities)
    rel = torch.bincount(triples[:, 1], minlength=num_relations)
    return ent, rel


# ----------------------------------------------------------- model-level helpers
def type_free_negatives(triples: Tensor, num_entities: int, known: Tensor,
                        generator: torch.Generator | None = None, max_tries: int = 100
                        ) -> Tensor:
    """One random corruption per triple, ``LongTensor[M, 3]``: head or tail (½ each) replaced
    by a uniformly drawn *other* entity, no type constraints; draws that are known facts
    (``known[K, 3]``, e.g. train ∪ valid ∪ test) are redrawn, up to ``max_tries`` rounds
    (a warning is logged for any that are still known facts after that).
    """
    triples = torch.as_tensor(triples, dtype=torch.long).cpu()
    num_relations = int(max(int(triples[:, 1].max()) if triples.numel() else 0,
                            int(known[:, 1].max()) if known.numel() else 0)) + 1
    ks = TripleSet(known, num_entities, num_relations)
    h, r, t = triples.unbind(1)
    neg = sample_negatives(h, r, t, 1, num_entities, num_relations, "corrupt", generator)[:, 0]
    for _ in range(max_tries):
        bad = ks.contains(neg)
        if not bad.any():
            break
        idx = bad.nonzero().flatten()
        neg[idx] = sample_negatives(h[idx], r[idx], t[idx], 1, num_entities, num_relations,
                                    "corrupt", generator)[:, 0]
    left = int(ks.contains(neg).sum())
    if left:
        log.warning("type_free_negatives: %d of %d negatives are known facts after %d rounds",
                    left, neg.shape[0], max_tries)
    return neg


@torch.no_grad()
def triple_classification_calibration(model, triples: Tensor, known: Tensor, *,
                                      n_samples: int = 32, n_bins: int = 10,
                                      generator: torch.Generator | None = None
                                      ) -> dict[str, object]:
    """ECE of triple classification: ``triples`` (label 1) against as many type-free random
    negatives (label 0), with two probability estimates:

    * ``mean`` — ``σ(s)`` of the score under the posterior means (what ranking uses);
    * ``predictive`` — ``E_q[σ(s)]`` by forward sampling (``n_samples`` draws).

    Returns ``{"ece_mean", "ece_predictive", "accuracy_mean", "accuracy_predictive",
    "prob_mean" [2M], "prob_predictive" [2M], "label" [2M]}``.
    """
    n = model.encoder.num_entities
    neg = type_free_negatives(triples, n, known, generator)
    facts = torch.cat([torch.as_tensor(triples, dtype=torch.long).cpu(), neg])
    label = torch.cat([torch.ones(len(triples)), torch.zeros(len(neg))])
    was = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        h, r, t = facts.to(dev).unbind(1)
        p_mean = torch.sigmoid(model.score(h, r, t).float()).cpu()
        p_pred, _ = predict_with_uncertainty(model, h, r, t, n_samples, generator,
                                             probability=True)
    finally:
        model.train(was)
    p_pred = p_pred.cpu()
    return {
        "ece_mean": expected_calibration_error(p_mean, label, n_bins),
        "ece_predictive": expected_calibration_error(p_pred, label, n_bins),
        "accuracy_mean": float(((p_mean >= 0.5).float() == label).float().mean()),
        "accuracy_predictive": float(((p_pred >= 0.5).float() == label).float().mean()),
        "prob_mean": p_mean, "prob_predictive": p_pred, "label": label,
    }


@torch.no_grad()
def link_prediction_confidence(model, triples: Tensor, filter_index, *, n_samples: int = 32,
                               generator: torch.Generator | None = None,
                               batch_size: int = 256) -> dict[str, Tensor]:
    """Filtered top-1 link prediction with two confidence measures per query.

    Both directions for every triple (tail queries first, then head queries, ``2M`` rows): the
    prediction is the best-scoring entity under the posterior means once the query's *other*
    known answers (``filter_index``) are removed; it is correct when it is the target.

    Returns ``{"correct" [2M] (float 0/1), "score" [2M] (σ of the top score, the *score
    magnitude* confidence), "variance" [2M] (sampling variance of that fact's score — lower
    means more confident; use ``-variance`` as a confidence), "prediction" [2M]}``.
    """
    triples = torch.as_tensor(triples, dtype=torch.long).cpu()
    was = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {"correct": [], "score": [], "variance": [], "prediction": []}
    try:
        dev = next(model.parameters()).device
        for direction in ("tail", "head"):
            for i in range(0, triples.shape[0], batch_size):
                h, r, t = triples[i : i + batch_size].unbind(1)
                if direction == "tail":
                    scores = model.score_tails(h.to(dev), r.to(dev)).float()
                    target = t
                    rows, cols = filter_index.tails(h, r)
                else:
                    scores = model.score_heads(r.to(dev), t.to(dev)).float()
                    target = h
                    rows, cols = filter_index.heads(r, t)
                keep = cols != target[rows]
                scores[rows[keep].to(dev), cols[keep].to(dev)] = float("-inf")
                best, pred = scores.max(1)
                pred = pred.cpu()
                if direction == "tail":
                    fh, ft = h, pred
                else:
                    fh, ft = pred, t
                _, var = predict_with_uncertainty(model, fh.to(dev), r.to(dev), ft.to(dev),
                                                  n_samples, generator)
                out["correct"].append((pred == target).float())
                out["score"].append(torch.sigmoid(best).cpu())
                out["variance"].append(var.cpu())
                out["prediction"].append(pred)
    finally:
        model.train(was)
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in out.items()}


__all__ = [
    "area_under_precision_coverage", "expected_calibration_error", "frequencies",
    "link_prediction_confidence", "mean_variances", "precision_at_coverage",
    "precision_coverage", "predict_with_uncertainty", "reliability_diagram",
    "triple_classification_calibration", "type_free_negatives",
]
