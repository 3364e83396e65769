"""A fake of the ROS 2 Interbotix LoCoBot SDK (`interbotix_xs_modules.xs_robot`) for tests: no hardware.

Mirrors Interbotix/interbotix_ros_toolboxes after PR #82 (f256c9d64f130b494fc80128c2ba67624e157b97, the API
this project writes against), files under `interbotix_xs_toolbox/interbotix_xs_modules/interbotix_xs_modules/
xs_robot/`: locobot.py (InterbotixLocobotXS, BaseType), turret.py (InterbotixTurretXSInterface), mobile_base.py,
create3.py and kobuki.py (the bases), core.py (InterbotixRobotXSCore); and interbotix_common_modules'
common_robot/robot.py (robot_startup, robot_shutdown). Turret, base and core signatures are unchanged from
the jazzy branch (4c72047), from which `tests/sdk/signatures.json` records them.

What is faithful, because the backend must cope with it:
- `.base` exists only with `use_base=True` (locobot.py); the base type picks Create 3 (default) or Kobuki.
- The base takes a `Twist` (`command_velocity(twist)`) or two floats (`command_velocity_xyaw(x, yaw)`); the
  ROS 1 two-float `command_velocity(x, yaw)` fails, as a float is no Twist. The base decelerates over `decel_s`
  after a zero command; odometry reports it (`get_linear_velocity`, `get_angular_velocity`).
- `tilt(position, ..., blocking=True)` sleeps the profile time (2.0 s by default, turret.py:357-359) and the servo
  takes that long to get there; `blocking=False` returns at once. A goal outside the joint limits (URDF: tilt
  -pi/2 .. 75 deg, positive pitches the camera down) is logged and ignored, not raised (turret.py:362-365).
- Joint positions come from the core's joint states; the turret starts where the servo is.
- `robot_shutdown()` calls `rclpy.shutdown()` on the global context, as the real one does.
"""

from __future__ import annotations

import logging
import math
import time
from enum import Enum

from geometry_msgs.msg import Twist, Vector3
from rclpy.logging import LoggingSeverity

log = logging.getLogger("interbotix.fake")

TILT_LIMITS = (-math.pi / 2, math.radians(75))  # interbotix_xslocobot_descriptions pan_and_tilt.urdf.xacro:65-71
PAN_LIMITS = (-math.pi / 2, math.pi / 2)


class BaseType(Enum):
    KOBUKI = 0
    CREATE3 = 1


class _Servo:
    """A Dynamixel in 'time' profile mode: reaches its goal `profile_s` after the command."""

    def __init__(self, position: float) -> None:
        self.start = self.goal = position
        self.t0 = self.t1 = 0.0

    def position(self) -> float:
        now = time.monotonic()
        if now >= self.t1:
            return self.goal
        return self.start + (self.goal - self.start) * (now - self.t0) / (self.t1 - self.t0)

    def velocity(self) -> float:
        now = time.monotonic()
        return 0.0 if now >= self.t1 else (self.goal - self.start) / (self.t1 - self.t0)

    def go(self, goal: float, profile_s: float) -> None:
        now = time.monotonic()
        self.start, self.goal, self.t0, self.t1 = self.position(), goal, now, now + profile_s


class InterbotixRobotXSCore:
    """The core (core.py): joint states of the Dynamixels (pan, tilt)."""

    MIRRORS = ("interbotix_xs_modules.xs_robot.core.InterbotixRobotXSCore",)

    def __init__(self, robot_model, robot_name=None, topic_joint_states="joint_states",
                 logging_level=LoggingSeverity.INFO, node_name="interbotix_robot_manipulation", node=None,
                 args=None):  # fmt: skip
        self.robot_model, self.robot_name = robot_model, robot_name
        self.servos = {"pan": _Servo(0.0), "tilt": _Servo(0.2)}  # the camera rests pitched a little down
        self.robot_node = node if node is not None else object()
        self.writes: list[tuple] = []

    def get_node(self):
        return self.robot_node

    def robot_write_joint_command(self, joint_name, command):
        self.writes.append((joint_name, command))

    def robot_get_single_joint_state(self, name):
        servo = self.servos[name]
        return {"position": servo.position(), "velocity": servo.velocity(), "effort": 0.0}


