"""Which simulator a run trains in (`--env gridhouse|thor`): one small interface over both.

A `Simulator` makes single envs (evaluation), vector envs (BC demonstrations, PPO rollouts), and knows its task
families, the embodiment whose mask applies at the logits, and the inputs an embedded model is built with
(camera preprocessing, goal words). AI2-THOR envs run one per process (one Unity each); gridhouse envs share
worker processes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from flare_core.embodiments import GRIDHOUSE, STRETCH_RE1, Embodiment
from flare_core.goal_tokenizer import GoalTokenizer
from flare_core.model_card import CameraSpec
from flare_core.preprocessing import CLIP_MEAN, CLIP_STD, PreprocessConfig
from flare_sim import FAMILIES, TRAIN_FAMILIES, GridhouseEnv
from flare_sim.vector import vectorize
from flare_training.inputs import gridhouse_cameras, gridhouse_tokenizer
from flare_training.thor.controller import ThorConfig
from flare_training.thor.tasks import GOAL_WORDS as THOR_GOAL_WORDS
from flare_training.thor.tasks import TASKS as THOR_TASKS

ENVS = ("gridhouse", "thor")
THOR_GOAL_TOKENS = 24  # RoomVisit's instruction is 21 words
THOR_FRAME = (56, 96)  # the embedded model's view of a 224 x 384 AI2-THOR frame (same aspect)


@dataclass(frozen=True)
class Simulator:
    name: str
    embodiment: Embodiment
    families: tuple[str, ...]  # every task family, held-out ones included
    train_families: tuple[str, ...]
    expert_families: tuple[str, ...]  # the families whose episodes an expert can demonstrate
    thor: ThorConfig | None = None

    @property
    def action_mask(self) -> torch.Tensor:
        return torch.from_numpy(self.embodiment.mask)

    @property
    def episode_steps(self) -> int:
        """The longest episode, which a model's KV-cache must hold."""
        if self.thor is None:
            return max(f.step_limit for f in FAMILIES.values())  # GridhouseConfig's default scale
        from flare_training.thor.env import step_limit

        return max(step_limit(self.thor, split, f) for split in ("train", "eval") for f in self.families)

    def check(self, families: tuple[str, ...]) -> tuple[str, ...]:
        """The families as given, refused with the known ones where one is not this simulator's."""
        unknown = [f for f in families if f not in self.families]
        if unknown:
            raise ValueError(f"--env {self.name} has no task families {unknown}; known: {', '.join(self.families)}")
        return families

    def make(self, families: tuple[str, ...], split: str, expert: bool = False, index: int = 0):
        return _make(self.name, self.thor, self.check(families), split, expert, 0, index)

    def vector(self, num_envs: int, families: tuple[str, ...], split: str, expert: bool = False, workers: int = 0,
               observe=None, first: int = 0):  # fmt: skip
        """A vector env of envs `first`.. (their numbers choose AI2-THOR's GPUs); AI2-THOR gets one process per
        env whenever workers > 0 (one Unity per process)."""
        make = functools.partial(_make, self.name, self.thor, self.check(families), split, expert, first)
        if self.thor is not None and workers:
            workers = num_envs
        return vectorize(make, num_envs, workers, observe)

    def cameras(self) -> tuple[CameraSpec, ...]:
        """An embedded model's cameras: gridhouse frames as they are; AI2-THOR's 224 x 384 frames (FLaRe's crop
        already made by the env) with CLIP's mean/std, scaled down to THOR_FRAME, centre-cropped to that aspect
        on a robot's camera of another shape."""
        if self.thor is None:
            return gridhouse_cameras()
        view = PreprocessConfig(*THOR_FRAME, mean=CLIP_MEAN, std=CLIP_STD, keep_aspect=True)
        return (CameraSpec("nav", view), CameraSpec("manip", view))

    def tokenizer(self, max_tokens: int) -> GoalTokenizer:
        if self.thor is None:
            return gridhouse_tokenizer(max_tokens)
        return GoalTokenizer.from_words(THOR_GOAL_WORDS, max(max_tokens, THOR_GOAL_TOKENS))


def _make(name: str, thor: ThorConfig | None, families, split: str, expert: bool, first: int, index: int):
    """Module-level (picklable for worker processes): env number `first + index`."""
    if name == "thor":
        from flare_training.thor.env import ThorEnv

        return ThorEnv(thor, families, split, expert, gpu_index=first + index)
    return GridhouseEnv(None, families, split, expert)


def get_simulator(env: str = "gridhouse", thor: ThorConfig | None = None) -> Simulator:
    if env == "gridhouse":
        return Simulator("gridhouse", GRIDHOUSE, tuple(FAMILIES), TRAIN_FAMILIES, tuple(FAMILIES))
    if env == "thor":
        thor = thor or ThorConfig()
        return Simulator("thor", STRETCH_RE1, THOR_TASKS, THOR_TASKS, ("ObjectNavType",), thor)
    raise ValueError(f"unknown --env {env!r}; use one of {', '.join(ENVS)}")


def simulator_of(payload_config: dict) -> Simulator:
    """The simulator a run's saved config names (runs written before `--env` existed trained in gridhouse)."""
    thor = payload_config.get("thor")
    return get_simulator(payload_config.get("env", "gridhouse"), ThorConfig(**thor) if thor else None)
