"""ThorEnv: CHORES tasks in AI2-THOR behind the project's observation and action contract (as GridhouseEnv).

Observations: `nav_rgb` and `manip_rgb` (224 x 384 RGB, FLaRe's crop of the 396 x 224 render), the `goal` text,
`prev_action` and `holding`. Actions: the 20 Stretch actions (embodiment `stretch_re1`: none masked); `end` and
`sub_done` are handled here, the others go to AI2-THOR through `StretchController.agent_step`. Reward: 10 on
success only. Episodes end on `end` or at the step limit (FLaRe: 500 in training). A Unity timeout restarts the
controller and the episode is played again from its start (`info["timeout"]` marks the lost attempt).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from flare_core.actions import NO_PREVIOUS_ACTION, NUM_ACTIONS, action_by_index
from flare_core.embodiments import STRETCH_RE1
from flare_training.thor.controller import HouseError, StretchController, ThorConfig, UnityLost
from flare_training.thor.expert import ObjectNavExpert
from flare_training.thor.houses import HouseSet
from flare_training.thor.tasks import TASKS, TRAIN_TASKS, NoTask, Task, TaskSpec, sample_task

FRAME_SHAPE = (224, 384, 3)
SUCCESS_REWARD = 10.0  # FLaRe: sparse, success only
HOUSE_REPEATS = 15  # FLaRe's sampler forces a new house every 2000 // 128 = 15 episodes (a house load is slow)
RETRIES = 3  # attempts at one episode start after Unity timeouts
EVAL_STEPS = {"RoomVisit": 1000}  # SPOC's evaluation limits; every other family: 600
HOUSE_DRAWS = 20  # houses tried in a row for a task before the split is called unfit


def step_limit(config: ThorConfig, split: str, family: str) -> int:
    """FLaRe trains with 500 steps; SPOC evaluates with 600 (`max_episode_configs.py`), RoomVisit with 1000."""
    if split == "train":
        return config.max_steps
    return config.eval_steps or EVAL_STEPS.get(family, 600)


class ThorEnv(gym.Env):
    """One Stretch in one AI2-THOR process; each reset draws a house of the split and a task family.

    Args:
        config: houses, build, platform, step limit.
        families: CHORES task types to draw from (default: ObjectNavType, PickupType, FetchType, RoomVisit).
        split: "train" (train.jsonl.gz) or "eval" (val.jsonl.gz).
        expert: when True, `info["expert_action"]` holds the shortest-path expert's next action (-1: none).
        gpu_index: this env's place among the envs, choosing its GPU from `config.gpu_devices`.
    """

    metadata = {"render_modes": ["rgb_array"]}
    embodiment = STRETCH_RE1

    def __init__(
        self,
        config: ThorConfig | None = None,
        families: tuple[str, ...] | list[str] = TRAIN_TASKS,
        split: str = "train",
        expert: bool = False,
        gpu_index: int = 0,
    ) -> None:
        self.config = config or ThorConfig()
        unknown = [f for f in families if f not in TASKS]
        if unknown or not families:
            raise ValueError(f"unknown AI2-THOR task families {unknown or '(none given)'}; known: {', '.join(TASKS)}")
        self.families = tuple(families)
        self.split = split
        self.houses = HouseSet(self.config.houses, split)
        self.controller = StretchController(self.config, gpu_index)
        self._expert = ObjectNavExpert(self.controller) if expert else None
        self.observation_space = spaces.Dict(
            {
                "nav_rgb": spaces.Box(0, 255, FRAME_SHAPE, np.uint8),
                "manip_rgb": spaces.Box(0, 255, FRAME_SHAPE, np.uint8),
                "goal": spaces.Text(256, charset="abcdefghijklmnopqrstuvwxyz0123456789 ,.'-"),
                "prev_action": spaces.Discrete(NUM_ACTIONS + 1),
                "holding": spaces.Discrete(2),
            }
        )
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.task: Task | None = None
        self._house_index: int | None = None
        self._house_uses = 0
        self._replay: TaskSpec | None = None  # an episode a timeout cut short, to play again
        self._annotations = str(Path(self.config.assets) / "annotations.json.gz") if self.config.assets else ""
        self._done = True

    # -- episode -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode. options: `house` (index into the split) and/or `family` pin them; a seed alone draws
        family, house, start pose and target from it. After a Unity timeout cut an episode short, a reset without
        seed or options plays that episode again from its start."""
        super().reset(seed=seed)
        if seed is not None:
            self.controller.rng = np.random.default_rng(seed)
        options = options or {}
        replay, self._replay = self._replay, None
        if replay is not None and not options and seed is None:
            return self._start(replay.family, replay.house, replay)
        family = options.get("family") or self.families[int(self.np_random.integers(len(self.families)))]
        if family not in self.families:
            raise ValueError(f"family {family!r} is not one this env was built with: {', '.join(self.families)}")
        pinned = options.get("house")
        for k in range(HOUSE_DRAWS):
            if pinned is not None:  # a house that cannot pose the task gives way to the next, the same for every run
                index = (pinned + k) % len(self.houses) if k else pinned
            else:
                # A seeded reset draws its house from the seed alone, so equal seeds pose equal tasks (GRPO's
                # groups) whatever each env played before.
                keep = seed is None and self._house_index is not None and self._house_uses < HOUSE_REPEATS
                index = self._house_index if keep else int(self.np_random.integers(len(self.houses)))
            try:
                return self._start(family, index, seeded=seed is not None)
            except (NoTask, HouseError) as error:  # this house cannot pose the task: draw another
                warnings.warn(f"{self.houses.path} house {index}: {error}; drawing another", stacklevel=2)
                self._house_uses = HOUSE_REPEATS
        raise RuntimeError(f"{HOUSE_DRAWS} houses of {self.houses.path} in a row could not pose a {family} task")

    def _start(self, family: str, index: int, spec: TaskSpec | None = None, seeded: bool = False):
        if not 0 <= index < len(self.houses):
            raise ValueError(f"house index {index} is outside the {self.split} split (0..{len(self.houses) - 1})")
        for _ in range(RETRIES):
            try:
                self._pose(family, index, spec, seeded)
                self.steps, self.prev_action, self._done = 0, NO_PREVIOUS_ACTION, False
                self.step_limit = step_limit(self.config, self.split, family)
                info = self._info()
                if self._expert is not None:
                    self._expert.start(self.task)
                    info["expert_action"] = self._expert.act()
                return self._observation(), info
            except UnityLost:
                continue  # the controller restarted with its house loaded: pose the episode again
        raise RuntimeError(f"AI2-THOR timed out {RETRIES} times in a row starting an episode; see ~/.ai2thor/log")

    def _pose(self, family: str, index: int, spec: TaskSpec | None, seeded: bool = False) -> None:
        """FLaRe's sampler: the house reloaded (physics settled after) unless training goes from ObjectNav to
        ObjectNav in the same house (nothing was moved), materials, the task. A seeded start (GRPO's groups)
        always reloads, so the camera calibration comes from the seed too, and keeps the house's own materials
        (AI2-THOR's RandomizeMaterials takes no seed): equal seeds, equal scenes."""
        previous = self.task.family if self.task is not None else None
        same = index == self._house_index and self.controller.house is not None
        if seeded or not (same and self.split == "train" and previous == family == "ObjectNavType"):
            self._house_index = None
            self.controller.reset(self.houses[index])
            self._house_index, self._house_uses = index, 0
            self.controller.step("AdvancePhysicsStep", simSeconds=1.0, raise_for_failure=True)
        self._house_uses += 1
        if self.split == "train" and not seeded and self.np_random.random() < 0.8:  # randomised in training only
            self.controller.step("RandomizeMaterials")
        else:
            self.controller.step("ResetMaterials")
        self.task = sample_task(family, index, self.controller, self.np_random, spec, self._annotations)

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        spec = action_by_index(action)  # refuses unknown indices
        self.embodiment.motion(spec.index)
        self.steps += 1
        terminated = success = False
        try:
            self.task.before_step(self.controller)
            if spec.name == "end":
                terminated, success = True, self.task.successful(self.controller)
            elif spec.name == "sub_done":
                self.task.sub_done(self.controller)
            else:
                self.controller.agent_step(spec.index)
            self.prev_action = spec.index
            observation = self._observation()
            truncated = not terminated and self.steps >= self.step_limit
            self._done = terminated or truncated
            info = dict(self._info(), success=success)
            if self._expert is not None:
                info["expert_action"] = -1 if self._done else self._expert.act()
        except UnityLost:  # the controller restarted; the next reset plays this episode again
            self._done = True
            self._replay = self.task.spec
            info = dict(self._info(), timeout=True, expert_action=-1)
            return self._blank_observation(), 0.0, False, True, info
        return observation, SUCCESS_REWARD if success else 0.0, terminated, truncated, info

    def close(self) -> None:
        self.controller.stop()

    # -- state ---------------------------------------------------------------------------------------
    def _observation(self) -> dict[str, Any]:
        nav, manip = self.controller.frames()
        return {
            "nav_rgb": nav,
            "manip_rgb": manip,
            "goal": self.task.goal,
            "prev_action": self.prev_action,
            "holding": int(bool(self.controller.held_objects())),
        }

    def _blank_observation(self) -> dict[str, Any]:
        """What an episode cut short by a timeout ends on (its frames are gone with the Unity process)."""
        blank = np.zeros(FRAME_SHAPE, np.uint8)
        return {"nav_rgb": blank, "manip_rgb": blank.copy(), "goal": self.task.goal, "prev_action": self.prev_action,
                "holding": 0}  # fmt: skip

    def _info(self) -> dict[str, Any]:
        return {"family": self.task.family, "house": self.task.house, "steps": self.steps, "success": False,
                "subgoal": getattr(self.task, "subgoal", 0), "timeout": False}  # fmt: skip

    def render(self) -> np.ndarray:
        return self.controller.frames()[0]
