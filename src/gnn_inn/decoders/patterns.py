"""Relation patterns from training statistics, for building flow decoders by construction.

Per relation the flow decoder can be ``free`` (any invertible f_r), ``involution``
(f_r ∘ f_r = id: symmetric relations), ``tied-inverse`` (r2 uses f_{r1}⁻¹: inverse pairs) or
``composition`` (f_r3 = f_r2 ∘ f_r1, either body map possibly inverted, optionally followed by a
learned residual flow g_r3 that starts at the identity). :func:`infer_patterns` picks them from
the training triples:

* **symmetry share** of r: the fraction of its triples ``(h, r, t)``, ``h ≠ t``, whose reverse
  ``(t, r, h)`` is also a training triple. ≥ ``symmetric_threshold`` → ``involution``.
* **inverse overlap** of (r1, r2): ``|{(h, t) : (h, r1, t)} ∩ {(t, h) : (h, r2, t)}|`` divided by
  the smaller relation's size. ≥ ``inverse_threshold`` → the smaller relation of the pair is
  ``tied-inverse`` of the larger (each relation is tied at most once, larger overlaps first).
* **composition rules** ``r3(x, z) ⇐ b1(x, y) ∧ b2(y, z)`` mined by
  :func:`gnn_inn.data.rules.mine_rules` (AMIE-style support, head coverage, PCA confidence):
  :func:`adopt_compositions` ties a still-free r3 to the best rule with PCA confidence ≥
  ``composition_confidence`` and head coverage ≥ ``composition_head_coverage``, best rules first,
  skipping rules whose head is in their body and rules that would close a cycle of ties.

Ties may chain (a body relation may itself be tied or composed); :func:`resolution_order`
orders relations so that every relation comes after the ones its map is built from, and names
the cycle when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..data.rules import Rule, mine_rules
from ..data.triples import TripleSet

PATTERNS = ("free", "involution", "tied-inverse", "composition")


@dataclass
class RelationPattern:
    kind: str = "free"  # one of PATTERNS
    partner: int | None = None  # for tied-inverse: the relation whose inverse map is used
    score: float = 0.0  # the statistic behind the choice (symmetry share, overlap, PCA conf.)
    #: for composition: ((r1, r1 inverted), (r2, r2 inverted)), f_r = f_r2^(±1) ∘ f_r1^(±1)
    body: tuple[tuple[int, bool], ...] = ()
    residual: bool = False  # for composition: a learned residual flow g_r after the body
    rule: dict | None = field(default=None, compare=False)  # mined statistics, when adopted

    def as_str(self) -> str:
        if self.kind == "tied-inverse":
            return f"tied-inverse:{self.partner}"
        if self.kind == "composition":
            atoms = ",".join(f"{r}^-1" if inv else str(r) for r, inv in self.body)
            return f"composition:{atoms}" + (",residual" if self.residual else "")
        return self.kind

    def depends_on(self) -> list[int]:
        """Relations whose maps this relation's map is built from."""
        if self.kind == "tied-inverse":
            return [self.partner]
        if self.kind == "composition":
            return [r for r, _ in self.body]
        return []


def resolution_order(patterns: list[RelationPattern],
                     relation_names: list[str] | None = None) -> list[int]:
    """Relation ids, each after every relation its map depends on (ties, compositions).

    Raises ``ValueError`` naming the cycle (``a -> b -> a``) when the ties form one.
    """
    names = relation_names or [str(i) for i in range(len(patterns))]
    state = [0] * len(patterns)  # 0 new, 1 on the stack, 2 done
    order: list[int] = []
    for root in range(len(patterns)):
        if state[root]:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        path = [root]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            deps = patterns[node].depends_on()
            if i < len(deps):
                stack[-1] = (node, i + 1)
                d = deps[i]
                if state[d] == 1:
                    cyc = path[path.index(d):] + [d]
                    raise ValueError("patterns: relation ties form a cycle: "
                                     + " -> ".join(names[c] for c in cyc)
                                     + "; untie one of these relations (make it 'free')")
                if state[d] == 0:
                    state[d] = 1
                    stack.append((d, 0))
                    path.append(d)
            else:
                stack.pop()
                path.pop()
                state[node] = 2
                order.append(node)
    return order


def would_cycle(patterns: list[RelationPattern], head: int, body: list[int]) -> bool:
    """Would making ``head`` depend on ``body`` close a cycle? (Is ``head`` reachable from a
    body relation along the existing dependencies?)"""
    seen: set[int] = set()
    todo = list(body)
    while todo:
        r = todo.pop()
        if r == head:
            return True
        if r in seen:
            continue
        seen.add(r)
        todo.extend(patterns[r].depends_on())
    return False


