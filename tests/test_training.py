"""Policy model and FLaRe PPO: KV-cache parity, masking, a PPO update that improves, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from flare_core import get_embodiment
from flare_training.checkpoint import load_checkpoint, save_checkpoint
from flare_training.evaluate import choose
from flare_training.inputs import ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig
from flare_training.ppo import (
    _STEP_KEYS,
    PPOConfig,
    ReturnNormalizer,
    RolloutCollector,
    _pad_rows,
    acted_features,
    build_sequences,
    encoded,
    ppo_losses,
    train_ppo,
)

GRID = torch.from_numpy(get_embodiment("gridhouse").mask)
TINY = ModelConfig(d_model=32, layers=2, heads=4, max_context=40, visual_dim=16, goal_dim=16, vocab_size=40)
KEYS = ("visual", "goal", "prev_action", "holding", "step")


def _episodes(boundaries: list[list[int]], length: int, visual_dim: int = 32, seed: int = 0) -> dict:
    """Random step inputs for rows whose episodes restart at the given steps."""
    g = torch.Generator().manual_seed(seed)
    b = len(boundaries)
    episode = torch.zeros(b, length, dtype=torch.long)
    for row, starts in enumerate(boundaries):
        for s in starts:
            episode[row, s:] += 1
    step = torch.zeros_like(episode)
    for t in range(1, length):
        step[:, t] = torch.where(episode[:, t] == episode[:, t - 1], step[:, t - 1] + 1, 0)
    return {
        "visual": torch.randn(b, length, visual_dim, generator=g),
        "goal": torch.randint(0, TINY.vocab_size, (b, length, TINY.max_goal_tokens), generator=g),
        "prev_action": torch.randint(0, 21, (b, length), generator=g),
        "holding": torch.randint(0, 2, (b, length), generator=g),
        "step": step,
        "episode": episode,
    }


@pytest.mark.parametrize("shared_critic", [False, True])
def test_kv_cache_steps_equal_full_sequence_across_episode_boundaries(shared_critic):
    torch.manual_seed(0)
    model = ActorCritic(ModelConfig(**{**TINY.__dict__, "shared_critic": shared_critic}), {"nav": (8, 8)}).eval()
    batch = _episodes([[], [7], [5, 12, 13]], length=24, visual_dim=model.visual.out_dim)
    with torch.no_grad():
        logits, values = model.sequence(batch)
        actor_cache, critic_cache = model.new_caches(3)
        step_logits, step_values = [], []
        for t in range(24):
            new = (batch["step"][:, t] == 0).nonzero()[:, 0]
            actor_cache.reset(new)
            if critic_cache is not None:
                critic_cache.reset(new)
            out = model.step({k: batch[k][:, t] for k in KEYS[:4]}, actor_cache, critic_cache)
            step_logits.append(out[0])
            step_values.append(out[1])
    torch.testing.assert_close(torch.stack(step_logits, 1), logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(step_values, 1), values, atol=1e-5, rtol=0)


def test_primed_cache_continues_like_the_full_sequence():
    torch.manual_seed(1)
    model = ActorCritic(TINY, {"nav": (8, 8)}).eval()
    full = _episodes([[], [], []], length=20, visual_dim=model.visual.out_dim)
    lengths = torch.tensor([6, 0, 11])  # each row's episode so far; then step on from there
    with torch.no_grad():
        logits, _ = model.sequence(full)
        rows = [[{k: full[k][r, t] for k in KEYS} for t in range(n)] for r, n in enumerate(lengths.tolist())]
        prefix = _pad_rows(rows, int(lengths.max()), {k: full[k][0, 0] for k in KEYS})
        prefix["episode"] = torch.zeros_like(prefix["step"])
        cache, _ = model.new_caches(3)
        model.actor.prime(prefix, lengths, cache)
        out = model.actor.step({k: full[k][torch.arange(3), lengths] for k in KEYS[:4]}, cache)["logits"]
    torch.testing.assert_close(out, logits[torch.arange(3), lengths], atol=1e-5, rtol=0)


def test_masked_actions_are_never_sampled():
    logits = torch.zeros(2000, 20)
    logits[:, ~GRID] = 30.0  # the policy prefers masked actions overwhelmingly
    for greedy in (True, False):
        actions = choose(logits, greedy=greedy, generator=torch.Generator().manual_seed(0))
        assert GRID[actions].all()
    assert len(set(choose(logits, greedy=False).tolist())) == int(GRID.sum())


def test_build_sequences_places_rollout_after_each_prefix():
    t, n = 5, 2
    step = {k: torch.zeros(n, dtype=torch.long) for k in KEYS}
    step["visual"] = torch.zeros(n, 3)
    prefix = [[{**{k: v[0] for k, v in step.items()}, "step": torch.tensor(i)} for i in range(3)], []]
    rollout = {k: torch.stack([v] * t) for k, v in step.items()}
    dones = torch.zeros(t, n)
    dones[1, 1] = 1.0  # env 1's episode ends after rollout step 1
    seq = build_sequences(prefix, rollout, dones, step)
    assert seq["index"].tolist() == [[3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 4, 5]]
    assert seq["episode"][0, :9].tolist() == [0] * 9
    assert seq["episode"][1, :6].tolist() == [0, 0, 1, 1, 1, 1]
    assert (seq["episode"][1, 6:] < 0).all()  # padding never shares an episode


def test_ppo_update_improves_its_objective_on_a_tiny_problem():
    """One action has positive advantage everywhere: PPO steps raise its probability and lower the loss."""
    torch.manual_seed(0)
    model = ActorCritic(TINY, {"nav": (8, 8)})
    seq = _episodes([[], [4]], length=9, visual_dim=model.visual.out_dim)
    index = torch.arange(9)[None].repeat(2, 1)
    favoured = 2  # 'l', valid in the gridhouse
    actions = torch.randint(0, 20, (2, 8)).clamp(max=0) + torch.tensor([0, 1, 2, 8, 19, 4, 5, 2])[None]
    with torch.no_grad():
        logits, _ = model.sequence(seq)
        old = torch.log_softmax(logits[:, :8].masked_fill(~GRID, float("-inf")), -1)
        old_logprob = old.gather(2, actions[..., None])[..., 0]
    advantages = torch.where(actions == favoured, 1.0, -0.2)
    returns = torch.ones(2, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(10):
        terms = ppo_losses(model, seq, index, actions, old_logprob, advantages, returns, clip=0.2)
        loss = terms["policy_loss"] + 0.5 * terms["value_loss"]
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits, _ = model.sequence(seq)
        new = torch.softmax(logits[:, :8].masked_fill(~GRID, float("-inf")), -1)
    assert loss.item() < first
    assert (new[..., favoured] > old.exp()[..., favoured]).all()


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    adapter = ObservationAdapter(gridhouse_tokenizer(TINY.max_goal_tokens), gridhouse_cameras())
    torch.manual_seed(0)
    config = ModelConfig(**{**TINY.__dict__, "max_context": 128, "vocab_size": len(adapter.tokenizer)})
    path = tmp_path / "bc" / "checkpoint.pt"
    save_checkpoint(path, ActorCritic(config, adapter.camera_shapes), adapter, kind="bc")
    return path


def _tiny_ppo(out: Path, init: Path, updates: int, **kw) -> PPOConfig:
    return PPOConfig(
        out=str(out),
        init=str(init),
        num_envs=2,
        rollout=16,
        total_env_steps=2 * 16 * updates,
        eval_every=10**9,
        eval_episodes=1,
        final_eval_episodes=0,
        critic_warmup_steps=2 * 16,
        **kw,
    )


@pytest.mark.parametrize("env_workers", [0, 2], ids=["in-process", "two-lanes"])
def test_ppo_rollout_cache_matches_update_sequences(tmp_path, tiny_checkpoint, env_workers):
    """Whether the envs step in the learner or in two worker lanes that step while it decides, the policy that
    acted is the one the update divides by, and warm-up leaves the actor alone."""
    train_ppo(_tiny_ppo(tmp_path / "run", tiny_checkpoint, updates=4, env_workers=env_workers))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    # Critic warm-up: value-only, so the actor does not move (KL at float rounding: a minibatch is a narrower
    # padded batch than the one old log-probs came from); afterwards it does, by orders of magnitude more.
    assert rows[0]["critic_warmup"] and rows[0]["approx_kl"] < 1e-12
    assert not rows[1]["critic_warmup"] and all(r["approx_kl"] > 1e-9 for r in rows[1:])
    # The policy that acted (through its KV-cache) is the one the update divides by.
    assert max(r["cache_vs_sequence_logprob"] for r in rows) < 1e-5


def test_actor_and_critic_updated_side_by_side_get_the_combined_loss_gradients():
    """SeparateNetworkStep differentiates the actor's and the critic's losses apart, at the same time: the
    gradients must be those of the one summed loss (and, in warm-up, the critic's alone)."""
    from flare_training.ppo import SeparateNetworkStep

    torch.manual_seed(0)
    model = ActorCritic(TINY, {"nav": (8, 8)})
    seq = _episodes([[], [4], [2, 6]], length=9, visual_dim=model.visual.out_dim)
    index = torch.arange(9)[None].repeat(3, 1)
    actions = torch.tensor([0, 1, 2, 8, 19, 4, 5, 2]).repeat(3, 1)
    old_logprob, advantages, returns = -torch.rand(3, 8), torch.randn(3, 8), torch.randn(3, 8)
    config = PPOConfig(entropy_coef=0.01)
    step = SeparateNetworkStep()
    for warmup in (False, True):
        model.zero_grad()
        terms = ppo_losses(model, seq, index, actions, old_logprob, advantages, returns, config.clip)
        loss = config.value_coef * terms["value_loss"]
        if not warmup:
            loss = loss + terms["policy_loss"] - config.entropy_coef * terms["entropy"]
        loss.backward()
        expected = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()
        split = step(model, seq, index, actions, old_logprob, advantages, returns, config, warmup)
        for name, p in model.named_parameters():
            if expected[name] is None or not expected[name].any():
                assert p.grad is None or not p.grad.any(), name
            else:
                assert torch.allclose(p.grad, expected[name], atol=1e-6), name
        assert torch.allclose(split["value_loss"].detach(), terms["value_loss"].detach())
        assert torch.allclose(split["approx_kl"], terms["approx_kl"])
    step.close()


def test_rollout_features_from_onnx_runtime_match_torch(tiny_checkpoint):
    """The frozen encoder runs in ONNX Runtime next to the envs (in a worker after pickling): same features as
    the torch module, and only what the learner reads comes back (no frames)."""
    import pickle

    import numpy as np

    from flare_sim import make_vector_env
    from flare_training.features import LEARNER_KEYS, FrozenVisualFeatures

    model, adapter, _ = load_checkpoint(tiny_checkpoint)
    features = FrozenVisualFeatures(model.visual, adapter)
    features = pickle.loads(pickle.dumps(features))  # as a worker receives it
    envs = make_vector_env(3)
    raw, _ = envs.reset(seed=4)
    envs.close()
    out = features(raw)
    assert set(out) == {"visual", *LEARNER_KEYS}
    with torch.no_grad():
        expected = model.visual(adapter.frames(raw)).numpy()
    assert out["visual"].dtype == np.float32 and np.abs(out["visual"] - expected).max() < 1e-5
    lanes = make_vector_env(3, workers=1, observe=features)
    try:
        in_worker, _ = lanes.reset(seed=4)
    finally:
        lanes.close()
    assert np.abs(in_worker["visual"] - expected).max() < 1e-5 and in_worker["goal"] == raw["goal"]


def test_from_scratch_keeps_only_the_visual_encoder(tmp_path, tiny_checkpoint):
    from flare_training.ppo import build_model

    bc, _, _ = load_checkpoint(tiny_checkpoint)
    scratch, _, _ = build_model(PPOConfig(visual_from=str(tiny_checkpoint), seed=3))
    for a, b in zip(bc.visual.parameters(), scratch.visual.parameters(), strict=True):
        assert torch.equal(a, b) and not b.requires_grad
    assert not torch.equal(bc.actor.heads["logits"].weight, scratch.actor.heads["logits"].weight)


def test_frames_kept_for_a_training_encoder_encode_to_the_torch_features(tiny_checkpoint):
    """--train-visual: steps keep their frames resampled (uint8), flattened; normalised they are the preprocessed
    frames bit for bit, and encoding them gives what the encoder gives the preprocessed frames."""
    from flare_sim import make_vector_env
    from flare_training.features import LEARNER_KEYS, VisualFrames

    model, adapter, _ = load_checkpoint(tiny_checkpoint)
    frames = VisualFrames(adapter)
    envs = make_vector_env(3)
    raw, _ = envs.reset(seed=4)
    envs.close()
    out = frames(raw)
    assert set(out) == {"visual", *LEARNER_KEYS} and out["visual"].shape == (3, frames.size)
    assert out["visual"].dtype.name == "uint8"
    images = frames.images(torch.from_numpy(out["visual"]))
    for name, preprocessed in adapter.frames(raw).items():
        assert torch.equal(images[name], preprocessed)
    with torch.no_grad():
        expected = model.visual(adapter.frames(raw))
        assert torch.allclose(frames.encode(model.visual, torch.from_numpy(out["visual"])), expected, atol=1e-6)


def test_a_training_encoder_acts_as_it_is_now_and_the_update_reads_what_it_acted_on(tmp_path, tiny_checkpoint):
    """--train-visual: each rollout encodes its steps' frames and re-encodes its episode prefixes with the
    encoder as it is at that rollout (after the last update moved it), and the update's first pass reads those
    very features where `build_sequences` puts the frames."""
    from flare_training.envs import get_simulator

    model, adapter, _ = load_checkpoint(tiny_checkpoint)
    config = _tiny_ppo(tmp_path, tiny_checkpoint, updates=1)
    sim = get_simulator(config.env, config.thor)
    collector = RolloutCollector(model, adapter, sim, sim.train_families, 0, 2, 0, rollout=8, train_visual=True)
    try:
        for rollout_number in range(3):
            rollout = collector.collect()
            assert rollout_number == 0 or any(len(p) for p in rollout.prefix_features)  # episodes carried over
            rows = build_sequences(rollout.prefix, {k: rollout.steps[k] for k in _STEP_KEYS}, rollout.steps["done"],
                                   rollout.last)  # fmt: skip
            with torch.no_grad():
                now = collector.frames.encode(model.visual, rollout.steps["visual"])
                assert torch.allclose(rollout.steps["features"], now, atol=1e-5)
                fresh = encoded(model, rows, collector.frames, rows["index"][:, -1])["visual"]
                assert torch.allclose(acted_features(rollout, rows["index"], rows["visual"].shape[1]), fresh, atol=1e-5)
                for p in model.visual.parameters():  # an update moves the encoder
                    p.add_(0.05 * torch.randn_like(p))
    finally:
        collector.close()


def test_without_prefix_gradients_the_prefix_keeps_the_acted_features(tmp_path, tiny_checkpoint):
    """--no-visual-grad-prefix: the prefix keeps the features the rollout acted on (the encoder as it was then),
    the rollout's own frames are encoded by the encoder as it is now, and the losses reach the encoder through
    those alone, with the same gradients as when the prefix is encoded again."""
    from flare_training.envs import get_simulator

    model, adapter, _ = load_checkpoint(tiny_checkpoint)
    model.visual.requires_grad_(True)
    config = _tiny_ppo(tmp_path, tiny_checkpoint, updates=1)
    sim = get_simulator(config.env, config.thor)
    collector = RolloutCollector(model, adapter, sim, sim.train_families, 0, 2, 0, rollout=8, train_visual=True)
    try:
        collector.collect()
        rollout = collector.collect()  # episodes carried over: prefixes
    finally:
        collector.close()
    rows = build_sequences(rollout.prefix, {k: rollout.steps[k] for k in _STEP_KEYS}, rollout.steps["done"],
                           rollout.last)  # fmt: skip
    index, params = rows["index"], list(model.visual.parameters())
    acted = acted_features(rollout, index, rows["visual"].shape[1])
    prefix = torch.arange(acted.shape[1])[None] < index[:, :1]
    assert prefix.any()
    with torch.no_grad():  # an update moves the encoder
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
    full = encoded(model, rows, collector.frames, index[:, -1])["visual"]
    cut = encoded(model, rows, collector.frames, index[:, -1], kept=(acted, index[:, 0]))["visual"]
    assert torch.equal(cut[prefix], acted[prefix]) and not torch.allclose(full[prefix], acted[prefix], atol=1e-3)
    assert torch.allclose(cut[~prefix], full[~prefix], atol=1e-6)
    assert any(g.abs().max() > 0 for g in torch.autograd.grad(full[prefix].sum(), params, retain_graph=True))
    through_prefix = torch.autograd.grad(cut[prefix].sum(), params, retain_graph=True, allow_unused=True)
    assert all(g is None or not g.any() for g in through_prefix)
    through_full = torch.autograd.grad(full[~prefix].square().sum(), params)
    through_cut = torch.autograd.grad(cut[~prefix].square().sum(), params)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(through_full, through_cut, strict=True))


