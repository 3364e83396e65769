"""GRPO as SimpleVLA-RL does it: group advantages, dynamic sampling, the asymmetric clip, temperature in
sampling and log-probs alike, an update that improves, repeatable group starts, and the CLI run end to end."""

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from flare_core import get_embodiment
from flare_sim import GridhouseEnv, make_vector_env
from flare_training.checkpoint import load_checkpoint, save_checkpoint
from flare_training.envs import get_simulator
from flare_training.grpo import (
    GroupSampler,
    GRPOConfig,
    episode_sequences,
    group_advantages,
    grpo_loss,
    grpo_update,
    informative_groups,
    sequence_logprob,
)
from flare_training.inputs import ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig
from flare_training.ppo import Episodes, RolloutCollector, action_logprob

GRID = torch.from_numpy(get_embodiment("gridhouse").mask)
TINY = ModelConfig(d_model=32, layers=2, heads=4, max_context=128, visual_dim=16, goal_dim=16, vocab_size=40)


def test_group_advantages_are_success_relative_to_the_group():
    success = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]], dtype=torch.bool)
    adv = group_advantages(success)
    # Group 0: mean 0.25, unbiased std 0.5.
    assert torch.allclose(adv[0], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-5)
    assert (adv[1] == 0).all()  # a uniform group teaches nothing
    assert torch.allclose(adv[2], torch.tensor([-1.0, 1.0, -1.0, 1.0]) * 0.5 / 0.57735, atol=1e-4)
    assert torch.allclose(group_advantages(success, scale_by_std=False)[0], torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_informative_groups_are_those_with_success_rate_inside_the_bounds():
    success = torch.tensor([[0] * 8, [1] + [0] * 7, [1] * 7 + [0], [1] * 8, [1] * 4 + [0] * 4], dtype=torch.bool)
    assert informative_groups(success, 0.1, 0.9).tolist() == [False, True, True, False, True]
    assert informative_groups(success, 0.2, 0.8).tolist() == [False, False, False, False, True]


class ScriptedCollector:
    """Plays rounds whose successes are given: each round, num_envs trajectories whose length is the env seed's
    offset (so the test can tell which group a row came from)."""

    def __init__(self, rounds: list[list[int]], group_size: int) -> None:
        self.rounds, self.group_size, self.seeds = list(rounds), group_size, []

    def collect_episodes(self, seeds: list[int]) -> Episodes:
        self.seeds.append(seeds)
        success = torch.tensor(self.rounds.pop(0), dtype=torch.bool)
        n, length = len(seeds), torch.tensor(seeds) % 97 + 1
        steps = {k: torch.zeros(n, 100, dtype=torch.long) for k in ("prev_action", "holding", "step", "action")}
        steps["logprob"] = torch.zeros(n, 100)
        return Episodes(steps, length, success, ["objectnav"] * n, n * 100, torch.zeros(n, dtype=torch.bool))


def test_dynamic_sampling_drops_uniform_groups_and_refills_the_batch():
    g = 4
    rounds = [
        [0, 0, 0, 0, 1, 0, 1, 0],  # group 0 all fail (dropped), group 1 kept
        [1, 1, 1, 1, 0, 0, 0, 0],  # both uniform: dropped
        [0, 1, 0, 0, 1, 1, 0, 1],  # both kept: the batch needs one, the surplus is dropped
    ]
    config = GRPOConfig(group_size=g, groups=2, num_envs=8)
    collector = ScriptedCollector(rounds, g)
    batch, stats = GroupSampler(collector, config, seed_base=1000).sample(next_group=0)
    assert stats["groups_played"] == 6 and stats["groups_kept"] == 2 and stats["next_group"] == 6
    # Each round's envs play two tasks, four envs each, every task a seed of its own.
    assert collector.seeds[0] == [1000] * 4 + [1001] * 4 and collector.seeds[2] == [1004] * 4 + [1005] * 4
    # The batch: round 0's second group, then round 2's first; rows stay group-major.
    assert batch.success.view(2, g).tolist() == [[True, False, True, False], [False, True, False, False]]
    assert batch.length.tolist() == [1001 % 97 + 1] * 4 + [1004 % 97 + 1] * 4
    assert stats["env_steps"] == sum(int(s) % 97 + 1 for r in collector.seeds for s in r)
    # Without dynamic sampling the first round fills the batch as it comes.
    off = GRPOConfig(group_size=g, groups=2, num_envs=8, dynamic_sampling=False)
    batch, stats = GroupSampler(ScriptedCollector(rounds, g), off, seed_base=0).sample(next_group=0)
    assert stats["groups_played"] == 2 and batch.success.tolist() == [False] * 4 + [True, False, True, False]


def test_a_policy_that_never_succeeds_is_refused_with_advice():
    config = GRPOConfig(group_size=4, groups=2, num_envs=8)
    sampler = GroupSampler(ScriptedCollector([[0] * 8] * 1000, 4), config, seed_base=0)
    with pytest.raises(ValueError, match="--no-dynamic-sampling"):
        sampler.sample(next_group=0)


def _surrogate_gradient(ratio: float, advantage: float, config: GRPOConfig) -> float:
    """d loss / d logit of the played action at a given ratio (one step; the old log-prob set to give it)."""
    logits = torch.zeros(1, 1, 20, requires_grad=True)
    actions = torch.tensor([[2]])
    logprob = action_logprob(logits, actions, GRID, config.temperature).detach()
    old = logprob - np.log(ratio)
    terms = grpo_loss(logits, actions, old, torch.tensor([advantage]), torch.tensor([1]), config, GRID)
    terms["policy_loss"].backward()
    return float(logits.grad[0, 0, 2])


def test_the_clip_is_asymmetric_0_8_to_1_28():
    config = GRPOConfig()
    # Positive advantage: the ratio may rise to 1.28 (clip-higher), not beyond.
    assert _surrogate_gradient(1.25, 1.0, config) != 0.0
    assert _surrogate_gradient(1.30, 1.0, config) == 0.0
    # Negative advantage: it may fall to 0.8, not below.
    assert _surrogate_gradient(0.82, -1.0, config) != 0.0
    assert _surrogate_gradient(0.78, -1.0, config) == 0.0
    # The symmetric ablation stops at 1.2.
    assert _surrogate_gradient(1.25, 1.0, GRPOConfig(clip_high=0.2)) == 0.0


def test_loss_is_the_mean_over_trajectories_of_the_mean_over_their_steps():
    """A 1-step and a 3-step trajectory weigh alike; padding steps count for nothing, whatever they hold."""
    config = GRPOConfig()
    logits = torch.zeros(2, 4, 20)
    actions = torch.zeros(2, 4, dtype=torch.long)
    old = action_logprob(logits, actions, GRID, config.temperature)
    old[0, 1:] = float("-inf")  # padding of the 1-step trajectory: garbage that must not count
    terms = grpo_loss(logits, actions, old, torch.tensor([2.0, -1.0]), torch.tensor([1, 3]), config, GRID)
    assert terms["policy_loss"].item() == pytest.approx(-(2.0 - 1.0) / 2)


class FixedLogits(torch.nn.Module):
    """A policy whose every step has the same logits (for the sampling statistics)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def step(self, inputs, cache):
        return {"logits": self.logits.expand(len(inputs["step"]), -1)}


class Lane:
    """What `decide` reads of an env lane: envs to hand actions to, a cache, a store."""

    def __init__(self, n: int) -> None:
        self.envs = type("Envs", (), {"step_async": lambda self, a: None})()
        self.store, self.n, self.cache = defaultdict(list), n, None


def test_temperature_applies_to_sampling_and_log_probs_alike():
    logits = torch.zeros(20).masked_fill(~GRID, 0.0)
    logits[[1, 2, 3]] = torch.tensor([2.0, 0.5, -1.0])
    collector = RolloutCollector.__new__(RolloutCollector)
    collector.model = type("M", (), {"actor": FixedLogits(logits)})()
    collector.mask, collector.temperature, collector.device = GRID, 1.6, torch.device("cpu")
    collector.expert, collector.frames = False, None  # no expert labels, features already computed
    collector.generator = torch.Generator().manual_seed(0)
    collector.step_inputs = lambda lane: {k: torch.zeros(lane.n, dtype=torch.long) for k in
                                          ("visual", "goal", "prev_action", "holding", "step")}  # fmt: skip
    lane = Lane(20_000)
    collector.decide(lane)
    actions, logprob = lane.store["action"][0], lane.store["logprob"][0]
    expected = torch.softmax((logits / 1.6).masked_fill(~GRID, float("-inf")), -1)
    counts = torch.bincount(actions, minlength=20).float() / len(actions)
    assert (counts - expected).abs().max() < 0.01  # sampled at 1.6 ...
    untempered = torch.softmax(logits.masked_fill(~GRID, float("-inf")), -1)
    assert (counts - untempered).abs().max() > 0.05  # ... not at 1
    assert torch.allclose(logprob, expected.log()[actions])  # and the log-probs are those of what was sampled


def _tiny_model() -> tuple[ActorCritic, ObservationAdapter]:
    adapter = ObservationAdapter(gridhouse_tokenizer(TINY.max_goal_tokens), gridhouse_cameras())
    torch.manual_seed(0)
    config = ModelConfig(**{**TINY.__dict__, "vocab_size": len(adapter.tokenizer)})
    return ActorCritic(config, adapter.camera_shapes), adapter


def _batch(model: ActorCritic, n: int, length: int, seed: int) -> Episodes:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    t = torch.arange(length)[None].repeat(n, 1)
    steps = {
        "visual": torch.randn(n, length, model.visual.out_dim, generator=g),
        "goal": torch.randint(1, 30, (n, length, model.config.max_goal_tokens), generator=g),
        "prev_action": torch.randint(0, 21, (n, length), generator=g),
        "holding": torch.randint(0, 2, (n, length), generator=g),
        "step": t,
        "action": GRID.nonzero()[:, 0][torch.randint(0, int(GRID.sum()), (n, length), generator=g)],
    }
    return Episodes(steps, lengths, torch.rand(n, generator=g) < 0.5, ["objectnav"] * n, 0, torch.zeros(n, dtype=bool))


def test_a_grpo_update_on_a_tiny_problem_improves_its_objective():
    """Successful trajectories' actions get likelier and failed ones' less likely: the surrogate rises."""
    model, _ = _tiny_model()
    config = GRPOConfig(group_size=4, minibatches=2, epochs=1)
    batch = _batch(model, 16, 10, seed=0)
    advantages = group_advantages(batch.success.view(-1, 4)).flatten()
    params = [p for p in model.actor.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    valid = torch.arange(10)[None] < batch.length[:, None]

    def objective() -> float:  # sum over trajectories of A x mean log pi(played actions)
        logprob = sequence_logprob(model, batch.steps, batch.length, config.temperature, GRID)
        return float((torch.where(valid, logprob, 0).sum(1) / valid.sum(1) * advantages).sum())

    before = objective()
    for _ in range(5):
        old = sequence_logprob(model, batch.steps, batch.length, config.temperature, GRID)
        stats = grpo_update(model, optimizer, params, batch, advantages, old, config, GRID)
    assert objective() > before + 0.1
    assert len(stats["policy_loss"]) == 2
    # The critic is not GRPO's: it stays as it was.
    assert all(p.grad is None for p in model.critic.parameters())


def test_episode_rows_match_the_kv_cache_step_by_step():
    """The update's full-sequence rows reproduce, on valid steps, the log-probs the rollout's cache gave."""
    model, _ = _tiny_model()
    model.eval()
    batch = _batch(model, 3, 8, seed=1)
    seq = episode_sequences(batch.steps, batch.length)
    assert (seq["episode"][batch.length[:, None] <= torch.arange(8)[None]] < 0).all()
    cache, _ = model.new_caches(3)
    with torch.no_grad():
        stepped = torch.stack([model.actor.step({k: batch.steps[k][:, t] for k in seq if k != "episode"}, cache)
                               ["logits"] for t in range(8)], 1)  # fmt: skip
        full = model.actor.sequence(seq)["logits"]
    valid = torch.arange(8)[None] < batch.length[:, None]
    assert (stepped - full)[valid].abs().max() < 1e-4


def test_a_group_starts_alike_in_every_worker():
    """Equal seeds give the same house, pose and goal, in-process or in another worker process."""
    seeds = [7, 7, 8, 8]
    firsts = []
    for workers in (0, 2):
        envs = make_vector_env(4, families=("objectnav", "pickup"), workers=workers)
        obs, info = envs.reset(seed=seeds)
        envs.close()
        assert obs["goal"][0] == obs["goal"][1] and info["house"][0] == info["house"][1]
        assert (obs["nav_rgb"][0] == obs["nav_rgb"][1]).all() and (obs["nav_rgb"][2] == obs["nav_rgb"][3]).all()
        assert info["house"][0] != info["house"][2] or obs["goal"][0] != obs["goal"][2]
        firsts.append((obs["nav_rgb"], list(obs["goal"])))
    assert (firsts[0][0] == firsts[1][0]).all() and firsts[0][1] == firsts[1][1]


def test_collected_episodes_replay_in_a_fresh_env():
    """Each row of `collect_episodes` is its env's first episode from its seed: the recorded actions, played
    again from that seed in a new env, end it at the recorded length with the recorded outcome, across two
    worker lanes whose episodes end at different times."""
    model, adapter = _tiny_model()
    seeds = [3, 3, 9, 9, 4, 4]
    collector = RolloutCollector(model, adapter, get_simulator("gridhouse"), ("objectnav", "pickup"), 0, 6, 2,
                                 temperature=1.6)  # fmt: skip
    try:
        played = collector.collect_episodes(seeds)
    finally:
        collector.close()
    assert played.simulated >= int(played.length.sum()) and not played.timeout.any()
    for row, seed in enumerate(seeds):
        length = int(played.length[row])
        assert played.steps["step"][row, :length].tolist() == list(range(length))
        env = GridhouseEnv(families=("objectnav", "pickup"))
        env.reset(seed=seed)
        assert env.family == played.family[row]
        for t in range(length):
            _, _, terminated, truncated, info = env.step(int(played.steps["action"][row, t]))
            assert (terminated or truncated) == (t == length - 1)
        assert info["success"] == bool(played.success[row])


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    model, adapter = _tiny_model()
    return save_checkpoint(tmp_path / "bc" / "checkpoint.pt", model, adapter, kind="bc")


def _grpo(out: Path, init: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    args = ["grpo", "--out", str(out), "--init", str(init), "--num-envs", "4", "--group-size", "2", "--groups", "2",
            "--minibatches", "2", "--total-env-steps", str(steps), "--eval-every", "1000000000", "--eval-episodes",
            "1", "--final-eval-episodes", "1", "--env-workers", "2", "--no-dynamic-sampling", *extra]  # fmt: skip
    return subprocess.run([sys.executable, "-m", "flare_training", *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_grpo_cli_trains_resumes_exports_and_evaluates(tmp_path, tiny_checkpoint):
    out = tmp_path / "run"
    first = _grpo(out, tiny_checkpoint, 100)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["cache_vs_sequence_logprob"] < 1e-5 for r in rows)
    assert all(r["simulated_steps_per_env_step"] >= 1.0 for r in rows)
    done, next_group = rows[-1]["env_steps"], load_checkpoint(out)[2]["next_group"]
    assert next_group >= 2 * len(rows)  # two groups a round, at least one round an update
    changed = _grpo(out, tiny_checkpoint, done + 100, "--temperature", "1.0")
    assert changed.returncode == 2 and "was trained with --temperature 1.6" in changed.stderr, changed.stderr[-500:]
    resumed = _grpo(out, tiny_checkpoint, done + 100)
    assert resumed.returncode == 0 and f"from update {rows[-1]['update']}" in resumed.stdout, resumed.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["env_steps"] >= done + 100
    assert load_checkpoint(out)[2]["next_group"] > next_group  # tasks continue where the first run stopped
    assert json.loads((out / "eval.json").read_text())["kind"] == "grpo"
    exported = subprocess.run([sys.executable, "-m", "flare_training", "export", str(out), str(tmp_path / "model")],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    assert card["provenance"]["env_steps"] == rows[-1]["env_steps"]
    # Resuming a PPO run with GRPO (or the reverse) is refused.
    wrong = subprocess.run([sys.executable, "-m", "flare_training", "ppo", "--out", str(out)], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert wrong.returncode != 0 and "not a PPO run to resume" in wrong.stderr


def test_grpo_without_a_policy_to_start_from_is_refused(tmp_path):
    refused = subprocess.run([sys.executable, "-m", "flare_training", "grpo", "--out", str(tmp_path / "r")],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "give --init" in refused.stderr
