"""Gridhouse: the embedded simulator (BabyAI houses, CHORES-style tasks, the BabyAI bot as expert)."""

from flare_sim.config import EVAL_HOUSES, SPLITS, TRAIN_HOUSES, GridhouseConfig
from flare_sim.env import CAMERA_KEYS, GridhouseEnv
from flare_sim.expert import NO_EXPERT_ACTION
from flare_sim.tasks import FAMILIES, GOAL_WORDS, HELD_OUT_FAMILIES, TRAIN_FAMILIES
from flare_sim.vector import make_vector_env

__all__ = [
    "CAMERA_KEYS",
    "EVAL_HOUSES",
    "FAMILIES",
    "GOAL_WORDS",
    "HELD_OUT_FAMILIES",
    "NO_EXPERT_ACTION",
    "SPLITS",
    "TRAIN_FAMILIES",
    "TRAIN_HOUSES",
    "GridhouseConfig",
    "GridhouseEnv",
    "make_vector_env",
]