@pytest.mark.parametrize("train_visual", [False, True], ids=["frozen", "trained"])
def test_the_visual_encoder_trains_only_with_train_visual(tmp_path, tiny_checkpoint, train_visual):
    """Frozen by default (FLaRe); with --train-visual the losses train it, but not in the critic's warm-up (the
    actor reads it too), and the update divides by the policy that acted (cached log-probs = the sequence's)."""
    before, _, _ = load_checkpoint(tiny_checkpoint)

    def encoder_moved(run: Path) -> list[bool]:
        after, _, _ = load_checkpoint(run)
        pairs = zip(before.visual.parameters(), after.visual.parameters(), strict=True)
        return [not torch.equal(a, b) for a, b in pairs]

    warmup = _tiny_ppo(tmp_path / "warmup", tiny_checkpoint, updates=1, env_workers=2, train_visual=train_visual)
    train_ppo(warmup)
    (row,) = [json.loads(line) for line in (tmp_path / "warmup" / "metrics.jsonl").read_text().splitlines()]
    assert row["critic_warmup"] and row["approx_kl"] < 1e-12 and not any(encoder_moved(tmp_path / "warmup"))

    train_ppo(replace(warmup, out=str(tmp_path / "run"), total_env_steps=3 * 2 * 16, critic_warmup_steps=0))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and max(r["cache_vs_sequence_logprob"] for r in rows) < 1e-5
    assert all(encoder_moved(tmp_path / "run")) if train_visual else not any(encoder_moved(tmp_path / "run"))
    after, _, _ = load_checkpoint(tmp_path / "run")
    assert not torch.equal(before.actor.heads["logits"].weight, after.actor.heads["logits"].weight)


