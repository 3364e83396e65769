"""The simulated robot: the gridhouse stepping as a robot behind the bridges' `RobotBackend` interface.

Where there is no hardware, the ROS graph closes its loop through this: the bridge hands it actions, it
takes `motion_s` of wall time per action (so an e-stop can land mid-motion, as on a real base), applies the
action when the motion finishes, and its frames are the cameras the policy sees. The world poses the task:
`reset_task` draws a house of the evaluation split and a family and returns the goal text an operator would
give. Its body is the robot's embodiment restricted to what the grid can do, so a LoCoBot stays a LoCoBot
(no pick up) and a Stretch keeps its gripper.
"""

from __future__ import annotations

import numpy as np

from flare_core.actions import Action
from flare_core.bridge import BackendInfo, Progress, RobotBackend
from flare_core.embodiments import GRIDHOUSE, Motion, get_embodiment, restrict
from flare_core.goal_tokenizer import goal_words
from flare_sim.config import GridhouseConfig
from flare_sim.env import CAMERA_KEYS, GridhouseEnv
from flare_sim.tasks import FAMILIES

GOAL_SEARCH_HOUSES = 100  # houses searched for one posing an operator's goal (~1.7 ms per family and house)


class SimulatedRobot(RobotBackend):
    def __init__(
        self,
        robot: str = "stretch_re1",
        motion_s: float = 0.05,
        split: str = "eval",
        config: GridhouseConfig | None = None,
    ) -> None:
        self.embodiment = restrict(GRIDHOUSE, get_embodiment(robot))
        masked = sorted(set(GRIDHOUSE.motions) - set(self.embodiment.motions))
        notes = [f"gridhouse actions this robot cannot do (refused): {', '.join(masked)}"] if masked else []
        self.info = BackendInfo(robot, "sim", notes)
        self.motion_s = motion_s
        self.env = GridhouseEnv(config, families=tuple(FAMILIES), split=split)
        self.obs: dict | None = None
        self.active = False  # an episode is running in the simulated world
        self.pending: tuple[Action, float] | None = None
        self.task: dict = {}

    def reset_task(self, family: str, house: int) -> dict:
        """Start a task in house `house` of the split; returns {family, house, goal}."""
        self.halt()
        self.obs, info = self.env.reset(seed=house, options={"family": family, "house": house})
        self.active = True
        self.task = {"family": family, "house": int(house), "house_seed": int(info["house"]), "goal": self.obs["goal"]}
        return dict(self.task)

    def pose_for_goal(self, goal: str, first_house: int = 0, tries: int = GOAL_SEARCH_HOUSES) -> dict:
        """Pose a task whose goal is `goal` in the first house from `first_house` on where one of the families
        poses exactly it (an operator's goal then has a world to be judged in). Where none of `tries` houses
        does, an ObjectNav task in `first_house`: the policy then runs the operator's goal in a world that
        judges its own (`matched` false)."""
        words = goal_words(goal)
        for house in range(first_house, min(first_house + tries, len(self.env.houses))):
            for family in FAMILIES:
                if goal_words(self.reset_task(family, house)["goal"]) == words:
                    return {**self.task, "matched": True}
        return {**self.reset_task("objectnav", first_house), "matched": False}

    def frames(self) -> dict[str, np.ndarray]:
        """The current camera frames (RGB uint8), by the camera names model cards use."""
        if self.obs is None:
            return {}
        return {camera: self.obs[key] for camera, key in CAMERA_KEYS.items()}

    def not_ready(self) -> str:
        return "" if self.active else "the simulated world has no task running (publish one on flare/sim/reset)"

    def start(self, action: Action, motion: Motion, now: float) -> None:
        self.pending = (action, now)

    def poll(self, now: float) -> Progress:
        if self.pending is None:
            return Progress(error="no motion in progress")
        action, started = self.pending
        if now - started < self.motion_s:
            return Progress()
        self.pending = None
        self.obs, _, terminated, truncated, info = self.env.step(action.index)
        over = terminated or truncated
        self.active = not over
        return Progress(done=True, holding=bool(self.obs["holding"]), episode_over=over,
                        success=bool(info["success"]) if over else None)  # fmt: skip

    def halt(self) -> None:
        self.pending = None  # a grid action is atomic: halted before it finished, it never happened
