"""GRPO fine-tuning as SimpleVLA-RL does it, on the rollout collector PPO uses: read it top to bottom.

No critic: G rollouts of the same task (house, start pose and goal: one env seed) form a group, and each
rollout's advantage is its success relative to the group's, (R - mean) / (std + 1e-6), on every step of it.
SimpleVLA-RL's tricks are the defaults, each switchable for ablations: dynamic sampling (groups whose success
rate is outside [0.1, 0.9] teach nothing and are dropped; sampling goes on until the batch is full),
clip-higher (ratio clipped to [1 - 0.2, 1 + 0.28]), rollouts and log-probs at temperature 1.6. No KL, no
entropy term. The loss is averaged over the steps of each trajectory, then over trajectories. One step of
our policy plays the role of one token of SimpleVLA-RL's action chunks.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from flare_training import distributed
from flare_training.checkpoint import CHECKPOINT_NAME, load_checkpoint, restore_training, save_checkpoint
from flare_training.distributed import GradientSync
from flare_training.inputs import ACTION_MASK
from flare_training.ppo import (
    _STEP_KEYS,
    Episodes,
    RolloutCollector,
    action_logprob,
    adam,
    apply_gradients,
    check_simulator,
    open_run,
    pad_time,
)
from flare_training.runlog import RunConfig, RunLog


@dataclass
class GRPOConfig(RunConfig):
    out: str = "runs/grpo"
    init: str = ""  # BC checkpoint (or imported FLaRe run) to fine-tune; GRPO needs a policy that sometimes succeeds
    total_env_steps: int = 1_000_000  # steps of the episodes played, dropped groups included
    group_size: int = 8  # SimpleVLA-RL: 8 rollouts per task
    groups: int = 16  # groups per update (per rank): 128 trajectories, SimpleVLA-RL's 512 scaled to the gridhouse
    num_envs: int = 32  # envs stepped at once: num_envs / group_size groups per round of episodes
    minibatches: int = 4  # optimiser steps per update (SimpleVLA-RL: 512 trajectories / 128)
    epochs: int = 1  # SimpleVLA-RL: 1
    lr: float = 2e-5  # FLaRe's PPO rate, so the two methods differ only in the algorithm (SimpleVLA-RL: 5e-6, a 7B VLA)
    clip_low: float = 0.2  # ratio floor 1 - clip_low
    clip_high: float = 0.28  # clip-higher: ratio ceiling 1 + clip_high; ablation: 0.2 (symmetric)
    temperature: float = 1.6  # sampling and log-probs alike; ablation: 1.0
    dynamic_sampling: bool = True  # drop groups whose success rate is outside [accuracy_low, accuracy_high]
    accuracy_low: float = 0.1  # dynamic sampling: the lowest success rate of a group kept
    accuracy_high: float = 0.9  # dynamic sampling: the highest success rate of a group kept
    # Advantages divided by the group's std; off: R - mean only (reward 1 on success where SimpleVLA-RL pays 5,
    # so then 5x smaller advantages than theirs).
    scale_by_std: bool = True
    max_grad_norm: float = 1.0  # SimpleVLA-RL: 1


def group_advantages(success: torch.Tensor, scale_by_std: bool = True) -> torch.Tensor:
    """[groups, G] binary outcomes -> advantages: R - group mean, over the group's (unbiased) std + 1e-6."""
    reward = success.float()
    centred = reward - reward.mean(1, keepdim=True)
    return centred / (reward.std(1, keepdim=True) + 1e-6) if scale_by_std else centred


