"""Action bridge node: one per robot (`stretch_bridge`, `locobot_bridge`), one backend chosen by parameter.

Subscribes: flare/action (String: ActionCommand JSON or a bare action name), flare/estop (Bool, latched),
flare/sim/reset and flare/policy/status (String, simulated robot only).
Publishes: flare/action_done (String, ActionDone JSON), flare/bridge/status (String JSON events: malformed
commands and refusals included); flare/estop when the service is called; the simulated robot also publishes its
cameras (flare/camera/<camera>/image, while a task runs and `publish_camera`, settable at run time, is true)
and flare/sim/task.
Service: flare/runstop (std_srvs/SetBool, as stretch_ros2's /runstop): true engages the e-stop, false releases
it; the bridge then publishes the new state on flare/estop (latched), so the policy follows.
The simulated robot poses a task by itself when a policy episode starts and none is running: an unseen house
whose task has the operator's goal, where one does.
Parameters: backend (stretch: sim | stretch_body | stretch_driver; locobot: sim | interbotix | cmd_vel),
control_hz, command_timeout_s, motion_timeout_s; sim_motion_s, camera_hz, publish_camera (simulated robot); and
the robot's backend parameters (`flare_robots.<robot>` spec: embodiment, base_type, cmd_vel_topic, odom_topic,
linear_m_s, angular_rad_s, settle_s).
"""

from __future__ import annotations

import json
import sys
import time

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool

from flare_core import protocol
from flare_core.bridge import ActionBridge, BridgeConfig, RobotBackend
from flare_core.protocol import CAMERAS
from flare_robots.robot import SIM_BACKEND, get_robot, robots
from flare_ros.common import (
    COMMAND_QOS,
    ESTOP_QOS,
    IMAGE_QOS,
    StartupError,
    declare_parameters,
    now_ns,
    rgb_to_image,
    route_core_logs,
    run_node,
    string,
    subscribe_estop,
)


def parameters(robot: str) -> dict:
    """The bridge's parameters and defaults for `robot`."""
    return {
        "backend": SIM_BACKEND,
        "control_hz": 20.0,
        "command_timeout_s": 2.0,
        "motion_timeout_s": 20.0,
        "sim_motion_s": 0.05,
        "camera_hz": 10.0,
        "publish_camera": True,
        **get_robot(robot).bridge_parameters,
    }


