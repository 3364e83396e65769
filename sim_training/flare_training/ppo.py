"""PPO fine-tuning with the FLaRe recipe, CleanRL-style: read it top to bottom.

FLaRe's stabilisers are the defaults, each switchable for ablations: small learning rate (2e-5, 10x below
BC), no entropy bonus, a critic that is a separate copy of the network, value-only updates first (critic
warm-up), sparse success reward, KV-cache during rollouts, masked actions. The visual encoder is frozen (as
FLaRe freezes DINOv2), so rollouts keep its features and updates never recompute it; for RL from scratch,
`train_visual` trains the embedded CNN with the policy instead (rollouts keep frames and the features they
acted on; every update pass encodes the frames again).

Sequences: each env's rollout is preceded by the part of its current episode collected earlier (the prefix)
and followed by the next observation (for the bootstrap value); the transformer sees them whole with a
block-causal mask. At each rollout start the KV-caches are rebuilt from those prefixes with the current
weights, so the behaviour policy is exactly the policy the update's ratio divides by. Truncation at the step
limit is treated as termination.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from flare_training import distributed
from flare_training.checkpoint import CHECKPOINT_NAME, load_checkpoint, restore_training, save_checkpoint
from flare_training.distributed import GradientSync
from flare_training.envs import Simulator, get_simulator, simulator_of
from flare_training.evaluate import choose
from flare_training.features import FrozenVisualFeatures, VisualFrames
from flare_training.inputs import ACTION_MASK, to_device
from flare_training.model import ActorCritic, KVCache
from flare_training.runlog import RunConfig, RunLog

_STEP_KEYS = ("visual", "goal", "prev_action", "holding", "step")


@dataclass
class PPOConfig(RunConfig):
    out: str = "runs/ppo"
    init: str = ""  # BC checkpoint or imported FLaRe run to fine-tune; empty = RL from scratch (random policy)
    visual_from: str = ""  # from scratch: checkpoint whose frozen visual encoder and inputs to use
    total_env_steps: int = 1_000_000
    num_envs: int = 32  # split over the env lanes; 32 amortises per-step overheads best on 2 cores (measured)
    rollout: int = 128
    epochs: int = 4
    minibatches: int = 1  # FLaRe: 1 (the whole rollout per step); split over envs, sequences stay whole
    lr: float = 2e-5
    lr_multiplier: float = 1.0  # ablation: 10
    entropy_coef: float = 0.0  # FLaRe: no entropy bonus; ablation: 0.01
    clip: float = 0.1
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_grad_norm: float = 0.5
    value_coef: float = 0.5
    critic_warmup_steps: int = 200_000  # FLaRe: env steps of value-only updates before the policy moves; 0: none
    normalize_advantages: bool = False  # FLaRe: no; per-minibatch normalisation as CleanRL does
    # FLaRe: no; the critic learns returns scaled by their running mean and spread, as Sample Factory's APPO
    # does by default (`normalize_returns`, from rl_games)
    normalize_returns: bool = False
    shared_critic: bool = False  # ablation: value head on the actor's network
    # the embedded CNN trains with the policy, end to end (for RL from scratch; slower: every update pass
    # encodes the frames again); FLaRe keeps the visual encoder frozen
    train_visual: bool = False
    # with --train-visual: each update pass encodes the episode's earlier frames (the prefix) again, and the
    # gradients train the encoder through them too; off: the prefix keeps the features the rollout acted on (as
    # Sample Factory keeps the recurrent state it acted with), only this rollout's frames are encoded: faster
    visual_grad_prefix: bool = True
    # Not FLaRe's recipe (0: off): on the steps whose view shows the goal's object, this x the cross-entropy to
    # the shortest-path expert's action joins the actor's loss, teaching the policy to go to a goal it sees
    # (gridhouse only: its expert and goal-cell labels; the expert costs env throughput)
    pursuit_coef: float = 0.0

    @property
    def batch_steps(self) -> int:
        return self.num_envs * self.rollout


def build_model(config: PPOConfig) -> tuple[ActorCritic, object, dict]:
    """From a BC checkpoint (FLaRe) or from scratch (random policy over the same frozen visual encoder)."""
    source = config.init or config.visual_from
    if not source:
        raise ValueError("give --init (a BC checkpoint to fine-tune) or --visual-from (for RL from scratch)")
    model, adapter, payload = load_checkpoint(source, shared_critic=config.shared_critic)
    if not config.init and not isinstance(model, ActorCritic):
        raise ValueError(f"{source}: RL from scratch takes the embedded model's encoder; --init an imported FLaRe run")
    if not config.init:
        torch.manual_seed(config.seed)
        fresh = ActorCritic(model.config, adapter.camera_shapes, adapter.tokenizer.vocab)
        fresh.visual.load_state_dict(model.visual.state_dict())
        model = fresh
    if config.train_visual and model.config.visual != "cnn":
        raise ValueError(f"--train-visual trains the embedded CNN; {source} has visual={model.config.visual!r}, "
                         "which stays frozen: leave --train-visual off")  # fmt: skip
    model.visual.requires_grad_(config.train_visual)
    return model, adapter, payload


def check_simulator(payload: dict, sim: Simulator, max_context: int) -> None:
    """A checkpoint trained in one simulator sees another's frames and goals through the wrong inputs: refused
    (FLaRe's imported family reads any camera through DINOv2, at its own size). Its KV-cache must hold an episode."""
    trained_in = simulator_of(payload.get("config", {})).name
    imported = str(payload.get("kind", "")).startswith("flare-")  # FLaRe's own run, not trained here yet
    if not imported and trained_in != sim.name:
        raise ValueError(f"the checkpoint was trained with --env {trained_in}; fine-tune it with --env {trained_in}")
    if max_context < sim.episode_steps:
        raise ValueError(f"the model's cache holds {max_context} steps but --env {sim.name} episodes last up to "
                         f"{sim.episode_steps}; lower --thor-max-steps or train with a longer context")  # fmt: skip


class EpisodeHistory:
    """Per env, the model inputs of its current episode so far (the next rollout's prefix)."""

    def __init__(self, num_envs: int) -> None:
        self.steps: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(num_envs)]

    def add(self, inputs: dict[str, torch.Tensor], done: np.ndarray) -> None:
        rows = {k: inputs[k].unbind(0) for k in _STEP_KEYS}  # one call per key, not one index per env and key
        for i, steps in enumerate(self.steps):
            steps.append({k: rows[k][i] for k in _STEP_KEYS})
            if done[i]:
                steps.clear()

    def lengths(self) -> torch.Tensor:
        return torch.tensor([len(s) for s in self.steps])


