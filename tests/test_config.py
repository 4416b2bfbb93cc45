"""Config files: strict keys, overrides, round trip."""

from __future__ import annotations

import pytest

from gnn_inn.config import Config, ConfigError


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_load_and_override(tmp_path):
    p = _write(tmp_path, "seed: 3\ndataset: {name: umls}\ntrain: {epochs: 7, lr: 0.01}\n")
    cfg = Config.load(p, ["train.lr=0.5", "model.decoder.name=transe", "model.decoder.p=2"])
    assert cfg.seed == 3 and cfg.dataset.name == "umls"
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.5
    assert cfg.model.decoder == {"name": "transe", "p": 2}


def test_round_trip(tmp_path):
    cfg = Config.load(_write(tmp_path, "model: {dim: 32}\n"))
    cfg.dump(tmp_path / "out.yaml")
    assert Config.load(tmp_path / "out.yaml") == cfg


def test_unknown_key_names_path_and_file(tmp_path):
    p = _write(tmp_path, "train: {lrr: 0.1}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'train\.lrr'"):
        Config.load(p)


def test_bad_type_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        Config.load(_write(tmp_path, "train: {epochs: 1.5}\n"))
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: invalid YAML"):
        Config.load(_write(tmp_path, "seed: 1\ntrain: {epochs: [\n"))
    with pytest.raises(ConfigError, match="key=value"):
        Config.load(_write(tmp_path, "seed: 1\n"), ["train.lr"])
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "missing.yaml")