class BridgeNode(Node):
    def __init__(self, robot: str) -> None:
        super().__init__(f"{robot}_bridge")
        route_core_logs(self)
        self.robot, self.spec = robot, get_robot(robot)
        p = declare_parameters(self, parameters(robot))
        if p["backend"] not in self.spec.all_backends:
            raise StartupError(f"backend {p['backend']!r} unknown for {robot}; "
                               f"use one of {', '.join(self.spec.all_backends)}")  # fmt: skip
        self.backend = self._make_backend(p)
        period = 1.0 / p["control_hz"]
        self.bridge = ActionBridge(self.backend, BridgeConfig(period, p["command_timeout_s"], p["motion_timeout_s"]),
                                   time.monotonic())  # fmt: skip
        self.done_pub = self.create_publisher(String, protocol.ACTION_DONE, COMMAND_QOS)
        self.status_pub = self.create_publisher(String, protocol.BRIDGE_STATUS, COMMAND_QOS)
        self.estop_pub = self.create_publisher(Bool, protocol.ESTOP, ESTOP_QOS)
        self.create_subscription(String, protocol.ACTION, self.on_action, COMMAND_QOS)
        subscribe_estop(self, self.on_estop, self.report_problem)
        self.create_service(SetBool, protocol.RUNSTOP_SERVICE, self.on_runstop)
        self.create_timer(period, self.tick)
        self.sim = self.backend if p["backend"] == SIM_BACKEND else None
        if self.sim is not None:
            self.task_pub = self.create_publisher(String, protocol.SIM_TASK, COMMAND_QOS)
            self.create_subscription(String, protocol.SIM_RESET, self.on_sim_reset, COMMAND_QOS)
            self.create_subscription(String, protocol.POLICY_STATUS, self.on_policy_status, COMMAND_QOS)
            self.posed_for_episode = 0
            self.next_house = 0
            self.publish_camera = p["publish_camera"]
            self.camera_pubs = {c: self.create_publisher(Image, protocol.camera_topic(c), IMAGE_QOS) for c in CAMERAS}
            self.create_timer(1.0 / p["camera_hz"], self.publish_frames)
            self.add_on_set_parameters_callback(self.on_parameters)
        info = self.backend.info
        notes = "; ".join(info.notes)
        self.get_logger().info(
            f"{robot} bridge up: backend {info.backend}, embodiment {self.backend.embodiment.name} "
            f"(valid: {', '.join(self.backend.embodiment.valid_names)}), control {p['control_hz']:.0f} Hz"
            + (f"; {notes}" if notes else "")
        )
        self.report("up", backend=info.backend, embodiment=self.backend.embodiment.name)

    def _make_backend(self, p: dict) -> RobotBackend:
        from flare_robots.errors import BackendUnavailable

        try:
            if p["backend"] == SIM_BACKEND:
                from flare_sim.robot import SimulatedRobot

                return SimulatedRobot(self.spec.embodiment, motion_s=p["sim_motion_s"])
            return self.spec.make_backend(p["backend"], self, p)
        except BackendUnavailable as err:
            raise StartupError(f"{self.robot} backend {p['backend']!r} unavailable: {err}") from None

    # -- callbacks -------------------------------------------------------------------------------------
    def on_action(self, msg: String) -> None:
        try:
            command = protocol.ActionCommand.parse(msg.data)
        except protocol.ProtocolError as err:
            message = f"ignored a malformed command on {protocol.ACTION}: {err}; nothing moved"
            self.get_logger().error(message)
            self.report("malformed_command", message=message)
            return
        self.publish_done(self.bridge.submit(command, time.monotonic(), now_ns(self)))
        self.flush_events()

    def on_estop(self, msg: Bool) -> None:
        self.set_estop(bool(msg.data))

    def on_runstop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        """The service form of the e-stop: engaged here at once, then latched on flare/estop for the policy."""
        self.set_estop(request.data)
        self.estop_pub.publish(Bool(data=request.data))
        response.success = True
        response.message = "e-stop engaged: robot halted" if request.data else "e-stop released; send a new goal"
        return response

    def set_estop(self, engaged: bool) -> None:
        if engaged == self.bridge.estopped:
            return  # the same state again (topic and service, or its own latched message): nothing to do
        received = time.monotonic()
        done = self.bridge.estop(engaged, now_ns(self))
        if engaged:
            self.report("estop", halted_after_ms=round((time.monotonic() - received) * 1000, 3),
                        aborted=done.action if done else "")  # fmt: skip
        else:
            self.report("estop_released")
        self.publish_done(done)
        self.flush_events()

    def on_sim_reset(self, msg: String) -> None:
        try:
            request = json.loads(msg.data)
            family, house = str(request["family"]), int(request["house"])
            self.publish_done(self.bridge.abort("the simulated world was reset", now_ns(self)))
            task = self.sim.reset_task(family, house)
        except (ValueError, KeyError, TypeError) as err:
            message = f'bad request on {protocol.SIM_RESET} ({err}): send {{"family": "objectnav", "house": 0}}'
            self.get_logger().error(message)
            self.report("malformed_command", message=message)
            return
        self.publish_task(task)

    def on_policy_status(self, msg: String) -> None:
        """A policy episode that starts while no task runs gets a world: an unseen house posing its goal."""
        try:
            status = protocol.PolicyStatus.parse(msg.data)
        except (protocol.ProtocolError, TypeError):
            return
        fresh = status.state in ("waiting_frame", "paused") and status.step == 0
        if not fresh or status.episode == self.posed_for_episode or self.sim.active:
            return
        self.posed_for_episode = status.episode
        task = self.sim.pose_for_goal(status.goal, self.next_house)
        self.next_house = task["house"] + 1
        if not task["matched"]:
            self.report("log", message=f"no unseen house poses {protocol.clip_text(status.goal, 80)!r}; "
                        f"house {task['house']} poses {task['goal']!r}, and success is judged on that")  # fmt: skip
        self.publish_task({**task, "for_episode": status.episode})

    def publish_task(self, task: dict) -> None:
        self.publish_frames()
        self.task_pub.publish(string(json.dumps({**task, "stamp_ns": now_ns(self)})))
        self.get_logger().info(f"simulated world: {task['family']} in house {task['house']}: {task['goal']!r}")

    def on_parameters(self, changed: list[Parameter]) -> SetParametersResult:
        """`publish_camera` can be switched at run time (`ros2 param set`): a simulated camera outage."""
        for parameter in changed:
            if parameter.name == "publish_camera":
                self.publish_camera = bool(parameter.value)
                self.get_logger().info(f"simulated cameras {'on' if self.publish_camera else 'OFF'}")
        return SetParametersResult(successful=True)

    def tick(self) -> None:
        done = self.bridge.tick(time.monotonic(), now_ns(self))
        if done is not None and self.sim is not None:
            self.publish_frames()  # the first frame after the motion, stamped after its completion
        self.publish_done(done)
        self.flush_events()

    # -- output ----------------------------------------------------------------------------------------
    def publish_done(self, done: protocol.ActionDone | None) -> None:
        if done is not None:
            self.done_pub.publish(string(done.to_json()))

    def publish_frames(self) -> None:
        """The simulated cameras, while a task runs (between tasks there is no world to show)."""
        if self.sim is None or not self.publish_camera or not self.sim.active:
            return
        stamp = now_ns(self)
        for camera, frame in self.sim.frames().items():
            self.camera_pubs[camera].publish(rgb_to_image(frame, stamp, f"sim_{camera}_camera"))

    def report(self, event: str, **fields) -> None:
        self.status_pub.publish(string(json.dumps({"event": event, "robot": self.robot, "stamp_ns": now_ns(self),
                                                   **fields})))  # fmt: skip

    def report_problem(self, message: str) -> None:
        self.get_logger().error(message)
        self.report("problem", message=message)

    def flush_events(self) -> None:
        for text in self.bridge.events:
            self.report("log", message=text, estopped=self.bridge.estopped)
        self.bridge.events.clear()

    def close(self) -> None:
        self.bridge.shutdown()


def main(robot: str | None = None) -> None:
    robot = robot or (sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in robots() else "stretch")
    run_node(lambda: BridgeNode(robot))


def stretch_main() -> None:
    main("stretch")


def locobot_main() -> None:
    main("locobot")


if __name__ == "__main__":
    main()
