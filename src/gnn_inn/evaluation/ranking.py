r"""Filtered ranks of target entities among all candidates, with explicit tie policies.

For one query with candidate scores :math:`s \in \mathbb{R}^N`, target :math:`t` and the set
:math:`F` of *other* known true answers (filtered setting), let

.. math::
    g = |\{j \notin F : s_j > s_t\}|, \qquad
    e = |\{j \notin F,\, j \ne t : s_j = s_t\}| .

The three tie policies (as in PyKEEN's ``RankBasedEvaluator``) are

* ``optimistic``  :math:`= 1 + g` (ties placed behind the target),
* ``pessimistic`` :math:`= 1 + g + e` (ties placed before the target),
* ``realistic``   :math:`= 1 + g + e / 2`, the expected rank under a uniformly random order
  of the ``e + 1`` tied candidates; constant scores give chance-level MRR.

Scores are ``[B, N]``; the realistic rank is computed in one pass as ``(1 + N + σ) / 2`` with
``σ = Σ_j sign(s_j − s_t)`` (filtered entries counted as worse). NaN scores raise
:class:`ValueError`; ``±inf`` scores are handled.

Measurements and design notes: docs/design-notes.md#evaluation-ranking

References
----------
Bordes et al., "Translating embeddings for modeling multi-relational data", NeurIPS 2013.
Berrendorf et al., "On the ambiguity of rank-based evaluation of entity alignment or link
prediction methods", 2020.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Tie policies understood by :func:`rank_targets`.
POLICIES: tuple[str, ...] = ("optimistic", "pessimistic", "realistic")

_EXACT_FLOAT32_SUM = 2**24


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown rank policy {policy!r}; choose one of {', '.join(POLICIES)}")


def _scratch(scratch: Tensor | None, b: int, n: int, dtype: torch.dtype, device) -> Tensor:
    """A ``[b, n]`` work buffer: a view of ``scratch`` when it is large enough, else a new one."""
    if (
        scratch is not None
        and scratch.dtype == dtype
        and scratch.device == device
        and scratch.dim() == 2
        and scratch.shape[0] >= b
        and scratch.shape[1] == n
        and scratch.is_contiguous()
    ):
        return scratch[:b]
    return torch.empty(b, n, dtype=dtype, device=device)


def compute_dtype(scores_dtype: torch.dtype) -> torch.dtype:
    """Dtype in which scores are compared: float64 stays float64, everything else float32."""
    return torch.float64 if scores_dtype == torch.float64 else torch.float32


def rank_targets(
    scores: Tensor,
    targets: Tensor,
    filter_rows: Tensor | None = None,
    filter_cols: Tensor | None = None,
    *,
    policy: str = "realistic",
    scratch: Tensor | None = None,
) -> Tensor:
    r"""1-based (filtered) ranks of ``targets`` among ``scores``, higher score = better.

    Args:
        scores: ``[B, N]`` float scores of every candidate for ``B`` queries. Not modified.
        targets: ``LongTensor[B]``, the true answer of each query (column index into ``scores``).
        filter_rows, filter_cols: ``LongTensor[P]`` pairs ``(query row, candidate)`` of known
            true answers to exclude from the ranking (filtered setting) — exactly what
            ``FilterIndex.tails`` / ``FilterIndex.heads`` return. A pair naming the query's own
            target is ignored (the target keeps its score). Duplicates are fine. ``None`` for
            raw (unfiltered) ranks.
        policy: ``"realistic"`` (default), ``"optimistic"`` or ``"pessimistic"``; see the
            module docstring.
        scratch: optional preallocated ``[≥B, N]`` buffer (float32, or float64 for float64
            scores) reused across calls to avoid reallocating ``B × N`` memory; it is overwritten.

    Returns:
        ``Tensor[B]`` (float64) of ranks in ``[1, N]``; realistic ranks may be half-integers.

    Raises:
        ValueError: NaN among the (unfiltered) scores, bad shapes or an unknown policy.
        IndexError: a target or filter pair out of range.
    """
    _check_policy(policy)
    if scores.dim() != 2:
        raise ValueError(f"rank_targets: scores must be [B, N], got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"rank_targets: scores must be floating point, got {scores.dtype}")
    b, n = scores.shape
    device = scores.device
    targets = targets.to(device=device, dtype=torch.long).reshape(-1)
    if targets.numel() != b:
        raise ValueError(
            f"rank_targets: {targets.numel()} targets for {b} score rows; pass one target per row"
        )
    if b == 0:
        return torch.empty(0, dtype=torch.float64)
    if int(targets.min()) < 0 or int(targets.max()) >= n:
        raise IndexError(f"rank_targets: targets must lie in [0, {n}), got values outside")
    if (filter_rows is None) != (filter_cols is None):
        raise ValueError("rank_targets: pass both filter_rows and filter_cols, or neither")

    dtype = compute_dtype(scores.dtype)
    rows = torch.arange(b, device=device)
    t = scores.gather(1, targets[:, None]).to(dtype)  # [B, 1]
    bad = torch.isnan(t[:, 0])
    if bool(bad.any()):
        raise ValueError(
            f"rank_targets: the target score is NaN for query rows "
            f"{bad.nonzero().flatten()[:10].tolist()}; check the model for NaN/overflow"
        )

    buf = _scratch(scratch, b, n, dtype, device)
    torch.sub(scores, t, out=buf)  # promotes half/bfloat16 to float32 through t
    inf_rows = torch.isinf(t[:, 0]).nonzero().flatten()
    if inf_rows.numel():  # s - t is NaN for s = t = ±inf: compare directly on these rows
        s_inf, t_inf = scores[inf_rows].to(dtype), t[inf_rows]
        sign = (s_inf > t_inf).to(dtype) - (s_inf < t_inf).to(dtype)
        buf[inf_rows] = sign.masked_fill_(torch.isnan(s_inf), float("nan"))

    if filter_rows is not None and filter_rows.numel():
        fr = filter_rows.to(device=device, dtype=torch.long)
        fc = filter_cols.to(device=device, dtype=torch.long)
        if fr.shape != fc.shape:
            raise ValueError(
                f"rank_targets: filter_rows {tuple(fr.shape)} and filter_cols {tuple(fc.shape)} "
                "must have the same shape"
            )
        if int(fr.min()) < 0 or int(fr.max()) >= b or int(fc.min()) < 0 or int(fc.max()) >= n:
            raise IndexError(
                f"rank_targets: filter pairs must have rows in [0, {b}) and columns in [0, {n})"
            )
        buf.index_put_((fr, fc), torch.tensor(float("-inf"), dtype=dtype, device=device))
    buf[rows, targets] = 0.0  # the target keeps its score even if listed in the filter

    nan_rows = torch.isnan(buf.amax(dim=1))  # amax propagates NaN; filtered entries are -inf
    if bool(nan_rows.any()):
        raise ValueError(
            f"rank_targets: NaN scores in query rows {nan_rows.nonzero().flatten()[:10].tolist()} "
            "(outside the filtered answers); check the model for NaN/overflow"
        )

    acc = torch.float64 if n >= _EXACT_FLOAT32_SUM else None
    buf.sign_()
    sigma = buf.sum(dim=1, dtype=acc).to(torch.float64)  # g - l
    if policy == "realistic":
        return (1.0 + n + sigma) * 0.5
    g_plus_l = buf.abs_().sum(dim=1, dtype=acc).to(torch.float64)
    greater = (sigma + g_plus_l) * 0.5
    if policy == "optimistic":
        return 1.0 + greater
    ties = (n - 1) - g_plus_l  # tied candidates other than the target
    return 1.0 + greater + ties


__all__ = ["POLICIES", "rank_targets", "compute_dtype"]