class EnvLane:
    """A share of the envs with its own KV-cache and episode histories, stepped apart from the other lanes.

    With one worker process per lane, the rollout decides for one lane while the other lanes' envs step, so
    simulation and inference overlap instead of taking turns; the decisions are the same either way.
    """

    def __init__(self, envs, cache: KVCache) -> None:
        self.envs, self.cache = envs, cache
        self.history = EpisodeHistory(envs.num_envs)
        self.obs: dict = {}
        self.info: dict = {}  # describes `obs` (after an autoreset, the new episode): the expert's label
        self.inputs: dict[str, torch.Tensor] = {}  # the step in flight: its model inputs, for the history
        self.store: dict[str, list] = defaultdict(list)
        # The last step's ended episodes: (env, family, success, cut short by a simulator timeout).
        self.ended: list[tuple[int, str, bool, bool]] = []

    def reset(self, seed: int | list[int]) -> None:
        """A fresh episode in every env: env i seeded `seed + i`, or `seed[i]` (a list: GRPO's groups)."""
        self.obs, self.info = self.envs.reset(seed=seed)
        self.history = EpisodeHistory(self.envs.num_envs)
        self.cache.reset(torch.arange(self.envs.num_envs))

    def close(self) -> None:
        self.envs.close()


def make_lanes(model, adapter, sim: Simulator, families: tuple[str, ...], num_envs: int, env_workers: int,
               expert: bool = False, frames: VisualFrames | None = None):  # fmt: skip
    """`env_workers` lanes, each stepped (and its frames encoded, or with `frames` preprocessed) by one worker
    process, or one in-process lane when 0; also their first env indices, so env i is seeded alike whatever the
    split. `expert`: the envs label every step with the expert's action and the goal's cells."""
    shares = np.array_split(np.arange(num_envs), max(1, env_workers))
    features = frames or FrozenVisualFeatures(model.visual, adapter)
    workers = min(1, env_workers)
    lanes = [
        EnvLane(
            sim.vector(
                len(share), families, "train", expert=expert, workers=workers, observe=features, first=int(share[0])
            ),
            model.new_caches(len(share))[0],  # values come from the update's full-sequence pass, not rollouts
        )
        for share in shares
    ]
    return lanes, [int(share[0]) for share in shares]


