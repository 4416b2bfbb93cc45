r"""OGB knowledge-graph datasets (``ogbl-biokg``, ``ogbl-wikikg2``) as :class:`KnowledgeGraph`.

The result is an :class:`OGBKnowledgeGraph` whose valid / test rows carry OGB's candidate
sets, so evaluation follows the leaderboard protocol (:func:`gnn_inn.evaluation.ogb.evaluate_ogb`:
the true entity against 500 provided negatives per side), not full ranking.

Where the data is looked for (folder = ogb's name with ``-`` → ``_``, e.g. ``ogbl_biokg``):
``data_dir`` (``dataset.data_dir``), then env ``GNN_INN_DATA``, then the cache (env
``GNN_INN_CACHE``, default ``~/.cache/gnn_inn``); otherwise ogb downloads the archive into the
cache (``allow_download=False`` refuses).

Entity ids: *wikikg2* uses OGB's node ids (``N = 2,500,604``, ``R = 535``). *biokg*'s ids are
type-local; types are ordered by name and ``global id = local id + offset[type]``
(``N = 93,773``, ``R = 51``); the graph keeps ``entity_type [N]``, ``entity_type_ranges``
and ``relation_types [R, 2]``, and the provided ``head_neg`` / ``tail_neg`` are mapped with
the same offsets.

Pickles: ogb's processed cache is never read (the graph is rebuilt from the raw files); the
split files are read with ``weights_only=True`` and only the numpy types needed allow-listed;
``dataset.options: {trust_pickle: true}`` lifts that for files the user trusts.

Measurements and design notes: docs/design-notes.md#data-ogb

References
----------
Hu et al., "Open Graph Benchmark: datasets for machine learning on graphs", NeurIPS 2020.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .graph import KnowledgeGraph
from .paths import cache_dir

log = logging.getLogger(__name__)

#: the two candidate sets of each evaluated split
CANDIDATE_KEYS: tuple[str, ...] = ("head_neg", "tail_neg")
EVAL_SPLITS: tuple[str, ...] = ("valid", "test")


@dataclass(frozen=True)
class OGBSpec:
    """An OGB knowledge-graph dataset: name, layout and expected size (for messages and tests)."""

    name: str
    heterogeneous: bool
    num_entities: int
    num_relations: int
    citation: str


OGB_DATASETS: dict[str, OGBSpec] = {
    "ogbl-biokg": OGBSpec(
        name="ogbl-biokg", heterogeneous=True, num_entities=93_773, num_relations=51,
        citation="Hu et al. (2020), Open Graph Benchmark: datasets for machine learning on graphs",
    ),
    "ogbl-wikikg2": OGBSpec(
        name="ogbl-wikikg2", heterogeneous=False, num_entities=2_500_604, num_relations=535,
        citation="Hu et al. (2020), Open Graph Benchmark: datasets for machine learning on graphs",
    ),
}


class OGBKnowledgeGraph(KnowledgeGraph):
    """A :class:`KnowledgeGraph` of an OGB dataset, with the OGB candidate sets.

    Attributes (besides those of :class:`KnowledgeGraph`):
        ogb_name: OGB's dataset name (the ``ogb.linkproppred.Evaluator`` to use).
        ogb_candidates: ``{"valid" | "test": {"head_neg": LongTensor[M, K], "tail_neg":
            LongTensor[M, K]}}`` — global entity ids of the negatives of each row of
            ``kg.valid`` / ``kg.test`` (``K = 500`` in the real data).
        entity_type_names: entity type names in id order (sorted; empty when homogeneous).
        entity_type: ``LongTensor[N]`` type index of every entity, or ``None`` (homogeneous).
        entity_type_ranges: ``{type name: (start, end)}`` — the type's global ids are
            ``start ≤ id < end``.
        relation_types: ``LongTensor[R, 2]`` (head type, tail type) index per relation, ``-1``
            for a relation that never occurs; ``None`` when homogeneous.
    """

    def __init__(self, *, ogb_name: str, ogb_candidates: dict[str, dict[str, Tensor]],
                 entity_type_names: Sequence[str] = (), entity_type: Tensor | None = None,
                 relation_types: Tensor | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ogb_name = ogb_name
        self.entity_type_names = list(entity_type_names)
        self.entity_type = entity_type
        self.relation_types = relation_types
        counts = (torch.bincount(entity_type, minlength=len(self.entity_type_names))
                  if entity_type is not None else torch.zeros(0, dtype=torch.long))
        ends = torch.cumsum(counts, 0)
        self.entity_type_ranges: dict[str, tuple[int, int]] = {
            name: (int(e - c), int(e))
            for name, c, e in zip(self.entity_type_names, counts, ends)
        }
        for split, cands in ogb_candidates.items():
            m = getattr(self, split).shape[0]
            for key in CANDIDATE_KEYS:
                c = cands[key]
                if c.dim() != 2 or c.shape[0] != m:
                    raise ValueError(f"{ogb_name}: {split} {key} has shape {tuple(c.shape)}, "
                                     f"expected [{m}, K] (one row per {split} triple)")
                if c.numel() and (int(c.min()) < 0 or int(c.max()) >= self.num_entities):
                    raise ValueError(f"{ogb_name}: {split} {key} has entity ids outside "
                                     f"[0, {self.num_entities})")
        self.ogb_candidates = ogb_candidates

    def __repr__(self) -> str:
        k = {s: int(c["tail_neg"].shape[1]) for s, c in self.ogb_candidates.items()}
        types = f", types={len(self.entity_type_names)}" if self.entity_type_names else ""
        return (f"OGB{super().__repr__()[:-1]}{types}, candidates={k})")


# ------------------------------------------------------------------ torch.load policy
def _numpy_safe_globals() -> list[Any]:
    """The numpy callables and classes ``weights_only`` unpickling needs to rebuild arrays.

    OGB's files were written with numpy 1.x, whose pickles name ``numpy.core.multiarray``;
    numpy 2 moved it to ``numpy._core``: both names are allow-listed.
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    out: list[Any] = [np.ndarray, np.dtype]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        out += [fn, (fn, f"numpy.core.multiarray.{fn.__name__}"),
                (fn, f"numpy._core.multiarray.{fn.__name__}")]
    dtypes = getattr(np, "dtypes", None)  # numpy ≥ 1.25: one class per dtype
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return out


