"""The training loop: full-batch encoder, batched decoder, early stopping, checkpoints.

One optimisation step = one encoder pass over the whole train graph (a no-op for the lookup
encoder) + the decoder on the step's queries (see :mod:`gnn_inn.training.losses`). Evaluation
encodes once in eval mode and reuses the embeddings for every query. With ``train.sampler``
a step encodes only the sampled neighbourhood of its entities and evaluation encodes layer by
layer (:mod:`gnn_inn.training.sampling`). Under ``torchrun`` each step's queries are split
over the ranks and the gradients summed (:mod:`gnn_inn.training.distributed`).
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

from ..config import Config
from ..evaluation import evaluate, evaluate_ogb
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistContext, shard_query_batch
from .losses import build_loss

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
    return torch.device(name)


def build_optimizer(cfg, params) -> torch.optim.Optimizer:
    name = cfg.optimizer.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer: unknown optimizer {cfg.optimizer!r} (adam, adamw, adagrad)")


def build_scheduler(cfg, optimizer, steps_per_epoch: int):
    spec = cfg.scheduler
    if not spec:
        return None
    spec = dict(spec)
    name = spec.pop("name", None)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, **spec)
    if name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, **spec)
    if name == "cosine":
        spec.setdefault("T_max", cfg.epochs)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **spec)
    if name == "plateau":
        spec.setdefault("mode", "max")
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **spec)
    raise ValueError(
        f"train.scheduler.name: unknown scheduler {name!r} (step, exponential, cosine, plateau)"
    )


def remove_triples_from_graph(edge_index: Tensor, edge_type: Tensor, triples: Tensor,
                              num_entities: int, num_relations: int) -> Tensor:
    """Boolean mask ``[E]`` keeping the edges that are *not* one of ``triples[M, 3]`` or their
    inverse edges (types ``r + R``). Used to hide a step's supervision triples from its encoder.
    """
    src, dst = edge_index
    base = edge_type % num_relations
    fwd = edge_type < num_relations
    # orient every edge back to its original (h, r, t)
    h = torch.where(fwd, src, dst)
    t = torch.where(fwd, dst, src)
    n = num_entities
    ekey = (h * num_relations + base) * n + t
    tk = triples.to(edge_index.device)
    tkey = torch.sort((tk[:, 0] * num_relations + tk[:, 1]) * n + tk[:, 2]).values
    pos = torch.searchsorted(tkey, ekey).clamp_max(max(tkey.numel() - 1, 0))
    return tkey[pos] != ekey if tkey.numel() else torch.ones_like(ekey, dtype=torch.bool)


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
        self.sampler = None  # neighbour-sampled objective (train.sampler), else full batch
        if tcfg.sampler is not None:
            from .sampling import build_sampled_objective

            self.sampler = build_sampled_objective(tcfg.sampler, model=self.model, kg=kg,
                                                   loss=tcfg.loss)
            self.loss = None
        else:
            self.loss = build_loss(loss_kwargs.pop("name"), kg.train, kg.num_entities,
                                   kg.num_relations, **loss_kwargs)
        self.optimizer = build_optimizer(tcfg, self.model.parameters())
        source = self.sampler if self.sampler is not None else self.loss
        self.steps_per_epoch = source.num_batches(tcfg.batch_size)
        self.scheduler = build_scheduler(tcfg, self.optimizer, self.steps_per_epoch)
        self.epoch = 0
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.bad_evals = 0
        self.best_state: dict[str, Tensor] | None = None
        self.train_seconds = 0.0

    # ------------------------------------------------------------- checkpoint
    def _payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng_state(self.generator),
            "epoch": self.epoch,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_evals": self.bad_evals,
            "train_seconds": self.train_seconds,
            "config": self.config.to_dict(),
            "vocab": self.kg.vocab_dict(),
        }

    def save(self, name: str) -> None:
        if self.out_dir is not None and self.dist.is_main:
            save_checkpoint(self.out_dir / name, self._payload())

    def resume(self, path: str | Path) -> None:
        """Restore model, optimiser, scheduler, RNG states and counters from ``path``."""
        from ..data import check_vocab

        ckpt = load_checkpoint(path, map_location=self.device)
        check_vocab(ckpt["vocab"], self.kg, source=str(path))
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"], self.generator)
        self.epoch = ckpt["epoch"]
        self.best_metric = ckpt["best_metric"]
        self.best_epoch = ckpt["best_epoch"]
        self.bad_evals = ckpt["bad_evals"]
        self.train_seconds = ckpt.get("train_seconds", 0.0)
        best = Path(path).with_name("best.pt")
        if best.is_file() and self.best_epoch > 0:
            self.best_state = load_checkpoint(best, map_location=self.device)["model"]
        log.info("resumed from %s at epoch %d", path, self.epoch)

    # ------------------------------------------------------------------ steps
    def _step(self, step) -> float:
        model = self.model
        model.train()
        if self.sampler is not None:
            loss = self.sampler(model, step, self.dist.rank, self.dist.world_size)
        else:
            loss = self._full_batch_loss(step)
        self.optimizer.zero_grad(set_to_none=True)
        if loss is not None:
            loss.backward()
        # sums gradients (and loss shares) over the ranks; a no-op in one process
        value = self.dist.all_reduce_gradients(model.parameters(),
                                               loss if loss is not None else 0.0)
        if self.config.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.train.grad_clip)
        self.optimizer.step()
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
        bar = tqdm(source.batches(self.config.train.batch_size, self.generator),
                   total=total, desc=f"epoch {self.epoch + 1}",
                   disable=self.quiet, leave=False, unit="step")
        losses = []
        for step in bar:
            losses.append(self._step(step))
            if len(losses) % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
            if max_steps is not None and len(losses) >= max_steps:
                break
        if self.scheduler is not None and not isinstance(
            self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
        ):
            self.scheduler.step()
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
            if getattr(self.kg, "ogb_candidates", None):
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
                f.write(json.dumps(record) + "\n")

    # -------------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        """Train until ``epochs``, early stop or time budget; restore the best weights."""
        cfg = self.config.train
        if self.out_dir is not None and self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.config.dump(self.out_dir / "config.yaml")
        stop = False
        while self.epoch < cfg.epochs and not stop:
            t0 = time.perf_counter()
            loss = self.train_epoch()
            self.epoch += 1
            dt = time.perf_counter() - t0
            self.train_seconds += dt
            record: dict[str, Any] = {"epoch": self.epoch, "loss": loss, "epoch_seconds": dt}
            last = self.epoch == cfg.epochs
            out_of_time = cfg.time_budget is not None and self.train_seconds >= cfg.time_budget
            if cfg.time_budget is not None:  # clocks differ across ranks: rank 0 decides
                out_of_time = self.dist.broadcast_object(out_of_time)
            if (cfg.eval_every and self.epoch % cfg.eval_every == 0) or last or out_of_time:
                # rank 0 evaluates; every rank takes the same decisions from its metrics
                metrics = self.dist.broadcast_object(
                    self.evaluate("valid").metrics() if self.dist.is_main else None)
                record["valid"] = metrics
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.scheduler.step(metrics["mrr"])
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
            self._log(record)
            self.save("last.pt")
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
        patterns = getattr(self.kg, "relation_patterns", None)
        if patterns:
            res["test_per_pattern"] = per_pattern(test, patterns)
        decoder = self.model.decoder
        if hasattr(decoder, "pattern_table"):
            from ..decoders.certificate import certify

            res["relation_patterns"] = dict(zip(self.kg.relation_names, decoder.pattern_table()))
            res["certificate"] = certify(self.model, per_relation=64, jacobian_samples=4)
        if self.out_dir is not None:
            (self.out_dir / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        return self.dist.broadcast_object(res)


def per_pattern(result, patterns: dict[int, str]) -> dict[str, dict[str, float]]:
    """Metrics per relation pattern (synthetic suite), both directions."""
    from ..evaluation import metrics_from_ranks

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
    if b.kind == "tail":
        return torch.stack([a, r, ans], 1)
    return torch.stack([ans, r, a], 1)


def _to(b, device):
    if device.type == "cpu":
        return b
    return b.__class__(**{k: (v.to(device) if isinstance(v, Tensor) else v)
                          for k, v in vars(b).items()})
