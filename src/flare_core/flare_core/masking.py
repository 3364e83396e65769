"""Masking policy logits with an embodiment's valid-action mask, and choosing an action from them.

A masked action can never be chosen, whatever its logit (NaN and +inf included). Garbage in the valid
entries (NaN or +inf) is refused with an error instead of being turned into a motion.
"""

from __future__ import annotations

import numpy as np


class InvalidLogitsError(ValueError):
    """The policy produced logits from which no action can be chosen safely."""


def mask_logits(logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Return float32 logits with masked entries at -inf (last axis = actions); refuse garbage in valid ones."""
    logits = np.asarray(logits, dtype=np.float32)
    valid = np.asarray(valid, dtype=bool)
    if logits.shape[-1] != valid.shape[-1]:
        raise InvalidLogitsError(
            f"logits have {logits.shape[-1]} actions but the mask has {valid.shape[-1]}: "
            "model and embodiment disagree on the action vocabulary"
        )
    if not valid.any():
        raise InvalidLogitsError("the embodiment mask allows no action at all")
    valid = np.broadcast_to(valid, logits.shape)
    bad = valid & (np.isnan(logits) | np.isposinf(logits))
    if bad.any():
        where = np.flatnonzero(bad.reshape(-1, bad.shape[-1]).any(axis=0)).tolist()
        raise InvalidLogitsError(
            f"policy produced NaN/+inf logits for valid actions {where}; "
            "refusing to act on them (is the model or its input corrupt?)"
        )
    out = np.where(valid, logits, np.float32(-np.inf)).astype(np.float32)
    if not np.isfinite(out).any(axis=-1).all():
        raise InvalidLogitsError("every valid action has a -inf logit: no action can be chosen")
    return out


def masked_probabilities(logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Softmax over the valid actions only; masked actions get probability exactly 0."""
    z = mask_logits(logits, valid).astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)  # exp(-inf) == 0 exactly
    return e / e.sum(axis=-1, keepdims=True)


def select_action(
    logits: np.ndarray, valid: np.ndarray, greedy: bool = True, rng: np.random.Generator | None = None
) -> int:
    """Choose one action index from a single step's logits: argmax, or a sample from the masked softmax."""
    logits = np.asarray(logits)
    if logits.ndim != 1:
        raise InvalidLogitsError(f"select_action takes one step's logits (shape [A]), got shape {logits.shape}")
    if greedy:
        return int(np.argmax(mask_logits(logits, valid)))
    probs = masked_probabilities(logits, valid)
    rng = rng if rng is not None else np.random.default_rng()
    return int(rng.choice(len(probs), p=probs))
