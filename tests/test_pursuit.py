"""PPO's pursuit loss (`--pursuit-coef`): the expert's action as a label on the steps whose view shows the goal's
object, aligned with the observation the policy acted on, and a term that moves the policy towards it."""

import json

import numpy as np
import pytest
import torch
from test_training import GRID, TINY, _episodes, _tiny_ppo, tiny_checkpoint  # noqa: F401 (fixture)

from flare_sim import GridhouseEnv
from flare_training.envs import get_simulator
from flare_training.inputs import ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig
from flare_training.ppo import PPOConfig, RolloutCollector, actor_loss, policy_terms, pursuit_terms, train_ppo

FAMILIES = ("objectnav", "pickup")


def test_pursuit_loss_is_the_cross_entropy_over_the_followed_steps_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, GRID.numel(), requires_grad=True)
    logp_all = torch.log_softmax(logits.masked_fill(~GRID, float("-inf")), -1)
    expert = torch.tensor([[0, 2, -1, 8], [4, 1, 0, 9]])  # -1: the expert had no action; 9 ('zm') is masked
    follow = torch.tensor([[True, False, True, True], [True, True, False, True]])
    terms = pursuit_terms(logp_all, expert, follow, GRID)
    counted = [(0, 0), (0, 3), (1, 0), (1, 1)]
    expected = -torch.stack([logp_all[b, t, expert[b, t]] for b, t in counted]).mean()
    assert torch.allclose(terms["pursuit_loss"], expected)
    assert terms["pursuit_steps"].item() == pytest.approx(4 / 8)
    agree = np.mean([int(logp_all[b, t].argmax() == expert[b, t]) for b, t in counted])
    assert terms["pursuit_agreement"].item() == pytest.approx(agree)
    terms["pursuit_loss"].backward()
    untouched = torch.ones(2, 4, dtype=torch.bool)
    for b, t in counted:
        untouched[b, t] = False
    assert (logits.grad[untouched] == 0).all() and (logits.grad[~untouched].abs().sum(-1) > 0).all()


def test_pursuit_term_moves_the_policy_to_the_expert_on_followed_steps():
    """Zero advantages: the actor's loss is the pursuit term alone, and a few steps raise the expert's
    probability where it is followed."""
    torch.manual_seed(0)
    model = ActorCritic(TINY, {"nav": (8, 8)})
    seq = _episodes([[], [4]], length=9, visual_dim=model.visual.out_dim)
    index = torch.arange(9)[None].repeat(2, 1)
    actions = torch.zeros(2, 8, dtype=torch.long)
    expert = torch.full((2, 8), 2)  # 'l'
    follow = torch.zeros(2, 8, dtype=torch.bool)
    follow[:, 2:6] = True
    config = PPOConfig(pursuit_coef=1.0)

    def expert_probability() -> torch.Tensor:
        with torch.no_grad():
            logits, _ = model.sequence(seq)
        return torch.softmax(logits[:, :8].masked_fill(~GRID, float("-inf")), -1)[..., 2]

    before = expert_probability()
    optimizer = torch.optim.Adam(model.actor.parameters(), lr=1e-3)
    for _ in range(10):
        logits, _ = model.sequence(seq)
        old = torch.log_softmax(logits[:, :8].detach().masked_fill(~GRID, float("-inf")), -1)[..., 0]
        terms = policy_terms(logits, index, actions, old, torch.zeros(2, 8), 0.1, GRID, guide=(expert, follow))
        optimizer.zero_grad()
        actor_loss(terms, config).backward()
        optimizer.step()
    assert (expert_probability()[follow] > before[follow]).all()
    assert actor_loss(terms, PPOConfig(pursuit_coef=0.0)) == terms["policy_loss"]  # off: the recipe's loss


@pytest.mark.parametrize("env_workers", [0, 2], ids=["in-process", "two-lanes"])
def test_collector_labels_each_step_with_the_expert_action_for_the_view_acted_on(env_workers):
    """Replayed from the same seeds in fresh envs, every recorded step's expert action and goal-in-view flag
    are those of the observation the policy acted on, across episodes that end inside the rollout (autoreset),
    in the learner's process and in two worker lanes."""
    adapter = ObservationAdapter(gridhouse_tokenizer(TINY.max_goal_tokens), gridhouse_cameras())
    torch.manual_seed(0)
    config = ModelConfig(**{**TINY.__dict__, "max_context": 128, "vocab_size": len(adapter.tokenizer)})
    model = ActorCritic(config, adapter.camera_shapes, adapter.tokenizer.vocab)
    collector = RolloutCollector(model, adapter, get_simulator("gridhouse"), FAMILIES, 5, 4, env_workers, rollout=40,
                                 expert=True)  # fmt: skip
    try:
        steps = collector.collect().steps
    finally:
        collector.close()
    assert steps["done"].sum() > 0, "no episode ended inside the rollout: the autoreset case is untested"
    assert steps["goal_in_view"].any() and (steps["expert"] >= 0).any()
    for i in range(4):
        env = GridhouseEnv(families=FAMILIES, expert=True)
        _, info = env.reset(seed=5 + i)
        for t in range(40):
            assert int(steps["expert"][t, i]) == info["expert_action"], (i, t)
            assert bool(steps["goal_in_view"][t, i]) == bool(info["goal_cells"].any()), (i, t)
            _, _, terminated, truncated, info = env.step(int(steps["action"][t, i]))
            assert bool(steps["done"][t, i]) == (terminated or truncated)
            if terminated or truncated:
                _, info = env.reset()


def test_ppo_with_the_pursuit_loss_logs_it(tmp_path, tiny_checkpoint):  # noqa: F811 (fixture)
    train_ppo(_tiny_ppo(tmp_path / "run", tiny_checkpoint, updates=2, pursuit_coef=0.5))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["pursuit_loss"] > 0 and 0 <= r["pursuit_agreement"] <= 1 for r in rows)
    assert all(0 < r["pursuit_steps"] < 1 for r in rows)


def test_the_pursuit_loss_outside_the_gridhouse_is_refused(tmp_path, tiny_checkpoint):  # noqa: F811 (fixture)
    with pytest.raises(ValueError, match="pursuit-coef needs the gridhouse"):
        train_ppo(_tiny_ppo(tmp_path / "run", tiny_checkpoint, updates=1, pursuit_coef=0.5, env="thor"))
