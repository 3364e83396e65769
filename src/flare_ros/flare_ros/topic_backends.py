"""Backends that drive a robot through an existing driver's ROS topics rather than an SDK.

`CmdVelBackend` turns base actions into timed `geometry_msgs/Twist` commands on a velocity topic: the
stretch_ros2 driver's `/stretch/cmd_vel` (the driver must be in navigation mode) or the LoCoBot's
`/locobot/mobile_base/cmd_vel`. Only base motions and the episode actions go this way, so its embodiment is
the robot's navigation subset (stretch_nav; locobot without camera tilt, which needs the interbotix backend).
For the Stretch's arm, lift, wrist and gripper use the stretch_body backend.
"""

from __future__ import annotations

from geometry_msgs.msg import Twist
from rclpy.node import Node

from flare_core.actions import Action, Joint
from flare_core.bridge import BackendInfo, Progress, RobotBackend
from flare_core.embodiments import LOCOBOT, STRETCH_NAV, Embodiment, Motion
from flare_robots.velocity import VelocityLimits, VelocityPlan, plan_base_motion
from flare_ros.common import COMMAND_QOS


def _navigation_only(embodiment: Embodiment) -> Embodiment:
    motions = {n: m for n, m in embodiment.motions.items() if m.joint != Joint.CAMERA_TILT}
    return Embodiment(f"{embodiment.name}_cmd_vel", f"{embodiment.description} Base through cmd_vel only.", motions)


class CmdVelBackend(RobotBackend):
    def __init__(self, node: Node, robot: str, topic: str, linear_m_s: float, angular_rad_s: float) -> None:
        self.publisher = node.create_publisher(Twist, topic, COMMAND_QOS)
        self.embodiment = STRETCH_NAV if robot == "stretch" else _navigation_only(LOCOBOT)
        self.info = BackendInfo(robot, "cmd_vel", [f"velocity commands on {topic}"])
        self.limits = VelocityLimits(linear_m_s, angular_rad_s)
        self.pending: tuple[float, VelocityPlan | None] | None = None

    def _send(self, linear: float, angular: float) -> None:
        twist = Twist()
        twist.linear.x, twist.angular.z = float(linear), float(angular)
        self.publisher.publish(twist)

    def start(self, action: Action, motion: Motion, now: float) -> None:
        plan = plan_base_motion(motion, self.limits) if motion.joint != Joint.EPISODE else None
        if plan is not None:
            self._send(plan.linear, plan.angular)
        self.pending = (now, plan)

    def poll(self, now: float) -> Progress:
        if self.pending is None:
            return Progress(error="no motion in progress")
        started, plan = self.pending
        if plan is not None:
            self._send(*plan.command_at(now - started))  # re-sent each period: drivers time out silent topics
            if now - started < plan.duration_s:
                return Progress()
        self.pending = None
        return Progress(done=True)

    def halt(self) -> None:
        self.pending = None
        self._send(0.0, 0.0)