def encoded(model, batch: dict, frames: VisualFrames | None, last: torch.Tensor | None = None,
            kept: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:  # fmt: skip
    """`batch` with its "visual" frames encoded by the model's current encoder (`--train-visual`), or as it is
    (features of the frozen encoder, computed where the envs ran). For rows of sequences, `last` [B] is each
    row's last position that counts: the padding after it is not encoded and keeps zero features, as the frozen
    encoder's padding does (no step attends to it). `kept` = (features [B, L, D], end [B]): positions before
    `end` take those features as they are (no encoding, no gradients)."""
    if frames is None:
        return batch
    if last is None:
        return {**batch, "visual": frames.encode(model.visual, batch["visual"])}
    position = torch.arange(batch["visual"].shape[1], device=last.device)[None]
    live = position <= last[:, None]
    if kept is None:
        features, fresh = torch.zeros(*live.shape, model.visual.out_dim, device=last.device), live
    else:
        fresh = live & (position >= kept[1][:, None])
        features = kept[0].masked_fill(fresh[..., None], 0.0)
    features[fresh] = frames.encode(model.visual, batch["visual"][fresh])
    return {**batch, "visual": features}


def _pad_rows(rows: list[list[dict[str, torch.Tensor]]], length: int, like: dict) -> dict[str, torch.Tensor]:
    """Left-aligned rows of per-step inputs -> [B, length, ...] shaped like one step of `like`; zero padding."""
    out = {}
    for k in _STEP_KEYS:
        t = torch.zeros(len(rows), length, *like[k].shape, dtype=like[k].dtype)
        for i, r in enumerate(rows):
            if r:
                t[i, : len(r)] = torch.stack([s[k] for s in r])
        out[k] = t
    return out


def build_sequences(prefix: list, rollout: dict[str, torch.Tensor], dones: torch.Tensor, last: dict) -> dict:
    """[prefix | rollout (T) | next observation] per env, left-aligned, with episode ids and positions.

    Returns the batch for `ActorCritic.sequence` plus `index` [B, T + 1]: where each rollout step and the
    bootstrap observation sit in its row.
    """
    n, t = dones.shape[1], dones.shape[0]
    p = torch.tensor([len(r) for r in prefix])
    length = int(p.max()) + t + 1
    batch = _pad_rows(prefix, length, {k: last[k][0] for k in _STEP_KEYS})
    index = p[:, None] + torch.arange(t + 1)[None]  # [B, T+1]
    rows = torch.arange(n)[:, None]
    for k in _STEP_KEYS:
        steps = torch.cat([rollout[k], last[k][None]], dim=0).transpose(0, 1)  # [B, T+1, ...]
        batch[k][rows, index] = steps
    # Episode ids: a new episode starts after every done; padding gets ids of its own.
    starts = torch.cat([torch.zeros(1, n, dtype=torch.long), dones.long()], dim=0).transpose(0, 1).cumsum(1)
    episode = -1 - torch.arange(length)[None].repeat(n, 1)
    episode[rows, index] = starts
    valid_prefix = torch.arange(length)[None] < p[:, None]
    episode[valid_prefix] = 0
    batch["episode"] = episode
    batch["index"] = index
    return batch


def gae(rewards, values, dones, bootstrap, gamma, lam):
    """Generalised advantage estimation over [T, B]; `dones[t]` ends the episode after step t."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(bootstrap)
    for t in reversed(range(rewards.shape[0])):
        next_value = bootstrap if t == rewards.shape[0] - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * live - values[t]
        last = delta + gamma * lam * live * last
        advantages[t] = last
    return advantages, advantages + values


class ReturnNormalizer:
    """The value targets' running mean and variance over every rollout so far (Sample Factory's
    `RunningMeanStdInPlace`, from rl_games: counts start at 1, targets clipped at 5 spreads). The critic then
    predicts returns in units of their spread, so a success reward of 10 does not let the value loss's gradients
    crowd the policy's out of one clipped gradient norm, nor a sparse reward of 1 leave them too small to train
    an encoder the critic shares (`--train-visual`); its outputs are mapped back before GAE. With DD-PPO the
    moments are summed over ranks, so every rank keeps the same statistics."""

    CLIP, EPS = 5.0, 1e-5

    def __init__(self, ranks: distributed.Ranks | None = None) -> None:
        self.ranks = ranks or distributed.Ranks()  # one process
        self.mean, self.var, self.count = 0.0, 1.0, 1.0

    def update(self, returns: torch.Tensor) -> None:
        """Takes in a batch of returns (this rank's; the moments of every rank's batch together)."""
        x = returns.double()
        moments = (x.numel(), x.sum().item(), x.square().sum().item())
        n, total, squares = distributed.reduce_over_ranks(moments, self.ranks)
        batch_mean = total / n
        batch_var = max(squares / n - batch_mean**2, 0.0)
        delta, count = batch_mean - self.mean, self.count + n
        self.mean += delta * n / count
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / count) / count
        self.count = count

    @property
    def std(self) -> float:
        return (self.var + self.EPS) ** 0.5

    def normalize(self, returns: torch.Tensor) -> torch.Tensor:
        return ((returns - self.mean) / self.std).clamp(-self.CLIP, self.CLIP)

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        return values.clamp(-self.CLIP, self.CLIP) * self.std + self.mean

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


def ppo_losses(
    model, batch, index, actions, old_logprob, advantages, returns, clip, mask=ACTION_MASK, normalize=False,
    guide=None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Clipped surrogate, value loss and entropy for whole-sequence rows; also KL and clip-fraction stats.

    index [B, T+1] locates each rollout step (and the bootstrap observation) in its row; the other per-step
    tensors are [B, T]. Advantages are normalised per minibatch.
    """
    logits, values = model.sequence(batch)
    return {
        **policy_terms(logits, index, actions, old_logprob, advantages, clip, mask, normalize, guide),
        "value_loss": value_loss(values, index, returns),
    }


def policy_terms(
    logits, index, actions, old_logprob, advantages, clip, mask=ACTION_MASK, normalize=False, guide=None
) -> dict[str, torch.Tensor]:
    """The actor's side of `ppo_losses`: clipped surrogate, entropy, approximate KL and clip fraction; `mask`:
    the simulator's embodiment (masked actions never count); `normalize`: advantages to zero mean, unit std;
    `guide` (expert actions, steps to follow them on), both [B, T]: adds `pursuit_terms`."""
    idx = index[:, :-1]
    logp_all = torch.log_softmax(_gather(logits, idx).masked_fill(~mask, float("-inf")), -1)
    logprob = logp_all.gather(2, actions[..., None])[..., 0]
    entropy = -(logp_all.exp() * logp_all.masked_fill(~mask, 0.0)).sum(-1).mean()
    ratio = (logprob - old_logprob).exp()
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8) if normalize else advantages
    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - ratio.log()).mean()
        clip_fraction = ((ratio - 1).abs() > clip).float().mean()
    terms = {"policy_loss": policy_loss, "entropy": entropy, "approx_kl": approx_kl, "clip_fraction": clip_fraction}
    return terms if guide is None else {**terms, **pursuit_terms(logp_all, *guide, mask)}


