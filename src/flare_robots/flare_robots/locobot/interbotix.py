"""Interbotix LoCoBot through the ROS 2 Interbotix Python API (`interbotix_xs_modules.xs_robot.locobot`).

Written against interbotix_ros_toolboxes after PR #82 (f256c9d64f130b494fc80128c2ba67624e157b97, humble/jazzy):
`InterbotixLocobotXS(robot_model, use_base=True, base_type=BaseType.CREATE3 | KOBUKI)`, spun by
`interbotix_common_modules.common_robot.robot.robot_startup()`. The SDKs from before PR #67 (5ea0030; e.g.
humble 8545083) also work, Kobuki base only (their Create 3 interface raises in its constructor,
create3.py:91). Those between #67 and #82, the humble/jazzy heads of 2024 (8ae347e, 4c72047) among them,
cannot build a LoCoBot (their core is no longer a ROS node, the turret still treats it as one): refused at
start with what to install.

- Base actions: `base.command_velocity_xyaw(x, yaw)` every control period, then zero; DONE once odometry
  (`get_linear_velocity`/`get_angular_velocity`) shows the base at rest (see `flare_robots.velocity`).
- FLaRe's embodiment transfer: `yp`/`ym` tilt the camera. The core's `CAMERA_TILT` is + up; Interbotix's tilt
  is + down (URDF axis +y), so the goal is the tilt joint's measured angle minus the action's delta, kept within
  the joint's limits (a clipped tilt is CLIPPED). `tilt(..., blocking=False)`: the SDK's blocking call sleeps the
  2 s profile inside the bridge's executor; completion is read from the joint state instead.
- `close()` stops the base and leaves the SDK's daemon spin thread to end with the process:
  `robot_shutdown()` would shut down the ROS context the bridge itself still needs for its last messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from flare_core.actions import Action, Joint
from flare_core.bridge import BackendInfo, Progress, RobotBackend
from flare_core.embodiments import LOCOBOT, Motion
from flare_robots.errors import BackendUnavailable
from flare_robots.velocity import VelocityLimits, VelocityMotion, plan_base_motion

WRITTEN_AGAINST = "interbotix_ros_toolboxes f256c9d (PR #82)"
BASE_TYPES = ("create3", "kobuki")


@dataclass
class InterbotixConfig:
    robot_model: str = "locobot_base"
    base_type: str = "create3"  # create3 | kobuki
    linear_m_s: float = 0.2
    angular_rad_s: float = 0.5
    settle_s: float = 0.5  # without odometry: wait this long after the zero command
    tilt_tolerance_rad: float = 0.02  # the tilt is there when its joint state is this close to the goal


def sdk_problem(locobot_cls, core_cls) -> str:
    """Why the installed Interbotix SDK cannot drive a LoCoBot, or "" (robot-sdks: PR #67 left it broken)."""
    from rclpy.node import Node

    core_is_node = isinstance(core_cls, type) and issubclass(core_cls, Node)
    if hasattr(locobot_cls, "get_node") or core_is_node:
        return ""
    return (
        "the installed interbotix_xs_modules is one of the versions between PR #67 (5ea0030, 2024-04) and PR #82 "
        "(humble 8ae347e / jazzy 4c72047 among them): its InterbotixLocobotXS cannot start (the turret calls ROS "
        "node methods on a core that is no longer a node). Update interbotix_ros_toolboxes to a commit with PR #82 "
        "(f256c9d or later), or use backend:=cmd_vel"
    )


def connect_locobot(config: InterbotixConfig):
    """The real LoCoBot with its base, spinning; refuses SDKs known not to work, saying what to do."""
    if config.base_type not in BASE_TYPES:
        raise BackendUnavailable(f"base_type {config.base_type!r} unknown; use one of {', '.join(BASE_TYPES)}")
    try:
        from interbotix_xs_modules.xs_robot import core, locobot
    except ImportError as err:
        raise BackendUnavailable(
            f"interbotix_xs_modules is not importable ({err}); it ships with Interbotix's ROS 2 workspace "
            "(interbotix_ros_toolboxes), not PyPI: source that workspace, or use backend:=cmd_vel"
        ) from None
    problem = sdk_problem(locobot.InterbotixLocobotXS, core.InterbotixRobotXSCore)
    if problem:
        raise BackendUnavailable(problem)
    post_82 = hasattr(locobot.InterbotixLocobotXS, "get_node")
    if not post_82 and config.base_type == "create3":
        raise BackendUnavailable(
            "this interbotix_xs_modules predates PR #67, and its Create 3 interface raises in its constructor "
            "(create3.py:91): update interbotix_ros_toolboxes to PR #82 (f256c9d) or later"
        )
    robot = locobot.InterbotixLocobotXS(
        robot_model=config.robot_model, use_base=True, base_type=locobot.BaseType[config.base_type.upper()]
    )
    if post_82:
        from interbotix_common_modules.common_robot.robot import robot_startup

        robot_startup()
    return robot


class InterbotixBackend(RobotBackend):
    def __init__(self, locobot=None, config: InterbotixConfig | None = None) -> None:
        self.config = config or InterbotixConfig()
        self.locobot = locobot if locobot is not None else connect_locobot(self.config)
        if not hasattr(self.locobot, "base"):
            raise BackendUnavailable("the LoCoBot object has no base: it must be built with use_base=True")
        self.embodiment = LOCOBOT
        notes = [f"model {self.config.robot_model}", f"base {self.config.base_type}", WRITTEN_AGAINST]
        self.info = BackendInfo("locobot", "interbotix", notes)
        self.limits = VelocityLimits(self.config.linear_m_s, self.config.angular_rad_s,
                                     settle_s=self.config.settle_s)  # fmt: skip
        self.base_motion: VelocityMotion | None = None
        self.tilt: tuple[float, str] | None = None  # goal (Interbotix angle), clipped reason
        self.episode_action = False

    def _odometry(self) -> tuple[float, float] | None:
        base = self.locobot.base
        if not hasattr(base, "get_linear_velocity"):  # pre-#67 SDKs have no odometry velocities
            return None
        return float(base.get_linear_velocity().x), float(base.get_angular_velocity().z)

    def _tilt_state(self) -> tuple[float, float]:
        state = self.locobot.core.robot_get_single_joint_state(self.locobot.camera.tilt_name)
        return float(state["position"]), float(state["velocity"])

    def _start_tilt(self, delta_up: float) -> None:
        camera = self.locobot.camera
        info = camera.info[camera.tilt_name]
        now_angle, _ = self._tilt_state()
        wanted = now_angle - delta_up  # + up in the core, + down in Interbotix
        goal = min(max(wanted, info["lower_limit"]), info["upper_limit"])
        clipped = ""
        if abs(goal - wanted) > 1e-6:
            clipped = (f"camera tilt at its limit {goal:+.3f} rad (Interbotix, + down): moves "
                       f"{now_angle - goal:+.3f} of {delta_up:+.3f} rad up")  # fmt: skip
        camera.tilt(goal, blocking=False)
        self.tilt = (goal, clipped)

    def start(self, action: Action, motion: Motion, now: float) -> None:
        self.base_motion, self.tilt, self.episode_action = None, None, False
        if motion.joint in (Joint.BASE_TRANSLATE, Joint.BASE_ROTATE):
            self.base_motion = VelocityMotion(plan_base_motion(motion, self.limits), self.limits, now, self._odometry)
            self.locobot.base.command_velocity_xyaw(*self.base_motion.command(now))
        elif motion.joint == Joint.CAMERA_TILT:
            self._start_tilt(motion.delta)
        elif motion.joint == Joint.EPISODE:
            self.episode_action = True
        else:
            raise ValueError(f"the LoCoBot has no motion for {motion.joint}")

    def poll(self, now: float) -> Progress:
        if self.base_motion is not None:
            self.locobot.base.command_velocity_xyaw(*self.base_motion.command(now))
            if not self.base_motion.stopped(now):
                return Progress()
            self.base_motion = None
            return Progress(done=True, holding=False)
        if self.tilt is not None:
            goal, clipped = self.tilt
            angle, velocity = self._tilt_state()
            if abs(angle - goal) > self.config.tilt_tolerance_rad or abs(velocity) > 1e-3:
                return Progress()
            self.tilt = None
            return Progress(done=True, holding=False, clipped=clipped)
        if self.episode_action:
            self.episode_action = False
            return Progress(done=True, holding=False)
        return Progress(error="no motion in progress")

    def halt(self) -> None:
        self.base_motion, self.tilt, self.episode_action = None, None, False
        try:
            self.locobot.base.command_velocity_xyaw(0.0, 0.0)
        except Exception:  # halting must never raise
            pass

    def close(self) -> None:
        self.halt()
