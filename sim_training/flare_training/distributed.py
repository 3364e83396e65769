"""DD-PPO on `torch.distributed`, launched by `torchrun`, as AllenAct runs FLaRe.

Each rank steps its own envs and computes its own rollout's gradients; before every optimiser step the
gradients are scaled by the rank's share of the global batch and summed over ranks (AllenAct's DD-PPO), then
clipped, then stepped: every rank applies the same update, so the parameters stay identical (checked each
update: `param_spread`). Without torchrun's environment variables this is one rank and nothing is reduced.
The learner's tensors live on the CPU (a GPU renders AI2-THOR), so ranks reduce with gloo; nccl reduces CUDA
tensors only and comes with a learner on the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from flare_training.rundir import RunLock


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and TensorBoard, and evaluates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup() -> Ranks:
    """The process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), or one rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def run_ranked(train: Callable, config) -> Path:
    """`train(config, ranks)` as one process or as a torchrun rank; rank 0 holds the run directory's lock."""
    ranks = setup()
    try:
        if ranks.main:
            with RunLock(config.out):
                return train(config, ranks)
        return train(config, ranks)
    finally:
        teardown(ranks)


def broadcast_parameters(module: torch.nn.Module, ranks: Ranks) -> None:
    """Rank 0's parameters and buffers on every rank (the starting point all updates share)."""
    if ranks.distributed:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def reduce_over_ranks(value: float, ranks: Ranks, op: str = "sum") -> float:
    """`value` summed over ranks, or their "max"."""
    if not ranks.distributed:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return float(t.item())


class GradientSync:
    """Scale this rank's gradients by its share of the global batch and sum them over ranks (one flat all-reduce).
    A parameter without a gradient on this rank (the actor during critic warm-up) counts as zeros, so every rank
    reduces the same buffer."""

    def __init__(self, params: list[torch.nn.Parameter], ranks: Ranks) -> None:
        self.params, self.ranks = params, ranks

    def __call__(self, local: float, total: float) -> None:
        if not self.ranks.distributed:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads]) * (local / total)
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(self.params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).clone()
            offset += n


def param_spread(params: list[torch.nn.Parameter], ranks: Ranks) -> float:
    """The largest difference between ranks of a parameter checksum: 0 while DD-PPO keeps them identical."""
    if not ranks.distributed:
        return 0.0
    checksum = torch.stack([p.detach().double().sum() for p in params]).sum().reshape(1)
    low, high = checksum.clone(), checksum.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return float((high - low).item())