def test_return_statistics_are_every_rollouts_so_far_and_normalising_inverts():
    """Sample Factory's running statistics: one pseudo-return of mean 0 and variance 1, then every batch merged
    in; so after batches of a success-reward scale they are the data's, and the critic's targets have unit
    spread."""
    g = torch.Generator().manual_seed(0)
    batches = [10 * torch.rand(32, 128, generator=g).pow(8) for _ in range(5)]  # sparse: mostly near 0
    norm = ReturnNormalizer()
    for b in batches:
        norm.update(b)
    data = torch.cat([b.reshape(-1) for b in batches]).double()
    n = len(data)
    mean = data.sum() / (n + 1)
    m2 = 1.0 + ((data - data.mean()) ** 2).sum() + data.mean() ** 2 * n / (n + 1)
    assert abs(norm.mean - mean.item()) < 1e-9 and abs(norm.var - (m2 / (n + 1)).item()) < 1e-9
    targets = norm.normalize(batches[-1])
    assert abs(targets.mean().item()) < 0.1 and abs(targets.std().item() - 1) < 0.1
    inside = targets.abs() < ReturnNormalizer.CLIP  # the clipped tail does not come back, as upstream
    assert torch.allclose(norm.denormalize(targets)[inside], batches[-1][inside], atol=1e-5)
    restored = ReturnNormalizer()
    restored.load_state_dict(norm.state_dict())
    assert torch.equal(restored.normalize(batches[0]), norm.normalize(batches[0]))


