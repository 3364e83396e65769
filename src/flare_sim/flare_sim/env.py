"""GridhouseEnv: the embedded simulator behind the project's observation and action contract.

Observations (docs/design.md, contract 3): `nav_rgb` and `manip_rgb` camera frames (uint8 H x W x 3), the `goal`
text, `prev_action` (NO_PREVIOUS_ACTION at an episode's first step) and `holding` (1 when an object is held).
Actions are indices into the 20-action Stretch vocabulary; the `gridhouse` embodiment's masked actions and
unknown indices are refused with an error, never silently ignored. Reward: `success_reward` on success,
nothing else (FLaRe's sparse reward).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.actions import Actions
from minigrid.minigrid_env import MiniGridEnv

from flare_core.actions import NO_PREVIOUS_ACTION, NUM_ACTIONS, action_by_index
from flare_core.embodiments import GRIDHOUSE
from flare_sim.cameras import VIEW, manipulation_frame, navigation_frame
from flare_sim.config import SPLITS, GridhouseConfig
from flare_sim.expert import ShortestPathExpert
from flare_sim.house import HouseLevel
from flare_sim.tasks import FAMILIES, TRAIN_FAMILIES, get_family, named_cells, satisfied, subgoals, target

# Which observation key carries which camera (the names model cards and ROS topics use).
CAMERA_KEYS = {"nav": "nav_rgb", "manip": "manip_rgb"}

# Goal texts are BabyAI surface forms: lower-case words, articles, commas.
GOAL_CHARSET = "abcdefghijklmnopqrstuvwxyz ,"
GOAL_MAX_LENGTH = 128

_GRID_ACTIONS = {"m": Actions.forward, "l": Actions.left, "r": Actions.right,
                 "p": Actions.pickup, "d": Actions.drop}  # fmt: skip


class GridhouseEnv(gym.Env):
    """One agent in one house at a time; each reset draws a house from the split and a family.

    Args:
        config: house size, clutter, cameras, reward.
        families: task families to draw from (default: the training families).
        split: "train" or "eval"; the two draw from disjoint house-seed ranges.
        expert: when True, `info["expert_action"]` holds the shortest-path expert's next action
            (-1 where the expert has none), for imitation and DAgger-style labelling, and
            `info["goal_cells"]` which cells of the view show the object the goal names now (`goal_cells`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    embodiment = GRIDHOUSE

    def __init__(
        self,
        config: GridhouseConfig | None = None,
        families: tuple[str, ...] | list[str] = TRAIN_FAMILIES,
        split: str = "train",
        expert: bool = False,
        render_mode: str | None = "rgb_array",
    ) -> None:
        self.config = config or GridhouseConfig()
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if not families:
            raise ValueError("at least one task family is needed")
        self.families = tuple(get_family(f).name for f in families)
        self.split = split
        self.houses = SPLITS[split]
        self.render_mode = render_mode
        self._levels = {name: HouseLevel(self.config, FAMILIES[name]) for name in self.families}
        self._expert = ShortestPathExpert() if expert else None
        nav_px = VIEW * self.config.nav_tile_px
        manip_px = 3 * self.config.manip_tile_px
        self.observation_space = spaces.Dict(
            {
                "nav_rgb": spaces.Box(0, 255, (nav_px, nav_px, 3), np.uint8),
                "manip_rgb": spaces.Box(0, 255, (manip_px, manip_px, 3), np.uint8),
                "goal": spaces.Text(GOAL_MAX_LENGTH, charset=GOAL_CHARSET),
                "prev_action": spaces.Discrete(NUM_ACTIONS + 1),
                "holding": spaces.Discrete(2),
            }
        )
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.level: HouseLevel | None = None
        self._done = True

    # -- episode -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode. options: `house` (index into the split) and/or `family` pin them."""
        super().reset(seed=seed)
        options = options or {}
        family = options.get("family") or self.families[int(self.np_random.integers(len(self.families)))]
        if family not in self._levels:
            raise ValueError(f"family {family!r} is not one this env was built with: {', '.join(self.families)}")
        index = options.get("house")
        if index is None:
            index = int(self.np_random.integers(len(self.houses)))
        if not 0 <= index < len(self.houses):
            raise ValueError(f"house index {index} is outside the {self.split} split (0..{len(self.houses) - 1})")
        self.family = family
        self.house = self.houses[index]
        self.level = self._levels[family]
        mg_obs, _ = self.level.reset(seed=self.house)
        self._view = mg_obs["image"]
        self.goal = self.level.surface
        self.subgoals = subgoals(self.level.instrs)
        self.subgoal_index = 0
        self.steps = 0
        self.step_limit = max(1, round(FAMILIES[family].step_limit * self.config.step_limit_scale))
        self.prev_action = NO_PREVIOUS_ACTION
        self._done = False
        info = self._info()
        if self._expert is not None:
            self._expert.start(self.level, self.subgoals)
            info["expert_action"] = self._expert.act(self.subgoal_index, None)
            info["goal_cells"] = self.goal_cells()
        return self._observation(), info

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        spec = action_by_index(action)  # refuses unknown indices
        self.embodiment.motion(spec.index)  # refuses masked actions, naming the valid ones
        self.steps += 1
        terminated = success = False
        if spec.name == "end":
            terminated = True
            success = self.subgoal_index == len(self.subgoals) - 1 and self.goal_satisfied()
        elif spec.name == "sub_done":
            if self.subgoal_index < len(self.subgoals) - 1 and self.goal_satisfied():
                self.subgoal_index += 1
        else:
            grid_action = _GRID_ACTIONS[spec.name]
            mg_obs, *_ = MiniGridEnv.step(self.level, grid_action)
            self._view = mg_obs["image"]
            if grid_action == Actions.drop:
                self.level.update_objs_poss()
        truncated = not terminated and self.steps >= self.step_limit
        self._done = terminated or truncated
        self.prev_action = spec.index
        reward = self.config.success_reward if success else 0.0
        info = self._info()
        info["success"] = success
        if self._expert is not None:
            info["expert_action"] = -1 if self._done else self._expert.act(self.subgoal_index, spec.name)
            info["goal_cells"] = self.goal_cells()
        return self._observation(), reward, terminated, truncated, info

    # -- state ---------------------------------------------------------------------------------------
    def goal_satisfied(self) -> bool:
        """Whether the current sub-goal is satisfied right now (calling `end` would succeed on the last)."""
        return satisfied(self.level, self.subgoals[self.subgoal_index])

    def goal_cells(self) -> np.ndarray:
        """[7, 7] bool, laid out as the navigation frame: the cells that show an object of the type and colour
        the current sub-goal names. Privileged like the expert (the simulator's own grid): labels for learning
        to see the goal (BC's goal-cell loss), never a policy input."""
        return named_cells(self._view, target(self.level, self.subgoals[self.subgoal_index]))

    def _observation(self) -> dict[str, Any]:
        return {
            "nav_rgb": navigation_frame(self._view, self.config.nav_tile_px),
            "manip_rgb": manipulation_frame(self._view, self.config.manip_tile_px),
            "goal": self.goal,
            "prev_action": self.prev_action,
            "holding": int(self.level.carrying is not None),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "house": self.house,
            "steps": self.steps,
            "subgoal": self.subgoal_index,
            "success": False,
        }

    def render(self) -> np.ndarray | None:
        """Top-down view of the whole house with the agent's field of view highlighted."""
        if self.render_mode != "rgb_array" or self.level is None:
            return None
        return self.level.get_full_render(highlight=True, tile_size=16)
