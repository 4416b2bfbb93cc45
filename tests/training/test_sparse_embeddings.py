"""``train.sparse_embeddings``: sparse entity-table gradients trained by ``SparseAdam``."""

from __future__ import annotations

import pytest
import torch

from gnn_inn.config import Config, ConfigError
from gnn_inn.training import sampling, trainer_from_config
from gnn_inn.training.optim import clip_grad_norm
from helpers import needs_backend


def _config(*, encoder="none", sampled=False, sparse=True, epochs=1, loss="kvsall",
            **train) -> Config:
    enc = {"name": encoder}
    if encoder != "none":
        enc["num_layers"] = 2
    if encoder == "compgcn":
        enc.update(dropout=0.0, hidden_dropout=0.0, composition="mult")
    spec = {"loss": {"name": loss}, "epochs": epochs, "batch_size": 256, "lr": 0.01,
            "eval_every": 0, "patience": 0, "device": "cpu", "sparse_embeddings": sparse,
            **train}
    if sampled:
        spec["sampler"] = {"num_neighbors": [4, 4], "num_negatives": 32,
                           "inference_batch_size": 64}
    return Config.from_dict({"seed": 0, "dataset": {"name": "synthetic"},
                             "model": {"dim": 16, "encoder": enc,
                                       "decoder": {"name": "distmult"}},
                             "train": spec})


def _table(tr) -> torch.nn.Parameter:
    return tr.model.encoder.sparse_parameters()[0]


def _first_step(tr):
    return next(iter((tr.sampler or tr.loss).batches(tr.config.train.batch_size,
                                                     torch.Generator().manual_seed(1))))


@needs_backend
@pytest.mark.parametrize("encoder", ["rgcn", "compgcn"])
def test_sampled_step_gives_a_sparse_gradient_on_the_subgraph_rows(kg, encoder):
    tr = trainer_from_config(_config(encoder=encoder, sampled=True, loss="1vsall"), kg,
                             quiet=True)
    assert isinstance(tr.sparse_optimizer, torch.optim.SparseAdam)
    table = _table(tr)
    assert all(p is not table for g in tr.optimizer.param_groups for p in g["params"])
    seen = []
    orig = tr.sampler.subgraph
    tr.sampler.subgraph = lambda *a, **kw: seen.append(orig(*a, **kw)) or seen[-1]
    before = table.detach().clone()
    tr._step(_first_step(tr))
    n_id = seen[-1][0].n_id
    assert table.grad is not None and table.grad.is_sparse
    rows = table.grad.coalesce().indices()[0]
    assert set(rows.tolist()) == set(n_id.tolist()) and n_id.numel() < kg.num_entities
    changed = (table.detach() != before).any(1).nonzero().flatten()
    assert set(changed.tolist()) <= set(n_id.tolist())  # untouched rows keep their values


@pytest.mark.parametrize("encoder,sampled", [("none", False), ("rgcn", False),
                                             ("rgcn", True), ("compgcn", True)])
def test_sparse_gradient_equals_the_dense_one(kg, encoder, sampled):
    if sampled and sampling.sampling_backend() is None:
        pytest.skip("no sampling backend")
    loss = "1vsall" if sampled else "kvsall"
    grads = []
    for sparse in (True, False):
        tr = trainer_from_config(_config(encoder=encoder, sampled=sampled, sparse=sparse,
                                         loss=loss), kg, quiet=True)
        tr.model.train()
        step = _first_step(tr)
        torch.manual_seed(3)
        out = tr.sampler(tr.model, step) if sampled else tr._full_batch_loss(step)
        out.backward()
        grad = _table(tr).grad
        assert grad.is_sparse == sparse
        grads.append(grad.to_dense() if sparse else grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("encoder,gain", [("none", 0.1), ("rgcn", 0.02)])
def test_full_batch_sparse_training_improves_mrr(kg, encoder, gain):
    # 5 epochs, 1vsall: MRR 0.019 -> 0.164 (none), 0.024 -> 0.055 (rgcn; dense Adam 0.081)
    tr = trainer_from_config(_config(encoder=encoder, epochs=5, lr=0.05, grad_clip=5.0,
                                     loss="1vsall"), kg, quiet=True)
    before = tr.evaluate("valid").metrics()["mrr"]
    losses = [tr.train_epoch() for _ in range(5)]
    after = tr.evaluate("valid").metrics()["mrr"]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert after > before + gain, (before, after)


def test_clip_grad_norm_counts_sparse_rows():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(6, 3))
    b = torch.nn.Parameter(torch.randn(4))
    idx = torch.tensor([[0, 2, 2, 5]])  # row 2 twice: coalescing sums it
    vals = torch.randn(4, 3)
    a.grad = torch.sparse_coo_tensor(idx, vals, (6, 3), check_invariants=True)
    b.grad = torch.randn(4)
    ref_a = torch.nn.Parameter(a.detach().clone())
    ref_b = torch.nn.Parameter(b.detach().clone())
    ref_a.grad, ref_b.grad = a.grad.to_dense(), b.grad.clone()
    want = torch.nn.utils.clip_grad_norm_([ref_a, ref_b], 0.5)
    got = clip_grad_norm([a, b], 0.5)
    torch.testing.assert_close(got, want)
    assert a.grad.is_sparse
    torch.testing.assert_close(a.grad.to_dense(), ref_a.grad)
    torch.testing.assert_close(b.grad, ref_b.grad)


