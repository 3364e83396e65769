"""Gridhouse throughput: simulator steps per second with both camera frames, in 1 process and in N subprocesses.

The agent is uniformly random over the valid actions, so it calls `end` about every seventh step: episodes
are short and house generation (reset) is included at its worst-case share. Baselines measured in the same
run: the same loop with minigrid's stock observation and point-of-view rendering (`minigrid_stock`), and
1 process for the subprocess figures. Each figure is the median of --repeats timed windows.

    .venv/bin/python benchmarks/env_throughput.py [--seconds 3] [--repeats 3] [--envs 2 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from minigrid.minigrid_env import MiniGridEnv

from flare_sim import GridhouseEnv, make_vector_env
from flare_sim.cameras import VIEW


class StockMinigridEnv(GridhouseEnv):
    """Baseline: frames from minigrid's own gen_obs and get_pov_render (what the fast path replaces)."""

    def _observation(self) -> dict:
        MiniGridEnv.gen_obs(self.level)
        obs = super()._observation()
        obs["nav_rgb"] = self.level.get_pov_render(self.config.nav_tile_px)
        return obs


def single_process_rate(env_cls: type[GridhouseEnv], seconds: float, seed: int) -> float:
    env = env_cls()
    valid = np.flatnonzero(env.embodiment.mask)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for _ in range(200):  # warm-up: tile tables, first houses
        _, _, terminated, truncated, _ = env.step(int(rng.choice(valid)))
        if terminated or truncated:
            env.reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(int(rng.choice(valid)))
        steps += 1
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_rate(num_envs: int, seconds: float, seed: int) -> float:
    envs = make_vector_env(num_envs, workers=num_envs)
    try:
        valid = np.flatnonzero(GridhouseEnv.embodiment.mask)
        rng = np.random.default_rng(seed)
        envs.reset(seed=seed)
        for _ in range(50):
            envs.step(rng.choice(valid, size=num_envs))
        batches, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            envs.step(rng.choice(valid, size=num_envs))
            batches += 1
        return batches * num_envs / (time.perf_counter() - start)
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per figure (the median is printed)")
    parser.add_argument("--envs", type=int, nargs="+", default=[2, 4], help="subprocess counts to measure")
    args = parser.parse_args()

    def median(fn, *fn_args) -> float:
        return statistics.median(fn(*fn_args, seed) for seed in range(args.repeats))

    env = GridhouseEnv()
    nav, manip = env.observation_space["nav_rgb"].shape, env.observation_space["manip_rgb"].shape
    print(f"frames per step: nav {nav[0]}x{nav[1]} from the {VIEW}x{VIEW} view, manip {manip[0]}x{manip[1]}")
    figures: dict[str, float] = {}
    figures["steps_per_s_1proc"] = median(single_process_rate, GridhouseEnv, args.seconds)
    print(f"1 process:              {figures['steps_per_s_1proc']:8.0f} steps/s")
    figures["steps_per_s_1proc_minigrid_stock"] = median(single_process_rate, StockMinigridEnv, args.seconds)
    print(f"1 process, stock frames:{figures['steps_per_s_1proc_minigrid_stock']:8.0f} steps/s (baseline)")
    figures["speedup_vs_minigrid_stock"] = figures["steps_per_s_1proc"] / figures["steps_per_s_1proc_minigrid_stock"]
    for n in args.envs:
        rate = median(vector_rate, n, args.seconds)
        figures[f"steps_per_s_{n}proc"] = rate
        figures[f"scaling_{n}proc_over_1proc"] = rate / figures["steps_per_s_1proc"]
        print(f"{n} subprocesses:         {rate:8.0f} steps/s")
    print(" ".join(f"{k}={v:.2f}" if "speedup" in k or "scaling" in k else f"{k}={v:.0f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
