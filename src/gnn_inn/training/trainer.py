"""The training loop: full-batch encoder, batched decoder, early stopping, checkpoints.

One optimisation step = one encoder pass over the whole train graph (a no-op for the lookup
encoder) + the decoder on the step's queries (see :mod:`gnn_inn.training.losses`). Evaluation
encodes once in eval mode and reuses the embeddings for every query. With ``train.sampler``
a step encodes only the sampled neighbourhood of its entities and evaluation encodes layer by
layer (:mod:`gnn_inn.training.sampling`). Under ``torchrun`` each step's queries are split
over the ranks and the gradients summed (:mod:`gnn_inn.training.distributed`).

Sparse embeddings (``train.sparse_embeddings``): the encoder's entity table gets sparse
gradients (the rows a step used) and is updated by ``torch.optim.SparseAdam``; all other
parameters by the configured optimiser. Both are zeroed, stepped, scheduled (one scheduler
each, same spec) and checkpointed (``optimizer`` / ``sparse_optimizer``). Gradient clipping
counts the sparse rows in the global norm (:func:`~gnn_inn.training.optim.clip_grad_norm`).
Refused with ``weight_decay > 0`` (SparseAdam has none). Under ``torchrun`` the entity
tables' gradients (sparse or dense) are exchanged as the rows a step touched, not as a
dense ``[N, d]`` all-reduce; ``metrics.jsonl`` records ``exchange_bytes_per_step``.

Type constraints: on a typed graph (``relation_types`` and ``entity_type_ranges``, i.e.
ogbl-biokg) the loss is type-constrained by default — ``nssa`` corrupts within the relation's
head / tail type, ``1vsall`` / ``kvsall`` (full batch or neighbour-sampled) drop out-of-type
candidates (:mod:`gnn_inn.training.losses`), as the OGB evaluation does. Config
``train.loss.type_constrained``: omitted / ``null`` = auto (on for a typed graph and a loss
that supports it), ``true`` = on (an error where impossible), ``false`` = off.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import Config, ConfigError, check_resume_config
from ..data import check_vocab
from ..data.triples import edges_outside
from ..decoders.certificate import certify
from ..evaluation import evaluate, evaluate_ogb, metrics_from_ranks
from ..model import load_kg, model_from_config
from ..registry import lookup
from .capabilities import check_combination
from .checkpoint import finite_or_none, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistContext, shard_query_batch
from .guards import NonFiniteError, check_step
from .losses import LOSSES, accepts_type_ranges, build_loss, resolve_type_ranges
from .optim import (
    build_optimizer,
    build_scheduler,
    clip_grad_norm,
    entity_tables,
    split_sparse_parameters,
)
from .sampling import build_sampled_objective
from .tensorboard import TensorBoardLog, require_tensorboard

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, Python and NumPy; return a dedicated generator for data sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"train.device: unknown device {name!r} (cpu, cuda, cuda:N or auto)"
                          ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} asked for, but this torch build sees no CUDA "
                          "device; use cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"train.device: {name!r}: only {torch.cuda.device_count()} CUDA "
                          "device(s) visible")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.device: {name!r} is not supported (cpu, cuda, cuda:N or auto)")
    return dev


#: the step's supervision edges hidden from its encoder (kept under its old name)
remove_triples_from_graph = edges_outside


class Trainer:
    """Trains a :class:`~gnn_inn.model.LinkPredictor` on a :class:`KnowledgeGraph`.

    Args:
        model: the link predictor (its ``graph`` must hold train edges only).
        kg: the knowledge graph (train / valid / test triples, filter index, vocabularies).
        config: the run's :class:`~gnn_inn.config.Config`.
        out_dir: where ``config.yaml``, ``metrics.jsonl``, ``last.pt``, ``best.pt`` and
            ``results.json`` go; ``None`` writes nothing.
        quiet: no progress bars.
    """

    def __init__(self, *, model, kg, config: Config, out_dir: str | Path | None = None,
                 quiet: bool = False) -> None:
        self.config = config
        self.kg = kg
        self.device = resolve_device(config.train.device)
        # torchrun: join the job (one-process context otherwise), one GPU per local rank
        self.dist = DistContext.from_env(self.device)
        if self.dist.enabled and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.model = model.to(self.device)
        self.dist.broadcast_module(self.model)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.quiet = quiet or not sys.stderr.isatty() or not self.dist.is_main
        self.generator = seed_everything(config.seed)
        tcfg = config.train
        loss_kwargs = dict(tcfg.loss)
        try:  # the registry's name for train.loss.name (names are normalised)
            name, loss_cls = lookup("loss", LOSSES, loss_kwargs.pop("name"))
        except ValueError as e:
            raise ConfigError(f"train.loss.name: {e}") from None
        check_combination(encoder=self.model.encoder, decoder=self.model.decoder,
                          loss=name, sampled=tcfg.sampler is not None)
        self.sampler = None  # neighbour-sampled objective (train.sampler), else full batch
        if tcfg.sampler is not None:
            self.sampler = build_sampled_objective(tcfg.sampler, model=self.model, kg=kg,
                                                   loss={**tcfg.loss, "name": name})
            self.loss = None
        else:
            type_ranges = resolve_type_ranges(
                kg, loss_kwargs.pop("type_constrained", None), loss_name=name,
                supported=accepts_type_ranges(loss_cls))
            if type_ranges is not None:
                log.info("loss %r is type-constrained (relation head / tail type ranges)", name)
            try:
                self.loss = build_loss(name, kg.train, kg.num_entities, kg.num_relations,
                                       type_ranges=type_ranges, **loss_kwargs)
            except ValueError as e:  # an unknown or missing option, or a bad value
                if isinstance(e, ConfigError):
                    raise
                raise ConfigError(f"train.loss ({name}): {e}") from None
        # entity tables: exchanged under torchrun as the rows a step touched
        self.row_params = entity_tables(self.model)
        self.exchange_bytes: list[int] = []  # per step, this epoch (torchrun)
        self.sparse_optimizer: torch.optim.Optimizer | None = None
        if tcfg.sparse_embeddings:
            sparse, dense = self._sparse_setup(tcfg)
            self.optimizer = build_optimizer(tcfg, dense)
            self.sparse_optimizer = torch.optim.SparseAdam(sparse, lr=tcfg.lr)
        else:
            self.optimizer = build_optimizer(tcfg, self.model.parameters())
        source = self.sampler if self.sampler is not None else self.loss
        self.steps_per_epoch = source.num_batches(tcfg.batch_size)
        self.scheduler = build_scheduler(tcfg, self.optimizer, self.steps_per_epoch)
        self.sparse_scheduler = (None if self.sparse_optimizer is None else
                                 build_scheduler(tcfg, self.sparse_optimizer,
                                                 self.steps_per_epoch))
        self.epoch = 0
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.bad_evals = 0
        self.best_state: dict[str, Tensor] | None = None
        self.train_seconds = 0.0
        if tcfg.tensorboard and self.dist.is_main:
            require_tensorboard()  # at start, not after the first epoch

    def _sparse_setup(self, tcfg) -> tuple[list, list]:
        """Check ``train.sparse_embeddings`` and split the parameters (sparse, dense)."""
        if tcfg.weight_decay:
            raise ConfigError(
                f"train.sparse_embeddings: weight_decay must be 0 (got {tcfg.weight_decay:g}); "
                "the sparse entity table is trained by SparseAdam, which has no weight decay")
        sparse, dense = split_sparse_parameters(self.model)
        if not sparse:
            raise ConfigError(
                f"train.sparse_embeddings: encoder {type(self.model.encoder).__name__} has no "
                "entity table with sparse gradients (rgcn, compgcn and none have one)")
        return sparse, dense

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.optimizer, self.sparse_optimizer) if o is not None]

    def _schedulers(self) -> list:
        return [s for s in (self.scheduler, self.sparse_scheduler) if s is not None]

    # ------------------------------------------------------------- checkpoint
    def _payload(self) -> dict[str, Any]:
        sparse_opt, sparse_sched = self.sparse_optimizer, self.sparse_scheduler
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "sparse_optimizer": sparse_opt.state_dict() if sparse_opt is not None else None,
            "sparse_scheduler": sparse_sched.state_dict() if sparse_sched is not None else None,
            "rng": rng_state(self.generator),
            "epoch": self.epoch,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_evals": self.bad_evals,
            "train_seconds": self.train_seconds,
            "config": self.config.to_dict(),
            "vocab": self.kg.vocab_dict(),
            "data_fingerprint": self.kg.fingerprint,
        }

    def save(self, name: str) -> None:
        if self.out_dir is not None and self.dist.is_main:
            save_checkpoint(self.out_dir / name, self._payload())

    def resume(self, path: str | Path, *, trusted: bool = False) -> None:
        """Restore model, optimiser, scheduler, RNG states and counters from ``path``.

        The config must equal the checkpoint's except for the keys of
        :data:`~gnn_inn.config.RESUMABLE` (logged); ``trusted``: see
        :func:`~gnn_inn.training.checkpoint.load_checkpoint`.
        """
        ckpt = load_checkpoint(path, map_location=self.device, trusted=trusted)
        for change in check_resume_config(ckpt["config"], self.config, source=str(path)):
            log.info("resume: setting changed and applied: %s", change)
        check_vocab(ckpt["vocab"], self.kg, source=str(path))
        self.model.load_state_dict(ckpt["model"])
        saved_sparse = ckpt.get("sparse_optimizer") is not None  # absent in older checkpoints
        if saved_sparse != (self.sparse_optimizer is not None):
            raise ConfigError(
                f"{path} was saved with train.sparse_embeddings={saved_sparse}; resume it "
                f"with the same setting (got {not saved_sparse})")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.sparse_optimizer is not None:
            self.sparse_optimizer.load_state_dict(ckpt["sparse_optimizer"])
            if self.sparse_scheduler is not None and ckpt.get("sparse_scheduler") is not None:
                self.sparse_scheduler.load_state_dict(ckpt["sparse_scheduler"])
        set_rng_state(ckpt["rng"], self.generator)
        self.epoch = ckpt["epoch"]
        self.best_metric = ckpt["best_metric"]
        self.best_epoch = ckpt["best_epoch"]
        self.bad_evals = ckpt["bad_evals"]
        self.train_seconds = ckpt.get("train_seconds", 0.0)
        best = Path(path).with_name("best.pt")
        if best.is_file() and self.best_epoch > 0:
            self.best_state = load_checkpoint(best, map_location=self.device,
                                              trusted=trusted)["model"]
        log.info("resumed from %s at epoch %d", path, self.epoch)

    # ------------------------------------------------------------------ steps
    def _step(self, step) -> float:
        model = self.model
        model.train()
        if self.sampler is not None:
            loss = self.sampler(model, step, self.dist.rank, self.dist.world_size)
        else:
            loss = self._full_batch_loss(step)
        for opt in self._optimizers():
            opt.zero_grad(set_to_none=True)
        if loss is not None:
            loss.backward()
        # sums gradients (and loss shares) over the ranks; a no-op in one process. Entity
        # tables travel as the rows the step touched (distributed.py)
        value = self.dist.all_reduce_gradients(model.parameters(),
                                               loss if loss is not None else 0.0,
                                               row_params=self.row_params,
                                               sparse=self.sparse_optimizer is not None)
        if self.dist.last_exchange:
            self.exchange_bytes.append(self.dist.last_exchange["bytes"])
        check_step(float(value), model)  # before any non-finite value reaches the weights
        if self.config.train.grad_clip:
            clip_grad_norm(model.parameters(), self.config.train.grad_clip)
        for opt in self._optimizers():
            opt.step()
        model.invalidate_cache()
        return float(value)

    def _full_batch_loss(self, step) -> Tensor | None:
        """Full-graph encoder + this rank's slice of ``step`` (all of it in one process),
        weighted by its share of the step's queries; ``None`` for an empty slice."""
        model, cfg = self.model, self.config
        graph = None
        if cfg.model.mask_targets and model.edge_index.numel():
            triples = torch.cat([_positives(b) for b in step])
            keep = remove_triples_from_graph(model.edge_index, model.edge_type, triples,
                                             self.kg.num_entities, self.kg.num_relations)
            g = model.graph
            graph = g.__class__(edge_index=g.edge_index[:, keep], edge_type=g.edge_type[keep],
                                num_nodes=g.num_nodes)
        ent, rel = model.encode(graph)
        total = sum(b.anchor.numel() for b in step)
        if self.dist.enabled:
            step = [shard_query_batch(b, self.dist.rank, self.dist.world_size) for b in step]
            step = [b for b in step if b.anchor.numel()]
            if not step:
                return None
        return sum(self.loss(model, _to(b, self.device), ent, rel) * (b.anchor.numel() / total)
                   for b in step)

    def train_epoch(self, max_steps: int | None = None) -> float:
        """One pass over the training queries (or its first ``max_steps`` steps); mean loss."""
        source = self.sampler if self.sampler is not None else self.loss
        total = self.steps_per_epoch if max_steps is None else min(max_steps,
                                                                   self.steps_per_epoch)
        # the bar shows steps done / total with tqdm's rate and ETA, plus the running mean
        # loss and the throughput in training triples per second (an epoch covers every
        # training triple once, so a step stands for num_train / steps_per_epoch of them)
        bar = tqdm(source.batches(self.config.train.batch_size, self.generator),
                   total=total, desc=f"epoch {self.epoch + 1}",
                   disable=self.quiet, leave=False, unit="step")
        triples_per_step = self.kg.train.shape[0] / max(self.steps_per_epoch, 1)
        losses = []
        self.exchange_bytes = []
        t0 = time.perf_counter()
        for step in bar:
            try:
                losses.append(self._step(step))
            except NonFiniteError as e:
                raise e.at(self.epoch + 1, len(losses) + 1) from None
            if not self.quiet and (len(losses) % 10 == 0 or len(losses) == total):
                rate = len(losses) * triples_per_step / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}",
                                triples_s=f"{rate:,.0f}", refresh=False)
            if max_steps is not None and len(losses) >= max_steps:
                break
        for sched in self._schedulers():
            if not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step()
        return float(np.mean(losses)) if losses else float("nan")

    # ------------------------------------------------------------- evaluation
    def evaluate(self, split: str = "valid"):
        """Filtered ranking on ``split`` (``valid`` or ``test``) → ``EvalResult``.

        Graphs that carry OGB candidate sets (``kg.ogb_candidates``) are evaluated with the OGB
        protocol instead (:func:`~gnn_inn.evaluation.evaluate_ogb`, realistic ranks).
        """
        triples = getattr(self.kg, split)
        self.model.eval()
        with torch.no_grad():
            if self.kg.ogb_candidates:
                return evaluate_ogb(self.model, self.kg, split,
                                    batch_size=self.config.eval.batch_size,
                                    progress=not self.quiet)
            return evaluate(
                self.model, triples, self.kg.filter_index,
                batch_size=self.config.eval.batch_size, policy=self.config.eval.tie_policy,
                progress=not self.quiet,
            )

    def _log(self, record: dict[str, Any]) -> None:
        if self.out_dir is not None and self.dist.is_main:
            with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(finite_or_none(record), allow_nan=False) + "\n")

    # -------------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        """Train until ``epochs``, early stop or time budget; restore the best weights."""
        cfg = self.config.train
        if self.out_dir is not None and self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.config.dump(self.out_dir / "config.yaml")
        # train.tensorboard: each record also goes to RUN_DIR/tensorboard (flushed per epoch)
        board = (TensorBoardLog(self.out_dir) if cfg.tensorboard and self.out_dir is not None
                 and self.dist.is_main else None)
        stop = False
        while self.epoch < cfg.epochs and not stop:
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            loss = self.train_epoch()
            self.epoch += 1
            dt = time.perf_counter() - t0
            self.train_seconds += dt
            record: dict[str, Any] = {"epoch": self.epoch, "loss": loss, "epoch_seconds": dt}
            if self.exchange_bytes:  # torchrun: gradient bytes this rank sent per step
                record["exchange_bytes_per_step"] = float(np.mean(self.exchange_bytes))
            last = self.epoch == cfg.epochs
            out_of_time = cfg.time_budget is not None and self.train_seconds >= cfg.time_budget
            if cfg.time_budget is not None:  # clocks differ across ranks: rank 0 decides
                out_of_time = self.dist.broadcast_object(out_of_time)
            if (cfg.eval_every and self.epoch % cfg.eval_every == 0) or last or out_of_time:
                # rank 0 evaluates; every rank takes the same decisions from its metrics
                metrics = self.dist.broadcast_object(
                    self.evaluate("valid").metrics() if self.dist.is_main else None)
                record["valid"] = metrics
                for sched in self._schedulers():
                    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        sched.step(metrics["mrr"])
                if metrics["mrr"] > self.best_metric:
                    self.best_metric, self.best_epoch = metrics["mrr"], self.epoch
                    self.bad_evals = 0
                    self.best_state = copy.deepcopy(self.model.state_dict())
                    self.save("best.pt")
                else:
                    self.bad_evals += 1
                    if cfg.patience and self.bad_evals >= cfg.patience:
                        log.info("early stop at epoch %d (best %d)", self.epoch, self.best_epoch)
                        stop = True
                log.info("epoch %d loss %.4f valid mrr %.4f", self.epoch, loss, metrics["mrr"])
            if out_of_time:
                log.info("time budget of %.0f s reached at epoch %d", cfg.time_budget, self.epoch)
                stop = True
            self.save("last.pt")  # before the log line: a kill in between cannot repeat it
            self._log(record)
            if board is not None:
                board.epoch(record, lr=lr)
        if board is not None:
            board.close()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.results()

    def results(self) -> dict[str, Any]:
        """Valid and test metrics of the current weights, as written to ``results.json``
        (computed on rank 0 and broadcast under ``torchrun``)."""
        if not self.dist.is_main:
            return self.dist.broadcast_object(None)
        valid = self.evaluate("valid")
        test = self.evaluate("test")
        res: dict[str, Any] = {
            "dataset": self.kg.name,
            "valid": valid.metrics(),
            "test": test.metrics(),
            "test_head": test.metrics("head"),
            "test_tail": test.metrics("tail"),
            "test_per_category": test.per_category(self.kg.relation_categories()),
            "params": self.model.num_parameters(),
            "train_seconds": self.train_seconds,
            "epochs": self.epoch,
            "best_epoch": self.best_epoch,
            "device": str(self.device),
        }
        patterns = self.kg.relation_patterns
        if patterns:
            res["test_per_pattern"] = per_pattern(test, patterns)
        decoder = self.model.decoder
        if decoder.relation_flows:
            res["relation_patterns"] = dict(zip(self.kg.relation_names, decoder.pattern_table()))
            res["composition_rules"] = decoder.composition_rules()
            res["certificate"] = certify(self.model, per_relation=64, jacobian_samples=4)
        if self.out_dir is not None:
            (self.out_dir / "results.json").write_text(
                json.dumps(finite_or_none(res), indent=2, allow_nan=False) + "\n")
        return self.dist.broadcast_object(res)


