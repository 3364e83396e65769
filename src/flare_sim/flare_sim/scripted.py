"""Scripted reference policies (the expert, uniform random) and a per-family success evaluation.

These are the yardsticks a learned policy is read against: the expert is the ceiling, random the floor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from flare_sim.config import GridhouseConfig
from flare_sim.env import GridhouseEnv
from flare_sim.expert import NO_EXPERT_ACTION

# A policy sees the observation and info of the last step and returns an action index.
Policy = Callable[[dict, dict], int]


def expert_policy(obs: dict, info: dict) -> int:
    action = info["expert_action"]
    if action == NO_EXPERT_ACTION:
        raise RuntimeError(f"the expert has no action in house {info['house']} ({info['family']})")
    return action


def random_policy(seed: int = 0) -> Policy:
    """Uniform over the gridhouse's valid actions (so it calls `end` about one step in seven)."""
    rng = np.random.default_rng(seed)
    valid = np.flatnonzero(GridhouseEnv.embodiment.mask)
    return lambda obs, info: int(rng.choice(valid))


@dataclass(frozen=True)
class FamilyResult:
    family: str
    episodes: int
    success_rate: float
    mean_steps: float


def evaluate(
    policy: Policy,
    families: tuple[str, ...],
    episodes: int,
    config: GridhouseConfig | None = None,
    split: str = "eval",
    label: str = "policy",
    expert: bool = True,
    progress: bool = True,
) -> list[FamilyResult]:
    """Success rate per family over the first `episodes` houses of `split` (the same houses for every policy).

    `expert` puts the expert's labels in `info` (the expert policy reads them; others need not pay for them).
    """
    env = GridhouseEnv(config, families, split, expert=expert)
    results = []
    bar_args = {"desc": f"{label:>6}", "unit": "ep", "leave": False, "disable": not progress}
    with tqdm(total=episodes * len(families), **bar_args) as bar:
        for family in families:
            successes, steps = 0, []
            for house in range(episodes):
                obs, info = env.reset(seed=house, options={"family": family, "house": house})
                done = False
                while not done:
                    obs, _, terminated, truncated, info = env.step(policy(obs, info))
                    done = terminated or truncated
                successes += info["success"]
                steps.append(info["steps"])
                bar.update()
            results.append(FamilyResult(family, episodes, successes / episodes, float(np.mean(steps))))
    return results
