"""DD-PPO on `torch.distributed`, launched by `torchrun`, as AllenAct runs FLaRe.

Each rank steps its own envs and computes its own rollout's gradients; before every optimiser step the
gradients are scaled by the rank's share of the global batch and summed over ranks (AllenAct's DD-PPO), then
clipped, then stepped: every rank applies the same update, so the parameters stay identical (checked each
update: `param_spread`). Without torchrun's environment variables this is one rank and nothing is reduced.
The learner (the policy's rollout inference and its updates) lives on `--device`: on the CPU ranks reduce with
gloo; with `--device cuda` each rank's learner takes the GPU of its local rank and ranks reduce with nccl, as
AllenAct's DD-PPO does. The envs and their frame encoders stay in CPU worker processes either way.
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
    device: torch.device = torch.device("cpu")  # the learner's

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and TensorBoard, and evaluates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def learner_device(device: str, local_rank: int = 0) -> torch.device:
    """The learner's device: the CPU, or for "cuda" this rank's GPU (cuda:LOCAL_RANK: one rank per GPU)."""
    if device == "cpu":
        return torch.device("cpu")
    if device != "cuda":
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU (a CPU-only torch, or no driver); use --device cpu")
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible): "
                         "give torchrun --nproc-per-node at most the number of GPUs")  # fmt: skip
    return torch.device("cuda", local_rank)


def setup(device: str = "cpu") -> Ranks:
    """The process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), or one rank;
    the learner on `device` (nccl between GPU learners, gloo between CPU ones)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else 0
    learner = learner_device(device, local_rank)
    if learner.type == "cuda":
        torch.cuda.set_device(learner)
    if world == 1:
        return Ranks(device=learner)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if learner.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, learner)


def teardown(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def run_ranked(train: Callable, config) -> Path:
    """`train(config, ranks)` as one process or as a torchrun rank, the learner on `config.device`; rank 0 holds
    the run directory's lock."""
    ranks = setup(config.device)
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


def reduce_over_ranks(value: float | tuple[float, ...], ranks: Ranks, op: str = "sum") -> float | tuple[float, ...]:
    """`value` (a number, or a tuple of them: one all-reduce for all) summed over ranks, or their "max"."""
    if not ranks.distributed:
        return value
    values = value if isinstance(value, tuple) else (value,)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ranks.device)  # nccl: GPU tensors
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tuple(t.tolist()) if isinstance(value, tuple) else float(t.item())


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
