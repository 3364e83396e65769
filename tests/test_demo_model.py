"""The shipped demo model: a valid card, a graph that matches it, and, run closed-loop through the ONNX Runtime
policy in the simulator (no torch), the success its card records, within sampling noise."""

import math
from pathlib import Path

import pytest

from flare_core import load_model_card
from flare_core.runtime import OnnxPolicy
from flare_sim.onnx_eval import evaluate_exported

DEMO = Path(__file__).resolve().parents[1] / "models" / "gridhouse_demo"
EPISODES = 60


def test_demo_model_card_and_graph_agree():
    card = load_model_card(DEMO)
    assert card.provenance.env == "gridhouse" and card.provenance.env_steps > 0
    assert "flare_training" in card.provenance.command  # how to regenerate it
    policy = OnnxPolicy(DEMO, embodiment="gridhouse")
    assert policy.card.cache.max_context >= 100  # gridhouse episodes fit the context


@pytest.mark.parametrize("family", ["objectnav", "pickup"])
def test_closed_loop_success_matches_the_card(family):
    card = load_model_card(DEMO)
    recorded = card.provenance.success[family]
    measured = evaluate_exported(str(DEMO), (family,), EPISODES, greedy=False, seed=1, progress=False)[family][
        "success"
    ]
    p = max(recorded, 0.05)
    noise = math.sqrt(p * (1 - p) / EPISODES + p * (1 - p) / 100)  # the card's figure is over 100 houses
    assert abs(measured - recorded) <= 3 * noise, f"{family}: card {recorded:.0%}, closed loop {measured:.0%}"