def pursuit_terms(logp_all, expert, follow, mask=ACTION_MASK) -> dict[str, torch.Tensor]:
    """Cross-entropy of the policy's log-probs [B, T, A] to the expert's actions [B, T], averaged over the steps
    where `follow` [B, T] (and the expert has an allowed action); also how often the policy's likeliest action
    is the expert's there."""
    follow = follow & (expert >= 0)
    expert = expert.clamp(min=0)
    follow = follow & mask[expert]
    chosen = logp_all.gather(2, expert[..., None])[..., 0]
    count = follow.sum().clamp(min=1)
    loss = -(chosen.masked_fill(~follow, 0.0)).sum() / count
    with torch.no_grad():
        agree = ((logp_all.argmax(-1) == expert) & follow).sum() / count
    return {"pursuit_loss": loss, "pursuit_agreement": agree, "pursuit_steps": follow.float().mean()}


def actor_loss(terms: dict[str, torch.Tensor], config: PPOConfig) -> torch.Tensor:
    """What the actor minimises: the clipped surrogate less the entropy bonus (none in the FLaRe recipe), plus
    the pursuit loss where it is on."""
    loss = terms["policy_loss"] - config.entropy_coef * terms["entropy"]
    return loss + config.pursuit_coef * terms["pursuit_loss"] if "pursuit_loss" in terms else loss


def value_loss(values, index, returns) -> torch.Tensor:
    """The critic's side of `ppo_losses`."""
    return 0.5 * (_gather(values, index[:, :-1]) - returns).pow(2).mean()


class SeparateNetworkStep:
    """One minibatch's gradients with the actor's and the critic's passes running at once, one thread each.

    With a separate critic (FLaRe) the two networks share no trained parameter, so their losses can be
    differentiated apart: the summed gradients are exactly those of the summed loss. On a small machine two
    single-threaded networks side by side beat one network at a time on two threads (small matmuls split
    badly): 78 against 100 ms for a minibatch's forward and backward here. Torch runs one thread per call
    meanwhile; the caller sets that."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="critic")

    def __call__(self, model, mb, index, actions, old_logprob, advantages, returns, config, warmup, mask=ACTION_MASK,
                 guide=None):  # fmt: skip
        def critic() -> torch.Tensor:
            loss = value_loss(model.critic.sequence(mb)["value"][..., 0], index, returns)
            (config.value_coef * loss).backward()
            return loss

        critic_done = self._pool.submit(critic)
        with torch.set_grad_enabled(not warmup):  # warm-up: value-only, the actor's terms are statistics
            terms = policy_terms(model.actor.sequence(mb)["logits"], index, actions, old_logprob, advantages,
                                 config.clip, mask, config.normalize_advantages, guide)  # fmt: skip
            if not warmup:
                actor_loss(terms, config).backward()
        terms["value_loss"] = critic_done.result()
        return terms

    def sequence(self, model: ActorCritic, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """`ActorCritic.sequence` with the two networks side by side (no gradients: the rollout's pass)."""

        def critic() -> torch.Tensor:
            with torch.no_grad():
                return model.critic.sequence(batch)["value"][..., 0]

        values = self._pool.submit(critic)
        return model.actor.sequence(batch)["logits"], values.result()

    def close(self) -> None:
        self._pool.shutdown()


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, L, ...] at index [B, K] -> [B, K, ...]."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], index]


@dataclass
class Rollout:
    """`rollout` steps of every env: per-step tensors [T, B] (inputs, action, logprob, reward, done), the episode
    prefixes before them and the observation after them (the bootstrap). With `--train-visual` (the steps keep
    frames), also the encoder's features acted on: `steps["features"]` [T, B, D], per env its prefix's
    (`prefix_features`, [P_i, D] each) and the bootstrap observation's (`last_features`, [B, D])."""

    prefix: list
    steps: dict[str, torch.Tensor]
    last: dict[str, torch.Tensor]
    prefix_features: list[torch.Tensor] | None = None
    last_features: torch.Tensor | None = None


@dataclass
class Episodes:
    """One whole episode per env from a fresh start: per-step tensors [B, T] (inputs, action, logprob), valid
    below `length`; `simulated` counts every env step taken, those after an env's episode ended included;
    `timeout`: episodes a simulator timeout cut short (AI2-THOR), which say nothing of the policy."""

    steps: dict[str, torch.Tensor]
    length: torch.Tensor
    success: torch.Tensor
    family: list[str]
    simulated: int
    timeout: torch.Tensor

    def to(self, device: torch.device) -> Episodes:
        """The tensors an update reads (steps, length, success) on the learner's device."""
        return replace(self, steps=to_device(self.steps, device), length=self.length.to(device),
                       success=self.success.to(device))  # fmt: skip


def pad_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """[B, T, ...] -> [B, length, ...], zeros after T (episodes of different lengths in one batch)."""
    return torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, length - x.shape[1]))


