r"""Data-parallel training with ``torch.distributed`` (``torchrun``; gloo on CPU, nccl on GPU).

Launch::

    torchrun --standalone --nproc_per_node 2 -m gnn_inn.cli train --config FILE --out DIR

:meth:`DistContext.from_env` reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and joins the
process group; without them it returns a one-process context whose helpers are no-ops.

With ``W`` ranks the trainer runs the one-process step exactly: every rank draws the same
queries and negatives; rank ``k`` scores the ``k``-th contiguous slice of the ``B`` queries
(:func:`shard_range`) and weighs its mean loss by ``B_k / B``; gradients are summed
(:meth:`DistContext.all_reduce_gradients`), the entity tables (``[N, d]``) as the rows the
step touched (``row_params``) unless that costs more than half a dense all-reduce; rank 0
evaluates, logs and checkpoints and broadcasts its validation metrics.

Measurements and design notes: docs/design-notes.md#training-distributed

References
----------
Li et al., "PyTorch Distributed: experiences on accelerating data parallel training",
VLDB 2020.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)

#: floats per all-reduce bucket (64 MiB of float32)
BUCKET_NUMEL = 1 << 24


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, end)`` of rank ``rank``'s contiguous slice of ``n`` items.

    Slices differ in size by at most one (the first ``n mod W`` ranks get one more), cover
    ``range(n)`` exactly once and may be empty when ``n < W``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_query_batch(batch, rank: int, world_size: int):
    """Rank ``rank``'s slice of a :class:`~gnn_inn.training.losses.QueryBatch`.

    Per-query tensors (``anchor``, ``relation``, ``target``, ``other``) are sliced; the
    multi-hot pairs of KvsAll (``rows [P]``, ``cols [P]``) keep the entries of the slice's
    queries, with ``rows`` renumbered from 0.
    """
    if world_size == 1:
        return batch
    start, end = shard_range(batch.anchor.numel(), rank, world_size)
    fields_ = dict(vars(batch))
    for key in ("anchor", "relation", "target", "other"):
        v = fields_.get(key)
        if isinstance(v, Tensor):
            fields_[key] = v[start:end]
    if batch.rows is not None:
        keep = (batch.rows >= start) & (batch.rows < end)
        fields_["rows"] = batch.rows[keep] - start
        fields_["cols"] = batch.cols[keep]
    return type(batch)(**fields_)


@dataclass
class DistContext:
    """Where this process stands in a ``torch.distributed`` job (rank 0 of 1 when alone).

    Attributes:
        rank, world_size, local_rank: as ``torchrun`` sets them.
        backend: ``"gloo"`` / ``"nccl"``, ``None`` when not distributed.
        owns_group: whether :meth:`from_env` created the process group (then :meth:`close`
            destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False
    _device: torch.device = field(default_factory=lambda: torch.device("cpu"), repr=False)
    #: the latest :meth:`all_reduce_gradients`: ``{"bytes": payload this rank sent,
    #: "dense_bytes": what a dense all-reduce of the same gradients sends, "rows": rows
    #: exchanged by the row-wise tables}``
    last_exchange: dict = field(default_factory=dict, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---------------------------------------------------------------- set-up
    @classmethod
    def from_env(cls, device: torch.device | str = "cpu") -> DistContext:
        """Join the job described by the environment, or return a one-process context.

        An already initialised default process group (e.g. from ``mp.spawn``) is used as is.
        Otherwise, ``WORLD_SIZE > 1`` initialises one with ``init_method="env://"`` (``RANK``,
        ``MASTER_ADDR``, ``MASTER_PORT`` from ``torchrun``), backend ``nccl`` when ``device``
        is CUDA and ``gloo`` else. On ranks > 0 the package's log level is raised to WARNING.
        """
        device = torch.device(device)
        if dist.is_available() and dist.is_initialized():
            ctx = cls(rank=dist.get_rank(), world_size=dist.get_world_size(),
                      local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                      backend=str(dist.get_backend()), owns_group=False)
        else:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            if world <= 1:
                return cls(_device=device)
            if not dist.is_available():
                raise RuntimeError("WORLD_SIZE > 1 but this torch build has no "
                                   "torch.distributed; run a single process")
            for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
                if key not in os.environ:
                    raise RuntimeError(f"WORLD_SIZE={world} but {key} is not set; launch with "
                                       "torchrun --nproc_per_node N -m gnn_inn.cli train ...")
            backend = "nccl" if device.type == "cuda" else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend=backend, init_method="env://")
            ctx = cls(rank=dist.get_rank(), world_size=dist.get_world_size(),
                      local_rank=int(os.environ.get("LOCAL_RANK", "0")), backend=backend,
                      owns_group=True)
        ctx._device = device
        if ctx.world_size > 1 and ctx.rank > 0:
            logging.getLogger("gnn_inn").setLevel(logging.WARNING)
        log.info("distributed: rank %d of %d (%s)", ctx.rank, ctx.world_size, ctx.backend)
        return ctx

    def close(self) -> None:
        """Destroy the process group if :meth:`from_env` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    # -------------------------------------------------------------- helpers
    def _comm_device(self) -> torch.device:
        return self._device if self.backend == "nccl" else torch.device("cpu")

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module``."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                buf = t.detach().to(self._comm_device())
                dist.broadcast(buf, src=0)
                if buf.data_ptr() != t.data_ptr():
                    t.copy_(buf)

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank (any picklable value)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._comm_device()
                                   if self.backend == "nccl" else None)
        return box[0]

    def all_reduce_gradients(self, params, loss: Tensor | float | None = None,
                             row_params=(), sparse: bool = False) -> float | None:
        """Sum every parameter's gradient over the ranks (see the module docstring).

        Args:
            params: the model's parameters (same order on every rank).
            loss: this rank's share of the step loss (for logging); summed with the
                gradients' bookkeeping at no extra collective.
            row_params: parameters (``[N, d]`` tables) exchanged by touched rows rather than
                densely (same set on every rank).
            sparse: give the row tables sparse gradients (``SparseAdam``), else dense ones.

        Returns:
            the global step loss (sum of the shares) when ``loss`` was given, else ``None``.
        """
        params = [p for p in params if p.requires_grad]
        share = float(loss.detach()) if isinstance(loss, Tensor) else loss
        if not self.enabled:
            return share
        dev = self._comm_device()
        row_ids = {id(p) for p in row_params}
        rows = [p for p in params if id(p) in row_ids]
        params = [p for p in params if id(p) not in row_ids]
        # one small collective: how many ranks hold each parameter's gradient, and the loss
        flags = torch.tensor([float(p.grad is not None) for p in params]
                             + [0.0 if share is None else share], dtype=torch.float64, device=dev)
        dist.all_reduce(flags, op=dist.ReduceOp.SUM)
        total_loss = float(flags[-1])
        present = [p for p, f in zip(params, flags[:-1].tolist()) if f > 0]
        sent = 8 * flags.numel()
        dense = sum(p.numel() * p.element_size() for p in [*params, *rows])
        if rows:
            dense_rows, nrows, row_bytes = self._exchange_rows(rows, dev, sparse)
            present += dense_rows
            sent += row_bytes
        else:
            nrows = 0
        bucket: list[Tensor] = []
        numel = 0
        for p in present:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            elif p.grad.is_sparse:
                p.grad = p.grad.to_dense()
            bucket.append(p)
            numel += p.numel()
            sent += p.numel() * p.element_size()
            if numel >= BUCKET_NUMEL:
                self._reduce_bucket(bucket, dev)
                bucket, numel = [], 0
        if bucket:
            self._reduce_bucket(bucket, dev)
        self.last_exchange = {"bytes": sent, "dense_bytes": dense, "rows": nrows}
        return total_loss if share is not None else None

    @staticmethod
    def _touched_rows(p: Tensor) -> tuple[Tensor, Tensor]:
        """``(ids [M], values [M, d])`` of the rows of ``p.grad`` (sparse: coalesced rows;
        dense: nonzero rows; none: empty)."""
        g = p.grad
        if g is None:
            return (torch.zeros(0, dtype=torch.long, device=p.device),
                    p.new_zeros((0, *p.shape[1:])))
        if g.is_sparse:
            g = g.coalesce()
            return g.indices()[0], g.values()
        idx = g.reshape(g.shape[0], -1).ne(0).any(1).nonzero().squeeze(1)
        return idx, g[idx]

    def _exchange_rows(self, rows: list[Tensor], dev: torch.device, sparse: bool
                       ) -> tuple[list[Tensor], int, int]:
        """Exchange the touched rows of the ``rows`` tables; return the tables to all-reduce
        densely instead (too many rows touched), the rows exchanged and the bytes sent."""
        parts = [self._touched_rows(p) for p in rows]
        counts = torch.tensor([ids.numel() for ids, _ in parts], dtype=torch.long, device=dev)
        gathered = [torch.empty_like(counts) for _ in range(self.world_size)]
        dist.all_gather(gathered, counts)
        per_rank = torch.stack(gathered).cpu()  # [W, tables]
        sent = 8 * counts.numel()
        dense, total = [], 0
        for j, (p, (ids, vals)) in enumerate(zip(rows, parts)):
            width = p[0].numel() * p.element_size() + 8  # a row's values + its id
            most = int(per_rank[:, j].max())
            if most == 0:
                continue  # no rank touched this table: its gradient stays None
            if not sparse and 2 * most * width > p.numel() * p.element_size():
                dense.append(p)  # nearly every row touched: the dense all-reduce is cheaper
                continue
            pad = most - ids.numel()
            ids_p = torch.cat([ids, ids.new_zeros(pad)]).to(dev)
            vals_p = torch.cat([vals.reshape(ids.numel(), -1),
                                vals.new_zeros(pad, p[0].numel())]).to(dev)
            all_ids = [torch.empty_like(ids_p) for _ in range(self.world_size)]
            all_vals = [torch.empty_like(vals_p) for _ in range(self.world_size)]
            dist.all_gather(all_ids, ids_p)
            dist.all_gather(all_vals, vals_p)
            sent += most * width
            n = per_rank[:, j].tolist()
            cat_ids = torch.cat([a[:k] for a, k in zip(all_ids, n)]).to(p.device)
            cat_vals = torch.cat([v[:k] for v, k in zip(all_vals, n)]).to(p.device, p.dtype)
            total += cat_ids.numel()
            if sparse:
                p.grad = torch.sparse_coo_tensor(cat_ids.unsqueeze(0),
                                                 cat_vals.view(-1, *p.shape[1:]),
                                                 p.shape, check_invariants=False).coalesce()
            else:  # every rank adds the same rows in the same (rank) order: identical sums
                g = torch.zeros_like(p)
                g.view(p.shape[0], -1).index_add_(0, cat_ids, cat_vals)
                p.grad = g
        return dense, total, sent

    @staticmethod
    def _reduce_bucket(bucket: list[Tensor], dev: torch.device) -> None:
        flat = torch.cat([p.grad.reshape(-1) for p in bucket]).to(dev)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in bucket:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n


__all__ = ["DistContext", "shard_query_batch", "shard_range"]
