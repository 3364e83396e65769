"""Batches of gridhouse envs: in-process, or split over worker processes that step their shares in parallel.

Each worker holds a gymnasium SyncVectorEnv over its share of the envs, so N envs cost `workers` processes,
not N: on a 2-core machine two workers step 32 envs in parallel while the learner waits, where one process
per env (gymnasium's AsyncVectorEnv) spends more on pickling and context switches than it gains.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import traceback
from typing import Any

import gymnasium as gym
import numpy as np

from flare_sim.config import GridhouseConfig
from flare_sim.env import GridhouseEnv
from flare_sim.tasks import TRAIN_FAMILIES


def make_vector_env(
    num_envs: int,
    config: GridhouseConfig | None = None,
    families: tuple[str, ...] = TRAIN_FAMILIES,
    split: str = "train",
    expert: bool = False,
    workers: int = 0,
) -> gym.vector.VectorEnv:
    """N envs stepped in this process (workers=0) or split over `workers` processes; seed with reset(seed=...).

    Autoreset is SAME_STEP: the observation returned is always the one to act on next; when an episode
    ends, its outcome is in `info["final_info"]` (masked by `info["_final_info"]`) and `info` already
    describes the new episode (its `expert_action` included). Env i gets seed `seed + i` whatever the number
    of workers, so the same seed gives the same episodes in-process and split.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if not 0 <= workers <= num_envs:
        raise ValueError(f"workers must be between 0 (in-process) and num_envs ({num_envs}), got {workers}")
    make = functools.partial(GridhouseEnv, config, families, split, expert)
    if workers == 0:
        return _sync(make, num_envs)
    return ShardedVectorEnv(make, num_envs, workers)


def _sync(make, num_envs: int) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def _worker(pipe, make, num_envs: int) -> None:
    envs = _sync(make, num_envs)
    try:
        while True:
            command, payload = pipe.recv()
            if command == "close":
                break
            try:
                result = envs.step(payload) if command == "step" else envs.reset(**payload)
            except Exception as error:  # reported to the learner, which raises it with the worker's traceback
                pipe.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
            else:
                pipe.send(("ok", result))
    except (EOFError, KeyboardInterrupt):
        pass  # the learner went away
    finally:
        envs.close()
        pipe.close()


class ShardedVectorEnv(gym.vector.VectorEnv):
    """`num_envs` gridhouse envs split into `workers` contiguous shards, one SyncVectorEnv per process."""

    def __init__(self, make, num_envs: int, workers: int) -> None:
        sizes = [len(s) for s in np.array_split(np.arange(num_envs), workers)]
        self.num_envs = num_envs
        self._offsets = np.cumsum([0, *sizes])
        probe = make()
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.metadata = dict(probe.metadata, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        probe.close()
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        ctx = mp.get_context("forkserver")  # the learner holds torch threads: do not fork them
        self._pipes, self._processes = [], []
        for size in sizes:
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child, make, size), daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)
        self.closed = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        for k, pipe in enumerate(self._pipes):
            shard_seed = None if seed is None else seed + int(self._offsets[k])
            pipe.send(("reset", {"seed": shard_seed, "options": options}))
        obs, infos = zip(*self._gather(), strict=True)
        return _merge_obs(obs), _merge_info(infos, self._sizes)

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got shape {actions.shape}")
        for k, pipe in enumerate(self._pipes):
            pipe.send(("step", actions[self._offsets[k] : self._offsets[k + 1]]))
        obs, rewards, terminated, truncated, infos = zip(*self._gather(), strict=True)
        return (
            _merge_obs(obs),
            np.concatenate(rewards),
            np.concatenate(terminated),
            np.concatenate(truncated),
            _merge_info(infos, self._sizes),
        )

    @property
    def _sizes(self) -> list[int]:
        return np.diff(self._offsets).tolist()

    def _gather(self) -> list:
        replies = [pipe.recv() for pipe in self._pipes]
        errors = [payload for status, payload in replies if status == "error"]
        if errors:
            raise RuntimeError("a gridhouse env worker failed:\n" + "\n".join(errors))
        return [payload for _, payload in replies]

    def close_extras(self, **kwargs) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()


def _merge_obs(parts: tuple[dict, ...]) -> dict:
    """Per-shard batched observations -> one batch (arrays concatenated, goal texts joined)."""
    merged = {}
    for key, first in parts[0].items():
        values = [p[key] for p in parts]
        merged[key] = np.concatenate(values) if isinstance(first, np.ndarray) else sum(values, ())
    return merged


def _merge_info(parts: tuple[dict, ...], sizes: list[int]) -> dict:
    """gymnasium vector infos (arrays with `_key` masks, nested dicts) from shards -> one; absent = masked out."""
    merged: dict = {}
    for key in dict.fromkeys(k for p in parts for k in p):
        values = [p.get(key) for p in parts]
        if any(isinstance(v, dict) for v in values):
            merged[key] = _merge_info(tuple(v or {} for v in values), sizes)
            continue
        like = next(v for v in values if v is not None)
        merged[key] = np.concatenate(
            [v if v is not None else _blank(like, n) for v, n in zip(values, sizes, strict=True)]
        )
    return merged


def _blank(like: np.ndarray, n: int) -> np.ndarray:
    return np.full(n, None) if like.dtype == object else np.zeros(n, dtype=like.dtype)