@pytest.mark.parametrize("sampled", [False, True])
def test_resume_with_two_optimisers_continues_exactly(kg, tmp_path, sampled):
    if sampled and sampling.sampling_backend() is None:
        pytest.skip("no sampling backend")
    extra = {"scheduler": {"name": "step", "step_size": 1, "gamma": 0.5}, "eval_every": 2}
    encoder, loss = ("rgcn", "1vsall") if sampled else ("none", "kvsall")
    cfg = _config(encoder=encoder, sampled=sampled, epochs=4, loss=loss, **extra)
    full, part = tmp_path / "full", tmp_path / "part"
    trainer_from_config(cfg, kg, out_dir=full, quiet=True).fit()
    half = _config(encoder=encoder, sampled=sampled, epochs=2, loss=loss, **extra)
    trainer_from_config(half, kg, out_dir=part, quiet=True).fit()
    tr = trainer_from_config(cfg, kg, out_dir=part, quiet=True)
    tr.resume(part / "last.pt")
    assert tr.sparse_optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.25)
    tr.fit()
    a = torch.load(full / "last.pt", weights_only=False)
    b = torch.load(part / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 4
    assert a["sparse_optimizer"] is not None and a["sparse_scheduler"] is not None
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    for sa, sb in zip(a["sparse_optimizer"]["state"].values(),
                      b["sparse_optimizer"]["state"].values()):
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)
    assert a["best_metric"] == b["best_metric"]


def test_dense_checkpoints_stay_loadable_and_settings_must_match(kg, tmp_path):
    dense = _config(sparse=False, epochs=1)
    trainer_from_config(dense, kg, out_dir=tmp_path, quiet=True).fit()
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["sparse_optimizer"] is None
    del ckpt["sparse_optimizer"], ckpt["sparse_scheduler"]  # as written before the option
    torch.save(ckpt, tmp_path / "old.pt")
    trainer_from_config(dense, kg, quiet=True).resume(tmp_path / "old.pt")
    with pytest.raises(ConfigError, match="sparse_embeddings=False"):
        trainer_from_config(_config(epochs=1), kg, quiet=True).resume(tmp_path / "old.pt")


def test_weight_decay_is_refused(kg):
    with pytest.raises(ConfigError, match="weight_decay must be 0"):
        trainer_from_config(_config(weight_decay=1e-4), kg, quiet=True)
    trainer_from_config(_config(sparse=False, weight_decay=1e-4), kg, quiet=True)


def test_off_by_default_keeps_dense_gradients(kg):
    cfg = Config.from_dict({"dataset": {"name": "synthetic"}, "model": {"dim": 8},
                            "train": {"device": "cpu", "epochs": 1}})
    assert cfg.train.sparse_embeddings is False
    tr = trainer_from_config(cfg, kg, quiet=True)
    assert tr.sparse_optimizer is None and not tr.model.encoder.sparse_grad
    tr._step(_first_step(tr))
    assert not _table(tr).grad.is_sparse
