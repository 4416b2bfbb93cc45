"""Every shipped config parses strictly and names registered parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnn_inn.config import Config
from gnn_inn.data.datasets import DATASETS
from gnn_inn.data.ogb import OGB_DATASETS
from gnn_inn.decoders import DECODERS
from gnn_inn.encoders import ENCODERS
from gnn_inn.flows import FLOWS
from gnn_inn.training.losses import LOSSES

ROOT = Path(__file__).resolve().parents[1] / "configs"
#: the full files at the top of configs/ and every piece in its data/, model/, train/ folders
CONFIGS = sorted(p for p in ROOT.glob("*.yaml") if p.name != "former.yaml")
PIECES = sorted(ROOT.glob("*/*.yaml"))


def test_configs_exist():
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_names_registered_parts(path):
    cfg = Config.load(path)
    # OGB configs are only parsed here (no download); tests/data/test_ogb.py builds and trains
    # each of them on a tiny offline fixture
    assert cfg.dataset.name in DATASETS or cfg.dataset.name in OGB_DATASETS \
        or cfg.dataset.name == "synthetic"
    assert cfg.model.encoder["name"] in ENCODERS
    dec = cfg.model.decoder
    assert dec["name"] in DECODERS
    if dec["name"] == "flow":
        assert dec["flow"] in FLOWS
    assert cfg.train.loss["name"] in LOSSES


@pytest.mark.parametrize("path", PIECES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_piece_parses_alone_and_keeps_to_its_section(path):
    """``data/`` pieces set only ``dataset``, ``model/`` only ``model``, ``train/`` only
    ``train`` and ``eval``; each loads on its own (defaults fill the rest)."""
    from gnn_inn.config import load_data

    allowed = {"data": {"dataset"}, "model": {"model"}, "train": {"train", "eval"}}
    assert set(load_data(path)) <= allowed[path.parent.name]
    Config.load(path)
