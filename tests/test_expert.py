"""The shortest-path expert succeeds in >= 95 % of 100 unseen-house episodes of every family (real env, real bot)."""

import pytest

from flare_sim import FAMILIES
from flare_sim.scripted import evaluate, expert_policy


@pytest.mark.parametrize("family", list(FAMILIES))
def test_expert_success_on_unseen_houses(family):
    (result,) = evaluate(expert_policy, (family,), episodes=100, split="eval", label=family[:6])
    assert result.episodes == 100
    assert result.success_rate >= 0.95, f"{family}: expert success {result.success_rate:.0%}"
