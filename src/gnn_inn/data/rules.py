r"""Composition rules mined from training triples (AMIE-style path rules of length 2).

A rule ``r3(x, z) ⇐ b1(x, y) ∧ b2(y, z)`` has body atoms ``b ∈ {r, r⁻¹}`` (``r⁻¹(x, y)`` means
``r(y, x)``). Atoms are numbered ``0 … 2R−1``: atom ``a < R`` is relation ``a``, atom ``a ≥ R``
is relation ``a − R`` inverted. With ``body(x, z) = ∃y: b1(x, y) ∧ b2(y, z)`` (``y ∉ {x, z}``):

* **support** = ``|{(x, z) : r3(x, z) ∧ body(x, z)}|`` (distinct pairs);
* **head coverage** = support / ``|{(x, z) : r3(x, z)}|``;
* **standard confidence** = support / ``|{(x, z) : body(x, z)}|``;
* **PCA confidence** = support / ``|{(x, z) : body(x, z) ∧ ∃z': r3(x, z')}|`` — the partial
  completeness assumption of AMIE (Galárraga et al., WWW 2013): a body pair only counts as a
  counter-example when the KG knows *some* r3-fact about ``x``.

All counts are vectorised joins on sorted keys (no Python loop over triples): support counts walk
every head fact's length-2 paths from its lower-degree end; body sizes are counted only for the
atom pairs that reached ``min_support``, as the row lengths of sparse products
``A_b1 · A_b2`` of per-atom CSR adjacency matrices (torch's CSR × CSR product).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Rule:
    """``head(x, z) ⇐ body1(x, y) ∧ body2(y, z)``; body atoms as in the module docstring."""

    head: int
    body1: int
    body2: int
    support: int
    head_coverage: float
    std_confidence: float
    pca_confidence: float
    body_size: int

    def atoms(self, num_relations: int) -> tuple[tuple[int, bool], tuple[int, bool]]:
        """``((relation, inverted), (relation, inverted))`` of the two body atoms."""
        return ((self.body1 % num_relations, self.body1 >= num_relations),
                (self.body2 % num_relations, self.body2 >= num_relations))

    def format(self, relation_names: list[str]) -> str:
        r = len(relation_names)

        def atom(a: int, args: str) -> str:
            return (f"{relation_names[a - r]}^-1{args}" if a >= r
                    else f"{relation_names[a]}{args}")

        return (f"{relation_names[self.head]}(x,z) <= {atom(self.body1, '(x,y)')} ∧ "
                f"{atom(self.body2, '(y,z)')}")

    def as_dict(self, relation_names: list[str] | None = None) -> dict:
        d = asdict(self)
        if relation_names is not None:
            d["rule"] = self.format(relation_names)
        return d


def _oriented_edges(train: Tensor, num_relations: int) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct edges ``(x, atom, y)`` in both orientations, sorted by ``(x, y)``."""
    h, r, t = train.unique(dim=0).unbind(1)
    x = torch.cat([h, t])
    a = torch.cat([r, r + num_relations])
    y = torch.cat([t, h])
    return x, a, y