def per_pattern(result, patterns: dict[int, str]) -> dict[str, dict[str, float]]:
    """Metrics per relation pattern (synthetic suite), both directions."""
    ranks, rels = result.all_ranks()
    out = {}
    for name in sorted(set(patterns.values())):
        ids = torch.tensor([r for r, p in patterns.items() if p == name])
        sel = torch.isin(rels, ids)
        if sel.any():
            out[name] = metrics_from_ranks(ranks[sel])
    return out


def _positives(b) -> Tensor:
    """The positive triples ``[M, 3]`` a query batch supervises on."""
    if b.rows is not None:
        a, r = b.anchor[b.rows], b.relation[b.rows]
        ans = b.cols
    else:
        a, r, ans = b.anchor, b.relation, b.target
    if b.direction == "tail":
        return torch.stack([a, r, ans], 1)
    return torch.stack([ans, r, a], 1)


def _to(b, device):
    if device.type == "cpu":
        return b
    return b.__class__(**{k: (v.to(device) if isinstance(v, Tensor) else v)
                          for k, v in vars(b).items()})


def trainer_from_config(config: Config, kg=None, *, data_dir: str | None = None,
                        out_dir: str | Path | None = None, quiet: bool = False) -> Trainer:
    """A :class:`Trainer` for ``config``: loads the dataset unless ``kg`` is given, builds the
    model (:func:`~gnn_inn.model.model_from_config`)."""
    kg = kg if kg is not None else load_kg(config, data_dir)
    model = model_from_config(config, kg)
    return Trainer(model=model, kg=kg, config=config, out_dir=out_dir, quiet=quiet)
