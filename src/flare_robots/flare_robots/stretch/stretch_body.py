"""Stretch RE1 through Hello Robot's `stretch_body` (runs on the robot's own computer).

Written against stretch_body 0.7.31 (hello-robot/stretch_body @ 6af4f5c); the calls used exist unchanged in
the RE1-era releases. Each action is one incremental command (`translate_by`, `rotate_by`, `move_by`, gripper
`move_to`) pushed with `push_command()`. The SDK never says no: a joint that is not homed or in a collision
stop ignores the command with a log line, and a target past a soft limit is clipped without a word. So the
backend checks those conditions before it commands, predicts the clipped distance, and after the joint stops
measures how far it really went: an ignored move is FAILED and a clipped one CLIPPED, never DONE.
Completion is the motion generator's flag (`is_mg_moving`, what the SDK's own waits read) for steppers and
the servo's moving register for the wrist and gripper; the raw `is_moving` bit flickers mid-motion.
`halt()` stops every joint; the e-stop also triggers the hardware run-stop, and releasing the e-stop resets it.
`holding` after `p`/`d` is what the gripper was told, not sensed: stretch_body has no grasp detector.
"""

from __future__ import annotations

from dataclasses import dataclass

from flare_core.actions import Action, Joint
from flare_core.bridge import BackendInfo, Progress, RobotBackend
from flare_core.embodiments import Motion, get_embodiment
from flare_robots.errors import BackendUnavailable

PRISMATIC = {Joint.LIFT: "lift", Joint.ARM: "arm"}
SERVOS = {Joint.WRIST_YAW: "wrist_yaw", Joint.GRIPPER: "stretch_gripper"}


@dataclass
class StretchBodyConfig:
    embodiment: str = "stretch_re1"  # or stretch_nav to keep the arm still
    gripper_closed: float = -40.0  # stretch_gripper 'pct': -100 fully closed, 0 fingertips touching
    gripper_open: float = 50.0  # up to the gripper's pct_max_open
    moved_fraction: float = 0.5  # a joint that covered less than this part of its expected move did not move
    clip_tolerance: float = 1e-4  # m or rad: a predicted shortfall above this is a clip


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


@dataclass
class _Pending:
    action: Action
    motion: Motion
    before: float | tuple[float, float]  # the joint's position when commanded (m or rad; base: x, y in m)
    expected: float  # the move the SDK will make after clipping
    clipped: str  # why it is shorter than asked, or ""


