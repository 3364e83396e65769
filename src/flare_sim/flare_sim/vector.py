"""Batches of envs: in-process, or split over worker processes that step their shares in parallel.

Each worker holds a gymnasium SyncVectorEnv over its share of the envs, so N envs cost `workers` processes,
not N: on a 2-core machine two workers step 32 envs in parallel while the learner waits, where one process
per env (gymnasium's AsyncVectorEnv) spends more on pickling and context switches than it gains.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import traceback
from collections.abc import Callable
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
    observe: Callable[[dict], dict] | None = None,
) -> gym.vector.VectorEnv:
    """N envs stepped in this process (workers=0) or split over `workers` processes; seed with reset(seed=...).

    Both kinds also step in two halves, `step_async(actions)` then `step_wait()`, so that a learner can work
    while worker processes step (in-process envs step at `step_wait`). `observe` (picklable) is applied to
    every batched observation where the envs run, before it is returned: a trainer's frozen encoder runs in
    the workers, in parallel, instead of in the learner. Autoreset is SAME_STEP: the observation returned is
    always the one to act on next; when an episode ends, its outcome is in `info["final_info"]` (masked by
    `info["_final_info"]`) and `info` already describes the new episode (its `expert_action` included). Env i
    gets seed `seed + i` whatever the number of workers, so the same seed gives the same episodes in-process
    and split.
    """
    return vectorize(functools.partial(_gridhouse, config, families, split, expert), num_envs, workers, observe)


def _gridhouse(config, families, split, expert, index: int) -> GridhouseEnv:
    return GridhouseEnv(config, families, split, expert)


def vectorize(
    make: Callable[[int], gym.Env], num_envs: int, workers: int = 0, observe: Callable[[dict], dict] | None = None
) -> gym.vector.VectorEnv:
    """Any env factory as make_vector_env batches gridhouse envs; `make(i)` builds env i (picklable with workers).
    One worker per env gives each env a process of its own (a simulator that must not share one)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if not 0 <= workers <= num_envs:
        raise ValueError(f"workers must be between 0 (in-process) and num_envs ({num_envs}), got {workers}")
    if workers == 0:
        return _sync(make, num_envs, observe)
    return ShardedVectorEnv(make, num_envs, workers, observe)


class InProcessVectorEnv(gym.vector.SyncVectorEnv):
    """gymnasium's SyncVectorEnv with the worker-backed envs' split step (it steps at `step_wait`) and
    `observe` hook."""

    def __init__(self, env_fns, observe: Callable[[dict], dict] | None = None, **kwargs) -> None:
        super().__init__(env_fns, **kwargs)
        self._observe = observe or _identity

    def reset(self, **kwargs):
        obs, info = super().reset(**kwargs)
        return self._observe(obs), info

    def step(self, actions):
        obs, *rest = super().step(actions)
        return self._observe(obs), *rest

    def step_async(self, actions) -> None:
        self._pending_actions = actions

    def step_wait(self):
        return self.step(self._pending_actions)


def _identity(obs: dict) -> dict:
    return obs


def _sync(make, num_envs: int, observe: Callable[[dict], dict] | None = None, first: int = 0) -> InProcessVectorEnv:
    makers = [functools.partial(make, first + i) for i in range(num_envs)]
    return InProcessVectorEnv(makers, observe, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def _worker(pipe, make, num_envs: int, first: int, observe: Callable[[dict], dict] | None) -> None:
    try:
        envs = _sync(make, num_envs, observe, first)
    except Exception as error:  # an env that cannot start: every request is answered with why
        envs, failure = None, f"{type(error).__name__}: {error}"
    try:
        while True:
            command, payload = pipe.recv()
            if command == "close":
                break
            if envs is None:
                pipe.send(("error", failure))
                continue
            try:
                if command == "spaces":
                    result = (envs.single_observation_space, envs.single_action_space, dict(envs.envs[0].metadata))
                else:
                    result = envs.step(payload) if command == "step" else envs.reset(**payload)
            except Exception as error:  # reported to the learner, which raises it with the worker's traceback
                pipe.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
            else:
                pipe.send(("ok", result))
    except (EOFError, KeyboardInterrupt):
        pass  # the learner went away
    finally:
        if envs is not None:
            envs.close()
        pipe.close()


class EnvWorkerError(RuntimeError):
    """An env in a worker process raised; the message carries its error (and traceback, after start-up)."""


class ShardedVectorEnv(gym.vector.VectorEnv):
    """`num_envs` envs split into `workers` contiguous shards, one SyncVectorEnv per process."""

    def __init__(self, make, num_envs: int, workers: int, observe: Callable[[dict], dict] | None = None) -> None:
        sizes = [len(s) for s in np.array_split(np.arange(num_envs), workers)]
        self.num_envs = num_envs
        self._offsets = np.cumsum([0, *sizes])
        ctx = mp.get_context("forkserver")  # the learner holds torch threads: do not fork them
        self._pipes, self._processes = [], []
        for size, first in zip(sizes, self._offsets, strict=False):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child, make, size, int(first), observe), daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)
        self.closed = False
        # The spaces come from a worker's envs: the learner never builds an env of its own (a simulator process).
        try:
            for k in range(len(self._pipes)):
                self._send(k, ("spaces", None))
            observation_space, action_space, metadata = self._gather()[0]
        except RuntimeError:  # an env could not start: the healthy workers' envs are closed too
            self.close_extras()
            raise
        self.single_observation_space, self.single_action_space = observation_space, action_space
        self.metadata = dict(metadata, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Env i gets `seed + i`, or `seed[i]` given one seed per env (as gymnasium's vector envs take them)."""
        if isinstance(seed, list | tuple) and len(seed) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds, one per env, got {len(seed)}")
        for k in range(len(self._pipes)):
            start, stop = int(self._offsets[k]), int(self._offsets[k + 1])
            shard_seed = seed[start:stop] if isinstance(seed, list | tuple) else None if seed is None else seed + start
            self._send(k, ("reset", {"seed": shard_seed, "options": options}))
        obs, infos = zip(*self._gather(), strict=True)
        return _merge_obs(obs), _merge_info(infos, self._sizes)

    def step(self, actions):
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions) -> None:
        """Hand the actions to the workers and return at once: the caller works while the envs step."""
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got shape {actions.shape}")
        for k in range(len(self._pipes)):
            self._send(k, ("step", actions[self._offsets[k] : self._offsets[k + 1]]))

    def step_wait(self):
        """The results of the last `step_async`, as `step` returns them."""
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

    def _send(self, k: int, message: tuple) -> None:
        try:
            self._pipes[k].send(message)
        except (BrokenPipeError, ConnectionError) as error:
            raise self._died(k) from error

    def _died(self, k: int) -> RuntimeError:
        """A worker that died without a word (killed, out of memory), named with its exit code."""
        process = self._processes[k]
        process.join(timeout=1)
        return RuntimeError(
            f"env worker {k} (pid {process.pid}) died, exit code {process.exitcode}: its envs are "
            "gone; check memory (dmesg) and start the run again (a PPO run resumes from its last update)"
        )

    def _gather(self) -> list:
        replies = []
        for k, pipe in enumerate(self._pipes):
            try:
                replies.append(pipe.recv())
            except (EOFError, ConnectionError) as error:
                raise self._died(k) from error
        errors = [payload for status, payload in replies if status == "error"]
        if errors:
            raise EnvWorkerError("an env worker failed: " + "\n".join(dict.fromkeys(errors)))
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
    return np.full(n, None) if like.dtype == object else np.zeros((n, *like.shape[1:]), dtype=like.dtype)
