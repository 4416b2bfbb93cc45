"""OGB datasets (ogbl-biokg, ogbl-wikikg2): loading, the OGB protocol, training, submission.

The fixtures below write tiny datasets in ogb 1.3.6's on-disk layout so that the real
``ogb.linkproppred.LinkPropPredDataset(name, root=root)`` loads them offline: the
``RELEASE_v1.txt`` marker (without it ogb asks on stdin), an empty ``processed/`` (ogb saves
its processed graph there) and the raw file whose presence skips the download
(``raw/edge.csv.gz`` for wikikg2, ``raw/triplet-type-list.csv.gz`` for biokg). Split files are
written as tensors, or as numpy arrays pickled the way numpy 1.x did (like the real files).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import pickle
import statistics
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gnn_inn.config import Config
from gnn_inn.data import OGB_DATASETS, OGBKnowledgeGraph, load_dataset, load_ogb
from gnn_inn.evaluation import OGBEvalResult, evaluate_ogb, metrics_from_ranks, rank_targets
from gnn_inn.model import model_from_config
from gnn_inn.training import trainer_from_config

ROOT = Path(__file__).resolve().parents[2]

#: biokg-like: three entity types (the CSV lists them unsorted on purpose)
BIOKG_COUNTS = {"protein": 7, "disease": 4, "drug": 5}
#: (head type, relation, tail type) and OGB relation id (not in sorted order on purpose)
BIOKG_TRIPLETS = [
    (("drug", "drug-disease", "disease"), 2),
    (("drug", "drug-protein", "protein"), 0),
    (("protein", "protein-protein", "protein"), 3),
    (("disease", "disease-protein", "protein"), 1),
]
WIKI_N, WIKI_R = 30, 4
NUM_NEG = 20


def _csv_gz(path: Path, rows, header: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] if header else []
    lines += [",".join(str(v) for v in (row if isinstance(row, (list, tuple)) else [row]))
              for row in rows]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def _skeleton(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "RELEASE_v1.txt").write_text("")
    (folder / "processed").mkdir()


def _save_split(path: Path, split: dict, as_numpy: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in split.items():
        if isinstance(v, list):
            out[k] = np.array(v) if as_numpy else list(v)
        else:
            out[k] = v.numpy() if as_numpy else v
    torch.save(out, path)


def as_numpy1_pickle(path: Path) -> None:
    """Rewrite a ``torch.save`` file as numpy 1.x wrote it (``numpy.core.multiarray``), like
    the real OGB split files."""
    with zipfile.ZipFile(path) as z:
        members = [(i, z.read(i)) for i in z.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for info, data in members:
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            z.writestr(info, data)
    path.write_bytes(buf.getvalue())


def write_biokg(root: Path, *, seed: int = 0, as_numpy: bool = False,
                sizes=(12, 3, 3)) -> dict:
    """Write ``root/ogbl_biokg`` and return ``{"splits": {split: dict}, "counts": {...}}``."""
    g = torch.Generator().manual_seed(seed)
    folder = root / "ogbl_biokg"
    _skeleton(folder)
    raw = folder / "raw"
    types = list(BIOKG_COUNTS)
    _csv_gz(raw / "num-node-dict.csv.gz", [[BIOKG_COUNTS[t] for t in types]], header=types)
    _csv_gz(raw / "triplet-type-list.csv.gz", [list(k) for k, _ in BIOKG_TRIPLETS])
    splits: dict[str, dict[str, list]] = {s: {"head": [], "relation": [], "tail": [],
                                              "head_type": [], "tail_type": [], "head_neg": [],
                                              "tail_neg": []} for s in ("train", "valid", "test")}
    for (ht, rel, tt), rid in BIOKG_TRIPLETS:
        nh, nt = BIOKG_COUNTS[ht], BIOKG_COUNTS[tt]
        total = sum(sizes)
        pairs = torch.randperm(nh * nt, generator=g)[:total]
        h, t = pairs // nt, pairs % nt
        bounds = np.cumsum([0, *sizes])
        for s, lo, hi in zip(("train", "valid", "test"), bounds[:-1], bounds[1:]):
            d = splits[s]
            d["head"] += h[lo:hi].tolist()
            d["tail"] += t[lo:hi].tolist()
            d["relation"] += [rid] * int(hi - lo)
            d["head_type"] += [ht] * int(hi - lo)
            d["tail_type"] += [tt] * int(hi - lo)
            d["head_neg"] += torch.randint(nh, (int(hi - lo), NUM_NEG), generator=g).tolist()
            d["tail_neg"] += torch.randint(nt, (int(hi - lo), NUM_NEG), generator=g).tolist()
        sub = raw / "relations" / f"{ht}___{rel}___{tt}"
        ntr = sizes[0]
        _csv_gz(sub / "edge.csv.gz", list(zip(h[:ntr].tolist(), t[:ntr].tolist())))
        _csv_gz(sub / "num-edge-list.csv.gz", [ntr])
        _csv_gz(sub / "edge_reltype.csv.gz", [rid] * ntr)
    out = {}
    for s, d in splits.items():
        split = {k: torch.tensor(d[k], dtype=torch.long) for k in ("head", "relation", "tail")}
        split["head_type"], split["tail_type"] = d["head_type"], d["tail_type"]
        if s != "train":
            split["head_neg"] = torch.tensor(d["head_neg"], dtype=torch.long)
            split["tail_neg"] = torch.tensor(d["tail_neg"], dtype=torch.long)
        path = folder / "split" / "random" / f"{s}.pt"
        _save_split(path, split, as_numpy)
        if as_numpy:
            as_numpy1_pickle(path)
        out[s] = split
    return {"splits": out, "counts": dict(BIOKG_COUNTS)}


def write_wikikg2(root: Path, *, seed: int = 0, as_numpy: bool = False,
                  sizes=(60, 10, 10)) -> dict:
    """Write ``root/ogbl_wikikg2`` and return ``{"splits": {split: dict}}`` (global ids)."""
    g = torch.Generator().manual_seed(seed)
    folder = root / "ogbl_wikikg2"
    _skeleton(folder)
    raw = folder / "raw"
    total = sum(sizes)
    h = torch.randint(WIKI_N, (total,), generator=g)
    t = torch.randint(WIKI_N, (total,), generator=g)
    r = torch.randint(WIKI_R, (total,), generator=g)
    r[0] = WIKI_R - 1  # every relation id up to R - 1 occurs
    ntr = sizes[0]
    _csv_gz(raw / "edge.csv.gz", list(zip(h[:ntr].tolist(), t[:ntr].tolist())))
    _csv_gz(raw / "num-node-list.csv.gz", [WIKI_N])
    _csv_gz(raw / "num-edge-list.csv.gz", [ntr])
    _csv_gz(raw / "edge_reltype.csv.gz", r[:ntr].tolist())
    out = {}
    bounds = np.cumsum([0, *sizes])
    for s, lo, hi in zip(("train", "valid", "test"), bounds[:-1], bounds[1:]):
        split = {"head": h[lo:hi].clone(), "relation": r[lo:hi].clone(), "tail": t[lo:hi].clone()}
        if s != "train":
            split["head_neg"] = torch.randint(WIKI_N, (int(hi - lo), NUM_NEG), generator=g)
            split["tail_neg"] = torch.randint(WIKI_N, (int(hi - lo), NUM_NEG), generator=g)
        path = folder / "split" / "time" / f"{s}.pt"
        _save_split(path, split, as_numpy)
        if as_numpy:
            as_numpy1_pickle(path)
        out[s] = split
    return {"splits": out}


# ------------------------------------------------------------------ helpers
def _offsets(kg: OGBKnowledgeGraph) -> dict[str, int]:
    return {name: start for name, (start, _) in kg.entity_type_ranges.items()}


def _tiny_config(root: Path, name: str, **train) -> Config:
    return Config.from_dict({
        "seed": 0,
        "dataset": {"name": name, "data_dir": str(root)},
        "model": {"dim": 8, "encoder": {"name": "none"},
                  "decoder": {"name": "flow", "flow": "rotation", "conditioning": "table"}},
        "train": {"epochs": 1, "batch_size": 16, "loss": {"name": "1vsall"}, "device": "cpu",
                  "eval_every": 1, **train},
        "eval": {"batch_size": 7},
    })


def _own_ranks(model, kg, split: str) -> dict[str, torch.Tensor]:
    """Ranks of the true entity among ``[true] + negatives`` from full ``[M, N]`` scores and the
    project's realistic ranking (OGB's Evaluator ranks as (optimistic + pessimistic) / 2)."""
    triples = getattr(kg, split)
    h, r, t = triples.unbind(1)
    cands = kg.ogb_candidates[split]
    model.eval()
    with torch.no_grad():
        full = {"tail": model.score_tails(h, r), "head": model.score_heads(r, t)}
    out = {}
    for d, true in (("tail", t), ("head", h)):
        cols = torch.cat([true[:, None], cands[f"{d}_neg"]], 1)
        scores = full[d].gather(1, cols)
        out[d] = rank_targets(scores, torch.zeros(len(true), dtype=torch.long),
                              policy="realistic")
    return out


# ------------------------------------------------------------------ loading
@pytest.mark.parametrize("as_numpy", [False, True], ids=["tensors", "numpy1-arrays"])
def test_biokg_offsets_roundtrip_and_candidates(tmp_path, as_numpy):
    written = write_biokg(tmp_path, as_numpy=as_numpy)
    kg = load_dataset("ogbl-biokg", data_dir=str(tmp_path))
    assert isinstance(kg, OGBKnowledgeGraph) and kg.ogb_name == "ogbl-biokg"
    # types sorted by name, offsets = running sums of the counts in that order
    assert kg.entity_type_names == ["disease", "drug", "protein"]
    assert kg.entity_type_ranges == {"disease": (0, 4), "drug": (4, 9), "protein": (9, 16)}
    assert kg.num_entities == sum(BIOKG_COUNTS.values()) == 16
    assert kg.entity_type.tolist() == [0] * 4 + [1] * 5 + [2] * 7
    assert kg.entity_names[4] == "drug:0" and kg.entity_names[-1] == "protein:6"
    # relation ids are OGB's, names from the graph's (head type, relation, tail type) keys
    assert kg.relation_names == ["drug-protein", "disease-protein", "drug-disease",
                                 "protein-protein"]
    assert kg.relation_types.tolist() == [[1, 2], [0, 2], [1, 0], [2, 2]]
    off = _offsets(kg)
    for split, s in written["splits"].items():
        triples = getattr(kg, split)
        ho = torch.tensor([off[x] for x in s["head_type"]])
        to = torch.tensor([off[x] for x in s["tail_type"]])
        assert torch.equal(triples[:, 0] - ho, s["head"])
        assert torch.equal(triples[:, 1], s["relation"])
        assert torch.equal(triples[:, 2] - to, s["tail"])
        assert [kg.entity_type_names[i] for i in kg.entity_type[triples[:, 0]]] == s["head_type"]
        if split == "train":
            continue
        c = kg.ogb_candidates[split]
        assert c["head_neg"].shape == c["tail_neg"].shape == (len(s["head"]), NUM_NEG)
        assert torch.equal(c["head_neg"] - ho[:, None], s["head_neg"])
        assert torch.equal(c["tail_neg"] - to[:, None], s["tail_neg"])
        # negatives stay within the type of the entity they replace
        assert torch.equal(kg.entity_type[c["tail_neg"]],
                           kg.entity_type[triples[:, 2]][:, None].expand_as(c["tail_neg"]))
        assert torch.equal(kg.entity_type[c["head_neg"]],
                           kg.entity_type[triples[:, 0]][:, None].expand_as(c["head_neg"]))
    # the second load rebuilds the graph from the raw files again (ogb's pickled processed
    # cache is neither written nor read): same graph
    again = load_ogb("ogbl-biokg", tmp_path, allow_download=False)
    assert not (tmp_path / "ogbl_biokg" / "processed" / "data_processed").exists()
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(again, split), getattr(kg, split))
    assert again.relation_names == kg.relation_names


def test_wikikg2_homogeneous(tmp_path):
    written = write_wikikg2(tmp_path)
    kg = load_dataset("ogbl-wikikg2", data_dir=str(tmp_path))
    assert (kg.num_entities, kg.num_relations) == (WIKI_N, WIKI_R)
    assert kg.entity_type is None and kg.entity_type_names == [] and kg.relation_types is None
    for split, s in written["splits"].items():
        assert torch.equal(getattr(kg, split),
                           torch.stack([s["head"], s["relation"], s["tail"]], 1))
        if split != "train":
            for key in ("head_neg", "tail_neg"):
                assert torch.equal(kg.ogb_candidates[split][key], s[key])


def test_weights_only_stays_on_and_nothing_global_changes(tmp_path):
    write_biokg(tmp_path, as_numpy=True)
    split_file = tmp_path / "ogbl_biokg" / "split" / "random" / "valid.pt"
    with zipfile.ZipFile(split_file) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"cnumpy.core.multiarray\n_reconstruct" in pkl  # numpy 1.x names, as OGB's files
    with pytest.raises(pickle.UnpicklingError):  # a plain torch.load refuses numpy arrays
        torch.load(split_file)
    import ogb.linkproppred  # noqa: F401  (imports PyG, which allow-lists its own classes)

    def safe_globals() -> set[str]:
        return {repr(g) for g in torch.serialization.get_safe_globals()}

    safe_before = safe_globals()
    env_before = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    for _ in range(2):
        load_ogb("ogbl-biokg", tmp_path, allow_download=False)
    assert safe_globals() == safe_before
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == env_before
    with pytest.raises(pickle.UnpicklingError):  # still refused outside the loader
        torch.load(split_file)


def test_split_file_with_code_is_refused(tmp_path):
    """weights_only stays on for split files: a pickled object is an error that says what to
    do, and ``trust_pickle=True`` is the documented way in."""
    write_wikikg2(tmp_path)
    path = tmp_path / "ogbl_wikikg2" / "split" / "time" / "valid.pt"
    split = torch.load(path)
    split["extra"] = Path("x")  # any non-allow-listed object
    torch.save(split, path)
    with pytest.raises(pickle.UnpicklingError, match="trust_pickle=True"):
        load_ogb("ogbl-wikikg2", tmp_path, allow_download=False)
    kg = load_ogb("ogbl-wikikg2", tmp_path, allow_download=False, trust_pickle=True)
    assert kg.ogb_candidates["valid"]["tail_neg"].shape == (10, NUM_NEG)


def test_missing_release_marker_is_an_error_not_a_prompt(tmp_path):
    write_wikikg2(tmp_path)
    (tmp_path / "ogbl_wikikg2" / "RELEASE_v1.txt").unlink()
    with pytest.raises(FileNotFoundError, match="RELEASE_v1.txt"):
        load_ogb("ogbl-wikikg2", tmp_path, allow_download=False)


def test_no_local_copy_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("GNN_INN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GNN_INN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="ogbl_biokg"):
        load_ogb("ogbl-biokg", tmp_path / "elsewhere", allow_download=False)
    with pytest.raises(ValueError, match="ogbl-biokg, ogbl-wikikg2"):
        load_ogb("ogbl-ppa", tmp_path)


def test_candidates_outside_their_type_are_rejected(tmp_path):
    write_biokg(tmp_path)
    path = tmp_path / "ogbl_biokg" / "split" / "random" / "test.pt"
    split = torch.load(path)
    split["tail_neg"][0, 0] = 99  # no type has 100 entities
    torch.save(split, path)
    with pytest.raises(ValueError, match="test tail_neg"):
        load_ogb("ogbl-biokg", tmp_path, allow_download=False)


@pytest.mark.skipif(not os.environ.get("GNN_INN_DATA")
                    or not (Path(os.environ.get("GNN_INN_DATA", "")) / "ogbl_biokg").is_dir(),
                    reason="real ogbl-biokg not under GNN_INN_DATA")
def test_real_biokg_counts():
    kg = load_ogb("ogbl-biokg", os.environ["GNN_INN_DATA"], allow_download=False)
    spec = OGB_DATASETS["ogbl-biokg"]
    assert (kg.num_entities, kg.num_relations) == (spec.num_entities, spec.num_relations)
    assert kg.entity_type_names == ["disease", "drug", "function", "protein", "sideeffect"]
    assert kg.ogb_candidates["test"]["tail_neg"].shape == (kg.test.shape[0], 500)


# ------------------------------------------------------------------ protocol
@pytest.mark.parametrize("name", ["ogbl-biokg", "ogbl-wikikg2"])
def test_evaluate_ogb_equals_own_ranking_on_the_same_candidates(tmp_path, name):
    (write_biokg if name == "ogbl-biokg" else write_wikikg2)(tmp_path)
    kg = load_ogb(name, tmp_path, allow_download=False)
    model = model_from_config(_tiny_config(tmp_path, name), kg)
    for split in ("valid", "test"):
        res = evaluate_ogb(model, kg, split, batch_size=5)
        assert isinstance(res, OGBEvalResult) and res.num_candidates == NUM_NEG
        own = _own_ranks(model, kg, split)
        for d in ("head", "tail"):
            assert torch.equal(res.ranks[d], own[d])
            assert res.metrics(d)["mrr"] == pytest.approx(metrics_from_ranks(own[d])["mrr"],
                                                          rel=1e-6)
        both = metrics_from_ranks(torch.cat([own["head"], own["tail"]]))
        for key in ("mrr", "hits@1", "hits@3", "hits@10"):
            assert res.metrics()[key] == pytest.approx(both[key], rel=1e-6)
            # "both" is the mean of the two directions (equal sizes)
            assert res.metrics()[key] == pytest.approx(
                (res.metrics("head")[key] + res.metrics("tail")[key]) / 2, rel=1e-6)


class _TiedScorer:
    """Scores with many exact ties: ``(entity · 7 + relation) mod levels`` (or constant)."""

    def __init__(self, levels: int) -> None:
        self.levels = levels

    def score_candidates(self, h, r, t, cand, direction):
        if self.levels == 1:
            return torch.zeros(cand.shape)
        return ((cand * 7 + r[:, None]) % self.levels).float()


@pytest.mark.parametrize("levels", [1, 3])
def test_ogb_tie_policy_is_the_realistic_rank(tmp_path, levels):
    """OGB's Evaluator ranks 0.5·(#{neg > pos} + #{neg ≥ pos}) + 1: the mean of the
    optimistic and pessimistic ranks, i.e. the project's realistic rank."""
    write_biokg(tmp_path)
    kg = load_ogb("ogbl-biokg", tmp_path, allow_download=False)
    scorer = _TiedScorer(levels)
    res = evaluate_ogb(scorer, kg, "test", batch_size=4)
    triples = kg.test
    for d, true in (("tail", triples[:, 2]), ("head", triples[:, 0])):
        cand = torch.cat([true[:, None], kg.ogb_candidates["test"][f"{d}_neg"]], 1)
        scores = scorer.score_candidates(triples[:, 0], triples[:, 1], triples[:, 2], cand, d)
        target = torch.zeros(len(true), dtype=torch.long)
        realistic = rank_targets(scores, target, policy="realistic")
        opt = rank_targets(scores, target, policy="optimistic")
        pes = rank_targets(scores, target, policy="pessimistic")
        assert torch.equal(res.ranks[d], realistic)
        assert torch.equal(realistic, (opt + pes) / 2)
        if levels == 1:  # constant scores: chance rank (K + 2) / 2, never 1
            assert torch.all(res.ranks[d] == (NUM_NEG + 2) / 2)
    if levels == 1:
        assert res.metrics()["mrr"] == pytest.approx(2 / (NUM_NEG + 2), rel=1e-6)
    assert json.dumps(res.to_dict())  # JSON-serialisable