def adopt_compositions(patterns: list[RelationPattern], rules: list[Rule], num_relations: int,
                       *, confidence: float = 0.9, head_coverage: float = 0.5,
                       min_support: int = 10, residual: bool = False) -> list[Rule]:
    """Tie still-``free`` relations to mined composition rules, in place; returns the adopted.

    Rules are taken best first (PCA confidence, head coverage, support, as
    :func:`~gnn_inn.data.rules.mine_rules` sorts them); a rule is adopted when its PCA
    confidence ≥ ``confidence``, its head coverage ≥ ``head_coverage``, its support ≥
    ``min_support``, its head is free and not in its own body (an invertible map cannot be
    ``f ∘ g = f`` for a non-identity ``g``, nor transitive), and tying does not close a cycle.
    One rule per head relation.
    """
    adopted: list[Rule] = []
    for q in rules:
        if (q.pca_confidence < confidence or q.head_coverage < head_coverage
                or q.support < min_support):
            continue
        (r1, i1), (r2, i2) = q.atoms(num_relations)
        if patterns[q.head].kind != "free" or q.head in (r1, r2):
            continue
        if would_cycle(patterns, q.head, [r1, r2]):
            continue
        patterns[q.head] = RelationPattern(
            "composition", None, float(q.pca_confidence), body=((r1, i1), (r2, i2)),
            residual=residual, rule=q.as_dict())
        adopted.append(q)
    return adopted


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
    inverse_threshold: float = 0.75, composition_confidence: float | None = None,
    composition_head_coverage: float = 0.5, composition_min_support: int = 10,
    composition_residual: bool = False, num_entities: int | None = None,
) -> list[RelationPattern]:
    """Choose a pattern per relation from training statistics (see module docstring).

    Composition rules are mined and adopted only when ``composition_confidence`` is set.
    """
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
    if composition_confidence is not None:
        rules = mine_rules(train, num_relations, num_entities,
                           min_support=composition_min_support,
                           min_head_coverage=composition_head_coverage,
                           min_confidence=composition_confidence)
        adopt_compositions(out, rules, num_relations, confidence=composition_confidence,
                           head_coverage=composition_head_coverage,
                           min_support=composition_min_support, residual=composition_residual)
    return out


def parse_patterns(spec, num_relations: int, train: Tensor | None = None,
                   relation_names: list[str] | None = None,
                   auto_options: dict | None = None) -> list[RelationPattern]:
    """Turn a config value into one :class:`RelationPattern` per relation.

    ``spec`` may be ``"free"`` / ``"involution"`` (all relations), ``"auto"`` (needs ``train``;
    ``auto_options`` are passed to :func:`infer_patterns`), a list of R strings, or a dict
    ``{relation id or name: "free" | "involution" | "tied-inverse:<r>" |
    "composition:<r1>,<r2>[,residual]"}`` (unnamed relations are free). In a composition a body
    relation written ``<r>^-1`` is used inverted: ``composition:a^-1,b`` is
    ``f = f_b ∘ f_a⁻¹``. Ties may chain; a cycle is an error naming it.
    """
    if isinstance(spec, str) and spec == "auto":
        if train is None:
            raise ValueError("patterns='auto' needs the training triples")
        out = infer_patterns(train, num_relations, **(auto_options or {}))
        resolution_order(out, relation_names)
        return out
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
        elif isinstance(val, str) and val.startswith("composition:"):
            parts = [x.strip() for x in val.split(":", 1)[1].split(",")]
            residual = parts[-1] == "residual"
            if residual:
                parts = parts[:-1]
            if len(parts) != 2:
                raise ValueError(f"patterns: relation {key!r}: {val!r} needs two body relations, "
                                 "'composition:<r1>,<r2>[,residual]' (f = f_r2 ∘ f_r1; "
                                 "'<r>^-1' uses r inverted)")
            body = []
            for x in parts:
                inv = x.endswith("^-1")
                b = rid(x[:-3] if inv else x)
                if b == r:
                    raise ValueError(f"patterns: relation {key!r} cannot be a composition of "
                                     "itself (an invertible map is never idempotent)")
                body.append((b, inv))
            out[r] = RelationPattern("composition", None, body=tuple(body), residual=residual)
        else:
            raise ValueError(f"patterns: relation {key!r}: unknown pattern {val!r} "
                             "(free, involution, tied-inverse:<relation>, "
                             "composition:<r1>,<r2>[,residual])")
    for r, p in enumerate(out):
        if p.kind == "tied-inverse" and out[p.partner].kind == "tied-inverse":
            raise ValueError(f"patterns: relation {r} is tied to {p.partner}, which is itself "
                             "tied; tie both to the same free relation instead")
    resolution_order(out, relation_names)
    return out
