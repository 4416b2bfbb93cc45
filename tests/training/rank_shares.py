"""Simulated data-parallel ranks in one process (shared by the distributed and contract tests)."""

from __future__ import annotations

import torch

from gnn_inn.training.distributed import DistContext


def rank_share_sums(tr, step, world: int, *, sampled: bool,
                    batch_norm_eval: bool = False) -> tuple[float, list[torch.Tensor]]:
    """Sum over ``world`` simulated ranks of each rank's loss share and of its gradients
    (the all-reduce scheme without the communication), for one step of trainer ``tr``.

    ``batch_norm_eval``: batch-norm layers use their running statistics (a rank's own batch
    statistics differ from the global batch's, as in DDP without SyncBatchNorm).
    """
    params = [p for p in tr.model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    value = 0.0
    for rank in range(world):
        tr.dist = DistContext(rank=rank, world_size=world)
        tr.model.zero_grad(set_to_none=True)
        tr.model.train()
        if batch_norm_eval:
            for m in tr.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        share = (tr.sampler(tr.model, step, rank, world) if sampled
                 else tr._full_batch_loss(step))
        share.backward()
        value += float(share.detach())
        for acc, p in zip(total, params):
            if p.grad is not None:
                acc += p.grad.to_dense()
    return value, total