class InterbotixTurretXSInterface:
    """The pan/tilt turret (turret.py), 'time' profiles: 2.0 s moves, blocking by default."""

    MIRRORS = ("interbotix_xs_modules.xs_robot.turret.InterbotixTurretXSInterface",)

    def __init__(self, core, turret_name="turret", pan_profile_type="time", pan_profile_velocity=2.0,
                 pan_profile_acceleration=0.3, tilt_profile_type="time", tilt_profile_velocity=2.0,
                 tilt_profile_acceleration=0.3):  # fmt: skip
        self.core, self.turret_name = core, turret_name
        self.pan_name, self.tilt_name = "pan", "tilt"
        self.info = {
            name: {"command": core.robot_get_single_joint_state(name)["position"], "profile_type": kind,
                   "profile_velocity": velocity, "profile_acceleration": acceleration,
                   "lower_limit": limits[0], "upper_limit": limits[1]}
            for name, kind, velocity, acceleration, limits in (
                ("pan", pan_profile_type, pan_profile_velocity, pan_profile_acceleration, PAN_LIMITS),
                ("tilt", tilt_profile_type, tilt_profile_velocity, tilt_profile_acceleration, TILT_LIMITS))
        }  # fmt: skip

    def move(self, joint_name, position, profile_velocity=None, profile_acceleration=None, blocking=True, delay=0):
        info = self.info[joint_name]
        if not info["lower_limit"] <= position <= info["upper_limit"]:
            log.error("Goal position is outside the '%s' joint's limits. Will not execute.", joint_name)
            return
        if profile_velocity is not None:
            info["profile_velocity"] = profile_velocity
        self.core.robot_write_joint_command(joint_name, position)
        self.core.servos[joint_name].go(position, info["profile_velocity"])
        info["command"] = position
        if blocking and info["profile_type"] == "time":
            time.sleep(info["profile_velocity"])
        else:
            time.sleep(delay)

    def pan(self, position, profile_velocity=None, profile_acceleration=None, blocking=True, delay=0):
        self.move(self.pan_name, position, profile_velocity, profile_acceleration, blocking, delay)

    def tilt(self, position, profile_velocity=None, profile_acceleration=None, blocking=True, delay=0):
        self.move(self.tilt_name, position, profile_velocity, profile_acceleration, blocking, delay)

    def get_command(self, joint_name):
        return self.info[joint_name]["command"]

    def get_joint_commands(self):
        return [self.info[self.pan_name]["command"], self.info[self.tilt_name]["command"]]


class InterbotixMobileBaseInterface:
    """A velocity base (mobile_base.py): Twist commands; odometry velocities lag by the deceleration."""

    MIRRORS = ("interbotix_xs_modules.xs_robot.mobile_base.InterbotixMobileBaseInterface",)

    def __init__(self, core, robot_name, topic_base_joint_states, topic_cmd_vel="cmd_vel", nav_timeout_sec=300.0,
                 use_nav=False):  # fmt: skip
        self.core, self.robot_name, self.topic_cmd_vel = core, robot_name, topic_cmd_vel
        self.twists: list[tuple[float, float]] = []  # (linear.x, angular.z) as published
        self.decel_s = 0.1
        self._last = (0.0, 0.0)
        self._zeroed_at = 0.0

    def command_velocity(self, twist=Twist()):  # noqa: B008 (the SDK's own default)
        if not isinstance(twist, Twist):
            raise TypeError(f"command_velocity takes a geometry_msgs Twist, got {type(twist).__name__}")
        self._publish(twist.linear.x, twist.angular.z)

    def command_velocity_xyaw(self, x=0.0, yaw=0.0):
        self._publish(float(x), float(yaw))

    def stop(self):
        self._publish(0.0, 0.0)

    def _publish(self, linear: float, angular: float) -> None:
        if (linear, angular) == (0.0, 0.0) and self._last != (0.0, 0.0):
            self._zeroed_at = time.monotonic()
        self._last = (linear, angular)
        self.twists.append((linear, angular))

    def _odom_speed(self) -> tuple[float, float]:
        if self._last != (0.0, 0.0):
            return self._last
        previous = next((t for t in reversed(self.twists) if t != (0.0, 0.0)), (0.0, 0.0))
        left = max(0.0, 1.0 - (time.monotonic() - self._zeroed_at) / self.decel_s)
        return previous[0] * left, previous[1] * left

    def get_linear_velocity(self):
        return Vector3(x=self._odom_speed()[0])

    def get_angular_velocity(self):
        return Vector3(z=self._odom_speed()[1])

    def get_odom_xytheta(self):
        return [0.0, 0.0, 0.0]