def test_resume_after_kill_continues_where_it_stopped(tmp_path, tiny_checkpoint):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "flare_training", "ppo", "--out", str(out), "--init", str(tiny_checkpoint),
           "--num-envs", "2", "--rollout", "16", "--total-env-steps", str(2 * 16 * 40), "--eval-every", "1000000000",
           "--eval-episodes", "1", "--final-eval-episodes", "0", "--critic-warmup-steps", "32",
           "--normalize-returns"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    metrics = out / "metrics.jsonl"

    def saved_update() -> int:  # checkpoints are written atomically, so polling one is safe
        path = out / "checkpoint.pt"
        return torch.load(path, weights_only=False)["update"] if path.exists() else 0

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and saved_update() < 3:
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = saved_update()
    assert 3 <= done_before < 40

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"from update {done_before}" in resumed.stdout + resumed.stderr
    final = torch.load(out / "checkpoint.pt", weights_only=False)
    assert final["update"] == 40 and final["env_steps"] == 40 * 32
    assert final["return_stats"]["count"] == 1 + 40 * 32  # every update's returns, the killed run's included
    updates = [json.loads(line)["update"] for line in metrics.read_text().splitlines()]
    assert updates[-(40 - done_before) :] == list(range(done_before + 1, 41))  # continued, not restarted
    assert updates.count(1) == 1