def test_evaluate_ogb_needs_candidates(tmp_path):
    write_wikikg2(tmp_path)
    kg = load_ogb("ogbl-wikikg2", tmp_path, allow_download=False)
    with pytest.raises(ValueError, match="no OGB candidates for split 'train'"):
        evaluate_ogb(_TiedScorer(1), kg, "train")


# ------------------------------------------------------------------ training
def test_trainer_evaluates_with_the_ogb_protocol(tmp_path):
    write_biokg(tmp_path / "data")
    cfg = _tiny_config(tmp_path / "data", "ogbl-biokg", epochs=2)
    trainer = trainer_from_config(cfg, out_dir=tmp_path / "run", quiet=True)
    res = trainer.fit()
    assert isinstance(trainer.evaluate("valid"), OGBEvalResult)
    direct = evaluate_ogb(trainer.model, trainer.kg, "test")
    assert res["test"]["mrr"] == pytest.approx(direct.metrics()["mrr"], rel=1e-9)
    assert 0 < res["valid"]["mrr"] <= 1 and res["epochs"] == 2
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test"]["mrr"] == pytest.approx(res["test"]["mrr"])


OGB_CONFIGS = sorted((ROOT / "configs").glob("ogbl-*.yaml"))


def test_ogb_configs_exist():
    names = {p.name for p in OGB_CONFIGS}
    assert {"ogbl-biokg_none_flow_rotation.yaml", "ogbl-wikikg2_none_flow_rotation.yaml"} <= names
    contexts = [Config.load(p).model.decoder.get("conditioning") for p in OGB_CONFIGS
                if "wikikg2" in p.name]
    assert "context" in contexts


