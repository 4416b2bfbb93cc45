"""The built-in synthetic pattern suite (the default dataset; no download).

A seeded generator of a small KG in which every relation follows one known pattern and every
valid / test triple is *inferable from training facts through that pattern*:

=================  ==========================================  ===============================
pattern            relation(s)                                  a held-out triple follows from
=================  ==========================================  ===============================
``symmetric``      ``symmetric_0/1``: random perfect matchings  its reverse ``(t, r, h)`` in train
``hierarchy``      ``subclass_of``: transitive closure of a     ``(a, r, b), (b, r, c)`` in train
                   3-level forest (antisymmetric)               (transitivity)
``inverse``        ``inverse_a`` = π, ``inverse_b`` = π⁻¹       the partner fact in train
``composition``    ``compose_1`` = π₁, ``compose_2`` = π₂,      ``(a, compose_1, b)`` and
                   ``compose_3`` = π₂ ∘ π₁                      ``(b, compose_2, c)`` in train
``one-to-many``    ``has_member``: leader → its group members   ``(m, member_of, l)`` in train
``many-to-one``    ``member_of``: member → its leader           ``(l, has_member, m)`` in train
=================  ==========================================  ===============================

``relation_patterns`` maps each relation id to its pattern, so metrics can be reported per
pattern. Held-out facts are split evenly between valid and test.
"""

from __future__ import annotations

import torch

from .graph import KnowledgeGraph

RELATIONS = [
    ("symmetric_0", "symmetric"), ("symmetric_1", "symmetric"), ("subclass_of", "hierarchy"),
    ("inverse_a", "inverse"), ("inverse_b", "inverse"), ("compose_1", "composition"),
    ("compose_2", "composition"), ("compose_3", "composition"), ("has_member", "one-to-many"),
    ("member_of", "many-to-one"),
]


def make_synthetic(*, num_entities: int = 310, group_size: int = 5, holdout: float = 0.2,
                   seed: int = 0) -> KnowledgeGraph:
    """Generate the pattern suite (see module docstring).

    Args:
        num_entities: number of entities (≥ 31; the forest uses the first
            ``roots · (1 + 5 + 25)`` of them with ``roots = num_entities // 31``).
        group_size: size of a ``has_member`` group (one leader + ``group_size − 1`` members).
        holdout: share of each pattern's inferable facts held out (half valid, half test).
        seed: generator seed; the same seed gives the same graph.
    """
    if num_entities < 31 or num_entities % 2:
        raise ValueError(f"num_entities must be even and ≥ 31, got {num_entities}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    g = torch.Generator().manual_seed(seed)
    n = num_entities
    rid = {name: i for i, (name, _) in enumerate(RELATIONS)}
    train: list[torch.Tensor] = []
    held: list[torch.Tensor] = []

    def triples(h, r, t):
        return torch.stack([h, torch.full_like(h, rid[r]), t], 1)

    def split(mask_len: int) -> torch.Tensor:
        """Boolean mask choosing ``holdout`` of ``mask_len`` items."""
        k = max(1, int(round(holdout * mask_len)))
        m = torch.zeros(mask_len, dtype=torch.bool)
        m[torch.randperm(mask_len, generator=g)[:k]] = True
        return m

    # symmetric: perfect matchings; one direction of a held-out pair goes to valid/test
    for name in ("symmetric_0", "symmetric_1"):
        perm = torch.randperm(n, generator=g)
        a, b = perm[: n // 2], perm[n // 2 :]
        m = split(a.numel())
        flip = torch.rand(a.numel(), generator=g) < 0.5
        a2, b2 = torch.where(flip, b, a), torch.where(flip, a, b)
        train += [triples(a2, name, b2), triples(b2[~m], name, a2[~m])]
        held.append(triples(b2[m], name, a2[m]))

    # hierarchy: forest of depth 2 (root ← child ← grandchild), transitive closure;
    # held-out grandchild→root facts follow by transitivity from the two one-step facts
    roots = n // 31
    ids = torch.randperm(n, generator=g)[: roots * 31]
    r_ids, c_ids, gc_ids = ids[:roots], ids[roots: 6 * roots], ids[6 * roots:]
    c_parent = r_ids.repeat_interleave(5)
    gc_parent = c_ids.repeat_interleave(5)
    gc_root = c_parent.repeat_interleave(5)
    train += [triples(c_ids, "subclass_of", c_parent), triples(gc_ids, "subclass_of", gc_parent)]
    m = split(gc_ids.numel())
    train.append(triples(gc_ids[~m], "subclass_of", gc_root[~m]))
    held.append(triples(gc_ids[m], "subclass_of", gc_root[m]))

    # inverse pair: π and π⁻¹ over all entities; held-out facts of each have the partner in train
    pi = torch.randperm(n, generator=g)
    a = torch.arange(n)
    which = torch.randint(0, 3, (n,), generator=g)  # 0: both in train, 1: hold a, 2: hold b
    m = split(n)
    hold_a, hold_b = m & (which % 2 == 1), m & (which % 2 == 0)
    train += [triples(a[~hold_a], "inverse_a", pi[~hold_a]),
              triples(pi[~hold_b], "inverse_b", a[~hold_b])]
    held += [triples(a[hold_a], "inverse_a", pi[hold_a]),
             triples(pi[hold_b], "inverse_b", a[hold_b])]

    # composition: compose_3 = π₂ ∘ π₁; compose_1 and compose_2 fully in train
    p1, p2 = torch.randperm(n, generator=g), torch.randperm(n, generator=g)
    train += [triples(a, "compose_1", p1), triples(a, "compose_2", p2)]
    m = split(n)
    train.append(triples(a[~m], "compose_3", p2[p1[~m]]))
    held.append(triples(a[m], "compose_3", p2[p1[m]]))

    # one-to-many / many-to-one: groups with a leader; a held-out fact of one relation has its
    # mirror in the other relation in train
    perm = torch.randperm(n, generator=g)
    groups = perm[: (n // group_size) * group_size].view(-1, group_size)
    leader = groups[:, 0].repeat_interleave(group_size - 1)
    member = groups[:, 1:].reshape(-1)
    m = split(member.numel())
    side = torch.rand(member.numel(), generator=g) < 0.5
    hold_hm, hold_mo = m & side, m & ~side
    train += [triples(leader[~hold_hm], "has_member", member[~hold_hm]),
              triples(member[~hold_mo], "member_of", leader[~hold_mo])]
    held += [triples(leader[hold_hm], "has_member", member[hold_hm]),
             triples(member[hold_mo], "member_of", leader[hold_mo])]

    tr = torch.unique(torch.cat(train), dim=0)
    ho = torch.cat(held)
    ho = ho[torch.randperm(ho.shape[0], generator=g)]
    half = ho.shape[0] // 2
    return KnowledgeGraph(
        name="synthetic",
        entity_names=[f"e{i}" for i in range(n)],
        relation_names=[name for name, _ in RELATIONS],
        train=tr[torch.randperm(tr.shape[0], generator=g)],
        valid=ho[:half],
        test=ho[half:],
        relation_patterns={i: p for i, (_, p) in enumerate(RELATIONS)},
    )