def test_a_resumed_run_was_trained_with_the_defaults_of_settings_its_checkpoint_does_not_name():
    """A checkpoint written before an option existed names no value for it: resuming with the default goes on,
    resuming with another value is refused (the run trained as the default does)."""
    from dataclasses import asdict

    from flare_training.bc import BC_RESUMABLE, BCConfig
    from flare_training.checkpoint import check_resume

    config = PPOConfig(out="run")
    saved = {k: v for k, v in asdict(config).items() if k not in ("visual_grad_prefix", "normalize_returns")}
    check_resume(saved, config)
    with pytest.raises(ValueError, match="trained with --visual-grad-prefix; resume it with the same"):
        check_resume(saved, replace(config, visual_grad_prefix=False))
    with pytest.raises(ValueError, match="trained with --no-normalize-returns; resume"):
        check_resume(saved, replace(config, normalize_returns=True))
    check_resume({**saved, "normalize_returns": True}, replace(config, normalize_returns=True))
    bc = BCConfig(out="run")  # a nested config's default compares as the checkpoint writes it: a dict
    check_resume({k: v for k, v in asdict(bc).items() if k != "model"}, bc, BC_RESUMABLE)


def test_cli_help_explains_each_hyper_parameter_from_its_config(capsys):
    """--help carries each config field's own comment, so a hyper-parameter is explained where it is defined."""
    from flare_training.cli import main

    with pytest.raises(SystemExit):
        main(["ppo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "FLaRe: no entropy bonus; ablation: 0.01 (default: 0.0)" in text
    assert "Processes stepping the envs, each its own lane of them" in text
    assert "env steps of value-only updates before the policy moves; 0: none (default: 200000)" in text
    assert "FLaRe: no; per-minibatch normalisation as CleanRL does (default: False)" in text


OLD_NAMES = (  # today's decoder parameter names -> the names checkpoints had before
    (".attention_norm.", ".attn_norm."),
    (".ffn_norm.", ".mlp_norm."),
    (".attention.wo.", ".attn.out."),
    (".feed_forward.w1.", ".mlp.gate."),
    (".feed_forward.w2.", ".mlp.down."),
    (".feed_forward.w3.", ".mlp.up."),
)


def test_checkpoints_from_before_the_decoder_took_llamas_names_still_load(tmp_path):
    """Older runs stored `decoder.blocks.i.attn.qkv` (q, k, v stacked), `mlp.gate/up/down` and the step-token
    parts under `decoder.`: `load_checkpoint` renames them, and the model computes what it computed."""
    adapter = ObservationAdapter(gridhouse_tokenizer(TINY.max_goal_tokens), gridhouse_cameras())
    torch.manual_seed(0)
    model = ActorCritic(ModelConfig(**{**TINY.__dict__, "vocab_size": len(adapter.tokenizer)}), adapter.camera_shapes)
    old = {}
    for key, value in model.state_dict().items():
        net, _, rest = key.partition(".")
        if rest.startswith("tokens."):
            old[f"{net}.decoder.{rest.removeprefix('tokens.')}"] = value
        elif ".attention.wq." in rest:
            parts = [model.state_dict()[key.replace(".wq.", f".{w}.")] for w in ("wq", "wk", "wv")]
            old[f"{net}.{rest.replace('layers.', 'blocks.').replace('attention.wq', 'attn.qkv')}"] = torch.cat(parts)
        elif ".attention.wk." in rest or ".attention.wv." in rest:
            continue
        else:
            for new_name, old_name in OLD_NAMES:
                rest = rest.replace(new_name, old_name)
            old[f"{net}.{rest.replace('decoder.layers.', 'decoder.blocks.', 1)}"] = value
    assert {"actor.decoder.blocks.0.attn.qkv.weight", "actor.decoder.goal.embed.weight"} <= set(old)
    assert not any(".tokens." in k or ".wq." in k or ".layers." in k for k in old)
    path = save_checkpoint(tmp_path / "old.pt", model, adapter, kind="bc")
    payload = torch.load(path, weights_only=False)
    payload["model"] = old
    torch.save(payload, path)
    loaded, _, _ = load_checkpoint(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_report_states_standard_errors_and_how_actions_were_chosen():
    from flare_training.report import results_table

    final = {"env_steps": 10, "episodes": 500, "greedy": True,
             "results": {"objectnav": {"success": 0.354, "episodes": 500}}}  # fmt: skip
    table = results_table([{"name": "run", "final": final, "curve": []}])
    assert "| run | 10 | 35.4% ± 2.1% |" in table and "argmax" in table
    final["greedy"] = False
    assert "sampling" in results_table([{"name": "run", "final": final, "curve": []}])