def _ranges(sorted_keys: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    lo = torch.searchsorted(sorted_keys, query)
    hi = torch.searchsorted(sorted_keys, query, right=True)
    return lo, hi - lo


def _expand(lo: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """For rows with ranges ``[lo, lo + counts)``: (row index, position) of every element."""
    row = torch.repeat_interleave(torch.arange(lo.numel()), counts)
    start = torch.cumsum(counts, 0) - counts
    pos = torch.repeat_interleave(lo - start, counts) + torch.arange(int(counts.sum()))
    return row, pos


def rule_support(train: Tensor, num_relations: int, num_entities: int | None = None, *,
                 chunk: int = 20000) -> tuple[Tensor, Tensor]:
    """Support of every rule with support ≥ 1.

    Returns ``(keys [K], support [K])`` with ``key = (head · 2R + body1) · 2R + body2``.
    """
    R2 = 2 * num_relations
    n = int(num_entities if num_entities is not None else int(train[:, [0, 2]].max()) + 1)
    x, a, y = _oriented_edges(train, num_relations)
    pair = x * n + y
    order = torch.argsort(pair)
    pair_s, a_s = pair[order], a[order]
    y_s = y[order]  # edges sorted by (x, y): out-edges of x are contiguous
    deg = torch.bincount(x, minlength=n)
    out_start = torch.cumsum(deg, 0) - deg
    heads = train.unique(dim=0)
    keys_all, cnt_all = [], []
    for i in range(0, heads.shape[0], chunk):
        hh, rr, tt = heads[i: i + chunk].unbind(1)
        fid = torch.arange(hh.numel()) + i  # fact id: distinct (head, x, z)
        # walk from the lower-degree end: from x over (x, b1, y) and look up (y, b2, z), or
        # from z over (z, b2⁻¹, y) and look up (x, b1, y)
        from_x = deg[hh] <= deg[tt]
        src = torch.where(from_x, hh, tt)
        row, pos = _expand(out_start[src], deg[src])
        mid = y_s[pos]
        step = a_s[pos]  # atom src → mid
        fx = from_x[row]
        # the other hop as a pair key in (x, y) order
        other = torch.where(fx, mid * n + tt[row], hh[row] * n + mid)
        keep = (mid != hh[row]) & (mid != tt[row])
        row, step, fx, other = row[keep], step[keep], fx[keep], other[keep]
        lo, c = _ranges(pair_s, other)
        row2, pos2 = _expand(lo, c)
        other_atom = a_s[pos2]
        step = step[row2]
        fx = fx[row2]
        r_fact = row[row2]
        # step is x→y (= b1) when walking from x; when walking from z, step is z→y, i.e. the
        # inverse of b2
        inv_step = torch.where(step >= num_relations, step - num_relations,
                               step + num_relations)
        b1 = torch.where(fx, step, other_atom)
        b2 = torch.where(fx, other_atom, inv_step)
        key = (rr[r_fact] * R2 + b1) * R2 + b2
        # distinct (fact, rule): several middle entities count once
        uk = torch.unique(fid[r_fact] * (num_relations * R2 * R2) + key)
        k, cnt = torch.unique(uk % (num_relations * R2 * R2), return_counts=True)
        keys_all.append(k)
        cnt_all.append(cnt)
    if not keys_all:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    k = torch.cat(keys_all)
    c = torch.cat(cnt_all)
    uk, inv = torch.unique(k, return_inverse=True)
    sup = torch.zeros(uk.numel(), dtype=torch.long).index_add_(0, inv, c)
    return uk, sup


class _AtomMatrices:
    """One sparse CSR adjacency matrix ``[n, n]`` per atom (self-loops dropped, so products
    count only paths with ``y ∉ {x, z}``), built on first use."""

    def __init__(self, x: Tensor, a: Tensor, y: Tensor, num_atoms: int, n: int) -> None:
        keep = x != y
        x, a, y = x[keep], a[keep], y[keep]
        order = torch.argsort((a * n + x) * n + y)
        self.src, self.dst = x[order], y[order]
        counts = torch.bincount(a, minlength=num_atoms)
        self.start = (torch.cumsum(counts, 0) - counts).tolist()
        self.end = torch.cumsum(counts, 0).tolist()
        self.n = n
        self._cache: dict[int, Tensor] = {}

    def __getitem__(self, atom: int) -> Tensor:
        if atom not in self._cache:
            sl = slice(self.start[atom], self.end[atom])
            src, dst = self.src[sl], self.dst[sl]
            crow = torch.zeros(self.n + 1, dtype=torch.long)
            crow[1:] = torch.cumsum(torch.bincount(src, minlength=self.n), 0)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                self._cache[atom] = torch.sparse_csr_tensor(
                    crow, dst, torch.ones(dst.numel()), size=(self.n, self.n))
        return self._cache[atom]


def body_pairs_per_subject(mats: _AtomMatrices, b1: int, b2: int) -> Tensor:
    """``[n]``: for each entity x, the number of distinct z with ``∃y: b1(x,y) ∧ b2(y,z)``,
    ``y ∉ {x, z}``: the row lengths of the sparse product ``A_b1 · A_b2`` (its values, the path
    counts, are not needed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prod = mats[b1] @ mats[b2]
    crow = prod.crow_indices()
    return crow[1:] - crow[:-1]


def mine_rules(train: Tensor, num_relations: int, num_entities: int | None = None, *,
               min_support: int = 10, min_head_coverage: float = 0.01,
               min_confidence: float = 0.0) -> list[Rule]:
    """Length-2 composition rules of ``train [M, 3]`` (see module docstring).

    Args:
        min_support: least support (distinct head pairs explained by the body).
        min_head_coverage: least head coverage.
        min_confidence: least PCA confidence.

    Returns:
        Rules sorted by PCA confidence, head coverage, support (descending), then by ids.
        Rules whose head is one of its body relations (e.g. transitivity ``r ∘ r → r``) are
        included; :func:`gnn_inn.decoders.patterns.adopt_compositions` skips them.
    """
    R = num_relations
    R2 = 2 * R
    n = int(num_entities if num_entities is not None else int(train[:, [0, 2]].max()) + 1)
    train = train.unique(dim=0)
    keys, sup = rule_support(train, R, n)
    size = torch.bincount(train[:, 1], minlength=R)
    head = keys // (R2 * R2)
    hc = sup.double() / size[head].double().clamp_min(1)
    keep = (sup >= min_support) & (hc >= min_head_coverage)
    keys, sup, head, hc = keys[keep], sup[keep], head[keep], hc[keep]
    b1 = (keys // R2) % R2
    b2 = keys % R2
    mats = _AtomMatrices(*_oriented_edges(train, R), R2, n)
    # subjects per head relation, for the PCA denominators
    has_subject = torch.zeros(R, n, dtype=torch.bool)
    has_subject[train[:, 1], train[:, 0]] = True
    rules: list[Rule] = []
    body_key = b1 * R2 + b2
    for bk in torch.unique(body_key).tolist():
        per_x = body_pairs_per_subject(mats, bk // R2, bk % R2)
        total = int(per_x.sum())
        for j in (body_key == bk).nonzero().squeeze(1).tolist():
            hr = int(head[j])
            pca_den = int(per_x[has_subject[hr]].sum())
            s = int(sup[j])
            pca = s / pca_den if pca_den else 0.0
            if pca < min_confidence:
                continue
            rules.append(Rule(head=hr, body1=bk // R2, body2=bk % R2, support=s,
                              head_coverage=float(hc[j]),
                              std_confidence=s / total if total else 0.0,
                              pca_confidence=pca, body_size=total))
    rules.sort(key=lambda q: (-q.pca_confidence, -q.head_coverage, -q.support, q.head,
                              q.body1, q.body2))
    return rules
