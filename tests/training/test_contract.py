"""The contract over the registries: every decoder in every training mode.

Modes: full batch with ``1vsall`` / ``kvsall`` / ``nssa``, neighbour-sampled, and data-parallel
(ranks share a step; the shares add up to the one-process gradient here, two real processes
equal one process in ``test_two_processes_equal_one_process_every_decoder``). On a tiny
synthetic graph each combination must train (the loss of a fixed step goes down), and an
impossible combination raises a ConfigError that names it and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from rank_shares import rank_share_sums

from gnn_inn.config import Config, ConfigError
from gnn_inn.decoders import DECODERS
from gnn_inn.training import sampling, trainer_from_config
from gnn_inn.training.capabilities import combination_table
from gnn_inn.training.losses import LOSSES

needs_backend = pytest.mark.skipif(sampling.sampling_backend() is None,
                                   reason="no torch-sparse / pyg-lib")

ROOT = Path(__file__).resolve().parents[2]

#: per decoder the options of its contract run (dropout off: the same step must get easier)
DECODER_OPTIONS = {
    "transe": {},
    "distmult": {},
    "complex": {},
    "rotate": {},
    "conve": {"num_filters": 4, "kernel_size": 3, "input_dropout": 0.0,
              "feature_dropout": 0.0, "hidden_dropout": 0.0},
    "flow": {"flow": "rotation", "entity_bias": True, "relation_scale": True},
    "stochastic_flow": {"rerank_k": 8},
}

#: flow decoder options that must all train neighbour-sampled (issue: "flow with every option")
FLOW_VARIANTS = {
    "involution": ({"name": "rgcn"}, {"patterns": "involution"}),
    "auto_patterns": ({"name": "rgcn"}, {"patterns": "auto"}),
    "tied_inverse": ({"name": "rgcn"}, {"patterns": {"1": "tied-inverse:0"}}),
    "symmetric_score": ({"name": "rgcn"}, {"symmetric_score": True}),
    "context_own": ({"name": "rgcn"}, {"conditioning": "context", "context_dim": 8}),
    "compgcn_relations": ({"name": "compgcn", "num_layers": 1},
                          {"conditioning": "context", "context_dim": 16, "entity_bias": True,
                           "relation_scale": True}),
    "affine_coupling": ({"name": "rgcn"}, {"flow": "affine_coupling"}),
}


def test_every_registered_decoder_has_contract_options():
    assert set(DECODER_OPTIONS) == set(DECODERS)


def _cfg(decoder: str, *, loss: str = "1vsall", sampled: bool = False,
         encoder: dict | None = None, options: dict | None = None) -> dict:
    train = {"loss": {"name": loss}, "epochs": 1, "batch_size": 128, "lr": 0.01,
             "eval_every": 1, "device": "cpu"}
    if sampled:
        train["sampler"] = {"num_neighbors": [-1] * (encoder or {}).get("num_layers", 2),
                            "num_negatives": 16}
    if loss == "nssa":
        train["loss"]["num_negatives"] = 8
    enc = {"name": "rgcn", "num_layers": 2, "activation": "tanh"} if encoder is None else encoder
    dec = {"name": decoder, **DECODER_OPTIONS[decoder], **(options or {})}
    return {"seed": 0, "dataset": {"name": "synthetic", "options": {"num_entities": 60}},
            "model": {"dim": 16, "encoder": enc, "decoder": dec, "mask_targets": not sampled},
            "train": train}


def _fixed_step_losses(tr, steps: int = 6) -> list[float]:
    """Loss of one fixed step, before each of ``steps`` optimiser updates on it."""
    source = tr.sampler if tr.sampler is not None else tr.loss
    step = next(source.batches(128, torch.Generator().manual_seed(1)))
    return [tr._step(step) for _ in range(steps)]


@pytest.mark.parametrize("loss", ["1vsall", "kvsall", "nssa"])
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_full_batch_trains(decoder, loss):
    tr = trainer_from_config(Config.from_dict(_cfg(decoder, loss=loss)), quiet=True)
    losses = _fixed_step_losses(tr)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses


@needs_backend
@pytest.mark.parametrize("loss", ["1vsall", "kvsall", "nssa"])
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_neighbour_sampled_trains(decoder, loss):
    tr = trainer_from_config(Config.from_dict(_cfg(decoder, loss=loss, sampled=True)),
                             quiet=True)
    assert tr.sampler is not None
    losses = _fixed_step_losses(tr)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses


@needs_backend
@pytest.mark.parametrize("variant", sorted(FLOW_VARIANTS))
def test_flow_options_train_neighbour_sampled(variant):
    enc, opts = FLOW_VARIANTS[variant]
    tr = trainer_from_config(Config.from_dict(_cfg("flow", sampled=True, encoder=enc,
                                                   options=opts)), quiet=True)
    losses = _fixed_step_losses(tr)
    assert losses[-1] < losses[0], losses


@needs_backend
@pytest.mark.parametrize("decoder", ["flow", "conve", "stochastic_flow"])
def test_score_shared_equals_per_query_scores(decoder):
    """The shared-candidate scores are the decoder's own scores of those candidates (the
    ranking scores; for ``stochastic_flow`` its Gaussian stage)."""
    tr = trainer_from_config(Config.from_dict(_cfg(decoder)), quiet=True)
    model = tr.model.eval()
    dec = model.decoder
    with torch.no_grad():
        ent, rel = model.encode()
        h, r, t = tr.kg.train[:10].unbind(1)
        cand = torch.tensor([3, 0, 17, 42, 5])
        for direction in ("tail", "head"):
            got = dec.score_shared(ent, rel, h, r, t, cand, direction)
            if decoder == "stochastic_flow":
                anchor = h if direction == "tail" else t
                mu, ls, _ = dec.gaussian_params(ent, rel, anchor, r, direction)
                want = dec.gaussian_all(mu, ls, ent)[:, cand]
            else:
                want = (dec.score_tails(ent, rel, h, r) if direction == "tail"
                        else dec.score_heads(ent, rel, r, t))[:, cand]
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        # rows of a subgraph: the global ids select the per-entity terms
        ids = torch.randperm(tr.kg.num_entities, generator=torch.Generator().manual_seed(0))
        inv = torch.argsort(ids)
        sub = ent[ids]
        got = dec.score_shared(sub, rel, inv[h], r, inv[t], inv[cand], "tail", ids)
        want = dec.score_shared(ent, rel, h, r, t, cand, "tail")
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sampled", [False, True], ids=["full_batch", "sampled"])
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_rank_shares_add_up_every_decoder(decoder, sampled):
    """Data-parallel scheme in one process: the three ranks' loss shares add up to the
    one-process loss and their gradients to its gradient. ConvE's batch norm normalises
    with each rank's own batch statistics (as DDP without SyncBatchNorm), so it is checked
    with batch norm in eval mode (running statistics)."""
    if sampled and sampling.sampling_backend() is None:
        pytest.skip("no sampling backend")
    tr = trainer_from_config(Config.from_dict(_cfg(decoder, sampled=sampled)), quiet=True)
    source = tr.sampler if sampled else tr.loss
    step = next(source.batches(128, torch.Generator().manual_seed(1)))

    def grads(world: int):
        return rank_share_sums(tr, step, world, sampled=sampled, batch_norm_eval=True)

    v1, g1 = grads(1)
    v3, g3 = grads(3)
    assert v3 == pytest.approx(v1, rel=1e-5)
    for a, b in zip(g1, g3):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------- impossible combinations
@pytest.mark.parametrize("loss", ["flow_nll", "elbo"])
def test_full_batch_only_losses_refuse_sampling_with_reason(loss):
    enc = {"name": "rgcn", "num_layers": 2}
    decoder = "stochastic_flow" if loss == "flow_nll" else "distmult"
    with pytest.raises(ConfigError, match=rf"'{loss}' with train.sampler: impossible, because"):
        trainer_from_config(Config.from_dict(_cfg(decoder, loss=loss, sampled=True,
                                                  encoder=enc)), quiet=True)


def test_loss_needing_a_density_decoder_names_the_combination():
    with pytest.raises(ConfigError, match=r"'flow_nll' with decoder FlowDecoder.*density"):
        trainer_from_config(Config.from_dict(_cfg("flow", loss="flow_nll")), quiet=True)


def test_lookup_encoder_refuses_sampling_with_reason():
    with pytest.raises(ConfigError, match=r"encoder LookupEncoder: impossible, because"):
        trainer_from_config(Config.from_dict(_cfg("flow", sampled=True,
                                                  encoder={"name": "none"})),
                            quiet=True)


def test_every_loss_is_in_the_table():
    table = combination_table()
    for name in [*LOSSES, *DECODERS]:
        assert f"| `{name}` |" in table


def test_readme_table_is_generated_from_the_flags():
    """The README's combination table is exactly :func:`combination_table`'s output
    (regenerate it with ``python scripts/combination_table.py --write``)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert combination_table() in readme