class InterbotixCreate3Interface(InterbotixMobileBaseInterface):
    MIRRORS = ("interbotix_xs_modules.xs_robot.create3.InterbotixCreate3Interface",
               "interbotix_xs_modules.xs_robot.mobile_base.InterbotixMobileBaseInterface")  # fmt: skip

    def __init__(self, core, robot_name, topic_base_joint_states="mobile_base/joint_states",
                 topic_cmd_vel="mobile_base/cmd_vel", nav_timeout_sec=300.0, use_nav=False):  # fmt: skip
        super().__init__(core, robot_name, topic_base_joint_states, topic_cmd_vel, nav_timeout_sec, use_nav)


class InterbotixKobukiInterface(InterbotixMobileBaseInterface):
    MIRRORS = ("interbotix_xs_modules.xs_robot.kobuki.InterbotixKobukiInterface",
               "interbotix_xs_modules.xs_robot.mobile_base.InterbotixMobileBaseInterface")  # fmt: skip

    def __init__(self, core, robot_name, topic_base_joint_states="mobile_base/joint_states",
                 topic_cmd_vel="mobile_base/commands/velocity", nav_timeout_sec=300.0, use_nav=False):  # fmt: skip
        super().__init__(core, robot_name, topic_base_joint_states, topic_cmd_vel, nav_timeout_sec, use_nav)


class InterbotixLocobotXS:
    """The LoCoBot (locobot.py after PR #82): core and camera always, base only with `use_base`."""

    MIRRORS = ("interbotix_xs_modules.xs_robot.locobot.InterbotixLocobotXS@f256c9d",)

    def __init__(self, robot_model, arm_model=None, use_base=False, use_perception=False, use_armtag=False,
                 base_type=BaseType.CREATE3, arm_group_name="arm", gripper_name="gripper",
                 turret_group_name="camera", robot_name="locobot", topic_dxl_joint_states="dynamixel/joint_states",
                 topic_base_joint_states="mobile_base/joint_states", use_nav=False, logging_level=LoggingSeverity.INFO,
                 node_name="robot_manipulation", node=None, args=None):  # fmt: skip
        self.core = InterbotixRobotXSCore(robot_model, robot_name, topic_dxl_joint_states, logging_level, node_name,
                                          node, args)  # fmt: skip
        self.camera = InterbotixTurretXSInterface(core=self.core, turret_name=turret_group_name)
        if use_base:
            kind = InterbotixKobukiInterface if base_type == BaseType.KOBUKI else InterbotixCreate3Interface
            self.base = kind(core=self.core, robot_name=robot_name, topic_base_joint_states=topic_base_joint_states,
                             use_nav=use_nav)  # fmt: skip

    def get_node(self):
        return self.core.robot_node


_started: list = []


def robot_startup(node=None, node_name="interbotix_robot_manipulation", namespace=None):
    """common_robot/robot.py: spins the SDK's node on a daemon thread (here: records the call)."""
    _started.append(node)


def robot_shutdown(node=None):
    """common_robot/robot.py: destroys the node and shuts down the global rclpy context."""
    import rclpy

    if rclpy.ok():
        rclpy.shutdown()
