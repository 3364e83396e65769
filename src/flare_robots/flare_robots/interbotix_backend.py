"""Interbotix LoCoBot through `interbotix_xs_modules` (ROS 2: `interbotix_xs_modules.xs_robot.locobot`).

Base actions are timed velocity commands (`base.command_velocity(x, yaw)`) re-sent every control period and
zeroed at the end, so a stopped bridge stops the base. FLaRe's embodiment transfer: the `yp`/`ym` slots tilt
the camera (`camera.tilt`, absolute, tracked here and clamped to the servo's range).
"""

from __future__ import annotations

from dataclasses import dataclass

from flare_core.actions import Action, Joint
from flare_core.bridge import BackendInfo, Progress, RobotBackend
from flare_core.embodiments import LOCOBOT, Motion
from flare_robots.errors import BackendUnavailable
from flare_robots.velocity import VelocityLimits, VelocityPlan, plan_base_motion


@dataclass
class InterbotixConfig:
    robot_model: str = "locobot_base"
    linear_m_s: float = 0.2
    angular_rad_s: float = 0.5
    tilt_min_rad: float = -0.5
    tilt_max_rad: float = 1.0
    tilt_settle_s: float = 0.6


def connect_locobot(robot_model: str):
    try:
        from interbotix_xs_modules.xs_robot.locobot import InterbotixLocobotXS
    except ImportError as err:
        raise BackendUnavailable(
            f"interbotix_xs_modules is not importable ({err}); it ships with Interbotix's ROS 2 workspace "
            "(interbotix_ros_toolboxes), not PyPI: source that workspace, or use backend:=cmd_vel"
        ) from None
    return InterbotixLocobotXS(robot_model=robot_model)


class InterbotixBackend(RobotBackend):
    def __init__(self, locobot=None, config: InterbotixConfig | None = None) -> None:
        self.config = config or InterbotixConfig()
        self.locobot = locobot if locobot is not None else connect_locobot(self.config.robot_model)
        self.embodiment = LOCOBOT
        self.info = BackendInfo("locobot", "interbotix", [f"model {self.config.robot_model}"])
        self.limits = VelocityLimits(self.config.linear_m_s, self.config.angular_rad_s)
        self.tilt = 0.0
        self.pending: tuple[Action, Motion, float, VelocityPlan | None] | None = None

    def start(self, action: Action, motion: Motion, now: float) -> None:
        plan = None
        if motion.joint in (Joint.BASE_TRANSLATE, Joint.BASE_ROTATE):
            plan = plan_base_motion(motion, self.limits)
            self.locobot.base.command_velocity(plan.linear, plan.angular)
        elif motion.joint == Joint.CAMERA_TILT:
            self.tilt = min(max(self.tilt + motion.delta, self.config.tilt_min_rad), self.config.tilt_max_rad)
            self.locobot.camera.tilt(self.tilt)
        elif motion.joint != Joint.EPISODE:
            raise ValueError(f"the LoCoBot has no motion for {motion.joint}")
        self.pending = (action, motion, now, plan)

    def poll(self, now: float) -> Progress:
        if self.pending is None:
            return Progress(error="no motion in progress")
        _, motion, started, plan = self.pending
        elapsed = now - started
        if plan is not None:
            linear, angular = plan.command_at(elapsed)
            self.locobot.base.command_velocity(linear, angular)
            if elapsed < plan.duration_s:
                return Progress()
        elif motion.joint == Joint.CAMERA_TILT and elapsed < self.config.tilt_settle_s:
            return Progress()
        self.pending = None
        return Progress(done=True, holding=False)

    def halt(self) -> None:
        self.pending = None
        try:
            self.locobot.base.command_velocity(0.0, 0.0)
        except Exception:  # halting must never raise
            pass
