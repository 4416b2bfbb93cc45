"""The tools around a run: ``gnn-inn plot``, ``gnn-inn export``, TensorBoard logging and the
progress bars. Each trains a tiny model on a tiny graph written into ``tmp_path``."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gnn_inn.cli import main
from gnn_inn.config import Config, ConfigError
from helpers import write_graph

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


CFG = """
seed: 0
dataset: {name: toy}
model: {dim: 8, encoder: ENCODER, decoder: {name: distmult}}
train: {epochs: 2, batch_size: 64, lr: 0.01, eval_every: 1, patience: 0, device: cpu,
        loss: {name: 1vsall}, tensorboard: TB}
eval: {batch_size: 64}
"""


def train(tmp_path: Path, *, tensorboard: bool, encoder: str = "{name: none}",
          name: str = "run") -> Path:
    data = tmp_path / "data"
    if not data.exists():
        write_graph(data)
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(CFG.replace("ENCODER", encoder).replace("TB", str(tensorboard).lower()))
    out = tmp_path / name
    assert main(["train", "--config", str(cfg), "--out", str(out), "--data-dir", str(data),
                 "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    pytest.importorskip("tensorboard")
    return train(tmp_path_factory.mktemp("tools"), tensorboard=True)


# ------------------------------------------------------------------------------------ plot
def test_plot_writes_a_png(run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    capsys.readouterr()
    target = tmp_path / "figs" / "curves.png"
    assert main(["plot", str(run), "--out", str(target)]) == 0
    assert json.loads(capsys.readouterr().out) == {"plot": str(target)}
    blob = target.read_bytes()
    assert blob[:8] == PNG_MAGIC and b"IEND" in blob[-16:]
    width, height = int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big")
    assert (width, height) == (1000, 400)
    # default place: beside metrics.jsonl
    assert main(["plot", str(run)]) == 0
    assert (run / "curves.png").read_bytes()[:8] == PNG_MAGIC


def test_plot_errors(tmp_path, capsys, monkeypatch):
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "metrics.jsonl: no such file" in err and str(tmp_path) in err
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.5}\nnot json\n'
                                            '{"epoch": 3, "loss": 0.4}\n')
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl:2: not a metrics record" in capsys.readouterr().err
    # without matplotlib: say what to install
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(tmp_path)]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err


def test_plot_skips_a_truncated_last_line(tmp_path):
    pytest.importorskip("matplotlib")
    from gnn_inn.training.plot import read_metrics

    (tmp_path / "metrics.jsonl").write_text(
        '{"epoch": 1, "loss": 0.5, "valid": {"mrr": 0.2, "hits@10": 0.5}}\n{"epoch": 2, "lo')
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1]


# ------------------------------------------------------------------------------ tensorboard
def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_file_when_on(run):
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    scalars = _scalars(run / "tensorboard")
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [s for s, _ in scalars["train/loss"]] == [1, 2]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["loss"] for r in records])
    assert [v for _, v in scalars["valid/mrr"]] == pytest.approx(
        [r["valid"]["mrr"] for r in records])
    assert {"train/lr", "valid/hits@10"} <= set(scalars)
    assert scalars["train/lr"][0][1] == pytest.approx(0.01)


def test_tensorboard_nothing_when_off(tmp_path):
    out = train(tmp_path, tensorboard=False)
    assert (out / "metrics.jsonl").is_file()
    assert not (out / "tensorboard").exists()


def test_tensorboard_key_is_checked_and_needs_the_package(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="train.tensorboard must be"):
        Config.from_dict({"train": {"tensorboard": "yes"}})
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    data = write_graph(tmp_path / "data")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CFG.replace("ENCODER", "{name: none}").replace("TB", "true"))
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--data-dir", str(data),
                 "--quiet"]) == 2
    assert not (out / "last.pt").exists()  # refused at start, before any epoch


# ----------------------------------------------------------------------------------- export
def _load(folder: Path, stem: str, metadata: str) -> tuple[np.ndarray, list[str]]:
    arr = np.load(folder / f"{stem}.npy")
    assert np.allclose(np.loadtxt(folder / f"{stem}.tsv", delimiter="\t", ndmin=2), arr,
                       rtol=1e-6, atol=1e-7)
    names = (folder / metadata).read_text(encoding="utf-8").splitlines()
    return arr, names


def test_export_lookup_table(run, tmp_path, capsys):
    from gnn_inn.training import load_trained

    capsys.readouterr()
    out = tmp_path / "emb"
    data = str(run.parent / "data")
    assert main(["export", str(run / "best.pt"), "--out", str(out), "--data-dir", data]) == 0
    summary = json.loads(capsys.readouterr().out)
    model, kg, _ = load_trained(run / "best.pt", data_dir=data)
    ent, names = _load(out, "entity_embeddings", "metadata.tsv")
    assert ent.shape == (kg.num_entities, 8) and ent.dtype == np.float32
    assert names == kg.entity_names and "entity with space" in names
    assert np.allclose(ent, model.encoder.weight.detach().numpy())
    rel, rnames = _load(out, "relation_embeddings", "relation_metadata.tsv")
    assert rel.shape == (kg.num_relations, 8) and rnames == kg.relation_names
    assert np.allclose(rel, model.decoder.relation.detach().numpy())
    assert summary["entities"]["shape"] == [kg.num_entities, 8]
    # the projector's own parser reads the config; every file it names exists
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    config = text_format.Parse((out / "projector_config.pbtxt").read_text(),
                               projector_config_pb2.ProjectorConfig())
    assert [e.tensor_name for e in config.embeddings] == ["entity", "relation"]
    assert config.embeddings[0].metadata_path == "metadata.tsv"
    for e in config.embeddings:
        assert (out / e.tensor_path).is_file() and (out / e.metadata_path).is_file()
    # default folder: beside the checkpoint
    assert main(["export", str(run / "best.pt"), "--data-dir", data]) == 0
    assert (run / "embeddings" / "entity_embeddings.npy").is_file()


def test_export_encoder_output(tmp_path, capsys):
    from gnn_inn.training import load_trained

    run = train(tmp_path, tensorboard=False, name="gnn",
                encoder="{name: compgcn, num_layers: 1}")
    out = tmp_path / "emb"
    data = str(tmp_path / "data")
    assert main(["export", str(run / "last.pt"), "--out", str(out), "--data-dir", data]) == 0
    model, kg, _ = load_trained(run / "last.pt", data_dir=data)
    ent, names = _load(out, "entity_embeddings", "metadata.tsv")
    with torch.no_grad():
        enc_ent, enc_rel = model.encoder(model.graph)  # eval mode: no dropout
    assert ent.shape == (kg.num_entities, 8) and names == kg.entity_names
    assert np.allclose(ent, enc_ent.numpy(), atol=1e-6)
    assert not np.allclose(ent, model.encoder.entity.detach().numpy())  # not the input table
    rel, rnames = _load(out, "relation_embeddings", "relation_metadata.tsv")
    assert rel.shape == (2 * kg.num_relations, 8) and np.allclose(rel, enc_rel.numpy(),
                                                                  atol=1e-6)
    assert rnames == [*kg.relation_names, *(f"{n} (inverse)" for n in kg.relation_names)]


# ---------------------------------------------------------------------------- progress bars
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_show_loss_throughput_and_eta(tmp_path, monkeypatch):
    from gnn_inn.training import trainer_from_config

    data = write_graph(tmp_path / "data")
    config = Config.from_dict({
        "dataset": {"name": "toy"}, "model": {"dim": 8},
        "train": {"epochs": 1, "batch_size": 16, "device": "cpu", "loss": {"name": "1vsall"}},
        "eval": {"batch_size": 8}})
    import functools

    import gnn_inn.evaluation.evaluator as evaluator_module
    import gnn_inn.training.trainer as trainer_module

    for module in (trainer_module, evaluator_module):  # redraw at every update
        monkeypatch.setattr(module, "tqdm", functools.partial(module.tqdm, mininterval=0))
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    trainer = trainer_from_config(config, data_dir=str(data))
    trainer.train_epoch()
    trainer.evaluate("valid")
    text = term.getvalue()
    assert "loss=" in text and "triples_s=" in text and "step/s" in text
    assert "query/s" in text and "mrr=" in text and "<" in text  # tqdm's elapsed<remaining
    # --quiet: nothing
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    trainer = trainer_from_config(config, data_dir=str(data), quiet=True)
    trainer.train_epoch()
    trainer.evaluate("valid")
    assert quiet.getvalue() == ""