def action_logprob(logits: torch.Tensor, actions: torch.Tensor, mask=ACTION_MASK, temperature: float = 1.0):
    """log pi(action) under `logits / temperature` with the embodiment's masked actions removed: the one
    definition rollouts, PPO and GRPO share (temperature 1 but for GRPO's rollouts)."""
    logp = torch.log_softmax((logits / temperature).masked_fill(~mask, float("-inf")), -1)
    return logp.gather(-1, actions[..., None])[..., 0]


class RolloutCollector:
    """Steps the env lanes under the current policy (PPO's and GRPO's one collector).

    `collect` (PPO): fixed-length rollouts that carry episodes across calls; at each start the KV-caches are
    rebuilt from every env's episode so far with the current weights. `collect_episodes` (GRPO): one whole
    episode per env from given seeds. Either way, pipelined, one lane's envs step while the learner decides for
    the other; actions are sampled at `temperature`; masked actions are never sampled (the simulator's
    embodiment). Ended episodes leave the history and the cache; their outcomes are kept per family (`recent`).
    With `expert`, each step also keeps the expert's action for the observation acted on (`expert`, -1 where
    it has none) and whether that view shows the goal's object (`goal_in_view`). With `train_visual`, steps keep
    their frames (`VisualFrames`) and the features they were acted on with (`features`): the encoder runs in the
    learner.
    The policy and its caches run on the model's device; what the collector returns is on the CPU.
    """

    def __init__(self, model, adapter, sim: Simulator, families: tuple[str, ...], seed: int, num_envs: int,
                 env_workers: int, rollout: int = 0, temperature: float = 1.0, expert: bool = False,
                 train_visual: bool = False):  # fmt: skip
        self.model, self.adapter, self.rollout, self.temperature = model, adapter, rollout, temperature
        self.mask, self.expert = sim.action_mask, expert
        self.device = next(model.parameters()).device
        self.frames = VisualFrames(adapter) if train_visual else None
        self.lanes, self.first_envs = make_lanes(model, adapter, sim, families, num_envs, env_workers, expert,
                                                 self.frames)  # fmt: skip
        for lane, first in zip(self.lanes, self.first_envs, strict=True):
            lane.reset(seed=seed + first)
        self.generator = torch.Generator().manual_seed(seed * 7919)
        self.recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=100))  # family -> recent outcomes
        # One step's input shapes, for padding prefixes (zeros: only shapes and dtypes are read).
        visual = torch.zeros(self.frames.size, dtype=torch.uint8) if self.frames else torch.zeros(model.visual.out_dim)
        self.template = {
            "visual": visual,
            "goal": torch.zeros(model.config.max_goal_tokens, dtype=torch.long),
            **{k: torch.zeros((), dtype=torch.long) for k in ("prev_action", "holding", "step")},
        }

    def step_inputs(self, lane: EnvLane) -> dict[str, torch.Tensor]:
        inputs = self.adapter.step_inputs(lane.obs)
        inputs["visual"] = torch.from_numpy(lane.obs["visual"])  # FrozenVisualFeatures, where the envs ran
        inputs["step"] = lane.cache.step.cpu()
        return inputs

    def decide(self, lane: EnvLane) -> None:
        """Choose the lane's next actions under the current policy and set its envs stepping."""
        inputs = self.step_inputs(lane)
        step = encoded(self.model, to_device(inputs, self.device), self.frames)
        if self.frames is not None:  # the first update pass reads them, not the frames encoded again
            lane.store["features"].append(step["visual"].cpu())
        logits = self.model.actor.step(step, lane.cache)["logits"].cpu()
        action = choose(logits / self.temperature, greedy=False, generator=self.generator, mask=self.mask)
        lane.envs.step_async(action.numpy())
        lane.inputs = inputs
        for k in _STEP_KEYS:
            lane.store[k].append(inputs[k])
        lane.store["action"].append(action)
        lane.store["logprob"].append(action_logprob(logits, action, self.mask, self.temperature))
        if self.expert:
            cells = np.asarray(lane.info["goal_cells"])
            lane.store["expert"].append(torch.as_tensor(np.asarray(lane.info["expert_action"]), dtype=torch.long))
            lane.store["goal_in_view"].append(torch.from_numpy(cells.reshape(len(cells), -1).any(-1)))

    def take(self, lane: EnvLane) -> None:
        """The outcome of the lane's step in flight; ended episodes leave the history and the cache."""
        lane.obs, reward, terminated, truncated, lane.info = lane.envs.step_wait()
        info = lane.info
        done = terminated | truncated
        lane.store["reward"].append(torch.as_tensor(reward, dtype=torch.float32))
        lane.store["done"].append(torch.as_tensor(done, dtype=torch.float32))
        lane.history.add(lane.inputs, done)
        rows = np.flatnonzero(done)
        final = info["final_info"] if len(rows) else {}
        timeout = final.get("timeout", np.zeros(len(done), bool))  # only AI2-THOR's envs time out
        lane.ended = [(int(i), final["family"][i], bool(final["success"][i]), bool(timeout[i])) for i in rows]
        if len(rows):
            lane.cache.reset(torch.as_tensor(rows))
        for _, family, success, _ in lane.ended:
            self.recent[family].append(success)

    @torch.no_grad()
    def collect(self) -> Rollout:
        self.model.eval()
        prefix = [list(s) for lane in self.lanes for s in lane.history.steps]
        prefix_features = []
        for lane in self.lanes:
            lengths = lane.history.lengths()
            pre = _pad_rows(lane.history.steps, int(lengths.max()), self.template)
            pre["episode"] = torch.zeros_like(pre["step"])
            on_device = lengths.to(self.device)
            pre = encoded(self.model, to_device(pre, self.device), self.frames, on_device - 1)
            self.model.actor.prime(pre, on_device, lane.cache)
            if self.frames is not None:
                prefix_features += [row[:n].cpu() for row, n in zip(pre["visual"], lengths.tolist(), strict=True)]
            lane.store.clear()
        for t in range(self.rollout):
            for lane in self.lanes:
                if t:
                    self.take(lane)
                self.decide(lane)
        for lane in self.lanes:
            self.take(lane)
        bootstrap = [self.step_inputs(lane) for lane in self.lanes]  # the observation after the rollout
        last = {k: torch.cat([b[k] for b in bootstrap]) for k in _STEP_KEYS}
        steps = {k: torch.cat([torch.stack(lane.store[k]) for lane in self.lanes], dim=1) for k in self.lanes[0].store}
        if self.frames is None:
            return Rollout(prefix, steps, last)
        last_features = encoded(self.model, to_device(last, self.device), self.frames)["visual"].cpu()
        return Rollout(prefix, steps, last, prefix_features, last_features)

    @torch.no_grad()
    def collect_episodes(self, seeds: list[int]) -> Episodes:
        """Env i starts an episode seeded `seeds[i]` (equal seeds, equal house, pose and goal) and plays it to
        its end; a lane stops stepping once all its envs have ended one (the envs that ended first step on)."""
        self.model.eval()
        outcome: list[dict[int, tuple]] = []  # per lane: env -> (length, family, success, timeout)
        for lane, first in zip(self.lanes, self.first_envs, strict=True):
            lane.reset(seed=[int(s) for s in seeds[first : first + lane.envs.num_envs]])
            lane.store.clear()
            outcome.append({})
        playing, t = list(range(len(self.lanes))), 0  # t: the steps taken so far
        while playing:
            for k in list(playing):
                lane = self.lanes[k]
                if t:
                    self.take(lane)
                    for i, *ended in lane.ended:
                        outcome[k].setdefault(i, (t, *ended))
                    if len(outcome[k]) == lane.envs.num_envs:
                        playing.remove(k)
                        continue
                self.decide(lane)
            t += 1
        return self._episodes(outcome)

    def _episodes(self, outcome: list[dict[int, tuple]]) -> Episodes:
        """The lanes' stores ([T_lane, n] each) as one batch of episodes [B, T], padded to the longest lane."""
        longest = max(len(lane.store["action"]) for lane in self.lanes)
        steps = {
            key: torch.cat([pad_time(torch.stack(lane.store[key]).transpose(0, 1), longest) for lane in self.lanes])
            for key in (*_STEP_KEYS, "action", "logprob")
        }
        ordered = [lane_outcome[i] for lane_outcome in outcome for i in sorted(lane_outcome)]
        simulated = sum(len(lane.store["action"]) * lane.envs.num_envs for lane in self.lanes)
        length, family, success, timeout = zip(*ordered, strict=True)
        return Episodes(steps, torch.tensor(length), torch.tensor(success), list(family), simulated,
                        torch.tensor(timeout))  # fmt: skip

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()


