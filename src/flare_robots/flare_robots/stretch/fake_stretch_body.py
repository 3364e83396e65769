"""A fake of Hello Robot's `stretch_body` for tests: no hardware, the SDK's surface and failure modes.

Mirrors stretch_body 0.7.31 (hello-robot/stretch_body @ 6af4f5c7e9b1944d2916d3b7e8e39f0efd61fd4b), files under
`body/stretch_body/`: robot.py (Robot), base.py (Base), prismatic_joint.py / lift.py / arm.py (Lift, Arm),
stepper.py (Stepper status keys), end_of_arm.py (EndOfArm), dynamixel_hello_XL430.py and dynamixel_XL430.py
(wrist yaw), stretch_gripper.py (StretchGripper), pimu.py (Pimu). Each class names the real class it stands for
in `MIRRORS`; `tests/test_sdk_fakes.py` holds every public method's signature to the recorded real one.

What is faithful, because the backend must cope with it:
- Stepper commands (lift, arm, base wheels) are queued and only run at `Robot.push_command()`; Dynamixel
  commands (wrist yaw, gripper) run inside the call (robot.py:414-440, dynamixel_hello_XL430.py:765).
- `PrismaticJoint.move_by` does nothing, with only a log line, when the joint is not homed (`pos_calibrated`)
  or in a collision stop, and clips silently at `soft_motion_limits['current']` (prismatic_joint.py:347-382);
  the Dynamixel `move_by`/`move_to` return silently when run-stopped, log when not homed, clip at the soft
  limits and ignore increments of 2e-5 rad or less (dynamixel_hello_XL430.py:722-834).
- Stepper status: the raw `is_moving` bit flickers off mid-motion (it is a velocity threshold), while
  `is_mg_moving` (motion generator active, what `wait_while_is_moving` reads, stepper.py:495) and
  `is_moving_filtered` (majority of 10 sentry samples, stepper.py:290-294) hold through the motion.
- The run-stop trigger and reset are queued until `push_command` (pimu.py:323-335); a triggered run-stop stops
  every stepper (firmware) and Dynamixel (sentry, `was_runstopped`), and steppers ignore commands while it holds.
- `Robot.is_homed()` is derived from the joints (robot.py:538-547): lift and arm `pos_calibrated`, and the
  end-of-arm joints that require calibration.
- `Base.set_velocity(0, 0)` decelerates over `decel_s`; `Robot.startup()` replaces the SIGINT/SIGTERM handlers
  with one raising `ThreadServiceExit` (robot.py:321-322, hello_utils.py:291-301).
Motions take `motion_s` of wall time whatever their size (the fake has no dynamics beyond that).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time

log = logging.getLogger("stretch_body.fake")


class ThreadServiceExit(Exception):
    """What stretch_body's signal handler raises instead of KeyboardInterrupt."""


class FakeHardware:
    """The shared state behind one fake robot: timing, the run-stop, and a log of what reached the motors."""

    def __init__(self, motion_s: float = 0.1, decel_s: float = 0.05) -> None:
        self.motion_s, self.decel_s = motion_s, decel_s
        self.runstopped = False
        self.commands: list[tuple] = []  # what reached a motor (pushed steppers, Dynamixel goals)
        self.pushes = 0


