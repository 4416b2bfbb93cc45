"""Hostile and careless inputs: every one gets a named error (or works), none runs code, none
loses data, none gives a silently wrong result.

Themes follow the numbered defects of the trust issue: (1) checkpoints that would run code,
(2) OGB files that would run code, (3) run folders, (4) divergence, (5) checkpoint integrity,
(6) settings, (7) resuming with changed settings, (8) empty data, (9) BOM and headers,
(10) one-line errors instead of tracebacks, (11) smaller ones. Runs are tiny (Nations, dim 8,
one or two epochs) so that the module stays fast.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gnn_inn.cli import main
from gnn_inn.config import Config, ConfigError
from gnn_inn.data import load_dataset
from gnn_inn.data.graph import KnowledgeGraph
from gnn_inn.training.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    tensor_digest,
)
from gnn_inn.training.guards import NonFiniteError, check_step
from gnn_inn.training.run_dir import RunDirError, run_lock, trim_metrics
from helpers import DATA, needs_data

ROOT = Path(__file__).resolve().parents[1]

CFG = """
seed: 0
dataset: {name: nations}
model: {dim: 8, encoder: {name: none}, decoder: {name: distmult}}
train: {epochs: 2, batch_size: 512, lr: 0.01, eval_every: 1, patience: 0,
        loss: {name: kvsall, label_smoothing: 0.1}, device: cpu}