@torch.no_grad()
def ppo_batch(model, rollout: Rollout, config: PPOConfig, mask, separate_step=None, frames: VisualFrames | None = None,
              returns_norm: ReturnNormalizer | None = None) -> tuple[dict, float]:  # fmt: skip
    """Whole-sequence rows, old log-probs and values under the current weights, GAE advantages and returns, on
    the model's device; also how far the rollout's cached log-probs are from the sequence pass (0 up to float
    error). With `frames` the rows keep the frames, for the update to encode; this pass reads the features the
    rollout acted on. With `returns_norm` the critic's outputs are normalised returns: mapped back for GAE, and
    the returns it learns are normalised after their statistics take this rollout in."""
    device = next(model.parameters()).device
    steps = rollout.steps  # built into rows on the CPU, where the prefixes are; then moved once
    rows = build_sequences(rollout.prefix, {k: steps[k] for k in _STEP_KEYS}, steps["done"], rollout.last)
    # The features the rollout acted on (frames, `--train-visual`): the weights have not moved since
    acted = None if frames is None else acted_features(rollout, rows["index"], rows["visual"].shape[1])
    seq = to_device(rows, device)
    roll = to_device({k: steps[k] for k in ("action", "logprob", "reward", "done")}, device)
    index = seq.pop("index")
    features = seq if acted is None else {**seq, "visual": acted.to(device)}
    logits, values = separate_step.sequence(model, features) if separate_step else model.sequence(features)
    values = _gather(values, index)  # [B, T+1]
    if returns_norm is not None:
        values = returns_norm.denormalize(values)
    old_logprob = action_logprob(_gather(logits, index[:, :-1]), roll["action"].T, mask)
    advantages, returns = gae(roll["reward"], values[:, :-1].T, roll["done"], values[:, -1], config.gamma,
                              config.gae_lambda)  # fmt: skip
    if returns_norm is not None:
        returns_norm.update(returns)
        returns = returns_norm.normalize(returns)
    batch = {"seq": seq, "index": index, "action": roll["action"].T, "old_logprob": old_logprob,
             "advantages": advantages.T, "returns": returns.T}  # fmt: skip
    if acted is not None and not config.visual_grad_prefix:  # the prefixes' features, as the rollout acted on them
        batch["acted"] = features["visual"]
    if "expert" in steps:  # the pursuit loss's labels: the expert's action where the goal's object is in view
        batch["guide"] = (steps["expert"].T.to(device), steps["goal_in_view"].T.to(device))
    return batch, (old_logprob - roll["logprob"].T).abs().max().item()