def _torch_load(path: Path, trusted: bool) -> Any:
    """``torch.load`` of an OGB split file: ``weights_only`` with numpy arrays allow-listed
    (scoped to this call), or unrestricted when ``trusted``."""
    if trusted:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(
            f"{path}: torch.load(weights_only=True) refused this OGB file, even with numpy "
            f"arrays allow-listed ({_unpickler_reason(e)}). If you trust it (downloaded from "
            "the OGB servers), load with trust_pickle=True (config: dataset.options: "
            "{trust_pickle: true})") from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a readable OGB split file ({e})") from None


def _meta(name: str) -> dict[str, str]:
    """ogb's master.csv row of ``name`` (version, split, raw-file layout)."""
    import pandas as pd
    from ogb import linkproppred

    master = pd.read_csv(Path(linkproppred.__file__).parent / "master.csv", index_col=0,
                         keep_default_na=False)
    return {str(k): str(v) for k, v in master[name].items()}


def _read_graph(folder: Path, meta: dict[str, str]) -> dict[str, Any]:
    """The graph dict ``LinkPropPredDataset`` would build, read from ``folder/raw`` (never
    from the pickled ``processed/data_processed``)."""
    from ogb.io import read_graph_raw as rg

    raw = folder / "raw"
    hetero, binary = meta["is hetero"] == "True", meta["binary"] == "True"
    inverse = meta["add_inverse_edge"] == "True"
    files = {k: ([] if meta[f"additional {k} files"] == "None"
                 else meta[f"additional {k} files"].split(",")) for k in ("node", "edge")}
    needed = raw / ("edge_index_dict.npz" if hetero and binary else "data.npz" if binary
                    else "triplet-type-list.csv.gz" if hetero else "edge.csv.gz")
    if not needed.is_file():
        raise FileNotFoundError(f"{folder}: no {needed.relative_to(folder)}; the folder does "
                                "not hold ogb's raw files (remove it to download them again)")
    if (folder / "processed" / "data_processed").is_file():
        log.debug("%s: ogb's pickled processed cache is not read; graph rebuilt from raw/",
                  folder)
    if binary:
        read = rg.read_binary_heterograph_raw if hetero else rg.read_binary_graph_raw
        return read(str(raw), add_inverse_edge=inverse)[0]
    read = rg.read_csv_heterograph_raw if hetero else rg.read_csv_graph_raw
    return read(str(raw), add_inverse_edge=inverse, additional_node_files=files["node"],
                additional_edge_files=files["edge"])[0]


def _read_splits(folder: Path, meta: dict[str, str], trusted: bool) -> dict[str, Any]:
    path = folder / "split" / meta["split"]
    if (path / "split_dict.pt").is_file():
        return _torch_load(path / "split_dict.pt", trusted)
    out = {}
    for s in ("train", *EVAL_SPLITS):
        f = path / f"{s}.pt"
        if not f.is_file():
            raise FileNotFoundError(f"{folder}: missing split file {f.relative_to(folder)}")
        out[s] = _torch_load(f, trusted)
    return out