eval: {batch_size: 512}
"""


class Touch:
    """Unpickling this would create ``path`` (via ``os.system`` or ``open``)."""

    def __init__(self, path: Path, how: str = "system") -> None:
        self.path, self.how = str(path), how

    def __reduce__(self):
        if self.how == "system":
            return os.system, (f"touch '{self.path}'",)
        return open, (self.path, "w")


def _cfg(tmp_path: Path, text: str = CFG) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line_error(err: str, cmd: str) -> str:
    """The stderr of a refused command: exactly one ``gnn-inn <cmd>: error:`` line, no
    traceback (log lines from the run before the error may precede it)."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"gnn-inn {cmd}: error:")]
    assert len(lines) == 1, err
    assert err.strip().splitlines()[-1] == lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished two-epoch Nations run (best.pt, last.pt, results.json, ...)."""
    if not DATA:
        pytest.skip("GNN_INN_DATA not set")
    tmp = tmp_path_factory.mktemp("run")
    out = tmp / "run"
    assert main(["train", "--config", str(_cfg(tmp)), "--out", str(out), "--data-dir", DATA,
                 "--quiet"]) == 0
    return out


# ============================================================ 1. code in a checkpoint
def _evil_argv(cmd: str, ckpt: Path, kg_names: tuple[str, str]) -> list[str]:
    head, rel = kg_names
    if cmd == "evaluate":
        return ["evaluate", str(ckpt), "--data-dir", DATA]
    if cmd == "predict":
        return ["predict", str(ckpt), "--head", head, "--relation", rel, "--data-dir", DATA]
    if cmd == "certify":
        return ["certify", str(ckpt), "--data-dir", DATA]
    return ["sample", str(ckpt), "--head", head, "--relation", rel, "--data-dir", DATA]


def _names() -> tuple[str, str]:
    kg = load_dataset("nations", data_dir=DATA)
    return kg.entity_names[0], kg.relation_names[0]


@needs_data
@pytest.mark.parametrize("how", ["system", "open"])
@pytest.mark.parametrize("container", ["torch.save", "plain pickle"])
@pytest.mark.parametrize("cmd", ["evaluate", "predict", "certify", "sample"])
def test_crafted_checkpoint_runs_no_code(tmp_path, capsys, cmd, container, how):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    payload = {"format": FORMAT, "model": Touch(marker, how)}
    if container == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    rc, _, err = _run(capsys, _evil_argv(cmd, evil, _names()))
    assert rc == 2
    line = _one_line_error(err, cmd)
    assert str(evil) in line and "refused to load global" in line
    assert ("system" in line) if how == "system" else ("open" in line)
    assert "--trust-checkpoint" in line
    assert not marker.exists()


@needs_data
def test_crafted_last_pt_runs_no_code_on_resume(tmp_path, capsys):
    marker, out = tmp_path / "pwned", tmp_path / "run"
    out.mkdir()
    torch.save({"format": FORMAT, "rng": Touch(marker)}, out / "last.pt")
    rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                               "--data-dir", DATA, "--quiet", "--resume"])
    assert rc == 2 and "refused to load global" in _one_line_error(err, "train")
    assert not marker.exists()


@needs_data
def test_trust_checkpoint_is_an_explicit_opt_in(tmp_path, capsys):
    marker, evil = tmp_path / "ran", tmp_path / "legacy.pt"
    torch.save({"format": "something else", "x": Touch(marker, "open")}, evil)
    rc, _, err = _run(capsys, ["evaluate", str(evil), "--data-dir", DATA,
                               "--trust-checkpoint"])
    assert marker.exists()  # the user vouched for the file: it was unpickled unrestricted
    assert rc == 2 and "not a gnn_inn checkpoint" in _one_line_error(err, "evaluate")


def _registry_configs() -> dict[str, dict]:
    """Shipped small-dataset configs (+ the GNN variational encoder, which no shipped config
    uses): together they name every decoder, flow and encoder of the registries (checked by
    the test below)."""
    former = yaml.safe_load((ROOT / "configs" / "former.yaml").read_text())
    names = sorted([*(n for n in former if n.startswith("nations_")),
                    "synthetic_none_stochastic_flow.yaml"])
    out = {n: Config.load(ROOT / "configs" / n).to_dict() for n in names}
    vgnn = Config.load(ROOT / "configs" / "nations_variational_distmult_lim.yaml").to_dict()
    vgnn["model"]["encoder"] = {"name": "variational_gnn", "base": "rgcn"}
    out["variational_gnn"] = vgnn
    return out


def test_the_configs_below_cover_every_registered_part():
    from gnn_inn.decoders import DECODERS
    from gnn_inn.encoders import ENCODERS
    from gnn_inn.flows import FLOWS

    cfgs = [Config.from_dict(c) for c in _registry_configs().values()]
    assert {c.model.decoder["name"] for c in cfgs} == set(DECODERS)
    assert {c.model.encoder["name"] for c in cfgs} == set(ENCODERS)
    assert {c.model.decoder.get("flow") for c in cfgs} >= set(FLOWS)


def _save_one_step(config: Config, kg, path: Path) -> None:
    from gnn_inn.training import trainer_from_config

    tr = trainer_from_config(config, kg, out_dir=path.parent, quiet=True)
    tr.train_epoch(max_steps=1)
    tr.epoch = 1
    tr.save(path.name)


@needs_data
@pytest.mark.parametrize("name", list(_registry_configs()))
def test_every_genuine_checkpoint_loads_weights_only(tmp_path, name):
    """A checkpoint of every decoder / encoder loads with ``weights_only=True`` and no
    allow-list at all: it holds tensors and plain values only."""
    raw = _registry_configs()[name]
    raw["train"].update(epochs=1, batch_size=1024, device="cpu")
    if raw["model"]["encoder"]["name"] == "none":  # GNN / ConvE shapes depend on the dim
        raw["model"]["dim"] = 16
    if raw["dataset"]["name"] == "synthetic":
        raw["dataset"]["options"] = {"num_entities": 60}
        raw["model"]["decoder"].update(rerank_k=8, train_rerank_k=4)
    config = Config.from_dict(raw)
    from gnn_inn.model import load_kg
    from gnn_inn.training import load_trained

    kg = load_kg(config, DATA)
    _save_one_step(config, kg, tmp_path / "last.pt")
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)  # no safe_globals
    assert ckpt["format"] == FORMAT
    load_checkpoint(tmp_path / "last.pt")
    if raw["dataset"]["name"] != "synthetic":
        model, _, _ = load_trained(tmp_path / "last.pt", data_dir=DATA)
        for k, v in model.state_dict().items():
            assert torch.equal(v, ckpt["model"][k]), k


@needs_data
@pytest.mark.parametrize("scheduler", [
    {"name": "step", "step_size": 1, "gamma": 0.5}, {"name": "exponential", "gamma": 0.9},
    {"name": "cosine"}, {"name": "plateau", "patience": 1}])
def test_every_scheduler_state_loads_weights_only_and_resumes(tmp_path, scheduler):
    config = Config.from_dict({**yaml.safe_load(CFG), "train": {
        **yaml.safe_load(CFG)["train"], "scheduler": scheduler}})
    from gnn_inn.model import load_kg
    from gnn_inn.training import trainer_from_config

    kg = load_kg(config, DATA)
    _save_one_step(config, kg, tmp_path / "last.pt")
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["scheduler"] is not None
    tr = trainer_from_config(config, kg, quiet=True)
    tr.resume(tmp_path / "last.pt")
    assert tr.scheduler.state_dict() == ckpt["scheduler"]


@needs_data
def test_legacy_checkpoint_with_a_numpy_rng_array_still_loads(run, tmp_path):
    """Checkpoints written before the NumPy state became a tensor pickle an ndarray: they
    load through the scoped allow-list (and resume the same NumPy stream)."""
    ckpt = torch.load(run / "last.pt", weights_only=True)
    np.random.seed(123)
    legacy_state = np.random.get_state()
    ckpt["rng"]["numpy"] = legacy_state
    del ckpt["digest"]
    torch.save(ckpt, tmp_path / "legacy.pt")
    with pytest.raises(pickle.UnpicklingError):  # torch alone refuses it ...
        torch.load(tmp_path / "legacy.pt", weights_only=True)
    loaded = load_checkpoint(tmp_path / "legacy.pt")  # ... the scoped allow-list does not
    assert np.array_equal(loaded["rng"]["numpy"][1], legacy_state[1])
    from gnn_inn.model import load_kg
    from gnn_inn.training import trainer_from_config

    config = Config.from_dict(ckpt["config"])
    tr = trainer_from_config(config, load_kg(config, DATA), quiet=True)
    tr.resume(tmp_path / "legacy.pt")
    np.random.seed(123)
    want = np.random.rand(3)
    tr.resume(tmp_path / "legacy.pt")
    assert np.array_equal(np.random.rand(3), want)
    # and nothing was added to torch's process-wide allow-list
    assert not any("numpy" in repr(g) for g in torch.serialization.get_safe_globals())


# ============================================================ 2. code in OGB files
def _ogb_fixtures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ogb_fixtures",
                                                  ROOT / "tests" / "data" / "test_ogb.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("protocol", [2, 4])
def test_crafted_ogb_processed_cache_runs_no_code(tmp_path, capsys, protocol):
    fx = _ogb_fixtures()
    fx.write_wikikg2(tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"edge_index": Touch(marker)},
               tmp_path / "ogbl_wikikg2" / "processed" / "data_processed",
               pickle_protocol=protocol)
    env_before = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    rc, out, _ = _run(capsys, ["stats", "ogbl-wikikg2", "--data-dir", str(tmp_path)])
    assert rc == 0 and json.loads(out)["num_entities"] == fx.WIKI_N
    assert not marker.exists()
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == env_before


def test_crafted_ogb_split_file_runs_no_code(tmp_path, capsys):
    fx = _ogb_fixtures()
    fx.write_biokg(tmp_path)
    marker = tmp_path / "pwned"
    split = tmp_path / "ogbl_biokg" / "split" / "random" / "test.pt"
    torch.save({"head": Touch(marker)}, split)
    rc, _, err = _run(capsys, ["stats", "ogbl-biokg", "--data-dir", str(tmp_path)])
    assert rc == 2
    line = _one_line_error(err, "stats")
    assert str(split) in line and "system" in line and "trust_pickle" in line
    assert not marker.exists()


# ============================================================ 3. run folders
@needs_data
def test_second_train_into_a_run_folder_is_refused_and_loses_nothing(run, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(run),
                               "--data-dir", DATA, "--quiet", "--set", "train.epochs=1"])
    assert rc == 2
    line = _one_line_error(err, "train")
    assert "not empty" in line and "--resume" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@needs_data
def test_overwrite_replaces_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = str(_cfg(tmp_path))
    base = ["train", "--config", cfg, "--out", str(out), "--data-dir", DATA, "--quiet"]
    assert _run(capsys, base)[0] == 0
    (out / "notes.txt").write_text("mine")
    assert _run(capsys, [*base, "--overwrite", "--set", "train.epochs=1"])[0] == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1]  # not appended to the old run's
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    rc, _, err = _run(capsys, [*base, "--overwrite", "--resume"])
    assert rc == 2 and "exclude each other" in _one_line_error(err, "train")


@needs_data
def test_a_second_writer_is_refused_while_a_run_holds_the_folder(tmp_path, capsys):
    out = tmp_path / "run"
    with run_lock(out):
        rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                                   "--data-dir", DATA, "--quiet", "--resume"])
        assert rc == 2
        line = _one_line_error(err, "train")
        assert "another run" in line and str(os.getpid()) in line
        with pytest.raises(RunDirError, match="another run"):
            with run_lock(out):
                pass
    assert not (out / "last.pt").exists()
    # released with the run: the folder is usable again
    assert _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                         "--data-dir", DATA, "--quiet", "--resume"])[0] == 0


@needs_data
def test_a_run_in_another_process_blocks_a_second_writer(tmp_path, capsys):
    import subprocess
    import sys

    out = tmp_path / "run"
    module = ROOT / "src" / "gnn_inn" / "training" / "run_dir.py"  # stdlib only: fast start
    holder = subprocess.Popen(
        [sys.executable, "-c", "import importlib.util, sys; from pathlib import Path\n"
         f"spec = importlib.util.spec_from_file_location('run_dir', {str(module)!r})\n"
         "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
         f"with m.run_lock(Path({str(out)!r})):\n"
         "    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                                   "--data-dir", DATA, "--quiet"])
        assert rc == 2
        assert f"pid {holder.pid}" in _one_line_error(err, "train")
    finally:
        holder.communicate("", timeout=60)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written
    holder_gone = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                                "--data-dir", DATA, "--quiet"])
    assert holder_gone[0] == 0


@needs_data
def test_resume_without_last_pt_does_not_replace_the_other_run_files(run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / "last.pt").unlink()  # e.g. a finished run slimmed to best.pt
    best = (out / "best.pt").read_bytes()
    rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                               "--data-dir", DATA, "--quiet", "--resume"])
    assert rc == 2 and "no last.pt" in _one_line_error(err, "train")
    assert (out / "best.pt").read_bytes() == best


@needs_data
def test_out_naming_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(f),
                               "--data-dir", DATA, "--quiet"])
    assert rc == 2 and "is a file" in _one_line_error(err, "train")
    assert f.read_text() == "keep me"


# ============================================================ 4. divergence
@needs_data
def test_nan_loss_stops_with_epoch_step_and_keeps_the_last_good_checkpoint(
        tmp_path, capsys, monkeypatch):
    from gnn_inn.training.trainer import Trainer

    real = Trainer._full_batch_loss

    def diverging(self, step):
        loss = real(self, step)
        return loss * float("nan") if self.epoch == 1 else loss  # the second epoch diverges

    monkeypatch.setattr(Trainer, "_full_batch_loss", diverging)
    out = tmp_path / "run"
    rc, stdout, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                                    "--data-dir", DATA, "--quiet", "--set", "train.epochs=3"])
    assert rc == 2
    line = _one_line_error(err, "train")
    assert "epoch 2, step 1" in line and "loss is nan" in line
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 1
    assert all(bool(torch.isfinite(v).all()) for v in last["model"].values())
    assert not (out / "results.json").exists() and stdout == ""


@needs_data
def test_a_real_divergence_stops_in_its_first_epoch_and_writes_no_weights(tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                                    "--data-dir", DATA, "--quiet", "--set", "train.lr=1e30",
                                    "--set", "train.optimizer=adagrad"])
    assert rc == 2 and stdout == ""
    line = _one_line_error(err, "train")
    assert line.startswith("gnn-inn train: error: epoch 1, step ") and "not finite" in line
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


def test_non_finite_gradient_is_caught_before_the_optimiser_step():
    model = torch.nn.Linear(3, 1)
    model(torch.ones(2, 3)).sum().backward()
    check_step(1.0, model)  # finite: passes
    model.weight.grad[0, 1] = float("inf")
    with pytest.raises(NonFiniteError, match="gradient of weight is inf"):
        check_step(1.0, model)
    with pytest.raises(NonFiniteError, match="epoch 3, step 7: the loss is nan"):
        try:
            check_step(float("nan"), model)
        except NonFiniteError as e:
            raise e.at(3, 7) from None


def test_non_finite_weights_are_never_written(tmp_path):
    good = {"model": {"w": torch.ones(2)}, "epoch": 1}
    save_checkpoint(tmp_path / "last.pt", good)
    with pytest.raises(CheckpointError, match="'w' is not finite"):
        save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.tensor([1.0, math.nan])},
                                               "epoch": 2})
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


# ============================================================ 5. integrity
@needs_data
def test_altered_tensor_bytes_are_detected(run, tmp_path, capsys):
    ckpt = torch.load(run / "best.pt", weights_only=True)
    key = next(k for k in ckpt["model"] if "weight" in k or "entity" in k)
    ckpt["model"][key] = -ckpt["model"][key]  # the sign bit of a whole table flipped
    torch.save(ckpt, tmp_path / "best.pt")  # the stored digest is the old one
    rc, out, err = _run(capsys, ["evaluate", str(tmp_path / "best.pt"), "--data-dir", DATA])
    assert rc == 2 and out == ""
    line = _one_line_error(err, "evaluate")
    assert str(tmp_path / "best.pt") in line and "digest" in line
    assert tensor_digest(torch.load(run / "best.pt", weights_only=True)) == ckpt["digest"]["value"]


@needs_data
@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "folder", "zip of junk"])
def test_unreadable_checkpoint_files_get_one_line(run, tmp_path, capsys, kind):
    p = tmp_path / "model.pt"
    data = (run / "best.pt").read_bytes()
    if kind == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("epoch,loss\n1,0.5\n")
    elif kind == "folder":
        p.mkdir()
    else:
        import zipfile

        with zipfile.ZipFile(p, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02junk")
    rc, out, err = _run(capsys, ["evaluate", str(p), "--data-dir", DATA])
    assert rc == 2 and out == ""
    line = _one_line_error(err, "evaluate")
    assert str(p) in line
    assert "refused to load global" not in line  # junk is not reported as an attack


# ============================================================ 6. settings
@pytest.mark.parametrize("override, key", [
    ("train.grad_clip=-1", "train.grad_clip"), ("train.lr=0", "train.lr"),
    ("train.lr=.nan", "train.lr"), ("train.batch_size=-5", "train.batch_size"),
    ("train.batch_size=0", "train.batch_size"), ("train.epochs=-1", "train.epochs"),
    ("train.loss.label_smoothing=2.0", "train.loss.label_smoothing"),
    ("train.eval_every=-1", "train.eval_every"), ("train.patience=-2", "train.patience"),
    ("train.time_budget=-5", "train.time_budget"), ("model.dim=0", "model.dim"),
    ("eval.batch_size=0", "eval.batch_size"), ("eval.tie_policy=best", "eval.tie_policy"),
    ("train.weight_decay=-0.1", "train.weight_decay"), ("train.lr=true", "train.lr"),
    ("train.optimizer=sgdd", "train.optimizer"), ("model.decoder={dim: 3}", "model.decoder"),
    ("train.scheduler={name: step, gamma: fast}", "train.scheduler.gamma"),
    ("train.scheduler={name: warmup}", "train.scheduler.name"),
    ("train.scheduler={name: step, step_size: 0}", "train.scheduler.step_size"),
    ("train.scheduler={name: exponential, gamma: -1}", "train.scheduler.gamma"),
    ("train.scheduler={name: cosine, T_max: 0}", "train.scheduler.T_max"),
    ("train.loss={name: nssa, num_negatives: 0}", "train.loss.num_negatives"),
    ("train.loss={name: nssa, adversarial_temperature: -1}",
     "train.loss.adversarial_temperature"),
])
def test_harmful_settings_are_refused_by_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Config.load(_cfg(tmp_path), [override])


def test_duplicate_yaml_keys_are_refused_with_their_lines(tmp_path):
    p = _cfg(tmp_path, CFG + "train: {epochs: 99}\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'train' \(first on line 5, again on "
                                          r"line 8\)"):
        Config.load(p)
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        Config.load(_cfg(tmp_path, "train: {lr: 1, lr: 2}\n"))
    with pytest.raises(ConfigError, match="duplicate key 'gamma'"):
        Config.load(_cfg(tmp_path), ["train.scheduler={name: step, gamma: 1, gamma: 2}"])


def test_yaml_1_1_floats_are_floats(tmp_path):
    cfg = Config.load(_cfg(tmp_path, CFG.replace("lr: 0.01", "lr: 1e-2")),
                      ["train.scheduler={name: step, step_size: 1, gamma: 5e-1}",
                       "train.time_budget=1e6"])
    assert cfg.train.lr == 0.01 and cfg.train.time_budget == 1e6
    assert cfg.train.scheduler["gamma"] == 0.5 and isinstance(cfg.train.scheduler["gamma"], float)
    assert Config.load(_cfg(tmp_path, "seed: 1e3\n")).seed == 1000  # ints stay ints


# ============================================================ 7. resume with changes
@needs_data
@pytest.mark.parametrize("override, key", [("train.lr=0.5", "train.lr"),
                                           ("model.dim=100", "model.dim"),
                                           ("model.decoder={name: complex}", "model.decoder")])
def test_resume_refuses_a_changed_setting_by_name(run, tmp_path, capsys, override, key):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = (out / "config.yaml").read_text()
    rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                               "--data-dir", DATA, "--quiet", "--resume", "--set", override,
                               "--set", "train.epochs=3"])
    assert rc == 2
    line = _one_line_error(err, "train")
    assert f"trained with {key}=" in line and str(out / "last.pt") in line
    assert (out / "config.yaml").read_text() == before


@needs_data
def test_resume_refuses_more_epochs_under_a_cosine_schedule_sized_by_them(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = str(_cfg(tmp_path))
    base = ["train", "--config", cfg, "--out", str(out), "--data-dir", DATA, "--quiet",
            "--set", "train.scheduler={name: cosine}"]
    assert _run(capsys, base)[0] == 0
    rc, _, err = _run(capsys, [*base, "--resume", "--set", "train.epochs=3"])
    assert rc == 2 and "train.epochs=2" in _one_line_error(err, "train")


@needs_data
def test_resume_applies_a_longer_run_and_records_it(run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    rc, _, _ = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                             "--data-dir", DATA, "--quiet", "--resume", "--set",
                             "train.epochs=3"])
    assert rc == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 3
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 3 and ckpt["config"]["train"]["epochs"] == 3
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


# ============================================================ 8. empty data
def _dataset(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "kg"
    d.mkdir(exist_ok=True)
    base = {"train": "a\tr\tb\nb\tr\tc\nc\ts\ta\n", "valid": "a\tr\tc\n", "test": "b\ts\tc\n"}
    for split, text in {**base, **files}.items():
        (d / f"{split}.txt").write_text(text, encoding="utf-8")
    return d


@pytest.mark.parametrize("split, text", [("train", ""), ("valid", ""), ("test", ""),
                                         ("test", "head\trelation\ttail\n"), ("valid", "\n\n")])
def test_empty_splits_are_refused_by_name(tmp_path, capsys, split, text):
    d = _dataset(tmp_path, **{split: text})
    with pytest.raises(ValueError, match=f"{split}.txt: no triples"):
        KnowledgeGraph.from_directory(d)
    rc, _, err = _run(capsys, ["stats", str(d)])
    assert rc == 2 and f"{split}.txt: no triples" in _one_line_error(err, "stats")


def test_results_are_strict_json():
    from gnn_inn.cli import _fmt, _json

    assert json.loads(_fmt({"mrr": float("nan"), "mr": 3.0})) == {"mrr": None, "mr": 3.0}
    text = _json({"a": [float("inf"), 1.5], "b": {"c": -float("inf")}})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "a": [None, 1.5], "b": {"c": None}}


# ============================================================ 9. BOM and headers
@needs_data
def test_bom_is_not_part_of_the_first_entity(tmp_path):
    src = Path(DATA) / "nations"
    plain = load_dataset(str(src))
    for header in (False, True):
        d = tmp_path / f"bom{int(header)}"
        d.mkdir()
        for s in ("train", "valid", "test"):
            data = (src / f"{s}.txt").read_bytes()
            if s == "train":
                data = b"\xef\xbb\xbf" + (b"head\trelation\ttail\n" if header else b"") + data
            (d / f"{s}.txt").write_bytes(data)
        kg = load_dataset(str(d))
        assert kg.num_entities == plain.num_entities == 14
        assert kg.entity_names == plain.entity_names
        assert torch.equal(kg.train, plain.train)


# ============================================================ 10. one line, exit code 2
def _cli_cases(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    cfg = str(_cfg(tmp_path))
    base = ["train", "--config", cfg, "--data-dir", DATA, "--quiet", "--out",
            str(tmp_path / "out")]
    ro = tmp_path / "readonly.yaml"
    ro.write_text(CFG)
    cases = [
        ("batch size 0", [*base, "--set", "train.batch_size=0"], "train.batch_size"),
        ("device tpu", [*base, "--set", "train.device=tpu"], "train.device"),
        ("decoder without a name", [*base, "--set", "model.decoder={dim: 3}"],
         "model.decoder"),
        ("config is a folder", ["train", "--config", str(tmp_path), "--quiet"], "is a folder"),
        ("config missing", ["train", "--config", str(tmp_path / "nope.yaml")], "not found"),
        ("malformed --set", [*base, "--set", "train.loss={name: kvsall"], "--set"),
        ("--set without =", [*base, "--set", "train.lr"], "key=value"),
        ("unknown loss option", [*base, "--set", "train.loss.smoothness=1"], "train.loss"),
        ("unknown loss", [*base, "--set", "train.loss={name: hinge}"], "hinge"),
        ("unknown scheduler option",
         [*base, "--set", "train.scheduler={name: exponential, gamma: 0.9, speed: 2}"],
         "train.scheduler"),
        ("missing scheduler argument", [*base, "--set", "train.scheduler={name: step}"],
         "step_size"),
        ("unknown dataset", [*base, "--set", "dataset.name=no_such_set"], "no_such_set"),
    ]
    if not torch.cuda.is_available():
        cases.append(("cuda on a CPU build", [*base, "--set", "train.device=cuda"], "CUDA"))
    return cases


@needs_data
def test_user_errors_get_one_line_and_exit_code_2(tmp_path, capsys):
    for name, argv, needle in _cli_cases(tmp_path):
        rc, _, err = _run(capsys, argv)
        assert rc == 2, name
        assert needle in _one_line_error(err, argv[0]), (name, err)


@needs_data
def test_verbose_shows_the_traceback(tmp_path, capsys):
    rc, _, err = _run(capsys, ["-v", "train", "--config", str(_cfg(tmp_path)), "--data-dir",
                               DATA, "--out", str(tmp_path / "o"), "--set",
                               "train.scheduler={name: step}"])
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith(
        "gnn-inn train: error:")


@needs_data
@pytest.mark.parametrize("args, needle", [
    (["predict", "--head", "x", "--relation", "y", "--k", "-1"], "--k"),
    (["predict", "--head", "x", "--relation", "y", "--k", "0"], "--k"),
    (["certify", "--per-relation", "0"], "--per-relation"),
    (["certify", "--samples", "-1"], "--samples"),
    (["sample", "--head", "x", "--relation", "y", "--n", "0"], "--n"),
])
def test_bad_counts_are_refused_with_the_same_prefix(run, capsys, args, needle):
    with pytest.raises(SystemExit) as e:
        main([args[0], str(run / "best.pt"), *args[1:]])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"gnn-inn {args[0]}: error:" in err and needle in err


@needs_data
def test_predict_errors_use_the_common_prefix(run, capsys):
    rc, _, err = _run(capsys, ["predict", str(run / "best.pt"), "--relation", "x",
                               "--data-dir", DATA])
    assert rc == 2 and "exactly one of --head" in _one_line_error(err, "predict")
    rc, _, err = _run(capsys, ["predict", str(run / "best.pt"), "--head", "nowhere",
                               "--relation", "x", "--data-dir", DATA])
    assert rc == 2 and "unknown entity 'nowhere'" in _one_line_error(err, "predict")


@needs_data
def test_unwritable_output_gets_one_line(run, tmp_path, capsys, monkeypatch):
    """A full disk / read-only folder: torch.save fails mid-write ("unexpected pos ...")."""
    import gnn_inn.training.checkpoint as ck

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 38272 "
                           "vs 38164")

    monkeypatch.setattr(ck.torch, "save", full)
    out = tmp_path / "run"
    rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                               "--data-dir", DATA, "--quiet"])
    assert rc == 2
    line = _one_line_error(err, "train")
    assert "disk full" in line and str(out) in line
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@needs_data
def test_read_only_out_folder_gets_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o500)
    try:
        rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                                   "--data-dir", DATA, "--quiet"])
    finally:
        out.chmod(0o700)
    assert rc == 2 and str(out) in _one_line_error(err, "train")


@needs_data
def test_an_unwritable_run_file_is_named(tmp_path, capsys):
    """An OS error while writing (here: ``config.yaml`` is a folder; a read-only folder or a
    full disk give the same path) is one line naming the file."""
    out = tmp_path / "run"
    (out / "config.yaml").mkdir(parents=True)
    rc, _, err = _run(capsys, ["train", "--config", str(_cfg(tmp_path)), "--out", str(out),
                               "--data-dir", DATA, "--quiet", "--overwrite"])
    assert rc == 2
    assert _one_line_error(err, "train").endswith(f"{out / 'config.yaml'}: Is a directory")


def test_offline_download_names_the_folders_looked_in(tmp_path, capsys, monkeypatch):
    import gnn_inn.data.datasets as ds

    def offline(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(ds, "_fetch", offline)
    monkeypatch.setenv("GNN_INN_DATA", str(tmp_path / "datsets"))  # mistyped
    monkeypatch.setenv("GNN_INN_CACHE", str(tmp_path / "cache"))
    rc, _, err = _run(capsys, ["stats", "umls"])
    assert rc == 2
    line = _one_line_error(err, "stats")
    assert str(tmp_path / "datsets" / "umls") in line and "download failed" in line
    assert "name resolution" in line


def test_offline_ogb_download_names_the_folders_looked_in(tmp_path, capsys, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("GNN_INN_DATA", str(tmp_path / "ogb_dtaa"))  # mistyped
    monkeypatch.setenv("GNN_INN_CACHE", str(tmp_path / "cache"))
    rc, _, err = _run(capsys, ["stats", "ogbl-wikikg2"])
    assert rc == 2
    line = _one_line_error(err, "stats")
    assert str(tmp_path / "ogb_dtaa" / "ogbl_wikikg2") in line and "download failed" in line


# ============================================================ 11. smaller ones
def test_stats_counts_leakage_and_relations_seen_only_in_evaluation(tmp_path, capsys):
    d = _dataset(tmp_path, valid="a\tr\tb\na\tr\tc\n", test="b\ts\tc\nc\tu\tb\n")
    rc, out, _ = _run(capsys, ["stats", str(d)])
    s = json.loads(out)
    assert rc == 0
    assert s["valid_in_train"] == 1 and s["test_in_train"] == 0
    assert s["relations_only_in_eval"] == 1


@needs_data
def test_changed_evaluation_data_are_reported(tmp_path, capsys, caplog):
    d = tmp_path / "nations"
    shutil.copytree(Path(DATA) / "nations", d)
    out = tmp_path / "run"
    cfg = _cfg(tmp_path, CFG.replace("{name: nations}", f"{{name: {d}}}"))
    assert _run(capsys, ["train", "--config", str(cfg), "--out", str(out), "--quiet",
                         "--set", "train.epochs=1"])[0] == 0
    assert set(load_checkpoint(out / "best.pt")["data_fingerprint"]) == {"train", "valid",
                                                                          "test"}
    lines = (d / "test.txt").read_text().splitlines(keepends=True)
    (d / "test.txt").write_text("".join(lines[:-5]))  # same vocabulary, fewer test triples
    with caplog.at_level("WARNING"):
        assert _run(capsys, ["evaluate", str(out / "best.pt")])[0] == 0
    assert "test.txt file(s) differ" in caplog.text


@needs_data
def test_a_kill_between_checkpoint_and_log_line_repeats_no_line(tmp_path, monkeypatch,
                                                                capsys):
    from gnn_inn.training.trainer import Trainer

    real = Trainer._log

    def killed(self, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt  # the process dies after last.pt, before the log line
        real(self, record)

    out = tmp_path / "run"
    cfg = str(_cfg(tmp_path))
    argv = ["train", "--config", cfg, "--out", str(out), "--data-dir", DATA, "--quiet",
            "--set", "train.epochs=3"]
    monkeypatch.setattr(Trainer, "_log", killed)
    assert _run(capsys, argv)[0] == 130
    monkeypatch.setattr(Trainer, "_log", real)
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    with (out / "metrics.jsonl").open("a") as f:  # as if a line of epoch 3 had been torn
        f.write('{"epoch": 3, "lo')
    assert _run(capsys, [*argv, "--resume"])[0] == 0
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 3]  # epoch 2's line died with the process; none is repeated
    assert trim_metrics(out, 1) == 1