class _Track:
    """One axis moving linearly from `start` to `goal` between `t0` and `t1` (wall time)."""

    def __init__(self, pos: float = 0.0) -> None:
        self.start = self.goal = pos
        self.t0 = self.t1 = 0.0

    def position(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if now >= self.t1:
            return self.goal
        return self.start + (self.goal - self.start) * (now - self.t0) / (self.t1 - self.t0)

    def go(self, goal: float, duration: float) -> None:
        now = time.monotonic()
        self.start, self.goal, self.t0, self.t1 = self.position(now), goal, now, now + duration

    def stop(self, tail_s: float = 0.0) -> None:
        """Stop where it is (after `tail_s` of deceleration, covering no further distance here)."""
        now = time.monotonic()
        here = self.position(now)
        self.start = self.goal = here
        self.t0, self.t1 = now, now + tail_s

    def moving(self) -> bool:
        return time.monotonic() < self.t1

    def flicker(self) -> bool:
        """The raw `is_moving` bit: off during the middle fifth of a motion, as a velocity threshold flickers."""
        now = time.monotonic()
        if now >= self.t1:
            return False
        frac = (now - self.t0) / (self.t1 - self.t0)
        return not 0.4 <= frac < 0.6


class Stepper:
    """A stepper's `status` as stretch_body decodes it (stepper.py:132-137), in motor units of its joint."""

    MIRRORS = ("stretch_body.stepper.StepperBase",)

    def __init__(self, usb, name=None):
        self.usb, self.name = usb, name
        self.track = _Track()  # replaced by the joint's own
        self.pos_calibrated = True
        self.hw: FakeHardware | None = None

    @property
    def status(self) -> dict:
        t = self.track
        return {
            "pos": t.position(),
            "is_moving": t.flicker(),
            "is_mg_moving": t.moving(),
            "is_moving_filtered": t.moving(),
            "near_pos_setpoint": not t.moving(),
            "pos_calibrated": self.pos_calibrated,
            "runstop_on": bool(self.hw and self.hw.runstopped),
            "in_guarded_event": False,
        }


def _stepper(usb: str, track: _Track) -> Stepper:
    motor = Stepper(usb)
    motor.track = track
    return motor


class _QueuedJoint:
    """A stepper joint's command queue: set at the call, applied by `Robot.push_command`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queued: float | None = None
        self.hw: FakeHardware | None = None

    def push(self, track: _Track) -> None:
        if self.queued is None:
            return
        goal, self.queued = self.queued, None
        if self.hw.runstopped:
            return  # the firmware holds the joint while run-stopped (gains enable_runstop)
        self.hw.commands.append((self.name, "goal", goal))
        track.go(goal, self.hw.motion_s)


class PrismaticJoint(_QueuedJoint):
    """Lift or arm (prismatic_joint.py): metres, soft limits, homing and collision stops."""

    MIRRORS = ("stretch_body.prismatic_joint.PrismaticJoint",)

    def __init__(self, name, usb=None):
        super().__init__(name)
        self.track = _Track(0.3)
        self.motor = _stepper(f"/dev/hello-motor-{name}", self.track)
        self.soft_motion_limits = {"collision": [None, None], "user": [None, None], "hard": [0.0, 1.1],
                                   "current": [0.0, 1.1]}  # fmt: skip
        self.in_collision_stop = {"pos": False, "neg": False}
        self._velocity_stop = False  # set_velocity(0) queued: stop at the next push

    @property
    def status(self) -> dict:
        return {"pos": self.track.position(), "vel": 0.0, "motor": self.motor.status}

    def get_soft_motion_limits(self):
        return self.soft_motion_limits["current"]

    def move_by(self, x_m, v_m=None, a_m=None, stiffness=None, contact_thresh_pos_N=None, contact_thresh_neg_N=None,
                req_calibration=True, contact_thresh_pos=None, contact_thresh_neg=None):  # fmt: skip
        pos = self.status["pos"]
        if req_calibration or self.motor.pos_calibrated:
            if not self.motor.pos_calibrated:
                log.warning("%s not calibrated", self.name.capitalize())
                return
            lo, hi = self.soft_motion_limits["current"]
            x_m = min(max(pos + x_m, lo), hi) - pos  # silently, as the SDK (a debug log only)
        for direction, blocked in (("pos", x_m > 0), ("neg", x_m < 0)):
            if self.in_collision_stop[direction] and blocked:
                log.warning("In collision. Motion disabled in direction %s for %s. Not executing move_by",
                            direction, self.name)  # fmt: skip
                return
        base = self.queued if self.queued is not None else self.track.goal
        self.queued = base + x_m

    def set_velocity(self, v_m, a_m=None, stiffness=None, contact_thresh_pos_N=None, contact_thresh_neg_N=None,
                     req_calibration=True, contact_thresh_pos=None, contact_thresh_neg=None):  # fmt: skip
        if not self.motor.pos_calibrated:
            log.warning("%s not calibrated", self.name.capitalize())
            return
        if v_m == 0:
            self.queued = None
            self._velocity_stop = True

    def push_command(self):
        if self._velocity_stop:
            self._velocity_stop = False
            self.hw.commands.append((self.name, "stop"))
            self.track.stop(self.hw.decel_s)
        self.push(self.track)


class Lift(PrismaticJoint):
    MIRRORS = ("stretch_body.lift.Lift", "stretch_body.prismatic_joint.PrismaticJoint")

    def __init__(self, usb=None):
        super().__init__("lift")


class Arm(PrismaticJoint):
    MIRRORS = ("stretch_body.arm.Arm", "stretch_body.prismatic_joint.PrismaticJoint")

    def __init__(self, usb=None):
        super().__init__("arm")
        self.track = _Track(0.1)
        self.motor = _stepper("/dev/hello-motor-arm", self.track)
        self.soft_motion_limits["hard"] = self.soft_motion_limits["current"] = [0.0, 0.52]


class Base(_QueuedJoint):
    """The differential base (base.py): `translate_by`/`rotate_by` queue both wheels; no checks in Python."""

    MIRRORS = ("stretch_body.base.Base",)

    def __init__(self, usb_left=None, usb_right=None):
        super().__init__("base")
        self.x, self.theta = _Track(), _Track()
        self.left_wheel = _stepper("/dev/hello-motor-left-wheel", self.x)
        self.right_wheel = _stepper("/dev/hello-motor-right-wheel", self.theta)
        self._velocity_stop = False

    @property
    def status(self) -> dict:
        return {"x": self.x.position(), "y": 0.0, "theta": self.theta.position(),
                "left_wheel": self.left_wheel.status, "right_wheel": self.right_wheel.status}  # fmt: skip

    def translate_by(self, x_m, v_m=None, a_m=None, stiffness=None, contact_thresh_N=None, contact_thresh=None):
        self.queued = ("x", x_m)

    def rotate_by(self, x_r, v_r=None, a_r=None, stiffness=None, contact_thresh_N=None, contact_thresh=None):
        self.queued = ("theta", x_r)

    def set_velocity(self, v_m, w_r, a=None, stiffness=None, contact_thresh_N=None, contact_thresh=None):
        self.queued = None
        self._velocity_stop = v_m == 0 and w_r == 0

    def push_command(self):
        if self._velocity_stop:
            self._velocity_stop = False
            self.hw.commands.append(("base", "stop"))
            for track in (self.x, self.theta):
                track.stop(self.hw.decel_s)  # VEL_PID ramps down: the wheels still turn for a moment
        if self.queued is None:
            return
        (axis, delta), self.queued = self.queued, None
        if self.hw.runstopped:
            return
        self.hw.commands.append(("base", axis, delta))
        track = self.x if axis == "x" else self.theta
        track.go(track.goal + delta, self.hw.motion_s)
        (self.theta if axis == "x" else self.x).stop()


class DynamixelXL430:
    """The servo itself (dynamixel_XL430.py): live register reads."""

    MIRRORS = ("stretch_body.dynamixel_XL430.DynamixelXL430",)

    def __init__(self, dxl_id, usb, port_handler=None, pt_lock=None, baud=115200, logger=logging.getLogger()):  # noqa: B008
        self.dxl_id, self.usb = dxl_id, usb
        self.track = _Track()  # replaced by the joint's own

    def is_moving(self):
        return self.track.moving()

    def get_moving_status(self):
        return 2 if self.track.moving() else 0  # bit 1: profile in progress

    def get_pos(self):
        return self.track.position()


class DynamixelHelloXL430:
    """An end-of-arm servo (dynamixel_hello_XL430.py), radians; commands run at once."""

    MIRRORS = ("stretch_body.dynamixel_hello_XL430.DynamixelHelloXL430",)

    def __init__(self, name, chain=None, usb=None):
        self.name = name
        self.track = _Track(0.0)
        self.motor = DynamixelXL430(13, "/dev/hello-dynamixel-wrist")
        self.motor.track = self.track
        self.params = {"req_calibration": 1}
        self.is_calibrated = 1
        self.was_runstopped = False
        self.in_collision_stop = {"pos": False, "neg": False}
        self.soft_motion_limits = {
            "collision": [None, None],
            "user": [None, None],
            "hard": [-1.38, 4.58],
            "current": [-1.38, 4.58],
        }  # fmt: skip RE1 wrist: about -79 .. +263 deg
        self.hw: FakeHardware | None = None

    @property
    def status(self) -> dict:
        return {"pos": self.track.position(), "vel": 0.0, "stalled": False}

    def get_soft_motion_limits(self):
        return self.soft_motion_limits["current"]

    def move_to(self, x_des, v_des=None, a_des=None):
        if self.was_runstopped:
            return  # silently, as the SDK (dynamixel_hello_XL430.py:726-727)
        if self.params["req_calibration"] and not self.is_calibrated:
            log.warning("Dynamixel not calibrated: %s", self.name)
            return
        for direction, blocked in (("pos", x_des > self.track.position()), ("neg", x_des < self.track.position())):
            if self.in_collision_stop[direction] and blocked:
                log.warning("move_to in collision. Motion disabled in direction %s for %s. Not executing move_to",
                            direction, self.name)  # fmt: skip
                return
        lo, hi = self.soft_motion_limits["current"]
        goal = min(max(x_des, lo), hi)
        self.hw.commands.append((self.name, "goal", goal))
        self.track.go(goal, self.hw.motion_s)

    def move_by(self, x_des, v_des=None, a_des=None):
        if self.was_runstopped or abs(x_des) <= 0.00002:
            return
        self.move_to(self.motor.get_pos() + x_des, v_des, a_des)

    def quick_stop(self):
        self.hw.commands.append((self.name, "quick_stop"))
        self.track.stop()


class StretchGripper(DynamixelHelloXL430):
    """The gripper (stretch_gripper.py): positions in 'pct', -100 closed .. pct_max_open."""

    MIRRORS = ("stretch_body.stretch_gripper.StretchGripper", "stretch_body.dynamixel_hello_XL430.DynamixelHelloXL430")
    PCT_PER_RAD = 100 / math.pi  # the fake's stand-in for pct_to_world_rad

    def __init__(self, chain=None, usb=None, name="stretch_gripper"):
        super().__init__(name)
        self.soft_motion_limits["hard"] = self.soft_motion_limits["current"] = [-100 / self.PCT_PER_RAD,
                                                                               200 / self.PCT_PER_RAD]  # fmt: skip

    def move_to(self, pct, v_r=None, a_r=None):
        DynamixelHelloXL430.move_to(self, x_des=pct / self.PCT_PER_RAD, v_des=v_r, a_des=a_r)


class EndOfArm:
    """The end-of-arm chain (end_of_arm.py): joints by name, commands passed to the servo at once."""

    MIRRORS = ("stretch_body.end_of_arm.EndOfArm", "stretch_body.dynamixel_X_chain.DynamixelXChain")

    def __init__(self, name="end_of_arm", usb=None):
        self.name = name
        self.motors = {"wrist_yaw": DynamixelHelloXL430("wrist_yaw"), "stretch_gripper": StretchGripper()}

    def get_joint(self, joint_name):
        return self.motors.get(joint_name)

    def move_to(self, joint, x_r, v_r=None, a_r=None):
        self.motors[joint].move_to(x_r, v_r, a_r)

    def move_by(self, joint, x_r, v_r=None, a_r=None):
        self.motors[joint].move_by(x_r, v_r, a_r)


class Pimu:
    """The power/IMU board (pimu.py): the run-stop, queued until `push_command`."""

    MIRRORS = ("stretch_body.pimu.Pimu", "stretch_body.pimu.PimuBase")

    def __init__(self, event_reset=False, usb=None):
        self.status = {"runstop_event": False}
        self._trigger: str | None = "reset" if event_reset else None

    def runstop_event_trigger(self):
        self._trigger = "on"

    def runstop_event_reset(self):
        self._trigger = "reset"


class Robot:
    """The whole robot (robot.py). `robot.fake` is the fake's own handle (timing, what reached the motors)."""

    MIRRORS = ("stretch_body.robot.Robot",)

    def __init__(self):
        self.fake = FakeHardware()
        self.pimu, self.base, self.lift, self.arm = Pimu(), Base(), Lift(), Arm()
        self.end_of_arm = EndOfArm()
        for part in (self.base, self.lift, self.arm, self.lift.motor, self.arm.motor, *self.end_of_arm.motors.values()):
            part.hw = self.fake
        self.lock = threading.RLock()
        self.stopped = False

    def startup(self, start_non_dxl_thread=True, start_dxl_thread=True, start_sys_mon_thread=True):
        def thread_service_shutdown(signum, frame):
            print(f"Caught signal {signum}")
            raise ThreadServiceExit

        signal.signal(signal.SIGTERM, thread_service_shutdown)
        signal.signal(signal.SIGINT, thread_service_shutdown)
        return True

    def stop(self):
        self.stopped = True

    def is_homed(self):
        eoa = all(not (m.params["req_calibration"] and not m.is_calibrated) for m in self.end_of_arm.motors.values())
        return bool(self.lift.motor.pos_calibrated and self.arm.motor.pos_calibrated and eoa)

    def push_command(self):
        with self.lock:
            self.fake.pushes += 1
            self.base.push_command()
            self.arm.push_command()
            self.lift.push_command()
            self._push_runstop()

    def _push_runstop(self) -> None:
        trigger, self.pimu._trigger = self.pimu._trigger, None
        if trigger == "on":
            self.fake.runstopped = self.pimu.status["runstop_event"] = True
            self.fake.commands.append(("pimu", "runstop"))
            for track in (self.base.x, self.base.theta, self.lift.track, self.arm.track):
                track.stop()
            for motor in self.end_of_arm.motors.values():  # the sentry: stop_trajectory, disable torque
                motor.track.stop()
                motor.was_runstopped = True
        elif trigger == "reset":
            self.fake.runstopped = self.pimu.status["runstop_event"] = False
            self.fake.commands.append(("pimu", "runstop_reset"))
            for motor in self.end_of_arm.motors.values():
                motor.was_runstopped = False


def press_runstop_button(robot: Robot) -> None:
    """The fake's stand-in for the physical button: run-stops at once, as the PIMU reports on its next status."""
    robot.pimu._trigger = "on"
    robot._push_runstop()
