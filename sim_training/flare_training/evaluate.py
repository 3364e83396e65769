"""Success rate and episode length per task family, with the policy acting through its KV-cache."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from flare_training.envs import Simulator, get_simulator
from flare_training.inputs import ACTION_MASK, ObservationAdapter, to_device
from flare_training.model import ActorCritic

EPISODE_TRIES = 3  # plays of an episode that a simulator timeout cut short, before it counts as a failure


def choose(
    logits: torch.Tensor, greedy: bool, generator: torch.Generator | None = None, mask: torch.Tensor = ACTION_MASK
) -> torch.Tensor:
    """Actions from [B, A] logits after the embodiment's mask: masked actions can never be chosen."""
    masked = logits.masked_fill(~mask, float("-inf"))
    if greedy:
        return masked.argmax(-1)
    return torch.multinomial(torch.softmax(masked, -1), 1, generator=generator)[:, 0]


@torch.no_grad()
def policy_logits(model: ActorCritic, adapter: ObservationAdapter, obs: dict, cache) -> torch.Tensor:
    """One step of the policy over a batch of raw observations (frames encoded here, on the model's device):
    [B, A] logits on the CPU."""
    device = next(model.parameters()).device
    inputs = to_device(adapter.step_inputs(obs), device)
    inputs["visual"] = model.visual(to_device(adapter.frames(obs), device))
    return model.actor.step(inputs, cache)["logits"].cpu()


@torch.no_grad()
def evaluate_policy(
    model: ActorCritic,
    adapter: ObservationAdapter,
    families: tuple[str, ...],
    episodes: int,
    split: str = "eval",
    greedy: bool = False,
    seed: int = 0,
    num_envs: int = 16,
    progress: bool = True,
    sim: Simulator | None = None,
    on_episode_end=None,
    on_step=None,
) -> dict[str, dict[str, float]]:
    """Run `episodes` houses (indices 0..episodes-1 of the split) per family; the same houses for every policy.
    An episode a simulator timeout cut short is played again (AI2-THOR restarts its controller).
    `on_episode_end(env, info, truncated)` sees each counted episode's env as it ended, `on_step(env)` each env
    after every reset and step (`failures.FailureTally`)."""
    model.eval()
    sim = sim or get_simulator("gridhouse")
    queue = deque((f, h) for f in families for h in range(episodes))
    count = min(num_envs, len(queue))
    envs = [sim.make(families, split, index=i) for i in range(count)]
    cache, _ = model.new_caches(len(envs))
    generator = torch.Generator().manual_seed(seed)
    outcomes: dict[str, list[tuple[bool, int, bool, bool]]] = {f: [] for f in families}  # success, steps, how ended
    timeouts: dict[tuple[str, int], int] = {}
    obs: list[dict | None] = [None] * len(envs)

    def start(i: int) -> None:
        family, house = queue.popleft()
        obs[i], _ = envs[i].reset(seed=seed + house, options={"family": family, "house": house})
        cache.reset(torch.tensor([i]))
        if on_step is not None:
            on_step(envs[i])

    for i in range(len(envs)):
        start(i)
    active = list(range(len(envs)))
    bar = tqdm(total=len(families) * episodes, desc="eval", unit="ep", leave=False, disable=not progress)
    while active:
        idle = [i for i in range(len(envs)) if i not in active]
        if idle:
            cache.reset(torch.tensor(idle))  # finished rows ride along; keep their cache empty
        batch = {k: [obs[i][k] if i in active else obs[active[0]][k] for i in range(len(envs))] for k in obs[active[0]]}
        logits = policy_logits(model, adapter, batch, cache)
        actions = choose(logits, greedy, generator, sim.action_mask).tolist()
        for i in list(active):
            obs[i], _, terminated, truncated, info = envs[i].step(actions[i])
            if on_step is not None:
                on_step(envs[i])
            if terminated or truncated:
                key = (info["family"], info["house"])
                timeouts[key] = timeouts.get(key, 0) + info.get("timeout", False)
                if info.get("timeout") and timeouts[key] < EPISODE_TRIES:
                    queue.appendleft(key)
                else:  # an episode that keeps timing out counts as a failure of its own kind
                    timed_out = bool(info.get("timeout"))
                    if on_episode_end is not None:
                        on_episode_end(envs[i], info, truncated)
                    outcomes[info["family"]].append((info["success"], info["steps"], truncated and not timed_out,
                                                     timed_out))  # fmt: skip
                    bar.update()
                if queue:
                    start(i)
                else:
                    active.remove(i)
    bar.close()
    for env in envs:
        env.close()
    return {
        f: {
            "success": float(np.mean([s for s, _, _, _ in r])),
            "mean_steps": float(np.mean([n for _, n, _, _ in r])),
            # How the rest failed: out of steps, cut short by simulator timeouts on every try, or (the remainder)
            # ending the episode where the goal is not.
            "step_limit": float(np.mean([t for _, _, t, _ in r])),
            "timeout": float(np.mean([t for _, _, _, t in r])),
            "episodes": len(r),
        }
        for f, r in outcomes.items()
    }


def save_results(path: str | Path, results: dict, **meta) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    return path
