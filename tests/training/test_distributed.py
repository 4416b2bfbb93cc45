"""Data-parallel training: W ranks with the same global batch reproduce the one-process run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from rank_shares import rank_share_sums

from gnn_inn.config import Config
from gnn_inn.training import sampling, trainer_from_config
from gnn_inn.training.distributed import DistContext, shard_query_batch, shard_range
from gnn_inn.training.losses import KvsAllLoss
from gnn_inn.training.trainer import _positives

needs_backend = pytest.mark.skipif(sampling.sampling_backend() is None,
                                   reason="no torch-sparse / pyg-lib")


def _cfg(*, sampler: bool, loss: str = "1vsall", epochs: int = 2) -> dict:
    # tanh, not relu: Adam's first step turns float-rounding differences of near-zero
    # gradients (summation order differs across ranks) into ~1e-5 parameter differences;
    # through a smooth activation they stay that small, a ReLU kink can amplify them.
    train = {"loss": {"name": loss}, "epochs": epochs, "batch_size": 300, "lr": 0.01,
             "eval_every": 1, "device": "cpu", "grad_clip": 1.0}
    if sampler:
        train["sampler"] = {"num_neighbors": [-1, -1], "num_negatives": 32}
    return {"seed": 0, "dataset": {"name": "synthetic"},
            "model": {"dim": 16, "encoder": {"name": "rgcn", "num_layers": 2,
                                             "activation": "tanh"},
                      "decoder": {"name": "distmult"}, "mask_targets": not sampler},
            "train": train}


# ------------------------------------------------------------------ pure helpers
@pytest.mark.parametrize("n", [0, 1, 5, 10, 11])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_range_partitions_exactly(n, world):
    parts = [shard_range(n, k, world) for k in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(parts[k][1] == parts[k + 1][0] for k in range(world - 1))
    sizes = [e - s for s, e in parts]
    assert max(sizes) - min(sizes) <= 1


def test_shard_query_batch_kvsall_rows_renumbered():
    g = torch.Generator().manual_seed(0)
    train = torch.unique(torch.stack([torch.randint(20, (200,), generator=g),
                                      torch.randint(3, (200,), generator=g),
                                      torch.randint(20, (200,), generator=g)], 1), dim=0)
    step = next(KvsAllLoss(train, 20, 3).batches(17, g))
    for b in step:
        parts = [shard_query_batch(b, k, 3) for k in range(3)]
        assert torch.equal(torch.cat([p.anchor for p in parts]), b.anchor)
        got = torch.cat([_positives(p) for p in parts])
        assert torch.equal(got, _positives(b))


@pytest.mark.parametrize("loss", ["kvsall", "1vsall", "nssa"])
@pytest.mark.parametrize("sampler", [False, True])
def test_rank_shares_add_up_to_the_one_process_gradient(loss, sampler):
    """Simulated ranks in one process: the sum of the W shares' gradients is the gradient of
    the one-process loss (the all-reduce scheme, without the communication)."""
    if sampler and sampling.sampling_backend() is None:
        pytest.skip("no sampling backend")
    tr = trainer_from_config(Config.from_dict(_cfg(sampler=sampler, loss=loss)), quiet=True)
    source = tr.sampler if tr.sampler is not None else tr.loss
    step = next(source.batches(300, torch.Generator().manual_seed(1)))

    def grads(world: int):
        return rank_share_sums(tr, step, world, sampled=sampler)

    v1, g1 = grads(1)
    v3, g3 = grads(3)
    assert v3 == pytest.approx(v1, rel=1e-5)
    for a, b in zip(g1, g3):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4)


# -------------------------------------------------------------- two real processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    tr = trainer_from_config(Config.from_dict(cfg), quiet=True)
    assert tr.dist.world_size == world and tr.dist.rank == rank
    res = tr.fit()
    state = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.dist.close()
    torch.save({"state": state, "test": res["test"], "valid": res["valid"]},
               Path(out) / f"rank{rank}.pt")


def _assert_two_processes_equal_one(tmp_path, cfg: dict) -> None:
    """``fit`` in one process and in two forked gloo processes: same weights and metrics."""
    ref = trainer_from_config(Config.from_dict(cfg), quiet=True)
    ref_res = ref.fit()
    # fork: the children reuse this process's imports (a spawn would re-import torch)
    mp.start_processes(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2,
                       start_method="fork")
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for k, v in ref.model.state_dict().items():
            torch.testing.assert_close(got["state"][k], v, atol=1e-5, rtol=1e-4, msg=k)
        assert got["test"]["mrr"] == pytest.approx(ref_res["test"]["mrr"], abs=1e-6)
        assert got["valid"]["mrr"] == pytest.approx(ref_res["valid"]["mrr"], abs=1e-6)


@pytest.mark.parametrize("sampler", [False, True], ids=["full_batch", "sampled"])
def test_two_processes_equal_one_process(tmp_path, sampler):
    if sampler and sampling.sampling_backend() is None:
        pytest.skip("no sampling backend")
    cfg = _cfg(sampler=sampler, loss="kvsall" if not sampler else "1vsall")
    _assert_two_processes_equal_one(tmp_path, cfg)


@pytest.mark.slow
@needs_backend
def test_torchrun_cli_two_processes(tmp_path):
    """``torchrun --nproc_per_node 2 -m gnn_inn.cli train`` equals ``gnn-inn train``."""
    import yaml

    if shutil.which("torchrun") is None and not Path(sys.executable).parent.joinpath(
            "torchrun").exists():
        pytest.skip("torchrun not found")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_cfg(sampler=True)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "gnn_inn.cli", "train", "--config", str(cfg), "--quiet"]
    subprocess.run([*base, "--out", str(tmp_path / "one")], check=True, env=env,
                   capture_output=True, timeout=300)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "-m", "gnn_inn.cli", "train", "--config",
                          str(cfg), "--quiet", "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("results written to") == 1  # rank 0 reports alone
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["test"]["mrr"] == pytest.approx(one["test"]["mrr"], abs=1e-6)
    a = torch.load(tmp_path / "one" / "best.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "two" / "best.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-4)


# --------------------------------------------------- entity tables by touched rows
def _rows_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = DistContext.from_env()
    res = {}
    for sparse in (False, True):
        table = torch.nn.Parameter(torch.zeros(1000, 8))
        other = torch.nn.Parameter(torch.zeros(3))
        g = torch.Generator().manual_seed(rank)
        ids = torch.randint(1000, (20,), generator=g)  # duplicates and overlaps across ranks
        vals = torch.randn(20, 8, generator=g)
        if sparse:
            table.grad = torch.sparse_coo_tensor(ids[None], vals, (1000, 8))
        else:
            table.grad = torch.zeros(1000, 8).index_add_(0, ids, vals)
        other.grad = torch.full((3,), float(rank + 1))
        ctx.all_reduce_gradients([table, other], row_params=[table], sparse=sparse)
        grad = table.grad.to_dense() if table.grad.is_sparse else table.grad
        res[sparse] = {"table": grad.clone(), "other": other.grad.clone(),
                       "is_sparse": table.grad.is_sparse, **ctx.last_exchange}
    ctx.close()
    torch.save(res, Path(out) / f"rank{rank}.pt")


def test_entity_table_gradients_travel_as_touched_rows(tmp_path):
    """Two gloo processes: the row exchange gives every rank the dense sum of both ranks'
    gradients (sparse or dense), bit-identical across ranks, for far fewer bytes than a
    dense all-reduce of the table."""
    mp.start_processes(_rows_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
                       start_method="fork")
    got = [torch.load(tmp_path / f"rank{k}.pt", weights_only=False) for k in (0, 1)]
    want = torch.zeros(1000, 8)
    for rank in (0, 1):
        g = torch.Generator().manual_seed(rank)
        ids = torch.randint(1000, (20,), generator=g)
        want.index_add_(0, ids, torch.randn(20, 8, generator=g))
    for sparse in (False, True):
        a, b = got[0][sparse], got[1][sparse]
        assert a["is_sparse"] == sparse
        torch.testing.assert_close(a["table"], want, atol=1e-6, rtol=1e-6)
        assert torch.equal(a["table"], b["table"])  # identical on every rank
        assert torch.equal(a["other"], torch.full((3,), 3.0))
        assert a["dense_bytes"] == (1000 * 8 + 3) * 4
        assert 0 < a["bytes"] < a["dense_bytes"] / 10
        assert 20 < a["rows"] <= 40


@needs_backend
def test_two_processes_equal_one_process_sparse_embeddings(tmp_path):
    """train.sparse_embeddings (SparseAdam) under 2 processes: rows exchanged, same weights."""
    cfg = _cfg(sampler=True)
    cfg["train"].update(sparse_embeddings=True, grad_clip=None)
    cfg["train"]["sampler"]["num_neighbors"] = [3, 3]
    cfg["train"]["batch_size"] = 64
    cfg["train"]["epochs"] = 1
    _assert_two_processes_equal_one(tmp_path, cfg)