@pytest.mark.parametrize("path", OGB_CONFIGS, ids=lambda p: p.name)
def test_shipped_ogb_config_trains_on_the_fixture(tmp_path, path):
    """Each ogbl-* config builds its model and trains an epoch (shrunk) on the fixture."""
    cfg0 = Config.load(path)
    (write_biokg if cfg0.dataset.name == "ogbl-biokg" else write_wikikg2)(tmp_path / "data")
    cfg = Config.load(path, [f"dataset.data_dir={tmp_path / 'data'}", "model.dim=8",
                             "train.epochs=1", "train.device=cpu", "train.batch_size=32",
                             "eval.batch_size=8"])
    res = trainer_from_config(cfg, quiet=True).fit()
    assert 0 < res["test"]["mrr"] <= 1


# ------------------------------------------------------------------ submission script
def _load_script():
    spec = importlib.util.spec_from_file_location("ogb_submit", ROOT / "scripts" / "ogb_submit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ogb_submit_two_seeds_and_resume(tmp_path, capsys):
    data = tmp_path / "data"
    write_biokg(data)
    config = tmp_path / "tiny.yaml"
    cfg = _tiny_config(data, "ogbl-biokg").to_dict()
    cfg["dataset"]["data_dir"] = None
    config.write_text(json.dumps(cfg))  # JSON is YAML
    out = tmp_path / "sub"
    script = _load_script()
    argv = [str(config), "--out", str(out), "--seeds", "0", "1", "--data-dir", str(data)]
    summary = script.main([*argv, "--keep-checkpoints"])

    per_seed = [json.loads((out / f"seed_{s}" / "results.json").read_text()) for s in (0, 1)]
    test_mrr = [r["test"]["mrr"] for r in per_seed]
    assert summary["seeds"] == [0, 1]
    assert summary["test_mrr"]["mean"] == pytest.approx(statistics.fmean(test_mrr))
    assert summary["test_mrr"]["std"] == pytest.approx(statistics.stdev(test_mrr))
    assert summary["valid_mrr"]["std"] == pytest.approx(
        statistics.stdev([r["valid"]["mrr"] for r in per_seed]))
    kg = load_ogb("ogbl-biokg", data, allow_download=False)
    model = model_from_config(Config.from_dict(cfg), kg)
    assert summary["params"] == sum(p.numel() for p in model.parameters())
    assert summary["ogb_version"] and summary["hardware"] and "--seeds 0 1" in summary["command"]
    assert summary["config"]["model"]["dim"] == 8
    saved = json.loads((out / "submission.json").read_text())
    assert saved["test_mrr"] == summary["test_mrr"]
    md = (out / "submission.md").read_text()
    assert "Test MRR" in md and "±" in md and "ogbl-biokg" in md

    # rerun: finished seeds are read back, not retrained
    stamps = [(out / f"seed_{s}" / "results.json").stat().st_mtime_ns for s in (0, 1)]
    again = script.main([*argv, "--keep-checkpoints"])
    assert [(out / f"seed_{s}" / "results.json").stat().st_mtime_ns for s in (0, 1)] == stamps
    assert again["test_mrr"] == summary["test_mrr"]
    # a seed without results.json continues from its last.pt (already at the last epoch)
    (out / "seed_1" / "results.json").unlink()
    third = script.main([*argv, "--keep-checkpoints"])
    assert third["per_seed"][1]["test_mrr"] == pytest.approx(test_mrr[1])
    assert "seed 1: valid MRR" in capsys.readouterr().out
    # without --keep-checkpoints finished seeds keep slim best.pt files that still load
    script.main(argv)
    from gnn_inn.training import load_checkpoint, load_trained

    for s in (0, 1):
        assert not (out / f"seed_{s}" / "last.pt").exists()
        assert load_checkpoint(out / f"seed_{s}" / "best.pt")["optimizer"] is None
    trained, kg2, _ = load_trained(out / "seed_0" / "best.pt", data_dir=str(data))
    assert evaluate_ogb(trained, kg2, "test").metrics()["mrr"] == pytest.approx(test_mrr[0])
    # another config in the same folder is refused
    cfg["model"]["dim"] = 4
    config.write_text(json.dumps(cfg))
    with pytest.raises(SystemExit, match="another config"):
        script.main(argv)
