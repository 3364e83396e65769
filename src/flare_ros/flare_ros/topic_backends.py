"""Backends that drive a robot through an existing driver's ROS topics rather than an SDK.

`CmdVelBackend` turns base actions into timed `geometry_msgs/Twist` commands on a velocity topic (the
LoCoBot's `/locobot/mobile_base/cmd_vel`), and calls a motion DONE once `nav_msgs/Odometry` on `odom_topic`
shows the base at rest (or, with no odometry received, after a settle time: `flare_robots.velocity`).
Only base motions and the episode actions go this way, so its embodiment is the robot's navigation subset.

`StretchDriverBackend` is the same for stretch_ros2's `stretch_driver` (stretch_core, humble b77baa1):
twists on `/stretch/cmd_vel`, which the driver drops unless it is in navigation mode (it starts in position
mode), so the backend asks for `/switch_to_navigation_mode` (std_srvs/Trigger), follows `/mode` and
`/is_runstopped`, and refuses actions until the driver says `navigation`. Its e-stop is a zero twist and the
driver's `/runstop` service (std_srvs/SetBool true); releasing the e-stop calls it with false.
For the Stretch's arm, lift, wrist and gripper use the stretch_body backend.
"""

from __future__ import annotations

import time

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from flare_core.actions import Action, Joint
from flare_core.bridge import BackendInfo, Progress, RobotBackend
from flare_core.embodiments import LOCOBOT, STRETCH_NAV, Embodiment, Motion
from flare_robots.velocity import VelocityLimits, VelocityMotion, plan_base_motion
from flare_ros.common import COMMAND_QOS

DRIVER_QOS = QoSProfile(depth=1)  # stretch_driver's publishers (reliable, volatile, depth 1)
STOP_ACK_S = 1.0  # how long a stop command waits for the base's subscriber to acknowledge it


def _navigation_only(embodiment: Embodiment) -> Embodiment:
    motions = {n: m for n, m in embodiment.motions.items() if m.joint != Joint.CAMERA_TILT}
    return Embodiment(f"{embodiment.name}_cmd_vel", f"{embodiment.description} Base through cmd_vel only.", motions)


class CmdVelBackend(RobotBackend):
    def __init__(self, node: Node, robot: str, topic: str, limits: VelocityLimits, odom_topic: str = "") -> None:
        self.node = node
        self.publisher = node.create_publisher(Twist, topic, COMMAND_QOS)
        self.embodiment = STRETCH_NAV if robot == "stretch" else _navigation_only(LOCOBOT)
        odometry = f"odometry {odom_topic}" if odom_topic else "no odometry"
        self.info = BackendInfo(robot, "cmd_vel", [f"velocity commands on {topic}", odometry])
        self.limits = limits
        self.speeds: tuple[float, float] | None = None  # from odometry, once it arrives
        if odom_topic:
            node.create_subscription(Odometry, odom_topic, self._on_odom, DRIVER_QOS)
        self.motion: VelocityMotion | None = None
        self.episode_action = False

    def _on_odom(self, msg: Odometry) -> None:
        self.speeds = (msg.twist.twist.linear.x, msg.twist.twist.angular.z)

    def _send(self, linear: float, angular: float) -> None:
        twist = Twist()
        twist.linear.x, twist.angular.z = float(linear), float(angular)
        self.publisher.publish(twist)

    def start(self, action: Action, motion: Motion, now: float) -> None:
        self.motion, self.episode_action = None, motion.joint == Joint.EPISODE
        if not self.episode_action:
            self.motion = VelocityMotion(plan_base_motion(motion, self.limits), self.limits, now, lambda: self.speeds)
            self._send(*self.motion.command(now))

    def poll(self, now: float) -> Progress:
        if self.episode_action:
            self.episode_action = False
            return Progress(done=True)
        if self.motion is None:
            return Progress(error="no motion in progress")
        self._send(*self.motion.command(now))  # re-sent each period: drivers time out silent topics
        if not self.motion.stopped(now):
            return Progress()
        self.motion = None
        return Progress(done=True)

    def halt(self) -> None:
        self.motion, self.episode_action = None, False
        self._send(0.0, 0.0)

    def close(self) -> None:
        """The last stop: sent, then held until the base's subscribers have it (the process is about to end)."""
        self.halt()
        self.publisher.wait_for_all_acked(Duration(seconds=STOP_ACK_S))


class StretchDriverBackend(CmdVelBackend):
    def __init__(self, node: Node, topic: str, limits: VelocityLimits, odom_topic: str = "/odom") -> None:
        super().__init__(node, "stretch", topic, limits, odom_topic)
        self.info = BackendInfo("stretch_re1", "stretch_driver", [f"twists on {topic} in navigation mode",
                                                                  f"odometry {odom_topic}"])  # fmt: skip
        self.mode = ""  # the driver's /mode; "" until heard
        self.runstopped = False
        self.switch = node.create_client(Trigger, "/switch_to_navigation_mode")
        self.runstop = node.create_client(SetBool, "/runstop")
        self.switch_requested_at = -1e9
        node.create_subscription(String, "/mode", self._on_mode, DRIVER_QOS)
        node.create_subscription(Bool, "/is_runstopped", self._on_runstopped, DRIVER_QOS)
        self._request_navigation_mode()

    def _on_mode(self, msg: String) -> None:
        if msg.data != self.mode:
            self.node.get_logger().info(f"stretch_driver mode: {msg.data}")
        self.mode = msg.data

    def _on_runstopped(self, msg: Bool) -> None:
        self.runstopped = bool(msg.data)

    def _request_navigation_mode(self) -> None:
        """Ask for navigation mode (at most once a second); the answer shows on /mode."""
        if time.monotonic() - self.switch_requested_at < 1.0 or not self.switch.service_is_ready():
            return
        self.switch_requested_at = time.monotonic()
        self.switch.call_async(Trigger.Request())

    def not_ready(self) -> str:
        if not self.mode:
            return "no message on /mode yet: is stretch_driver up? (ros2 launch stretch_core stretch_driver.launch.py)"
        if self.runstopped or self.mode == "runstopped":
            return "stretch_driver reports the robot run-stopped: release it (button, or publish false on flare/estop)"
        if self.mode != "navigation":
            self._request_navigation_mode()
            return (
                f"stretch_driver is in {self.mode!r} mode; switching to navigation mode (twists are dropped until then)"
            )
        return ""

    def poll(self, now: float) -> Progress:
        if self.motion is not None and (self.runstopped or self.mode not in ("navigation", "")):
            self.motion = None
            return Progress(error=f"stretch_driver left navigation mode during the motion (mode {self.mode!r})")
        return super().poll(now)

    def emergency_stop(self) -> None:
        self.halt()
        if self.runstop.service_is_ready():
            self.runstop.call_async(SetBool.Request(data=True))
        else:
            self.node.get_logger().error("stretch_driver's /runstop service is not up: only a zero twist was sent")

    def release_estop(self) -> None:
        if self.runstop.service_is_ready():
            self.runstop.call_async(SetBool.Request(data=False))
