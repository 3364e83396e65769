"""Parallel rollouts: gymnasium's AsyncVectorEnv running one GridhouseEnv per subprocess."""

from __future__ import annotations

import functools

import gymnasium as gym

from flare_sim.config import GridhouseConfig
from flare_sim.env import GridhouseEnv
from flare_sim.tasks import TRAIN_FAMILIES


def make_vector_env(
    num_envs: int,
    config: GridhouseConfig | None = None,
    families: tuple[str, ...] = TRAIN_FAMILIES,
    split: str = "train",
    expert: bool = False,
    asynchronous: bool = True,
) -> gym.vector.VectorEnv:
    """N envs in subprocesses (or in-process with asynchronous=False); seed them with reset(seed=...).

    Autoreset is SAME_STEP: the observation returned is always the one to act on next; when an episode
    ends, its outcome is in `info["final_info"]` (masked by `info["_final_info"]`) and `info` already
    describes the new episode (its `expert_action` included).
    Shared memory is off on purpose: gymnasium's shared-memory path drops `Text` observations (the goal
    arrives blank), which would silently blind the policy to its goal.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    make = functools.partial(GridhouseEnv, config, families, split, expert)
    same_step = gym.vector.AutoresetMode.SAME_STEP
    if not asynchronous:
        return gym.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=same_step)
    return gym.vector.AsyncVectorEnv([make] * num_envs, shared_memory=False, autoreset_mode=same_step)
