"""Relation patterns from training statistics, for building flow decoders by construction.

Per relation the flow decoder can be ``free`` (any invertible f_r), ``involution``
(f_r ∘ f_r = id: symmetric relations) or ``tied-inverse`` (r2 uses f_{r1}⁻¹: inverse pairs).
:func:`infer_patterns` picks them from the training triples:

* **symmetry share** of r: the fraction of its triples ``(h, r, t)``, ``h ≠ t``, whose reverse
  ``(t, r, h)`` is also a training triple. ≥ ``symmetric_threshold`` → ``involution``.
* **inverse overlap** of (r1, r2): ``|{(h, t) : (h, r1, t)} ∩ {(t, h) : (h, r2, t)}|`` divided by
  the smaller relation's size. ≥ ``inverse_threshold`` → the smaller relation of the pair is
  ``tied-inverse`` of the larger (each relation is tied at most once, larger overlaps first).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.triples import TripleSet

PATTERNS = ("free", "involution", "tied-inverse")


@dataclass
class RelationPattern:
    kind: str = "free"  # one of PATTERNS
    partner: int | None = None  # for tied-inverse: the relation whose inverse map is used
    score: float = 0.0  # the statistic behind the choice (symmetry share or inverse overlap)

    def as_str(self) -> str:
        return f"tied-inverse:{self.partner}" if self.kind == "tied-inverse" else self.kind


def symmetry_share(train: Tensor, num_relations: int) -> Tensor:
    """``[R]`` share of each relation's non-loop triples whose reverse is also in ``train``."""
    h, r, t = train.unbind(1)
    n = int(train[:, [0, 2]].max()) + 1 if train.numel() else 1
    has_rev = TripleSet(train, n, num_relations).contains_hrt(t, r, h) & (h != t)
    nonloop = (h != t).float()
    num = torch.zeros(num_relations).index_add_(0, r, has_rev.float())
    den = torch.zeros(num_relations).index_add_(0, r, nonloop)
    return num / den.clamp_min(1.0)


def inverse_overlap(train: Tensor, num_relations: int) -> Tensor:
    """``[R, R]`` overlap of r1's (h, t) pairs with r2's reversed pairs, over the smaller size."""
    h, r, t = train.unbind(1)
    n = int(train[:, [0, 2]].max()) + 1 if train.numel() else 1
    pair = h * n + t
    rpair = t * n + h
    size = torch.bincount(r, minlength=num_relations).float()
    # join on the pair key: for every triple of r1, which relations r2 hold the reversed pair
    order = torch.argsort(pair)
    sp, sr = pair[order], r[order]
    lo = torch.searchsorted(sp, rpair)
    hi = torch.searchsorted(sp, rpair, right=True)
    counts = hi - lo
    src_rel = torch.repeat_interleave(r, counts)
    starts = torch.repeat_interleave(lo, counts)
    offs = torch.arange(int(counts.sum())) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    dst_rel = sr[starts + offs]
    m = torch.zeros(num_relations * num_relations)
    m.index_add_(0, src_rel * num_relations + dst_rel, torch.ones(src_rel.numel()))
    m = m.view(num_relations, num_relations)
    return m / torch.minimum(size[:, None], size[None, :]).clamp_min(1.0)


def infer_patterns(
    train: Tensor, num_relations: int, *, symmetric_threshold: float = 0.75,
    inverse_threshold: float = 0.75,
) -> list[RelationPattern]:
    """Choose a pattern per relation from training statistics (see module docstring)."""
    sym = symmetry_share(train, num_relations)
    out = [RelationPattern("free", None, 0.0) for _ in range(num_relations)]
    for r in range(num_relations):
        if sym[r] >= symmetric_threshold:
            out[r] = RelationPattern("involution", None, float(sym[r]))
    ov = inverse_overlap(train, num_relations)
    ov.fill_diagonal_(0.0)
    size = torch.bincount(train[:, 1], minlength=num_relations)
    tied: set[int] = set()
    cand = (ov >= inverse_threshold).nonzero().tolist()
    cand.sort(key=lambda ab: -float(ov[ab[0], ab[1]]))
    for a, b in cand:
        if out[a].kind != "free" or out[b].kind != "free" or a in tied or b in tied:
            continue
        small, large = (a, b) if (size[a], a) < (size[b], b) else (b, a)
        out[small] = RelationPattern("tied-inverse", large, float(ov[a, b]))
        tied.update((a, b))
    return out


def parse_patterns(spec, num_relations: int, train: Tensor | None = None,
                   relation_names: list[str] | None = None) -> list[RelationPattern]:
    """Turn a config value into one :class:`RelationPattern` per relation.

    ``spec`` may be ``"free"`` / ``"involution"`` (all relations), ``"auto"`` (needs ``train``),
    a list of R strings, or a dict ``{relation id or name: "free" | "involution" |
    "tied-inverse:<id or name>"}`` (unnamed relations are free).
    """
    if isinstance(spec, str) and spec == "auto":
        if train is None:
            raise ValueError("patterns='auto' needs the training triples")
        return infer_patterns(train, num_relations)
    if isinstance(spec, str):
        spec = [spec] * num_relations
    if isinstance(spec, (list, tuple)):
        if len(spec) != num_relations:
            raise ValueError(f"patterns: expected {num_relations} entries, got {len(spec)}")
        spec = dict(enumerate(spec))
    if not isinstance(spec, dict):
        raise ValueError(f"patterns must be 'free', 'involution', 'auto', a list or a dict, "
                         f"got {type(spec).__name__}")
    names = {n: i for i, n in enumerate(relation_names or [])}

    def rid(x) -> int:
        if isinstance(x, int) or (isinstance(x, str) and x.isdigit()):
            i = int(x)
        elif x in names:
            i = names[x]
        else:
            raise ValueError(f"patterns: unknown relation {x!r}")
        if not 0 <= i < num_relations:
            raise ValueError(f"patterns: relation id {i} out of range [0, {num_relations})")
        return i

    out = [RelationPattern() for _ in range(num_relations)]
    for key, val in spec.items():
        r = rid(key)
        if val in ("free", "involution"):
            out[r] = RelationPattern(val)
        elif isinstance(val, str) and val.startswith("tied-inverse:"):
            p = rid(val.split(":", 1)[1])
            if p == r:
                raise ValueError(f"patterns: relation {key!r} cannot be the inverse of itself; "
                                 "use 'involution'")
            out[r] = RelationPattern("tied-inverse", p)
        else:
            raise ValueError(f"patterns: relation {key!r}: unknown pattern {val!r} "
                             "(free, involution, tied-inverse:<relation>)")
    for r, p in enumerate(out):
        if p.kind == "tied-inverse" and out[p.partner].kind == "tied-inverse":
            raise ValueError(f"patterns: relation {r} is tied to {p.partner}, which is itself "
                             "tied; tie both to the same free relation instead")
    return out
