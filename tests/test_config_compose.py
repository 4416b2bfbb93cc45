"""Config composition: ``base:`` pieces, several ``--config`` files, ``gnn-inn config``, and every
config configs/ ever shipped, rebuilt from its pieces to exactly its recorded settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from gnn_inn.cli import main
from gnn_inn.config import Config, ConfigError
from gnn_inn.data.graph import KnowledgeGraph
from gnn_inn.data.synthetic import make_synthetic
from gnn_inn.model import model_from_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
RECORDED = json.loads((ROOT / "tests" / "data" / "resolved_configs.json").read_text())
FORMER = yaml.safe_load((CONFIGS / "former.yaml").read_text())
TOP = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "former.yaml")


#: settings added after the record was taken, with the default every former config must
#: resolve them to (a new option must not change what an old config trains)
ADDED_SINCE_RECORDING = {("train", "tensorboard"): False}
#: top-level configs written after the recording (the campaign's CPU-budget flagships)
ADDED_TOP = {"fb15k-237_cpu_budget.yaml", "wn18rr_cpu_budget.yaml"}


def _canon(d: dict) -> str:
    """Type-exact text of a settings dict (``5`` and ``5.0`` differ); settings added since the
    record must hold their default and are left out."""
    d = json.loads(json.dumps(d))
    for (section, key), default in ADDED_SINCE_RECORDING.items():
        if key in d.get(section, {}):
            assert d[section].pop(key) == default, f"{section}.{key} is not its default"
    return json.dumps(d, sort_keys=True)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


# ------------------------------------------------------------------ merge rules
def test_bases_then_own_keys_then_overrides(tmp_path):
    _write(tmp_path / "configs", {
        "data/d.yaml": "dataset: {name: umls}\n",
        "model/m.yaml": "model: {dim: 32, decoder: {name: flow, flow: rotation, p: 2.0}}\n",
        "train/t.yaml": "train: {epochs: 7, lr: 0.01}\n",
        "train/t2.yaml": "base: t.yaml\ntrain: {epochs: 9}\n",  # relative to its own folder
        "run.yaml": "base: [data/d.yaml, model/m.yaml, train/t2.yaml]\n"
                    "model: {decoder: {p: 1.0}}\n",
    })
    cfg = Config.load(tmp_path / "configs" / "run.yaml", ["train.lr=0.5"])
    assert cfg.dataset.name == "umls" and cfg.model.dim == 32
    assert cfg.model.decoder == {"name": "flow", "flow": "rotation", "p": 1.0}  # deep merge
    assert (cfg.train.epochs, cfg.train.lr) == (9, 0.5)
    assert cfg.train.batch_size == 128  # defaults still fill what no piece sets


def test_several_files_merge_in_order_and_a_new_part_name_replaces_the_spec(tmp_path):
    _write(tmp_path, {
        "a.yaml": "model: {decoder: {name: flow, flow: rotation, patterns: auto}}\n"
                  "train: {epochs: 3}\n",
        "b.yaml": "model: {decoder: {name: transe}}\ntrain: {epochs: 4}\n",
    })
    cfg = Config.load([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert cfg.model.decoder == {"name": "transe"} and cfg.train.epochs == 4
    cfg = Config.load([tmp_path / "b.yaml", tmp_path / "a.yaml"])
    assert cfg.model.decoder["name"] == "flow" and cfg.train.epochs == 3


def test_base_found_under_the_configs_root(tmp_path):
    _write(tmp_path / "configs", {
        "data/d.yaml": "dataset: {name: nations}\n",
        "model/m.yaml": "base: data/d.yaml\nmodel: {dim: 16}\n",  # not beside m.yaml: the root
    })
    cfg = Config.load(tmp_path / "configs" / "model" / "m.yaml")
    assert cfg.dataset.name == "nations" and cfg.model.dim == 16


def test_base_cycle_is_refused_naming_the_chain(tmp_path):
    _write(tmp_path, {"a.yaml": "base: b.yaml\n", "b.yaml": "base: [c.yaml]\n",
                      "c.yaml": "base: a.yaml\n"})
    with pytest.raises(ConfigError, match=r"base cycle: .*a\.yaml -> .*b\.yaml -> .*c\.yaml "
                                          r"-> .*a\.yaml"):
        Config.load(tmp_path / "a.yaml")


def test_missing_base_names_the_file_that_refers_to_it(tmp_path):
    _write(tmp_path, {"a.yaml": "base: [b.yaml]\n", "b.yaml": "base: [gone.yaml]\n"})
    with pytest.raises(ConfigError, match=r"b\.yaml: base 'gone\.yaml' not found"):
        Config.load(tmp_path / "a.yaml")
    _write(tmp_path, {"c.yaml": "base: {x: 1}\n"})
    with pytest.raises(ConfigError, match=r"c\.yaml: base must be a file path or a list"):
        Config.load(tmp_path / "c.yaml")


def test_piece_errors_name_the_piece(tmp_path):
    _write(tmp_path, {"dup.yaml": "train:\n  lr: 0.1\n  lr: 0.2\n", "a.yaml": "base: dup.yaml\n",
                      "unk.yaml": "train: {epohcs: 3}\n", "b.yaml": "base: unk.yaml\n",
                      "bad.yaml": "train: {epochs: 1.5}\n", "c.yaml": "base: bad.yaml\n"})
    with pytest.raises(ConfigError, match=r"dup\.yaml:3: invalid YAML: duplicate key 'lr'"):
        Config.load(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match=r"unk\.yaml: unknown key 'train\.epohcs'"):
        Config.load(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml: train\.epochs must be int"):
        Config.load(tmp_path / "c.yaml")


def test_pieces_read_yaml12_floats_and_a_bom(tmp_path):
    (tmp_path / "t.yaml").write_bytes("\ufefftrain: {lr: 3e-3, weight_decay: 1E-6}\n"
                                      .encode("utf-8"))
    _write(tmp_path, {"a.yaml": "base: t.yaml\n"})
    cfg = Config.load(tmp_path / "a.yaml")
    assert cfg.train.lr == 0.003 and cfg.train.weight_decay == 1e-6


# ------------------------------------------------------------------ shipped configs
def test_top_level_holds_few_full_files_built_from_pieces():
    assert 10 <= len(TOP) <= 30
    for p in TOP:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        assert data.get("base"), f"{p.name} is not built from pieces"
    pieces = [p for d in ("data", "model", "train") for p in (CONFIGS / d).glob("*.yaml")]
    assert len(pieces) >= 3 and not list(CONFIGS.glob("*/*/*.yaml"))


def test_every_former_config_is_listed_and_reproduced_exactly():
    assert set(FORMER) == set(RECORDED) and len(RECORDED) == 106
    for name, pieces in FORMER.items():
        assert _canon(Config.load([CONFIGS / p for p in pieces]).to_dict()) \
            == _canon(RECORDED[name]), name
        # a former name that is no longer a file still loads, through former.yaml
        assert _canon(Config.load(CONFIGS / name).to_dict()) == _canon(RECORDED[name]), name
    for p in TOP:  # the kept files are unchanged too; only the listed ones are new
        if p.name in ADDED_TOP:
            continue
        assert _canon(Config.load(p).to_dict()) == _canon(RECORDED[p.name]), p.name


def test_config_command_prints_the_resolved_config(capsys):
    pieces = [str(CONFIGS / p) for p in FORMER["umls_none_flow_rotation.yaml"]]
    assert main(["config", *pieces, "--set", "train.epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = dict(RECORDED["umls_none_flow_rotation.yaml"])
    expected["train"] = {**expected["train"], "epochs": 3}
    assert _canon(printed) == _canon(expected)
    assert main(["config", str(CONFIGS / "no_such.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_train_takes_several_config_files(tmp_path, monkeypatch):
    seen = {}

    def fake_train(args, config, out):
        seen["config"], seen["out"] = config, out
        return 0

    monkeypatch.setattr("gnn_inn.cli._train", fake_train)
    pieces = [str(CONFIGS / p) for p in FORMER["kinship_none_transe.yaml"]]
    out = tmp_path / "run"
    assert main(["train", "--config", pieces[0], "--config", *pieces[1:], "--out", str(out)]) == 0
    assert _canon(seen["config"].to_dict()) == _canon(RECORDED["kinship_none_transe.yaml"])


def test_config_paths_named_in_the_project_load():
    """Every ``configs/....yaml`` the README, Makefile, scripts and campaigns name is a file or a
    former name ``configs/former.yaml`` lists."""
    import re

    texts = [ROOT / "README.md", ROOT / "Makefile", *(ROOT / "scripts").rglob("*.py"),
             *(ROOT / "scripts").rglob("*.yaml")]
    named = {m for p in texts if p.is_file()
             for m in re.findall(r"configs/[\w./-]+?\.yaml", p.read_text(encoding="utf-8"))}
    assert "configs/quickstart.yaml" in named
    for path in sorted(named):
        assert (ROOT / path).is_file() or Path(path).name in FORMER, path


# ------------------------------------------------------------------ every model builds
#: relation counts of the datasets (a random stand-in graph has as many)
NUM_RELATIONS = {"umls": 46, "nations": 55, "kinship": 25, "fb15k-237": 237, "wn18rr": 11,
                 "ogbl-biokg": 51, "ogbl-wikikg2": 535}


def _stand_in(name: str) -> KnowledgeGraph:
    """A 40-entity random graph with the dataset's number of relations (the real synthetic
    suite for ``synthetic``)."""
    if name == "synthetic":
        return make_synthetic(num_entities=62)
    g = torch.Generator().manual_seed(0)
    r = NUM_RELATIONS[name]
    n = 40
    train = torch.stack([torch.randint(n, (4 * r,), generator=g), torch.arange(4 * r) % r,
                         torch.randint(n, (4 * r,), generator=g)], 1)
    return KnowledgeGraph(name=name, entity_names=[f"e{i}" for i in range(n)],
                          relation_names=[f"r{i}" for i in range(r)], train=train,
                          valid=train[:5], test=train[5:10])


_GRAPHS: dict[str, KnowledgeGraph] = {}


@pytest.mark.parametrize("name", sorted(FORMER))
def test_model_of_every_config_builds_and_scores(name):
    """Every former config (the top-level files among them) builds its model on a stand-in
    graph and scores a query: ``[2, num_entities]`` finite scores."""
    cfg = Config.load(CONFIGS / name)
    kg = _GRAPHS.setdefault(cfg.dataset.name, _stand_in(cfg.dataset.name))
    model = model_from_config(cfg, kg).eval()
    with torch.no_grad():
        scores = model.score_tails(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert scores.shape == (2, kg.num_entities) and torch.isfinite(scores).all()
