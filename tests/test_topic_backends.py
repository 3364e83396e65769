"""Velocity backends over real rclpy: the LoCoBot's cmd_vel, and the Stretch through a fake of stretch_ros2's
stretch_driver (position mode at start, twists dropped outside navigation mode, /runstop, odometry); a motion is
DONE only once the base is at rest; the stop on shutdown reaches the base whatever signal ends the node."""

import os
import signal
import subprocess
import sys
import time

import rclpy
from geometry_msgs.msg import Twist
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from flare_core import protocol
from flare_core.bridge import ActionBridge
from flare_core.protocol import ActionCommand, Result
from flare_robots.stretch.fake_stretch_driver import FakeStretchDriver
from flare_robots.velocity import VelocityLimits
from flare_ros.common import COMMAND_QOS
from flare_ros.topic_backends import CmdVelBackend, StretchDriverBackend


class Ros:
    """A private context, one executor, and the nodes made in it."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = []

    def node(self, name: str):
        node = rclpy.create_node(name, context=self.context)
        self.add(node)
        return node

    def add(self, node) -> None:
        self.executor.add_node(node)
        self.nodes.append(node)

    def spin(self, seconds: float, until=lambda: False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            self.executor.spin_once(timeout_sec=0.01)

    def run(self, bridge: ActionBridge, command: ActionCommand, timeout: float = 5.0):
        done = bridge.submit(command, time.monotonic())
        deadline = time.monotonic() + timeout
        while done is None and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.01)
            done = bridge.tick(time.monotonic())
        return done

    def close(self) -> None:
        self.executor.shutdown()
        for node in self.nodes:
            node.destroy_node()
        rclpy.shutdown(context=self.context)


def test_cmd_vel_backend_sends_timed_twists_and_waits_to_settle():
    ros = Ros()
    try:
        node = ros.node("cmd_vel_test")
        received: list[tuple[float, float]] = []
        node.create_subscription(Twist, "test/cmd_vel", lambda m: received.append((m.linear.x, m.angular.z)),
                                 COMMAND_QOS)  # fmt: skip
        backend = CmdVelBackend(node, "locobot", "test/cmd_vel", VelocityLimits(1.0, 2.0, settle_s=0.3))
        assert "yp" not in backend.embodiment.valid_names  # no camera tilt through cmd_vel
        bridge = ActionBridge(backend, now=time.monotonic())
        assert bridge.submit(ActionCommand("yp"), time.monotonic()).result == Result.REFUSED
        started = time.monotonic()
        done = ros.run(bridge, ActionCommand("l"))  # 30 deg at 2 rad/s: 0.26 s, then 0.3 s to settle
        assert done is not None and done.result == Result.DONE
        assert time.monotonic() - started >= 0.26 + 0.3
        ros.spin(0.3)
        assert received[0] == (0.0, 2.0) and received[-1] == (0.0, 0.0)  # left = + yaw (REP 103)
        assert all(v in ((0.0, 2.0), (0.0, 0.0)) for v in received)
    finally:
        ros.close()


def test_stretch_driver_backend_switches_to_navigation_and_uses_the_runstop_service():
    ros = Ros()
    try:
        node = ros.node("stretch_bridge_test")
        backend = StretchDriverBackend(node, "/stretch/cmd_vel", VelocityLimits(1.0, 2.0))
        bridge = ActionBridge(backend, now=time.monotonic())
        assert "no message on /mode" in bridge.submit(ActionCommand("m"), time.monotonic()).message
        driver = FakeStretchDriver(context=ros.context, decel_s=0.2)  # starts in position mode, as the real one
        ros.add(driver)
        ros.spin(3.0, until=lambda: backend.mode == "position")
        refused = bridge.submit(ActionCommand("m"), time.monotonic())
        assert refused.result == Result.REFUSED and "switching to navigation mode" in refused.message
        ros.spin(3.0, until=lambda: backend.mode == "navigation")
        assert driver.dropped == 0  # nothing was sent while the driver would have dropped it
        done = ros.run(bridge, ActionCommand("m"))  # 0.2 s at 1 m/s
        assert done.result == Result.DONE
        assert abs(driver.speed[0]) < 0.01  # DONE only once odometry showed the base at rest
        assert driver.received[0] == (1.0, 0.0)

        assert bridge.submit(ActionCommand("b"), time.monotonic()) is None
        bridge.estop(True)
        ros.spin(3.0, until=lambda: backend.mode == "runstopped")
        assert driver.mode == "runstopped" and driver.received[-1] == (0.0, 0.0)
        bridge.estop(False)
        ros.spin(3.0, until=lambda: backend.mode == "navigation" and not backend.runstopped)
        assert driver.mode == "navigation"  # the driver restored the mode it had before the run-stop
        assert ros.run(bridge, ActionCommand("r")).result == Result.DONE
    finally:
        ros.close()


def test_the_stop_on_shutdown_reaches_the_base_20_of_20(tmp_path):
    """A bridge on cmd_vel, stopped mid-motion by SIGINT (as Ctrl-C and `ros2 launch` do) or SIGTERM, sends its
    last zero twist while its ROS context is still valid, and the base's subscriber has it before the process
    ends: the last twist the base hears is a zero."""
    ros = Ros()
    runs, batch = 20, 4
    delivered, failures = 0, []
    zeros: dict[int, list[bool]] = {i: [] for i in range(runs)}  # per bridge: was each twist received a zero
    try:
        listener = ros.node("base_listener")
        action = listener.create_publisher(String, protocol.ACTION, COMMAND_QOS)
        for first in range(0, runs, batch):
            procs = {}
            for i in range(first, first + batch):
                topic = f"/shutdown_test_{i}/cmd_vel"
                listener.create_subscription(Twist, topic, lambda m, i=i: zeros[i].append(m.linear.x == 0.0),
                                             COMMAND_QOS)  # fmt: skip
                procs[i] = subprocess.Popen(
                    [sys.executable, "-m", "flare_ros.bridge_node", "locobot", "--ros-args",
                     "-r", f"__node:=shutdown_bridge_{i}", "-p", "backend:=cmd_vel", "-p", f"cmd_vel_topic:={topic}",
                     "-p", "command_timeout_s:=1000.0", "-p", "linear_m_s:=0.01"],
                    stdout=open(tmp_path / f"bridge_{i}.log", "w"), stderr=subprocess.STDOUT, env=os.environ,
                )  # fmt: skip
            ros.spin(
                30.0,
                until=lambda procs=procs: all(listener.count_publishers(f"/shutdown_test_{i}/cmd_vel") for i in procs),
            )
            ros.spin(30.0, until=lambda: action.get_subscription_count() >= batch)
            action.publish(String(data="b"))  # every bridge of the batch backs up: 0.2 m at 0.01 m/s, 20 s
            ros.spin(10.0, until=lambda procs=procs: all(zeros[i] for i in procs))  # moving: the bases hear the bridges
            for i, proc in procs.items():
                assert zeros[i] and not zeros[i][-1], (tmp_path / f"bridge_{i}.log").read_text()
                proc.send_signal(signal.SIGINT if i % 2 == 0 else signal.SIGTERM)
            for proc in procs.values():
                proc.wait(timeout=20)
            ros.spin(2.0, until=lambda procs=procs: all(zeros[i][-1] for i in procs))
            for i, proc in procs.items():
                if zeros[i][-1] and proc.returncode == 0:
                    delivered += 1
                else:
                    failures.append((i, proc.returncode, zeros[i], (tmp_path / f"bridge_{i}.log").read_text()[-300:]))
    finally:
        ros.close()
    assert delivered == runs, failures
