"""Observations -> model inputs, through the core's preprocessing and goal tokenizer (the same functions the
robot uses), so training sees exactly what deployment will."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from flare_core.goal_tokenizer import GoalTokenizer
from flare_core.model_card import CameraSpec
from flare_core.preprocessing import PreprocessConfig, preprocess_batch, resample_batch
from flare_sim import CAMERA_KEYS, GOAL_WORDS, GridhouseEnv

# The gridhouse embodiment's valid actions (flare_core's one definition), as a torch mask over the 20 logits.
ACTION_MASK = torch.from_numpy(GridhouseEnv.embodiment.mask)


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch of model inputs (nested dicts of tensors, e.g. per-camera frames) on the learner's device; tensors
    already there are not copied (the CPU learner copies nothing)."""
    return {k: to_device(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}


def gridhouse_cameras(nav_px: int = 56, manip_px: int = 24) -> tuple[CameraSpec, ...]:
    """Gridhouse frames are already the model's size: preprocessing only normalises them."""
    return (
        CameraSpec("nav", PreprocessConfig(nav_px, nav_px)),
        CameraSpec("manip", PreprocessConfig(manip_px, manip_px)),
    )


def gridhouse_tokenizer(max_tokens: int = 16) -> GoalTokenizer:
    return GoalTokenizer.from_words(GOAL_WORDS, max_tokens)


@dataclass
class ObservationAdapter:
    tokenizer: GoalTokenizer
    cameras: tuple[CameraSpec, ...]

    @property
    def camera_shapes(self) -> dict[str, tuple[int, int]]:
        return {c.name: (c.preprocessing.height, c.preprocessing.width) for c in self.cameras}

    def frames(self, obs: dict) -> dict[str, torch.Tensor]:
        """Batched uint8 frames [B, H, W, 3] -> preprocessed float [B, 3, h, w] per camera."""
        out = {}
        for cam in self.cameras:
            batch = np.asarray(obs[CAMERA_KEYS[cam.name]])
            out[cam.name] = torch.from_numpy(preprocess_batch(batch, cam.preprocessing, cam.name))
        return out

    def resampled(self, obs: dict) -> dict[str, np.ndarray]:
        """Batched uint8 frames [B, H, W, 3] -> uint8 [B, h, w, 3] per camera: `frames` before its normalisation
        (a quarter of the bytes, for frames kept to be encoded later)."""
        return {c.name: resample_batch(obs[CAMERA_KEYS[c.name]], c.preprocessing, c.name) for c in self.cameras}

    def goals(self, goals: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.tokenizer.encode_batch(list(goals)))

    def step_inputs(self, obs: dict) -> dict[str, torch.Tensor]:
        """Everything but the visual features (computed by the model's visual encoder from `frames`)."""
        return {
            "goal": self.goals(obs["goal"]),
            "prev_action": torch.as_tensor(np.asarray(obs["prev_action"]), dtype=torch.long),
            "holding": torch.as_tensor(np.asarray(obs["holding"]), dtype=torch.long),
        }