# ----------------------------------------------------------------- two real processes
def _three_steps(tr) -> dict:
    """Losses of three training steps, the (all-reduced) gradients of the first, the weights
    after the third."""
    out: dict = {"losses": []}
    for i, step in enumerate(tr.loss.batches(128, tr.generator) if tr.sampler is None
                             else tr.sampler.batches(128, tr.generator)):
        out["losses"].append(tr._step(step))
        if i == 0:
            out["grads"] = {n: p.grad.to_dense().clone() for n, p in tr.model.named_parameters()
                            if p.grad is not None}
        if i == 2:
            break
    out["state"] = {k: v.clone() for k, v in tr.model.state_dict().items()}
    return out


def _worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    tr = trainer_from_config(Config.from_dict(cfg), quiet=True)
    res = _three_steps(tr)
    tr.dist.close()
    torch.save(res, Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
@needs_backend
@pytest.mark.parametrize("sampled", [False, True], ids=["full_batch", "sampled"])
@pytest.mark.parametrize("decoder", sorted(set(DECODERS) - {"conve"}))
def test_two_processes_equal_one_process_every_decoder(tmp_path, decoder, sampled):
    """Two gloo processes (forked, the torchrun environment) take the one-process steps: the
    same losses, the same summed gradients, the same weights after three steps. (ConvE is
    left out: its batch norm uses per-rank statistics.) Weights are compared where the
    gradient is not rounding noise: a parameter with an exactly-zero true gradient (TransE's
    distances ignore a shift of every embedding, so the encoder's last bias gets none) gets
    Adam steps of size ``lr`` from ~1e-9 rounding differences, in either run."""
    import socket

    cfg = _cfg(decoder, sampled=sampled)
    ref = _three_steps(trainer_from_config(Config.from_dict(cfg), quiet=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(2, port, cfg, str(tmp_path)), nprocs=2,
                       start_method="fork")
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert got["losses"] == pytest.approx(ref["losses"], rel=1e-5)
        assert set(got["grads"]) == set(ref["grads"])
        for k, g in ref["grads"].items():
            torch.testing.assert_close(got["grads"][k], g, atol=1e-6, rtol=1e-4)
        for k, v in ref["state"].items():
            g = ref["grads"].get(k.removeprefix("model."))
            if g is not None and float(g.abs().max()) < 1e-6:
                continue
            torch.testing.assert_close(got["state"][k], v, atol=1e-5, rtol=1e-4)
