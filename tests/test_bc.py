"""Behaviour cloning with DAgger: the policy drives, the expert labels the states it visits, training goes on."""

import json
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

from flare_core.actions import action_by_name
from flare_sim import GridhouseEnv
from flare_training.bc import (
    END,
    BCConfig,
    Demos,
    SampledPolicy,
    _batch,
    bc_loss,
    collect_demos,
    train_bc,
    validation,
)
from flare_training.checkpoint import save_checkpoint
from flare_training.envs import get_simulator
from flare_training.evaluate import evaluate_policy
from flare_training.inputs import ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig

TINY = ModelConfig(d_model=32, layers=1, heads=2, max_context=128, visual_dim=16, goal_dim=16)


def _random_policy(num_envs: int) -> SampledPolicy:
    adapter = ObservationAdapter(gridhouse_tokenizer(TINY.max_goal_tokens), gridhouse_cameras())
    torch.manual_seed(0)
    config = ModelConfig(**{**TINY.__dict__, "vocab_size": len(adapter.tokenizer)})
    model = ActorCritic(config, adapter.camera_shapes, adapter.tokenizer.vocab)
    return SampledPolicy(model, adapter, num_envs, get_simulator("gridhouse").action_mask, seed=0)


def test_dagger_episodes_follow_the_policy_and_carry_the_experts_labels():
    sim = get_simulator("gridhouse")
    demos = collect_demos(3, 1, ("objectnav",), 0, sim, policy=_random_policy(1), num_envs=1)
    assert len(demos) == 3
    assert (demos.action >= 0).all() and GridhouseEnv.embodiment.mask[demos.action].all()
    # The first episode is env 0's first, seeded 0: replaying the policy's actions (the next step's prev_action)
    # from the same start, the expert says at every step what was stored as the label.
    first = demos.episode(0)
    labels, taken = demos.action[first], demos.prev_action[first][1:]
    env = GridhouseEnv(families=("objectnav",), split="train", expert=True)
    _, info = env.reset(seed=0)
    for t, label in enumerate(labels):
        assert info["expert_action"] == label
        if t < len(taken):
            _, _, _, _, info = env.step(int(taken[t]))
    assert (taken != labels[:-1]).any()  # the policy drove, not the expert
    last_labels = demos.action[demos.starts[1:] - 1]
    assert (last_labels != END).any()  # failed episodes are kept: their last state is labelled too


def test_demos_add_keeps_every_episode_whole():
    sim = get_simulator("gridhouse")
    a = collect_demos(2, 1, ("objectnav",), 0, sim)
    b = collect_demos(2, 1, ("pickup",), 5, sim)
    both = a + b
    assert len(both) == 4 and list(both.goal) == [*a.goal, *b.goal]
    np.testing.assert_array_equal(both.action[both.episode(2)], b.action[b.episode(0)])
    np.testing.assert_array_equal(both.nav_rgb[both.episode(3)], b.nav_rgb[b.episode(1)])


def test_a_dagger_round_adds_the_policys_labelled_episodes_and_trains_on(tmp_path):
    config = BCConfig(out=str(tmp_path / "bc"), demos=4, workers=1, epochs=1, eval_episodes=0, families=("objectnav",),
                      dagger_rounds=1, dagger_episodes=3, dagger_epochs=1, model=TINY)  # fmt: skip
    train_bc(config)
    history = json.loads((tmp_path / "bc" / "bc_history.json").read_text())
    assert [(r["dagger_round"], r["episodes"]) for r in history] == [(0, 3), (1, 6)]  # 1 of 4 held for validation
    assert all(np.isfinite(r["val_loss"]) for r in history)


def _bc(tmp_path, **settings) -> BCConfig:
    base = {"out": str(tmp_path / "bc"), "demos": 6, "workers": 1, "epochs": 2, "batch_episodes": 2,
            "eval_episodes": 0, "families": ("objectnav",), "model": TINY}  # fmt: skip
    return BCConfig(**{**base, **settings})


