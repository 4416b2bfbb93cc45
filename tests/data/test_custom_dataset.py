"""``dataset.name`` + ``--data-dir``: any folder name under the data folder loads as a dataset."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gnn_inn.cli import main
from gnn_inn.config import Config
from gnn_inn.data import DATASETS, load_dataset
from gnn_inn.model import load_kg

DATA = os.environ.get("GNN_INN_DATA")
needs_data = pytest.mark.skipif(not DATA, reason="GNN_INN_DATA not set")

#: a tiny graph as the benchmarks distribute theirs: tab-separated, CRLF line endings, and an
#: entity ("zeta") that appears only in test
SPLITS = {
    "train": ["alpha\tlikes\tbeta", "beta\tlikes\tgamma", "gamma\thates\talpha",
              "alpha\thates\tdelta", "delta\tlikes\tbeta"],
    "valid": ["beta\thates\tdelta"],
    "test": ["gamma\tlikes\tzeta"],
}


def write_tiny(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for split, rows in SPLITS.items():
        (folder / f"{split}.txt").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    return folder


def test_unregistered_name_under_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("GNN_INN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no folder of that name in the working directory
    root = tmp_path / "kgs"
    write_tiny(root / "my-graph")
    kg = load_dataset("my-graph", data_dir=str(root))
    assert kg.name == "my-graph"
    assert kg.num_entities == 5 and kg.num_relations == 2
    assert (kg.train.shape[0], kg.valid.shape[0], kg.test.shape[0]) == (5, 1, 1)
    assert "zeta" in kg.entity_names and all("\r" not in n for n in kg.entity_names)
    # the same through the config (dataset.name) and through the env variable
    cfg = Config.from_dict({"dataset": {"name": "my-graph"}})
    assert load_kg(cfg, data_dir=str(root)).num_entities == 5
    monkeypatch.setenv("GNN_INN_DATA", str(root))
    assert load_dataset("my-graph").num_entities == 5


def test_unknown_name_error_lists_registered_names_and_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GNN_INN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "kgs"
    write_tiny(root / "other")
    with pytest.raises(ValueError) as info:
        load_dataset("my-graph", data_dir=str(root))
    msg = str(info.value)
    assert "unknown dataset 'my-graph'" in msg
    assert all(name in msg for name in DATASETS) and "synthetic" in msg
    assert f"{root / 'my-graph'}/" in msg


def test_folder_with_missing_split_names_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("GNN_INN_DATA", raising=False)
    folder = write_tiny(tmp_path / "kgs" / "broken")
    (folder / "valid.txt").unlink()
    monkeypatch.chdir(tmp_path / "kgs")
    with pytest.raises(FileNotFoundError, match="missing valid.txt"):
        load_dataset("broken", data_dir=str(tmp_path / "kgs"))


def test_registered_name_keeps_its_digest_check(tmp_path, monkeypatch):
    monkeypatch.delenv("GNN_INN_DATA", raising=False)
    write_tiny(tmp_path / "nations")  # right place, wrong files
    with pytest.raises(ValueError, match="sha256 mismatch for nations"):
        load_dataset("nations", data_dir=str(tmp_path))


@needs_data
def test_copied_benchmark_under_new_name_via_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GNN_INN_DATA", raising=False)
    shutil.copytree(Path(DATA) / "nations", tmp_path / "nations-copy")
    assert main(["stats", "nations-copy", "--data-dir", str(tmp_path)]) == 0
    stats = json.loads(capsys.readouterr().out)
    ref = load_dataset("nations", data_dir=DATA).stats()
    assert stats["dataset"] == "nations-copy"
    assert {k: stats[k] for k in ref} == ref