class StretchBodyBackend(RobotBackend):
    def __init__(self, robot=None, config: StretchBodyConfig | None = None) -> None:
        """`robot`: a started stretch_body Robot; None connects to the real one."""
        self.config = config or StretchBodyConfig()
        self.robot = robot if robot is not None else connect_stretch_body()
        self.embodiment = get_embodiment(self.config.embodiment)
        self.info = BackendInfo("stretch_re1", "stretch_body", [f"embodiment {self.embodiment.name}"])
        self.pending: _Pending | None = None
        self.holding = False

    def not_ready(self) -> str:
        if self.robot.pimu.status.get("runstop_event"):
            return "run-stopped: release the run-stop button on the robot's head (or publish false on flare/estop)"
        homed = self.robot.is_homed() if hasattr(self.robot, "is_homed") else self.robot.is_calibrated()
        if not homed:
            return "joints not homed: run stretch_robot_home.py on the robot first"
        return ""

    # -- where each joint is, and whether it is still moving ---------------------------------------------
    def _position(self, joint: Joint) -> float | tuple[float, float]:
        r = self.robot
        if joint == Joint.BASE_TRANSLATE:
            return float(r.base.status["x"]), float(r.base.status["y"])
        if joint == Joint.BASE_ROTATE:
            return float(r.base.status["theta"])
        if joint in PRISMATIC:
            return float(getattr(r, PRISMATIC[joint]).status["pos"])
        if joint in SERVOS:
            return float(r.end_of_arm.get_joint(SERVOS[joint]).status["pos"])
        return 0.0

    def _moving(self, joint: Joint) -> bool:
        r = self.robot
        if joint in (Joint.BASE_TRANSLATE, Joint.BASE_ROTATE):
            return bool(r.base.left_wheel.status["is_mg_moving"] or r.base.right_wheel.status["is_mg_moving"])
        if joint in PRISMATIC:
            return bool(getattr(r, PRISMATIC[joint]).motor.status["is_mg_moving"])
        if joint in SERVOS:
            return bool(r.end_of_arm.get_joint(SERVOS[joint]).motor.get_moving_status() & 2)  # profile running
        return False

    # -- what the SDK would silently do with a command ---------------------------------------------------
    def _ignored(self, joint: Joint, delta: float) -> str:
        """Why the SDK would drop this command without raising, or ""."""
        if joint in PRISMATIC:
            part = getattr(self.robot, PRISMATIC[joint])
            if not part.motor.status["pos_calibrated"]:
                return f"the {part.name} is not homed (stretch_body ignores the move): run stretch_robot_home.py"
        elif joint in SERVOS:
            part = self.robot.end_of_arm.get_joint(SERVOS[joint])
            if part.was_runstopped:
                return f"the {part.name} is run-stopped (stretch_body ignores the move)"
            if part.params.get("req_calibration") and not part.is_calibrated:
                return f"the {part.name} is not homed (stretch_body ignores the move): run stretch_robot_home.py"
        if joint in (*PRISMATIC, Joint.WRIST_YAW) and part.in_collision_stop["pos" if delta > 0 else "neg"]:
            return f"the {part.name} is in a collision stop in that direction (stretch_body ignores the move)"
        return ""

    def _moved(self, joint: Joint, before, delta: float) -> float:
        """How far the joint went since `before`, signed like `delta` for the base's odometry distance."""
        now = self._position(joint)
        if joint == Joint.BASE_TRANSLATE:
            return ((now[0] - before[0]) ** 2 + (now[1] - before[1]) ** 2) ** 0.5 * (1 if delta >= 0 else -1)
        return now - before

    def _clip(self, joint: Joint, before, delta: float) -> tuple[float, str]:
        """The move the SDK will really make, and why it is shorter than `delta`."""
        if joint in PRISMATIC:
            lo, hi = getattr(self.robot, PRISMATIC[joint]).soft_motion_limits["current"]
        elif joint == Joint.WRIST_YAW:
            lo, hi = self.robot.end_of_arm.get_joint("wrist_yaw").soft_motion_limits["current"]
        else:
            return delta, ""
        expected = min(max(before + delta, lo), hi) - before
        if abs(expected - delta) <= self.config.clip_tolerance:
            return delta, ""
        unit = "rad" if joint == Joint.WRIST_YAW else "m"
        limit = lo if delta < 0 else hi
        return expected, (f"{joint.value} at its soft limit {limit:.3f} {unit}: "
                          f"moves {expected:+.3f} of {delta:+.3f} {unit}")  # fmt: skip

    # -- the RobotBackend interface -----------------------------------------------------------------------
    def start(self, action: Action, motion: Motion, now: float) -> None:
        joint, delta = motion.joint, motion.delta
        why = self._ignored(joint, delta)
        if why:
            raise RuntimeError(why)
        before = self._position(joint)
        expected, clipped = self._clip(joint, before, delta)
        r = self.robot
        if joint == Joint.BASE_TRANSLATE:
            r.base.translate_by(delta)
        elif joint == Joint.BASE_ROTATE:
            r.base.rotate_by(delta)
        elif joint in PRISMATIC:
            getattr(r, PRISMATIC[joint]).move_by(delta)
        elif joint == Joint.WRIST_YAW:
            r.end_of_arm.move_by("wrist_yaw", delta)
        elif joint == Joint.GRIPPER:
            closing = action.name == "p"
            r.end_of_arm.move_to("stretch_gripper", self.config.gripper_closed if closing else self.config.gripper_open)
        elif joint != Joint.EPISODE:
            raise ValueError(f"stretch_body backend has no motion for {joint}")
        if joint != Joint.EPISODE:
            r.push_command()
        self.pending = _Pending(action, motion, before, expected, clipped)

    def poll(self, now: float) -> Progress:
        p = self.pending
        if p is None:
            return Progress(error="no motion in progress")
        if self.robot.pimu.status.get("runstop_event"):
            self.pending = None
            return Progress(error="run-stop pressed during the motion")
        if self._moving(p.motion.joint):
            return Progress()
        self.pending = None
        if p.action.name in ("p", "d"):
            self.holding = p.action.name == "p"
        if p.motion.joint in (*PRISMATIC, Joint.WRIST_YAW, Joint.BASE_TRANSLATE, Joint.BASE_ROTATE):
            moved = self._moved(p.motion.joint, p.before, p.motion.delta)
            if abs(p.expected) > self.config.clip_tolerance and moved / p.expected < self.config.moved_fraction:
                return Progress(error=f"{p.motion.joint.value} did not move ({moved:+.3f} of {p.expected:+.3f} "
                                      f"{p.motion.unit}): the robot ignored the command")  # fmt: skip
        return Progress(done=True, holding=self.holding, clipped=p.clipped)

    def halt(self) -> None:
        """Stop every joint: base and steppers at the next push, the end-of-arm servos at once."""
        self.pending = None
        r = self.robot
        for stop in (
            lambda: r.base.set_velocity(0.0, 0.0),
            lambda: r.lift.set_velocity(0.0),
            lambda: r.arm.set_velocity(0.0),
            lambda: r.end_of_arm.get_joint("wrist_yaw").quick_stop(),
            lambda: r.end_of_arm.get_joint("stretch_gripper").quick_stop(),
            r.push_command,
        ):
            try:
                stop()
            except Exception:  # halting must never raise, and one joint's error must not spare the others
                pass

    def emergency_stop(self) -> None:
        self.halt()
        try:
            self.robot.pimu.runstop_event_trigger()
            self.robot.push_command()
        except Exception:
            pass

    def release_estop(self) -> None:
        self.robot.pimu.runstop_event_reset()
        self.robot.push_command()

    def close(self) -> None:
        self.robot.stop()