def informative_groups(success: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """[groups, G] -> [groups] bool: dynamic sampling keeps groups whose success rate lies in [low, high]."""
    rate = success.float().mean(1)
    return (rate >= low) & (rate <= high)


def grpo_loss(logits, actions, old_logprob, advantages, length, config: GRPOConfig, mask=ACTION_MASK) -> dict:
    """Clipped surrogate at `temperature`, ratio in [1 - clip_low, 1 + clip_high]: per trajectory the mean over
    its steps, then the mean over trajectories. logits [B, T, A]; actions, old_logprob [B, T]; advantages,
    length [B]."""
    valid = (torch.arange(actions.shape[1], device=length.device)[None] < length[:, None]).float()
    logprob = action_logprob(logits, actions, mask, config.temperature)
    ratio = torch.where(valid.bool(), logprob - old_logprob, 0.0).exp()  # padding: ratio 1, no gradient
    adv = advantages[:, None]
    clipped = ratio.clamp(1 - config.clip_low, 1 + config.clip_high)
    per_step = torch.max(-adv * ratio, -adv * clipped) * valid
    loss = (per_step.sum(1) / valid.sum(1)).mean()
    with torch.no_grad():
        steps = valid.sum()
        approx_kl = (((ratio - 1) - ratio.log()) * valid).sum() / steps
        clip_fraction = ((clipped != ratio).float() * valid).sum() / steps
    return {"policy_loss": loss, "approx_kl": approx_kl, "clip_fraction": clip_fraction}


def episode_sequences(steps: dict[str, torch.Tensor], length: torch.Tensor) -> dict[str, torch.Tensor]:
    """Episodes [B, T] as rows for `sequence`: each row one episode from its first step; padding past `length`
    gets episode ids of its own (it never attends to, nor is attended by, the episode)."""
    t = torch.arange(steps["action"].shape[1], device=length.device)
    seq = {k: steps[k] for k in _STEP_KEYS}
    seq["episode"] = torch.where(t[None] < length[:, None], 0, -1 - t[None])
    return seq


def trajectory_logits(model, steps: dict, length: torch.Tensor, rows: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """The actor's logits over trajectories `rows`, cut to the longest of them: (their steps, logits)."""
    width = int(length[rows].max())
    part = {k: v[rows, :width] for k, v in steps.items()}
    return part, model.actor.sequence(episode_sequences(part, length[rows]))["logits"]


@torch.no_grad()
def sequence_logprob(model, steps: dict, length: torch.Tensor, temperature: float, mask, chunk: int = 32):
    """log pi_old of the played actions from one full-sequence pass with the current weights (SimpleVLA-RL
    recomputes them after the rollout), in chunks of trajectories."""
    out = []
    for rows in torch.arange(len(length)).split(chunk):
        part, logits = trajectory_logits(model, steps, length, rows)
        logprob = action_logprob(logits, part["action"], mask, temperature)
        out.append(pad_time(logprob, steps["action"].shape[1]))
    return torch.cat(out)


def _concat_episodes(parts: list[Episodes]) -> Episodes:
    """Batches of episodes (rounds) -> one, padded to the longest."""
    longest = max(p.steps["action"].shape[1] for p in parts)
    steps = {k: torch.cat([pad_time(p.steps[k], longest) for p in parts]) for k in parts[0].steps}
    return Episodes(steps, torch.cat([p.length for p in parts]), torch.cat([p.success for p in parts]),
                    sum((p.family for p in parts), []), sum(p.simulated for p in parts),
                    torch.cat([p.timeout for p in parts]))  # fmt: skip


def select_rows(episodes: Episodes, rows: torch.Tensor) -> Episodes:
    """The episodes of `rows` (what a group filter or a rank keeps)."""
    return Episodes({k: v[rows] for k, v in episodes.steps.items()}, episodes.length[rows], episodes.success[rows],
                    [episodes.family[i] for i in rows.tolist()], 0, episodes.timeout[rows])  # fmt: skip


class GroupSampler:
    """Rounds of groups (one env seed each, played by `group_size` envs) until `groups` informative groups are
    in; the surplus of the last round is dropped (every trajectory stays on-policy). A group with an episode a
    simulator timeout cut short (AI2-THOR) is dropped whatever its outcomes: that failure is not the policy's.
    A policy that (almost) never or always succeeds fills no batch: after `patience` x `groups` groups played,
    sampling gives up."""

    patience = 50

    def __init__(self, collector: RolloutCollector, config: GRPOConfig, seed_base: int) -> None:
        if config.num_envs % config.group_size:
            raise ValueError(f"--num-envs {config.num_envs} must be a multiple of --group-size {config.group_size}")
        if config.group_size < 2:
            raise ValueError("--group-size must be at least 2: a group of one has no relative advantage")
        if (config.groups * config.group_size) % config.minibatches:
            raise ValueError(f"--minibatches {config.minibatches} must divide the batch's "
                             f"{config.groups * config.group_size} trajectories (--groups x --group-size)")  # fmt: skip
        self.collector, self.config, self.seed_base = collector, config, seed_base
        self.per_round = config.num_envs // config.group_size

    def sample(self, next_group: int) -> tuple[Episodes, dict]:
        """The batch of whole groups (group-major rows) and what sampling it cost; `next_group` numbers tasks."""
        c, g = self.config, self.config.group_size
        kept: list[Episodes] = []
        stats = dict.fromkeys(("groups_played", "groups_informative", "groups_kept", "env_steps", "simulated_steps",
                               "successes"), 0)  # fmt: skip
        outcomes: dict[str, list[bool]] = {}  # family -> every played trajectory's success
        while stats["groups_kept"] < c.groups:
            if stats["groups_played"] >= self.patience * c.groups:
                raise ValueError(
                    f"dynamic sampling kept {stats['groups_kept']} of {stats['groups_played']} groups: the policy "
                    f"succeeds in (almost) none or all of its rollouts at temperature {c.temperature}; fine-tune a "
                    "policy that succeeds sometimes (--init a BC run), or train with --no-dynamic-sampling"
                )
            seeds = [self.seed_base + next_group + j for j in range(self.per_round) for _ in range(g)]
            next_group += self.per_round
            played = self.collector.collect_episodes(seeds)
            success = played.success.view(self.per_round, g)
            keep = ~played.timeout.view(self.per_round, g).any(1)
            if c.dynamic_sampling:
                keep &= informative_groups(success, c.accuracy_low, c.accuracy_high)
            stats["groups_informative"] += int(keep.sum())
            rows = keep.repeat_interleave(g).nonzero()[:, 0]
            rows = rows[: (c.groups - stats["groups_kept"]) * g]
            kept.append(select_rows(played, rows))
            stats["groups_played"] += self.per_round
            stats["groups_kept"] += len(rows) // g
            stats["env_steps"] += int(played.length.sum())
            stats["simulated_steps"] += played.simulated
            stats["successes"] += int(played.success.sum())
            for family, success in zip(played.family, played.success.tolist(), strict=True):
                outcomes.setdefault(family, []).append(success)
        stats["next_group"] = next_group
        stats["rollout_success"] = {f: float(np.mean(o)) for f, o in outcomes.items()}
        return _concat_episodes(kept), stats


def grpo_update(model, optimizer, params, batch: Episodes, advantages, old_logprob, config: GRPOConfig, mask,
                sync: GradientSync | None = None, batch_total: int | None = None) -> dict[str, list]:  # fmt: skip
    """Epochs x minibatches of whole trajectories. With several ranks (`sync`), each minibatch's gradients are
    scaled by this rank's share of the global minibatch (`batch_total` trajectories in all) and summed."""
    model.train()
    n = len(batch.length)
    stats: dict[str, list[float]] = {}
    for _ in range(config.epochs):
        for rows in torch.randperm(n).chunk(config.minibatches):
            part, logits = trajectory_logits(model, batch.steps, batch.length, rows)
            terms = grpo_loss(logits, part["action"], old_logprob[rows, : logits.shape[1]], advantages[rows],
                              batch.length[rows], config, mask)  # fmt: skip
            optimizer.zero_grad()
            terms["policy_loss"].backward()
            apply_gradients(
                optimizer, params, config.max_grad_norm, sync, len(rows), (batch_total or n) / config.minibatches
            )
            for k, v in terms.items():
                stats.setdefault(k, []).append(v.item())
    return stats


def train_grpo(config: GRPOConfig) -> Path:
    """The run: one process, or one rank of `torchrun`; rank 0 holds the run directory's lock."""
    return distributed.run_ranked(_train, config)


def _train(config: GRPOConfig, ranks: distributed.Ranks) -> Path:
    out, sim, config, rollout_threads, update_threads = open_run(config)
    families, ckpt_path = config.families, out / CHECKPOINT_NAME

    # --- model, optimiser, resume ---------------------------------------------------------------------
    resume = ckpt_path.exists()
    if not resume and not config.init:
        raise ValueError("give --init: GRPO fine-tunes a policy (a BC checkpoint) that already succeeds sometimes")
    model, adapter, payload = load_checkpoint(ckpt_path if resume else config.init)
    model.visual.requires_grad_(False)
    check_simulator(payload, sim, model.config.max_context)
    model.to(ranks.device)
    mask = sim.action_mask.to(ranks.device)
    params = [p for p in model.actor.parameters() if p.requires_grad]  # no critic: it stays as loaded
    distributed.broadcast_parameters(model, ranks)
    optimizer = adam(params, config.lr)
    update, env_steps, evals, next_group = 0, 0, [], 0
    if resume:
        update, env_steps, evals = restore_training(ckpt_path, payload, optimizer, "grpo", config)
        next_group = payload["next_group"]
        if ranks.main:
            print(f"resuming {out} from update {update} ({env_steps:,} env steps)")
    elif ranks.main:
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    log = RunLog(out, "grpo", model, adapter, families, sim, config, evals) if ranks.main else None
    sync = GradientSync(params, ranks) if ranks.distributed else None

    # --- environments: each seed and rank plays tasks of its own (2^32 task seeds apart) ------------------------
    seed_base = (config.seed << 40) + (ranks.rank << 32)
    collector = RolloutCollector(model, adapter, sim, families, seed_base + update, config.num_envs,
                                 config.env_workers, temperature=config.temperature)  # fmt: skip
    sampler = GroupSampler(collector, config, seed_base)
    if ranks.main:
        log.start()
    bar = tqdm(total=config.total_env_steps, initial=env_steps, desc="grpo", unit="step", unit_scale=True,
               disable=not ranks.main)  # fmt: skip
    start_time, start_steps = time.perf_counter(), env_steps
    while env_steps < config.total_env_steps:
        update += 1
        torch.set_num_threads(rollout_threads)
        rollout_start = time.perf_counter()
        batch, sampled = sampler.sample(next_group)
        batch = batch.to(ranks.device)
        family_success = sampled.pop("rollout_success")
        # One task counter over the ranks (the furthest), so a resumed run plays no task twice.
        next_group = int(distributed.reduce_over_ranks(sampled.pop("next_group"), ranks, op="max"))
        env_steps += int(distributed.reduce_over_ranks(sampled["env_steps"], ranks))
        torch.set_num_threads(update_threads)
        update_start = time.perf_counter()
        advantages = group_advantages(batch.success.view(-1, config.group_size), config.scale_by_std).flatten()
        old_logprob = sequence_logprob(model, batch.steps, batch.length, config.temperature, mask)
        valid = torch.arange(old_logprob.shape[1], device=ranks.device)[None] < batch.length[:, None]
        cache_vs_sequence = (old_logprob - batch.steps["logprob"])[valid].abs().max().item()
        stats = grpo_update(model, optimizer, params, batch, advantages, old_logprob, config, mask, sync,
                            len(batch.length) * ranks.world)  # fmt: skip
        spread = distributed.param_spread(params, ranks)
        if not ranks.main:
            continue

        # --- log, evaluate, checkpoint (rank 0) ------------------------------------------------------------
        sps = (env_steps - start_steps) / (time.perf_counter() - start_time)
        trajectories = sampled["groups_played"] * config.group_size
        row = {
            "update": update,
            "env_steps": env_steps,
            "sps": sps,
            "rollout_s": update_start - rollout_start,
            "update_s": time.perf_counter() - update_start,
            "cache_vs_sequence_logprob": cache_vs_sequence,
            "ranks": ranks.world,
            "param_spread": spread,
            "groups_kept_fraction": sampled["groups_kept"] / sampled["groups_played"],
            "groups_informative_fraction": sampled["groups_informative"] / sampled["groups_played"],
            "simulated_steps_per_env_step": sampled["simulated_steps"] / sampled["env_steps"],
            "rollout_success": sampled["successes"] / trajectories,  # at the rollout temperature
            "mean_length": float(batch.length.float().mean()),
            **{k: float(np.mean(v)) for k, v in stats.items()},
            **{f"rollout_success/{f}": s for f, s in family_success.items()},
        }
        log.record(row)
        if line := log.maybe_evaluate(env_steps, last=env_steps >= config.total_env_steps):
            bar.write(line)
        bar.set_postfix(rollout_success=f"{row['rollout_success']:.0%}", kept=f"{row['groups_kept_fraction']:.0%}",
                        kl=f"{row['approx_kl']:.4f}")  # fmt: skip
        bar.update(env_steps - bar.n)
        state = {"update": update, "env_steps": env_steps, "evals": evals, "next_group": next_group,
                 "config": asdict(config)}  # fmt: skip
        save_checkpoint(ckpt_path, model, adapter, kind="grpo", optimizer=optimizer.state_dict(),
                        torch_rng=torch.get_rng_state(), **state)  # fmt: skip
    bar.close()
    collector.close()
    if ranks.main:
        log.finish(env_steps)
    return ckpt_path