class _LogStream(io.TextIOBase):
    """``stdout`` replacement that turns ogb's progress prints into log records."""

    def write(self, s: str) -> int:
        for line in s.splitlines():
            if line.strip():
                log.info("ogb: %s", line.strip())
        return len(s)


# ------------------------------------------------------------------ locating the data
def ogb_folder_name(name: str) -> str:
    """ogb's folder for ``name``: ``ogbl-biokg`` → ``ogbl_biokg``."""
    return name.replace("-", "_")


def _release_version(name: str) -> str:
    """The dataset version ogb expects (``RELEASE_v<version>.txt``), from ogb's master.csv."""
    import pandas as pd
    from ogb import linkproppred

    master = pd.read_csv(Path(linkproppred.__file__).parent / "master.csv", index_col=0,
                         keep_default_na=False)
    return str(master[name]["version"])


def find_ogb_root(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first of ``data_dir``, env ``GNN_INN_DATA`` and the cache holding ``<ogb folder>/``."""
    folder = ogb_folder_name(name)
    for base in (data_dir, os.environ.get("GNN_INN_DATA"), cache_dir()):
        if base and (Path(base) / folder).is_dir():
            return Path(base)
    return None


def _prepare_root(name: str, root: Path) -> None:
    """Make an existing folder loadable without ogb asking questions on stdin."""
    folder = root / ogb_folder_name(name)
    version = _release_version(name)
    marker = folder / f"RELEASE_v{version}.txt"
    if not marker.is_file():
        found = sorted(p.name for p in folder.glob("RELEASE_v*.txt"))
        raise FileNotFoundError(
            f"{folder}: no {marker.name} (found: {', '.join(found) or 'none'}); ogb would ask on "
            f"stdin whether to delete and re-download the folder. If it holds ogb {version}'s "
            f"{name} files, create an empty {marker.name}; otherwise remove the folder to "
            "download it again"
        )


# ------------------------------------------------------------------ conversion helpers
def _as_long(x: Any, where: str) -> Tensor:
    """An int64 tensor from a tensor, numpy array or list (OGB ships numpy, fixtures tensors)."""
    if isinstance(x, Tensor):
        t = x
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "iu":
            raise ValueError(f"{where}: expected integer ids, got dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{where}: expected integer ids, got {t.dtype}")
    return t.to(torch.long)


def _type_index(x: Any, type_names: list[str], where: str) -> Tensor:
    """``LongTensor[M]`` index into ``type_names`` of each name in ``x`` (list or array of str)."""
    if isinstance(x, Tensor):
        raise ValueError(f"{where}: expected entity type names (list of str), got a tensor")
    names, inverse = np.unique(np.asarray(x, dtype=str), return_inverse=True)
    pos = {n: i for i, n in enumerate(type_names)}
    unknown = [str(n) for n in names if str(n) not in pos]
    if unknown:
        raise ValueError(f"{where}: unknown entity types {unknown[:5]}; the graph's "
                         f"num_nodes_dict has {type_names}")
    lut = torch.tensor([pos[str(n)] for n in names], dtype=torch.long)
    return lut[torch.from_numpy(inverse.reshape(-1).astype(np.int64))]


def _check_range(ids: Tensor, upper: Tensor | int, where: str) -> None:
    """Raise unless ``0 ≤ ids < upper`` (``upper`` broadcast against ``ids``)."""
    if ids.numel() == 0:
        return
    bad = (ids < 0) | (ids >= upper)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{where}: {int(bad.sum())} ids out of range (first at index {first}: "
                         f"{int(ids[first])}); the split file does not match the graph")


def _split_dict(split: dict[str, Any], name: str, key: str) -> dict[str, Any]:
    needed = ["head", "relation", "tail"] + (list(CANDIDATE_KEYS) if key in EVAL_SPLITS else [])
    missing = [k for k in needed if k not in split]
    if missing:
        raise ValueError(f"{name}: split {key!r} lacks {missing} (has {sorted(split)}); "
                         "is this an OGB knowledge-graph split file?")
    return split


# ------------------------------------------------------------------ builders
def _build_homogeneous(name: str, graph: dict[str, Any], splits: dict[str, Any]
                       ) -> OGBKnowledgeGraph:
    n = int(graph["num_nodes"])
    triples, cands = {}, {}
    num_rel = 0
    reltype = graph.get("edge_reltype")
    if reltype is not None and np.asarray(reltype).size:
        num_rel = int(np.asarray(reltype).max()) + 1
    for key in ("train", *EVAL_SPLITS):
        s = _split_dict(splits[key], name, key)
        h = _as_long(s["head"], f"{name} {key} head").reshape(-1)
        r = _as_long(s["relation"], f"{name} {key} relation").reshape(-1)
        t = _as_long(s["tail"], f"{name} {key} tail").reshape(-1)
        triples[key] = torch.stack([h, r, t], 1)
        num_rel = max(num_rel, int(r.max()) + 1 if r.numel() else 0)
        if key in EVAL_SPLITS:
            cands[key] = {k: _as_long(s[k], f"{name} {key} {k}") for k in CANDIDATE_KEYS}
            for k, c in cands[key].items():
                _check_range(c, n, f"{name} {key} {k}")
    return OGBKnowledgeGraph(
        name=name, ogb_name=name, entity_names=[str(i) for i in range(n)],
        relation_names=[str(i) for i in range(num_rel)], train=triples["train"],
        valid=triples["valid"], test=triples["test"], ogb_candidates=cands,
    )


def _relation_names(graph: dict[str, Any], num_rel: int) -> tuple[list[str], Tensor]:
    """Names and ``(head type, tail type)`` of biokg relations from the graph's triplet keys."""
    types = sorted(graph["num_nodes_dict"])
    by_id: dict[int, tuple[str, str, str]] = {}
    for key, rt in (graph.get("edge_reltype") or {}).items():
        ids = np.unique(np.asarray(rt).reshape(-1))
        for i in ids.tolist():
            by_id[int(i)] = tuple(key)
    num_rel = max([num_rel, *(i + 1 for i in by_id)])
    short = [by_id[i][1] if i in by_id else f"relation_{i}" for i in range(num_rel)]
    unique = len(set(short)) == len(short)
    names = [s if unique or i not in by_id else "___".join(by_id[i])
             for i, s in enumerate(short)]
    rel_types = torch.full((num_rel, 2), -1, dtype=torch.long)
    for i, (ht, _, tt) in by_id.items():
        rel_types[i] = torch.tensor([types.index(ht), types.index(tt)])
    return names, rel_types


def _build_heterogeneous(name: str, graph: dict[str, Any], splits: dict[str, Any]
                         ) -> OGBKnowledgeGraph:
    counts_by_type = {str(k): int(v) for k, v in graph["num_nodes_dict"].items()}
    types = sorted(counts_by_type)  # documented order: entity types sorted by name
    counts = torch.tensor([counts_by_type[t] for t in types], dtype=torch.long)
    offsets = torch.cumsum(counts, 0) - counts
    triples, cands = {}, {}
    num_rel = 0
    for key in ("train", *EVAL_SPLITS):
        s = _split_dict(splits[key], name, key)
        for k in ("head_type", "tail_type"):
            if k not in s:
                raise ValueError(f"{name}: split {key!r} lacks {k!r}; a heterogeneous split "
                                 "names the entity type of every head and tail")
        ht = _type_index(s["head_type"], types, f"{name} {key} head_type")
        tt = _type_index(s["tail_type"], types, f"{name} {key} tail_type")
        h = _as_long(s["head"], f"{name} {key} head").reshape(-1)
        r = _as_long(s["relation"], f"{name} {key} relation").reshape(-1)
        t = _as_long(s["tail"], f"{name} {key} tail").reshape(-1)
        _check_range(h, counts[ht], f"{name} {key} head (local ids of head_type)")
        _check_range(t, counts[tt], f"{name} {key} tail (local ids of tail_type)")
        triples[key] = torch.stack([h + offsets[ht], r, t + offsets[tt]], 1)
        num_rel = max(num_rel, int(r.max()) + 1 if r.numel() else 0)
        if key in EVAL_SPLITS:
            cands[key] = {}
            for k, ty in (("head_neg", ht), ("tail_neg", tt)):
                c = _as_long(s[k], f"{name} {key} {k}")
                if c.dim() != 2 or c.shape[0] != ty.numel():
                    raise ValueError(f"{name}: {key} {k} has shape {tuple(c.shape)}, expected "
                                     f"[{ty.numel()}, K]")
                _check_range(c, counts[ty][:, None], f"{name} {key} {k} (local ids of "
                             f"{k.split('_')[0]}_type)")
                cands[key][k] = c + offsets[ty][:, None]
    rel_names, rel_types = _relation_names(graph, num_rel)
    entity_type = torch.repeat_interleave(torch.arange(len(types)), counts)
    entity_names = [f"{ty}:{i}" for ty, c in zip(types, counts.tolist()) for i in range(c)]
    return OGBKnowledgeGraph(
        name=name, ogb_name=name, entity_names=entity_names, relation_names=rel_names,
        train=triples["train"], valid=triples["valid"], test=triples["test"],
        ogb_candidates=cands, entity_type_names=types, entity_type=entity_type,
        relation_types=rel_types,
    )


def _unpickler_reason(e: Exception) -> str:
    """The line of torch's long ``weights_only`` message that says what was refused."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL " in ln:
            name = ln.split("GLOBAL ", 1)[1].split()[0].rstrip(".,")
            return f"refused global {name!r}"
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error" in ln:
            return " ".join(lines[i : i + 2])[:300]
    return (lines[0] if lines else type(e).__name__)[:300]


# ------------------------------------------------------------------ entry point
def load_ogb(name: str, data_dir: str | os.PathLike | None = None, *,
             allow_download: bool = True, trust_pickle: bool = False) -> OGBKnowledgeGraph:
    """Load ``ogbl-biokg`` or ``ogbl-wikikg2`` through ogb's ``LinkPropPredDataset``.

    Args:
        name: ``"ogbl-biokg"`` or ``"ogbl-wikikg2"``.
        data_dir: folder holding ogb's ``ogbl_biokg/`` (or ``ogbl_wikikg2/``); default: env
            ``GNN_INN_DATA``, then the cache (see the module docstring).
        allow_download: let ogb download the dataset into the cache when no local copy exists.
        trust_pickle: load the split files with ``weights_only=False`` (only for files you
            trust; the default keeps ``weights_only=True`` with numpy arrays allow-listed).
            ogb's pickled processed cache is never read either way.

    Returns:
        :class:`OGBKnowledgeGraph` with ``train / valid / test`` ``LongTensor[M, 3]`` in global
        ids and ``ogb_candidates[split][head_neg | tail_neg]`` ``LongTensor[M, K]``.
    """
    key = name.lower()
    if key not in OGB_DATASETS:
        raise ValueError(f"unknown OGB dataset {name!r}; supported: {', '.join(OGB_DATASETS)}")
    root = find_ogb_root(key, data_dir)
    if root is None:
        if not allow_download:
            raise FileNotFoundError(
                f"{key}: no {ogb_folder_name(key)}/ under data_dir={data_dir!r}, GNN_INN_DATA or "
                f"{cache_dir()}, and downloading is off; point dataset.data_dir at the folder "
                f"that holds {ogb_folder_name(key)}/"
            )
        root = cache_dir()
        root.mkdir(parents=True, exist_ok=True)
        log.info("%s: no local copy; ogb downloads it into %s", key, root)
        downloaded = True
    else:
        _prepare_root(key, root)
        downloaded = False

    meta = _meta(key)
    folder = root / ogb_folder_name(key)
    try:
        with contextlib.redirect_stdout(_LogStream()):  # ogb's progress prints → log
            if downloaded:  # ogb fetches the files and builds the graph from them
                from ogb.linkproppred import LinkPropPredDataset

                graph = LinkPropPredDataset(name=key, root=str(root))[0]
            else:
                graph = _read_graph(folder, meta)
        splits = _read_splits(folder, meta, trust_pickle)
    except OSError as e:  # URLError, timeouts, an unwritable cache
        if not downloaded:
            raise
        looked = ", ".join(str(Path(b) / ogb_folder_name(key)) for b in
                           (data_dir, os.environ.get("GNN_INN_DATA"), cache_dir()) if b)
        raise FileNotFoundError(
            f"{key}: not found locally (looked for {looked}), and ogb's download failed "
            f"({getattr(e, 'reason', None) or e}); point dataset.data_dir / --data-dir at the "
            f"folder that holds {ogb_folder_name(key)}/") from None
    except EOFError as e:
        raise RuntimeError(
            f"{key}: ogb asked a question on stdin (large download, or an outdated folder under "
            f"{root}); run once interactively, or download the dataset by hand into "
            f"{root / ogb_folder_name(key)}"
        ) from e
    build = _build_heterogeneous if OGB_DATASETS[key].heterogeneous else _build_homogeneous
    kg = build(key, graph, splits)
    log.info("loaded %r", kg)
    return kg


__all__ = [
    "CANDIDATE_KEYS", "EVAL_SPLITS", "OGB_DATASETS", "OGBKnowledgeGraph", "OGBSpec",
    "find_ogb_root", "load_ogb", "ogb_folder_name",
]
