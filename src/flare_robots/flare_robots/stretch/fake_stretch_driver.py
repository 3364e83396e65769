"""A fake of stretch_ros2's `stretch_driver` node for tests: its topics, services and modes, no robot.

Mirrors stretch_core/stretch_core/stretch_driver.py at hello-robot/stretch_ros2 humble b77baa1 (stretch_core
0.2.0): starts in `position` mode; publishes `mode` (String), `is_runstopped` (Bool) and `odom`
(nav_msgs/Odometry) at its timer rate with depth-1 QoS; `/switch_to_navigation_mode` (std_srvs/Trigger);
`/runstop` (std_srvs/SetBool: true saves the mode and switches to `runstopped`, false restores it); twists on
`cmd_vel` (the launch file remaps it to `/stretch/cmd_vel`) are dropped with an error log unless in navigation
mode, and a twist older than 0.5 s is replaced by zero velocity. The base reaches a commanded velocity at once
and decays to rest over `decel_s` after a zero (odometry shows that tail).
"""

from __future__ import annotations

import time

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger


class FakeStretchDriver(Node):
    def __init__(self, cmd_vel_topic: str = "/stretch/cmd_vel", rate_hz: float = 30.0, decel_s: float = 0.1,
                 **kwargs) -> None:  # fmt: skip
        super().__init__("stretch_driver", **kwargs)
        self.mode, self.prerunstop_mode = "position", "position"
        self.decel_s, self.timeout_s = decel_s, 0.5
        self.twist = (0.0, 0.0)
        self.last_twist_time = 0.0
        self.speed = (0.0, 0.0)  # what the base does
        self.received: list[tuple[float, float]] = []  # twists taken in navigation mode
        self.dropped = 0
        self.mode_pub = self.create_publisher(String, "mode", 1)
        self.runstop_pub = self.create_publisher(Bool, "is_runstopped", 1)
        self.odom_pub = self.create_publisher(Odometry, "odom", 1)
        self.create_subscription(Twist, cmd_vel_topic, self.on_twist, 1)
        self.create_service(Trigger, "/switch_to_navigation_mode", self.on_navigation)
        self.create_service(SetBool, "/runstop", self.on_runstop)
        self.create_timer(1.0 / rate_hz, self.step)

    def on_twist(self, msg: Twist) -> None:
        if self.mode != "navigation":
            self.dropped += 1
            self.get_logger().error("stretch_driver action server must be in navigation mode to receive a twist on "
                                    f"cmd_vel. Current mode = {self.mode}.")  # fmt: skip
            return
        self.twist, self.last_twist_time = (msg.linear.x, msg.angular.z), time.monotonic()
        self.received.append(self.twist)

    def on_navigation(self, request, response):
        self.mode, self.twist = "navigation", (0.0, 0.0)
        response.success, response.message = True, "Now in navigation mode."
        return response

    def on_runstop(self, request, response):
        if request.data and self.mode != "runstopped":
            self.prerunstop_mode, self.mode = self.mode, "runstopped"
        elif not request.data and self.mode == "runstopped":
            self.mode = self.prerunstop_mode
        response.success, response.message = True, f"is_runstopped: {request.data}"
        return response

    def step(self) -> None:
        fresh = time.monotonic() - self.last_twist_time < self.timeout_s
        wanted = self.twist if self.mode == "navigation" and fresh else (0.0, 0.0)
        if wanted != (0.0, 0.0):
            self.speed = wanted
        else:  # decelerate over decel_s
            fade = max(0.0, 1.0 - (1.0 / 30.0) / self.decel_s)
            self.speed = tuple(0.0 if abs(v) < 1e-3 else v * fade for v in self.speed)
        odom = Odometry()
        odom.header.frame_id, odom.child_frame_id = "odom", "base_link"
        odom.twist.twist.linear.x, odom.twist.twist.angular.z = self.speed
        self.odom_pub.publish(odom)
        self.mode_pub.publish(String(data=self.mode))
        self.runstop_pub.publish(Bool(data=self.mode == "runstopped"))