def test_a_bc_run_goes_on_from_its_last_epoch_exactly_as_it_would_have(tmp_path, capsys):
    train_bc(_bc(tmp_path, out=str(tmp_path / "whole"), epochs=3))
    train_bc(_bc(tmp_path, epochs=2))  # stopped after epoch 2, as a killed run is
    (tmp_path / "bc" / "bc_history.json").unlink()
    train_bc(_bc(tmp_path, epochs=3))  # the same command with more epochs goes on
    assert "resuming" in (printed := capsys.readouterr().out) and "after epoch 2" in printed
    whole, resumed = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False) for d in ("whole", "bc"))
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3]
    assert [row["train_loss"] for row in resumed["history"]] == [row["train_loss"] for row in whole["history"]]
    for name, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][name]), name


def test_a_bc_run_refuses_to_go_on_with_other_settings_or_without_its_optimiser(tmp_path):
    train_bc(_bc(tmp_path, epochs=1, dagger_rounds=1, dagger_episodes=2, dagger_epochs=1))
    with pytest.raises(ValueError, match="trained with --lr 0.0002"):
        train_bc(_bc(tmp_path, epochs=1, lr=1e-3))
    with pytest.raises(ValueError, match="do not begin with"):  # more BC epochs after a DAgger round
        train_bc(_bc(tmp_path, epochs=2, dagger_rounds=1, dagger_episodes=2, dagger_epochs=1))
    train_bc(_bc(tmp_path, epochs=1, dagger_rounds=2, dagger_episodes=2, dagger_epochs=1))  # one more round
    history = json.loads((tmp_path / "bc" / "bc_history.json").read_text())
    assert [(r["dagger_round"], r["episodes"]) for r in history] == [(0, 5), (1, 7), (2, 9)]  # 1 of 6 validates
    assert (tmp_path / "bc" / "dagger1.npz").exists() and (tmp_path / "bc" / "dagger2.npz").exists()
    old = torch.load(tmp_path / "bc" / "checkpoint.pt", weights_only=False)
    del old["optimizer"]
    torch.save(old, tmp_path / "bc" / "checkpoint.pt")
    with pytest.raises(ValueError, match="without its optimiser state"):
        train_bc(_bc(tmp_path, epochs=1, dagger_rounds=3, dagger_episodes=2, dagger_epochs=1))


def _always(action: str) -> tuple[ActorCritic, ObservationAdapter]:
    """A policy whose argmax is always `action` (its logits head reads nothing, biased to that action)."""
    policy = _random_policy(1)
    head = policy.model.actor.heads["logits"]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[action_by_name(action).index] = 10.0
    return policy.model, policy.adapter


def test_evaluation_says_how_episodes_failed():
    ends = evaluate_policy(*_always("end"), ("objectnav",), 6, greedy=True, num_envs=3, progress=False)["objectnav"]
    assert ends["success"] == 0 and ends["step_limit"] == 0 and ends["mean_steps"] == 1  # ended off the goal
    spins = evaluate_policy(*_always("l"), ("objectnav",), 6, greedy=True, num_envs=3, progress=False)["objectnav"]
    assert spins["success"] == 0 and spins["step_limit"] == 1 and spins["episodes"] == 6  # out of steps


