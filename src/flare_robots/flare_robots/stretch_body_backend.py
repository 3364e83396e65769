"""Stretch RE1 through Hello Robot's `stretch_body` (runs on the robot's own computer).

Each action is one incremental position command (`translate_by`, `rotate_by`, `move_by`, gripper `move_to`)
pushed with `push_command()`; completion is polled from the joints' `is_moving` status after a short settle
time, never assumed. The robot must be homed and not run-stopped to accept an action; the e-stop triggers the
hardware run-stop (release it with the robot's button), the watchdog and failures stop the base.
`holding` after `p`/`d` is what the gripper was told, not sensed: stretch_body has no grasp detector.
"""

from __future__ import annotations

from dataclasses import dataclass

from flare_core.actions import Action, Joint
from flare_core.bridge import BackendInfo, Progress, RobotBackend
from flare_core.embodiments import Motion, get_embodiment
from flare_robots.errors import BackendUnavailable


@dataclass
class StretchBodyConfig:
    embodiment: str = "stretch_re1"  # or stretch_nav to keep the arm still
    gripper_closed: float = -40.0  # stretch_gripper position units (-100 closed .. 100 open)
    gripper_open: float = 50.0
    settle_s: float = 0.3  # joints report is_moving only once the command has reached the firmware


def connect_stretch_body():
    """The real robot: stretch_body's Robot, started. Fails with what to do when it cannot."""
    try:
        import stretch_body.robot
    except ImportError as err:
        raise BackendUnavailable(
            f"stretch_body is not importable ({err}); on the robot: pip install hello-robot-stretch-body "
            "(needs the robot's fleet config, HELLO_FLEET_PATH/HELLO_FLEET_ID)"
        ) from None
    robot = stretch_body.robot.Robot()
    if robot.startup() is False:
        raise BackendUnavailable(
            "stretch_body could not start the robot: is another process using it? run stretch_free_robot_process.py"
        )
    return robot


class StretchBodyBackend(RobotBackend):
    def __init__(self, robot=None, config: StretchBodyConfig | None = None) -> None:
        """`robot`: a started stretch_body Robot; None connects to the real one."""
        self.config = config or StretchBodyConfig()
        self.robot = robot if robot is not None else connect_stretch_body()
        self.embodiment = get_embodiment(self.config.embodiment)
        self.info = BackendInfo("stretch_re1", "stretch_body", [f"embodiment {self.embodiment.name}"])
        self.pending: tuple[Action, Motion, float] | None = None
        self.holding = False

    def not_ready(self) -> str:
        if self.robot.pimu.status.get("runstop_event"):
            return "run-stopped: release the run-stop button on the robot's head"
        homed = self.robot.is_homed() if hasattr(self.robot, "is_homed") else self.robot.is_calibrated()
        if not homed:
            return "joints not homed: run stretch_robot_home.py on the robot first"
        return ""

    def start(self, action: Action, motion: Motion, now: float) -> None:
        r, joint, delta = self.robot, motion.joint, motion.delta
        if joint == Joint.BASE_TRANSLATE:
            r.base.translate_by(delta)
        elif joint == Joint.BASE_ROTATE:
            r.base.rotate_by(delta)
        elif joint == Joint.LIFT:
            r.lift.move_by(delta)
        elif joint == Joint.ARM:
            r.arm.move_by(delta)
        elif joint == Joint.WRIST_YAW:
            r.end_of_arm.move_by("wrist_yaw", delta)
        elif joint == Joint.GRIPPER:
            closing = action.name == "p"
            r.end_of_arm.move_to("stretch_gripper", self.config.gripper_closed if closing else self.config.gripper_open)
        elif joint != Joint.EPISODE:
            raise ValueError(f"stretch_body backend has no motion for {joint}")
        if joint != Joint.EPISODE:
            r.push_command()
        self.pending = (action, motion, now)

    def _moving(self, joint: Joint) -> bool:
        r = self.robot
        if joint in (Joint.BASE_TRANSLATE, Joint.BASE_ROTATE):
            return bool(r.base.left_wheel.status["is_moving"] or r.base.right_wheel.status["is_moving"])
        if joint == Joint.LIFT:
            return bool(r.lift.motor.status["is_moving"])
        if joint == Joint.ARM:
            return bool(r.arm.motor.status["is_moving"])
        if joint == Joint.WRIST_YAW:
            return bool(r.end_of_arm.motors["wrist_yaw"].motor.is_moving())
        if joint == Joint.GRIPPER:
            return bool(r.end_of_arm.motors["stretch_gripper"].motor.is_moving())
        return False

    def poll(self, now: float) -> Progress:
        if self.pending is None:
            return Progress(error="no motion in progress")
        action, motion, started = self.pending
        if self.robot.pimu.status.get("runstop_event"):
            self.pending = None
            return Progress(error="run-stop pressed during the motion")
        if motion.joint != Joint.EPISODE and (now - started < self.config.settle_s or self._moving(motion.joint)):
            return Progress()
        self.pending = None
        if action.name in ("p", "d"):
            self.holding = action.name == "p"
        return Progress(done=True, holding=self.holding)

    def halt(self) -> None:
        self.pending = None
        try:
            self.robot.base.set_velocity(0.0, 0.0)
            self.robot.push_command()
        except Exception:  # halting must never raise; the e-stop path has the hardware run-stop
            pass

    def emergency_stop(self) -> None:
        self.halt()
        try:
            self.robot.pimu.runstop_event_trigger()
            self.robot.push_command()
        except Exception:
            pass

    def close(self) -> None:
        self.robot.stop()