def acted_features(rollout: Rollout, index: torch.Tensor, length: int) -> torch.Tensor:
    """[B, length, D]: the features `rollout` acted on, where `build_sequences` puts their frames (`index`);
    zeros in the padding, as the encoder leaves it."""
    acted = torch.cat([rollout.steps["features"], rollout.last_features[None]]).transpose(0, 1)  # [B, T+1, D]
    out = torch.zeros(len(index), length, acted.shape[-1])
    for row, prefix in zip(out, rollout.prefix_features, strict=True):
        row[: len(prefix)] = prefix
    out[torch.arange(len(out))[:, None], index] = acted
    return out


def ppo_update(model, optimizer, params, batch: dict, config: PPOConfig, mask, warmup: bool, separate_step=None,
               sync: GradientSync | None = None, batch_total: int | None = None,
               frames: VisualFrames | None = None) -> dict[str, list[float]]:  # fmt: skip
    """Epochs x minibatches of whole env sequences. With DD-PPO (`sync`), each minibatch's gradients are scaled
    by this rank's share of the global minibatch (`batch_total` rows in all) and summed over ranks before
    clipping and the step (AllenAct's rule), so every rank takes the same step. With `frames` each minibatch's
    frames go through the encoder, which the losses' gradients then train."""
    model.train()
    seq, index = batch["seq"], batch["index"]
    n = index.shape[0]
    stats = defaultdict(list)
    for _ in range(config.epochs):
        # Rows of similar length share a minibatch (less padding); ties broken at random, order shuffled.
        by_length = sorted(torch.randperm(n).tolist(), key=lambda r: int(index[r, 0]) // 16)
        chunks = torch.tensor(by_length).chunk(config.minibatches)
        for c in torch.randperm(len(chunks)).tolist():
            rows = chunks[c]
            width = int(index[rows, -1].max()) + 1  # this minibatch's longest row; the rest is padding
            mb = {k: v[rows, :width] for k, v in seq.items()}
            if frames is not None:
                kept = None if config.visual_grad_prefix else (batch["acted"][rows, :width], batch["index"][rows, 0])
                with torch.set_grad_enabled(not warmup):  # warm-up: the encoder, which the actor reads, stays put
                    mb = encoded(model, mb, frames, batch["index"][rows, -1], kept)
            args = tuple(batch[k][rows] for k in ("index", "action", "old_logprob", "advantages", "returns"))
            guide = tuple(g[rows] for g in batch["guide"]) if "guide" in batch else None
            optimizer.zero_grad()
            if separate_step is not None:
                terms = separate_step(model, mb, *args, config, warmup, mask, guide)
            else:
                terms = ppo_losses(model, mb, *args, config.clip, mask, config.normalize_advantages, guide)
                loss = config.value_coef * terms["value_loss"]
                if not warmup:
                    loss = loss + actor_loss(terms, config)
                loss.backward()
            apply_gradients(
                optimizer, params, config.max_grad_norm, sync, len(rows), (batch_total or n) / config.minibatches
            )
            for k, v in terms.items():
                stats[k].append(v.item())
    return stats


def apply_gradients(optimizer, params, max_grad_norm: float, sync: GradientSync | None, rows: int, total: float):
    """One optimiser step (PPO's and GRPO's): with several ranks, this rank's gradients scaled by its share of
    the global minibatch (`rows` of `total`) and summed over ranks, then clipped, then the step."""
    if sync is not None:
        sync(rows, total)
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()


def adam(params, lr: float) -> torch.optim.Adam:
    """PPO's and GRPO's optimiser: Adam, eps 1e-5 (FLaRe's, and CleanRL's), fused into one kernel over every
    parameter: 3.7x faster a step on this CPU than torch's default per-parameter loop (0.73 against 2.68 ms for
    the embedded policy's 954k trained parameters); the same update, up to float rounding."""
    return torch.optim.Adam(params, lr=lr, eps=1e-5, fused=True)


def train_ppo(config: PPOConfig) -> Path:
    """The run: one process, or one rank of `torchrun` (DD-PPO); rank 0 holds the run directory's lock."""
    return distributed.run_ranked(_train, config)


def open_run(config):
    """The run directory, the simulator, the families (recorded in the config as trained: the card's tasks),
    and torch's threads for rollouts and for updates (PPO's and GRPO's). While env workers run, the learner's
    per-step inference is small and more torch threads only fight them for the cores; the update gets every
    thread back."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    update_threads = torch.get_num_threads()
    rollout_threads = 1 if config.env_workers else update_threads
    sim = get_simulator(config.env, config.thor)
    config = replace(config, families=sim.check(config.families or sim.train_families))
    return out, sim, config, rollout_threads, update_threads


def _train(config: PPOConfig, ranks: distributed.Ranks) -> Path:
    out, sim, config, rollout_threads, update_threads = open_run(config)
    families, ckpt_path = config.families, out / CHECKPOINT_NAME
    if config.pursuit_coef and sim.name != "gridhouse":
        raise ValueError(f"--pursuit-coef needs the gridhouse's goal-cell labels; --env {sim.name} has none: leave "
                         "it at 0")  # fmt: skip

    # --- model, optimiser, resume ---------------------------------------------------------------------
    resume = ckpt_path.exists()
    if resume:
        model, adapter, payload = load_checkpoint(ckpt_path)
        model.visual.requires_grad_(config.train_visual)
    else:
        model, adapter, payload = build_model(config)
    check_simulator(payload, sim, model.config.max_context)
    model.to(ranks.device)
    mask = sim.action_mask.to(ranks.device)
    params = [p for p in model.parameters() if p.requires_grad]
    distributed.broadcast_parameters(model, ranks)
    # A separate critic's update runs beside the actor's, each on one CPU thread, where there are two threads
    # (not when the encoder trains: both networks' losses then reach it through one shared pass).
    side_by_side = model.critic is not None and update_threads >= 2 and ranks.device.type == "cpu"
    side_by_side = side_by_side and not config.train_visual
    separate_step = SeparateNetworkStep() if side_by_side else None
    optimizer = adam(params, config.lr * config.lr_multiplier)
    update, env_steps, evals = 0, 0, []
    returns_norm = ReturnNormalizer(ranks) if config.normalize_returns else None
    if resume:
        update, env_steps, evals = restore_training(ckpt_path, payload, optimizer, "ppo", config)
        if returns_norm is not None:  # a run trained without them is refused above (`check_resume`)
            returns_norm.load_state_dict(payload["return_stats"])
        if ranks.main:
            print(f"resuming {out} from update {update} ({env_steps:,} env steps)")
    elif ranks.main:
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    global_batch = config.batch_steps * ranks.world
    total_updates = -(-config.total_env_steps // global_batch)
    log = RunLog(out, "ppo", model, adapter, families, sim, config, evals) if ranks.main else None
    sync = GradientSync(params, ranks) if ranks.distributed else None

    # --- environments (fresh episodes on resume: a killed run's env state is gone); each rank its own houses --
    seed = config.seed * 100_003 + update + ranks.rank * config.num_envs
    collector = RolloutCollector(model, adapter, sim, families, seed, config.num_envs, config.env_workers,
                                 config.rollout, expert=config.pursuit_coef > 0,
                                 train_visual=config.train_visual)  # fmt: skip
    if ranks.main:
        log.start()
    bar = tqdm(total=total_updates, initial=update, desc="ppo", unit="update", disable=not ranks.main)
    start_time, start_steps = time.perf_counter(), env_steps
    while update < total_updates:
        update += 1
        torch.set_num_threads(rollout_threads)
        rollout_start = time.perf_counter()
        rollout = collector.collect()
        warmup = env_steps < config.critic_warmup_steps  # value-only updates while the critic catches up
        env_steps += global_batch
        torch.set_num_threads(1 if separate_step is not None else update_threads)  # the update's threads
        batch, cache_vs_sequence = ppo_batch(model, rollout, config, mask, separate_step, collector.frames,
                                             returns_norm)  # fmt: skip
        update_start = time.perf_counter()
        stats = ppo_update(model, optimizer, params, batch, config, mask, warmup, separate_step, sync,
                           config.num_envs * ranks.world, collector.frames)  # fmt: skip
        spread = distributed.param_spread(params, ranks)
        if not ranks.main:
            continue

        # --- log, evaluate, checkpoint (rank 0) ------------------------------------------------------------
        sps = (env_steps - start_steps) / (time.perf_counter() - start_time)
        recent = collector.recent
        row = {
            "update": update,
            "env_steps": env_steps,
            "sps": sps,
            "rollout_s": update_start - rollout_start,
            "update_s": time.perf_counter() - update_start,
            "critic_warmup": warmup,
            "cache_vs_sequence_logprob": cache_vs_sequence,
            "ranks": ranks.world,
            "param_spread": spread,
            **{k: float(np.mean(v)) for k, v in stats.items()},
            **({"return_mean": returns_norm.mean, "return_std": returns_norm.std} if returns_norm else {}),
            **{f"train_success/{f}": float(np.mean(r)) for f, r in recent.items() if r},
        }
        log.record(row)
        if line := log.maybe_evaluate(env_steps, last=update == total_updates):
            bar.write(line)
        mean_train = np.mean([np.mean(r) for r in recent.values() if r]) if recent else 0.0
        bar.set_postfix(sps=f"{sps:.0f}", train_success=f"{mean_train:.0%}", kl=f"{row['approx_kl']:.4f}")
        bar.update()
        state = {"update": update, "env_steps": env_steps, "evals": evals, "config": asdict(config)}
        if returns_norm is not None:
            state["return_stats"] = returns_norm.state_dict()
        save_checkpoint(ckpt_path, model, adapter, kind="ppo", optimizer=optimizer.state_dict(),
                        torch_rng=torch.get_rng_state(), **state)  # fmt: skip
    bar.close()
    if separate_step is not None:
        separate_step.close()
    collector.close()
    if ranks.main:
        log.finish(env_steps)
    return ckpt_path