def test_eval_cli_reports_failures_on_the_split_asked_for(tmp_path):
    policy = _random_policy(1)
    ckpt = save_checkpoint(tmp_path / "bc" / "checkpoint.pt", policy.model, policy.adapter, kind="bc")
    out = tmp_path / "eval.json"
    args = ["eval", str(ckpt), "--episodes", "3", "--families", "objectnav", "--split", "train", "--why"]
    args += ["--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "flare_training", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "failed: ended off the goal" in done.stdout
    assert "objectnav: 3 episodes" in done.stdout  # --why's breakdown
    saved = json.loads(out.read_text())
    assert saved["split"] == "train" and saved["results"]["objectnav"]["episodes"] == 3
    r = saved["results"]["objectnav"]
    assert 0 <= r["step_limit"] <= 1 - r["success"]


def test_validation_in_chunks_equals_one_batch():
    """BC's validation runs a few episodes at a time (memory); weighted by valid steps it is the one-batch loss."""
    sim, policy = get_simulator("gridhouse"), _random_policy(1)
    demos = collect_demos(5, 1, ("objectnav", "pickup"), 0, sim)
    episodes = np.arange(len(demos))
    loss, metrics = bc_loss(policy.model, _batch(demos, episodes, policy.adapter), sim.action_mask)
    chunked = validation(policy.model, demos, episodes, policy.adapter, sim.action_mask, torch.device("cpu"), chunk=2)
    assert chunked == pytest.approx({"loss": loss.item(), "accuracy": metrics["accuracy"].item()}, abs=1e-5)


def test_goal_cell_heads_learn_the_labels_demos_carry():
    """Demonstrations carry the view's goal cells; each camera's head is trained on its own cells of them (the
    manipulation camera's 3 x 3 of the 7 x 7) and its loss falls when BC trains on a batch."""
    sim = get_simulator("gridhouse")
    demos = collect_demos(6, 1, ("objectnav", "pickup"), 0, sim)
    assert demos.has_goal_cells and demos.goal_cells.shape == (len(demos.action), 7, 7)
    adapter = ObservationAdapter(gridhouse_tokenizer(TINY.max_goal_tokens), gridhouse_cameras())
    torch.manual_seed(0)
    config = ModelConfig(
        **{**TINY.__dict__, "vocab_size": len(adapter.tokenizer), "fusion": "film", "goal_cells": True}
    )
    model = ActorCritic(config, adapter.camera_shapes, adapter.tokenizer.vocab)
    batch = _batch(demos, np.arange(len(demos)), adapter)
    cells = batch["goal_cells"]
    assert cells["nav"].shape[-1] == 49 and cells["manip"].shape[-1] == 9
    np.testing.assert_array_equal(cells["manip"][..., :3], cells["nav"][..., 30:33])  # view row 4, cols 2-4
    assert cells["nav"][batch["valid"]].sum() > 0
    _, before = bc_loss(model, batch, sim.action_mask)  # coefficient 0: the heads are scored, not trained
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, metrics = bc_loss(model, batch, sim.action_mask, goal_cell_coef=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(metrics["goal_cell_loss"].item())
    assert losses[-1] < 0.3 * losses[0]
    _, after = bc_loss(model, batch, sim.action_mask)
    assert after["goal_cells_right"] > before["goal_cells_right"] + 0.2


def test_goal_cell_model_refuses_demonstrations_without_labels(tmp_path):
    sim = get_simulator("gridhouse")
    demos = collect_demos(3, 1, ("objectnav",), 0, sim)
    (tmp_path / "run").mkdir()
    arrays = {k: v for k, v in asdict(demos).items() if k != "goal_cells"}  # as saved before labels existed
    np.savez_compressed(tmp_path / "run" / "demos.npz", **arrays)
    old = Demos.load(tmp_path / "run" / "demos.npz")
    assert not old.has_goal_cells and old.goal_cells.shape == (len(demos.action), 0)
    both = old + demos  # DAgger on old demonstrations: the labels go, the steps stay
    assert len(both) == 6 and len(both.goal_cells) == len(both.action) and not both.has_goal_cells
    model = ModelConfig(**{**TINY.__dict__, "fusion": "film", "goal_cells": True})
    config = BCConfig(out=str(tmp_path / "run"), demos=3, workers=1, epochs=1, eval_episodes=0, model=model)
    with pytest.raises(ValueError, match="--model-goal-cells needs demonstrations labelled"):
        train_bc(config)


def test_goal_cell_model_is_refused_before_collecting_in_ai2thor(tmp_path):
    model = ModelConfig(**{**TINY.__dict__, "fusion": "film", "goal_cells": True})
    config = BCConfig(out=str(tmp_path / "run"), demos=3, workers=1, env="thor", model=model)
    with pytest.raises(ValueError, match="--env thor has none"):
        train_bc(config)
