"""FLaRe core: the definitions that training and the robot share (no rclpy, no torch)."""

from flare_core.actions import (
    ACTION_NAMES,
    ACTIONS,
    NO_PREVIOUS_ACTION,
    NUM_ACTIONS,
    Action,
    Joint,
    UnknownActionError,
    action_by_index,
    action_by_name,
)
from flare_core.embodiments import EMBODIMENTS, Embodiment, MaskedActionError, Motion, get_embodiment, restrict
from flare_core.goal_tokenizer import GoalTokenizer, goal_words
from flare_core.masking import InvalidLogitsError, mask_logits, masked_probabilities, select_action
from flare_core.model_card import ModelCard, ModelCardError, load_model_card
from flare_core.preprocessing import FrameError, PreprocessConfig, preprocess, preprocess_batch

__all__ = [
    "ACTIONS",
    "ACTION_NAMES",
    "EMBODIMENTS",
    "NO_PREVIOUS_ACTION",
    "NUM_ACTIONS",
    "Action",
    "Embodiment",
    "FrameError",
    "GoalTokenizer",
    "InvalidLogitsError",
    "Joint",
    "MaskedActionError",
    "ModelCard",
    "ModelCardError",
    "Motion",
    "PreprocessConfig",
    "UnknownActionError",
    "action_by_index",
    "action_by_name",
    "get_embodiment",
    "goal_words",
    "load_model_card",
    "mask_logits",
    "masked_probabilities",
    "preprocess",
    "preprocess_batch",
    "restrict",
    "select_action",
]
