"""Masked actions can never be chosen, whatever the logits; garbage in valid logits is refused."""

import numpy as np
import pytest

from flare_core import InvalidLogitsError, get_embodiment, mask_logits, masked_probabilities, select_action

GRID = get_embodiment("gridhouse").mask


@pytest.mark.parametrize("poison", [np.nan, np.inf, 1e30, 0.0])
def test_masked_actions_never_chosen_greedy(poison):
    rng = np.random.default_rng(0)
    for _ in range(500):
        logits = rng.normal(size=20).astype(np.float32)
        logits[~GRID] = poison
        assert GRID[select_action(logits, GRID, greedy=True)]


def test_masked_actions_never_sampled():
    rng = np.random.default_rng(1)
    logits = np.full(20, 50.0, dtype=np.float32)
    logits[GRID] = -50.0  # the model loves masked actions
    logits[~GRID] = np.nan
    picks = {select_action(logits, GRID, greedy=False, rng=rng) for _ in range(2000)}
    assert picks <= set(np.flatnonzero(GRID))
    assert len(picks) == GRID.sum()  # and every valid action does get sampled


def test_masked_probabilities_are_exactly_zero_and_sum_to_one():
    probs = masked_probabilities(np.linspace(-3, 3, 20), GRID)
    assert (probs[~GRID] == 0.0).all()
    assert probs.sum() == pytest.approx(1.0)


def test_batched_masking():
    out = mask_logits(np.zeros((4, 20)), GRID)
    assert out.shape == (4, 20) and np.isneginf(out[:, ~GRID]).all() and (out[:, GRID] == 0).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_garbage_in_valid_logits_is_refused(bad):
    logits = np.zeros(20)
    logits[0] = bad
    with pytest.raises(InvalidLogitsError, match=r"valid actions \[0\]"):
        select_action(logits, GRID)


def test_all_valid_logits_minus_inf_is_refused():
    with pytest.raises(InvalidLogitsError, match="no action can be chosen"):
        select_action(np.full(20, -np.inf), GRID)


def test_vocabulary_size_mismatch_is_refused():
    with pytest.raises(InvalidLogitsError, match="12 actions but the mask has 20"):
        select_action(np.zeros(12), GRID)
