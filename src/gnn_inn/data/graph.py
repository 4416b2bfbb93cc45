"""``KnowledgeGraph``: vocabularies and train / valid / test id triples."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Data

from .filters import FilterIndex
from .io import read_triples

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def relation_categories(train: Tensor, num_relations: int, num_entities: int | None = None,
                        threshold: float = 1.5) -> list[str]:
    """``'1-1' | '1-N' | 'N-1' | 'N-N'`` per relation of the triples ``train [M, 3]``.

    As in Bordes et al. (2013): tails-per-head ``tph`` and heads-per-tail ``hpt`` averaged
    over the relation's distinct heads / tails; "N" on a side when the average ≥ ``threshold``.
    """
    h, r, t = train.unbind(1)
    n = int(num_entities) if num_entities is not None else int(train[:, [0, 2]].max()) + 1
    n_triples = torch.bincount(r, minlength=num_relations).float()
    n_heads = torch.bincount(torch.unique(r * n + h) // n, minlength=num_relations).float()
    n_tails = torch.bincount(torch.unique(r * n + t) // n, minlength=num_relations).float()
    tph = n_triples / n_heads.clamp_min(1)
    hpt = n_triples / n_tails.clamp_min(1)
    return [f"{'N' if a >= threshold else '1'}-{'N' if b >= threshold else '1'}"
            for a, b in zip(hpt.tolist(), tph.tolist())]


class KnowledgeGraph:
    """A knowledge graph split into train / valid / test.

    Attributes:
        name: dataset name.
        entity_names, relation_names: vocabularies; id = position. Ids are assigned in order of
            first appearance over train, then valid, then test (deterministic for given files).
        train, valid, test: ``LongTensor[N_split, 3]`` of ``(head, relation, tail)`` ids.
        relation_patterns: ``{relation id: pattern}`` for generated datasets, else ``None``.

    Entities that occur only in valid / test are kept: the standard protocol ranks against
    every entity. :meth:`stats` counts them.
    """

    #: sha256 of each split file (graphs read from a folder), else ``None``
    fingerprint: dict[str, str] | None = None
    # typed / OGB graphs (:class:`~gnn_inn.data.ogb.OGBKnowledgeGraph`) set these:
    #: OGB's dataset name (its ``Evaluator``)
    ogb_name: str | None = None
    #: ``{split: {"head_neg" | "tail_neg": LongTensor[M, K]}}`` OGB candidate sets
    ogb_candidates: dict[str, dict[str, Tensor]] | None = None
    #: entity type names in id order (empty when homogeneous)
    entity_type_names: Sequence[str] = ()
    #: ``{type name: (start, end)}`` contiguous global id range of each type
    entity_type_ranges: dict[str, tuple[int, int]] | None = None
    #: ``LongTensor[R, 2]`` (head type, tail type) index per relation
    relation_types: Tensor | None = None

    def __init__(self, *, name: str, entity_names: Sequence[str], relation_names: Sequence[str],
                 train: Tensor, valid: Tensor, test: Tensor,
                 relation_patterns: dict[int, str] | None = None) -> None:
        self.name = name
        self.entity_names = list(entity_names)
        self.relation_names = list(relation_names)
        self.relation_patterns = relation_patterns
        for split, t in zip(SPLITS, (train, valid, test)):
            t = torch.as_tensor(t, dtype=torch.long).reshape(-1, 3)
            if t.numel():
                if int(t[:, [0, 2]].min()) < 0 or int(t[:, [0, 2]].max()) >= self.num_entities:
                    raise ValueError(f"{name}: {split} has entity ids outside "
                                     f"[0, {self.num_entities})")
                if int(t[:, 1].min()) < 0 or int(t[:, 1].max()) >= self.num_relations:
                    raise ValueError(f"{name}: {split} has relation ids outside "
                                     f"[0, {self.num_relations})")
            setattr(self, split, t)

    # ---------------------------------------------------------------- building
    @classmethod
    def from_labeled(cls, name: str, splits: dict[str, list[tuple[str, str, str]]],
                     **kwargs) -> KnowledgeGraph:
        """Build from ``{split: [(h, r, t) strings]}``; ids by first appearance."""
        ent: dict[str, int] = {}
        rel: dict[str, int] = {}
        ids = {}
        for split in SPLITS:
            rows = []
            for h, r, t in splits.get(split, []):
                rows.append((ent.setdefault(h, len(ent)), rel.setdefault(r, len(rel)),
                             ent.setdefault(t, len(ent))))
            ids[split] = torch.tensor(rows, dtype=torch.long).reshape(-1, 3)
        return cls(name=name, entity_names=list(ent), relation_names=list(rel), **ids, **kwargs)

    @classmethod
    def from_directory(cls, path: str | Path, name: str | None = None, *,
                       duplicates: str = "drop") -> KnowledgeGraph:
        """Load ``path/{train,valid,test}.txt``."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {path}")
        missing = [s for s in SPLITS if not (path / f"{s}.txt").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{path}: missing {', '.join(f'{s}.txt' for s in missing)} (a dataset folder "
                "holds train.txt, valid.txt and test.txt)"
            )
        splits = {s: read_triples(path / f"{s}.txt", duplicates=duplicates) for s in SPLITS}
        for split, rows in splits.items():
            if not rows:
                raise ValueError(f"{path / f'{split}.txt'}: no triples (the file is empty or "
                                 f"holds only a header); every split needs at least one")
        kg = cls.from_labeled(name or path.name, splits)
        #: sha256 of each split file, stored in checkpoints to notice changed data
        kg.fingerprint = {s: hashlib.sha256((path / f"{s}.txt").read_bytes()).hexdigest()
                          for s in SPLITS}
        s = kg.stats()
        if s["unseen_entities"]:
            log.info("%s: %d entities appear only in valid/test (%d valid, %d test triples); "
                     "kept and ranked against all entities", kg.name, s["unseen_entities"],
                     s["unseen_valid_triples"], s["unseen_test_triples"])
        leaks = {k: s[k] for k in ("valid_in_train", "test_in_train", "test_in_valid") if s[k]}
        if leaks:
            log.warning("%s: evaluation triples that are also known for training (%s): they "
                        "are filtered out of each other's rankings but inflate the metrics",
                        kg.name, ", ".join(f"{k} {v}" for k, v in leaks.items()))
        if s["relations_only_in_eval"]:
            log.warning("%s: %d relation(s) occur only in valid / test (never trained): %s",
                        kg.name, s["relations_only_in_eval"],
                        ", ".join(kg.relation_names[r] for r in kg.eval_only_relations()[:5]))
        return kg

    # ---------------------------------------------------------------- counts
    @property
    def num_entities(self) -> int:
        return len(self.entity_names)

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)

    def _unseen_mask(self, split: str) -> Tensor:
        seen = torch.zeros(self.num_entities, dtype=torch.bool)
        seen[self.train[:, 0]] = True
        seen[self.train[:, 2]] = True
        t = getattr(self, split)
        return ~(seen[t[:, 0]] & seen[t[:, 2]])

    def _overlap(self, split: str, other: str) -> int:
        """Number of ``split`` triples that also occur in ``other``."""
        a, b = getattr(self, split), getattr(self, other)
        if not a.numel() or not b.numel():
            return 0
        n, r = self.num_entities, self.num_relations
        key = lambda t: (t[:, 0] * r + t[:, 1]) * n + t[:, 2]  # noqa: E731
        return int(torch.isin(key(a), key(b)).sum())

    def eval_only_relations(self) -> list[int]:
        """Ids of relations that occur in valid or test but never in train."""
        in_train = torch.zeros(self.num_relations, dtype=torch.bool)
        in_train[self.train[:, 1]] = True
        used = torch.zeros(self.num_relations, dtype=torch.bool)
        used[torch.cat([self.valid[:, 1], self.test[:, 1]])] = True
        return (used & ~in_train).nonzero().flatten().tolist()

    def stats(self) -> dict[str, int]:
        seen = torch.zeros(self.num_entities, dtype=torch.bool)
        seen[self.train[:, 0]] = True
        seen[self.train[:, 2]] = True
        return {
            "num_entities": self.num_entities,
            "num_relations": self.num_relations,
            "num_train": int(self.train.shape[0]),
            "num_valid": int(self.valid.shape[0]),
            "num_test": int(self.test.shape[0]),
            "unseen_valid_triples": int(self._unseen_mask("valid").sum()),
            "unseen_test_triples": int(self._unseen_mask("test").sum()),
            "unseen_entities": int((~seen).sum()),
            "valid_in_train": self._overlap("valid", "train"),
            "test_in_train": self._overlap("test", "train"),
            "test_in_valid": self._overlap("test", "valid"),
            "relations_only_in_eval": len(self.eval_only_relations()),
        }

    # ------------------------------------------------------------- structures
    def message_graph(self, add_inverse: bool = True) -> Data:
        """The message-passing graph: **train edges only**.

        Returns ``Data(edge_index [2, E], edge_type [E], num_nodes)``; with ``add_inverse``
        every train triple ``(h, r, t)`` also gives the edge ``t → h`` of type ``r + R`` and
        ``E = 2 · N_train``.
        """
        h, r, t = self.train.unbind(1)
        if add_inverse:
            src, dst = torch.cat([h, t]), torch.cat([t, h])
            et = torch.cat([r, r + self.num_relations])
        else:
            src, dst, et = h, t, r
        return Data(edge_index=torch.stack([src, dst]), edge_type=et, num_nodes=self.num_entities)

    @cached_property
    def filter_index(self) -> FilterIndex:
        """Known answers over train ∪ valid ∪ test (cached)."""
        return FilterIndex(self.all_triples(), self.num_entities, self.num_relations)

    def all_triples(self) -> Tensor:
        return torch.cat([self.train, self.valid, self.test])

    def relation_categories(self, threshold: float = 1.5) -> list[str]:
        """``'1-1' | '1-N' | 'N-1' | 'N-N'`` per relation from the training triples.

        As in Bordes et al. (2013): tails-per-head ``tph`` and heads-per-tail ``hpt`` averaged
        over the relation's distinct heads / tails; "N" on a side when the average ≥ 1.5.
        """
        return relation_categories(self.train, self.num_relations, self.num_entities, threshold)

    # ------------------------------------------------------------- vocabulary
    def vocab_dict(self) -> dict[str, list[str]]:
        return {"entities": list(self.entity_names), "relations": list(self.relation_names)}

    def __repr__(self) -> str:
        return (f"KnowledgeGraph({self.name!r}, entities={self.num_entities}, "
                f"relations={self.num_relations}, train={self.train.shape[0]}, "
                f"valid={self.valid.shape[0]}, test={self.test.shape[0]})")


def check_vocab(vocab: dict[str, list[str]], kg: KnowledgeGraph, *, source: str = "checkpoint"
                ) -> None:
    """Raise if a checkpoint's vocabularies differ from ``kg``'s (ids would mean other things)."""
    for key, mine in (("entities", kg.entity_names), ("relations", kg.relation_names)):
        theirs = vocab.get(key, [])
        if theirs == mine:
            continue
        diff = [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b]
        first = (f"first at id {diff[0]}: {theirs[diff[0]]!r} vs {mine[diff[0]]!r}" if diff
                 else "the shorter list is a prefix of the longer")
        raise ValueError(
            f"{source}: {key} vocabulary differs from dataset {kg.name!r} "
            f"({len(theirs)} vs {len(mine)} entries, {len(diff)} differ; {first}); "
            "load the checkpoint with the dataset files it was trained on"
        )
