"""Policy node: goal in, one action per completed motion out, through the ONNX Runtime policy (no torch).

Subscribes: flare/goal (String), flare/camera/<camera>/image (Image, one per camera in the model card),
flare/action_done (String, ActionDone JSON), flare/estop (Bool, latched), flare/sim/task (String: a reset
simulated world ends the episode it would otherwise revive).
Publishes: flare/action (String, ActionCommand JSON), flare/policy/status (String, PolicyStatus JSON: on
every change and at 1 Hz; refused goals, unusable camera frames, frames received and problems such as an
e-stop publisher it cannot hear under `extra`).
Parameters: model (directory with policy.onnx + model.json), embodiment (the card's, default its first),
robot (embodiment of the robot, masks what it cannot do; `a+b`: what both can do; default: same), greedy,
seed, step_limit, provider (auto|cpu|cuda), camera_timeout_s, action_timeout_s, accept_unknown_words (run goals
with words outside the model's vocabulary instead of refusing them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, String

from flare_core import protocol
from flare_core.episode import LoopConfig, PolicyLoop
from flare_core.images import header_stamp_ns
from flare_core.preprocessing import FrameError
from flare_core.runtime import OnnxPolicy, PolicyLoadError, available_providers
from flare_ros.common import (
    COMMAND_QOS,
    IMAGE_QOS,
    StartupError,
    declare_parameters,
    image_to_rgb,
    now_ns,
    on_incompatible_publisher,
    route_core_logs,
    run_node,
    string,
    subscribe_estop,
)

PARAMETERS = {
    "model": "",
    "embodiment": "",
    "robot": "",
    "greedy": True,
    "seed": 0,
    "step_limit": 500,
    "provider": "auto",
    "camera_timeout_s": 1.0,
    "action_timeout_s": 30.0,
    "tick_hz": 50.0,
    "accept_unknown_words": False,
}
BLACK_MEAN = 4.0  # mean brightness (0-255) below which a frame is taken for a covered lens or a dead sensor
PROVIDERS = {"auto": None, "cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("flare_policy")
        route_core_logs(self)
        p = declare_parameters(self, PARAMETERS)
        if not p["model"]:
            raise StartupError("parameter `model` is empty: give the directory holding policy.onnx and model.json")
        if p["provider"] not in PROVIDERS:
            raise StartupError(f"provider {p['provider']!r} unknown; use one of {', '.join(PROVIDERS)}")
        providers = PROVIDERS[p["provider"]] or available_providers()
        try:
            self.policy = OnnxPolicy(Path(p["model"]), p["embodiment"] or None, p["greedy"], providers, p["seed"],
                                     robot=p["robot"] or None)  # fmt: skip
        except (PolicyLoadError, ValueError, FileNotFoundError) as err:
            raise StartupError(f"cannot load the policy: {err}") from None
        cameras = [c.name for c in self.policy.card.cameras]
        config = LoopConfig(p["step_limit"], p["camera_timeout_s"], p["action_timeout_s"], p["accept_unknown_words"])
        self.loop = PolicyLoop(self.policy, cameras, config)
        self.frames_received = dict.fromkeys(cameras, 0)  # every frame message, usable or not (status: delivery)

        self.action_pub = self.create_publisher(String, protocol.ACTION, COMMAND_QOS)
        self.status_pub = self.create_publisher(String, protocol.POLICY_STATUS, COMMAND_QOS)
        self.create_subscription(String, protocol.GOAL, self.on_goal, COMMAND_QOS)
        self.create_subscription(String, protocol.ACTION_DONE, self.on_done, COMMAND_QOS)
        self.problems: list[str] = []  # what the operator must fix outside this node (status `extra.problems`)
        subscribe_estop(self, self.on_estop, self.report_problem)
        self.create_subscription(String, protocol.SIM_TASK, self.on_sim_task, COMMAND_QOS)
        for camera in cameras:
            topic = protocol.camera_topic(camera)
            events = on_incompatible_publisher(topic, lambda text, c=camera: self.bad_frame(
                c, f"{text}: publish reliable, or republish a driver's stream through camera_node"))  # fmt: skip
            self.create_subscription(Image, topic, lambda msg, c=camera: self.on_image(c, msg), IMAGE_QOS,
                                     event_callbacks=events)  # fmt: skip
        self.create_timer(1.0 / p["tick_hz"], self.tick)
        self.create_timer(1.0, self.publish_status)
        self.create_timer(1.0, self.check_camera_publishers)
        card = self.policy.card
        self.get_logger().info(
            f"policy {card.name!r} ready on {self.policy.providers[0]}: embodiment {self.policy.embodiment.name}, "
            f"robot {self.policy.robot.name}, cameras {cameras}, {'greedy' if p['greedy'] else 'sampled'}, "
            f"step limit {config.step_limit}; waiting for a goal on {protocol.GOAL}"
        )

    # -- callbacks -------------------------------------------------------------------------------------
    def on_goal(self, msg: String) -> None:
        self.loop.on_goal(msg.data, time.monotonic(), now_ns(self))
        self.tick()

    def on_image(self, camera: str, msg: Image) -> None:
        self.frames_received[camera] += 1
        try:
            frame = image_to_rgb(msg, f"camera {camera!r} ({protocol.camera_topic(camera)})")
        except FrameError as err:
            self.bad_frame(camera, str(err))
            return
        brightness = float(np.mean(frame[::8, ::8]))
        if brightness < BLACK_MEAN:
            self.bad_frame(camera, f"camera {camera!r} sends all-black frames (mean brightness {brightness:.1f}/255): "
                           "is the lens covered or the sensor dead?")  # fmt: skip
            return
        self.loop.on_frame(camera, frame, header_stamp_ns(msg), time.monotonic())
        self.tick()

    def bad_frame(self, camera: str, why: str) -> None:
        """A frame that is not used: said once per distinct problem (not 30 times a second), in the log and in
        the status, and the camera counts as silent, so the policy pauses rather than act on it."""
        if self.loop.camera_problems.get(camera) != why:  # a good frame clears the loop's record of it
            self.get_logger().error(f"{why}; frames from this camera are ignored until it is fixed")
        self.loop.on_camera_problem(camera, why, time.monotonic())
        self.tick()

    def report_problem(self, message: str) -> None:
        self.get_logger().error(message)
        if message not in self.problems:
            self.problems.append(message)
        self.publish_status()

    def check_camera_publishers(self) -> None:
        """A camera topic nobody publishes on is the likeliest reason frames stop: say so in the pause."""
        for camera in self.loop.cameras:
            topic = protocol.camera_topic(camera)
            why = f"no node publishes on {topic}"
            if self.count_publishers(topic) == 0:
                self.loop.on_camera_problem(camera, why, time.monotonic())
            else:
                self.loop.clear_camera_problem(camera, why)

    def on_sim_task(self, msg: String) -> None:
        try:
            task = json.loads(msg.data)
            self.loop.on_world_reset(int(task["stamp_ns"]), int(task.get("for_episode", 0)))
        except (ValueError, KeyError, TypeError):
            what = protocol.clip_text(msg.data)
            self.get_logger().error(f"ignored a malformed task on {protocol.SIM_TASK}: {what!r}")
            return
        self.tick()

    def on_done(self, msg: String) -> None:
        try:
            done = protocol.ActionDone.parse(msg.data)
        except protocol.ProtocolError as err:
            self.get_logger().error(f"ignored a malformed completion on {protocol.ACTION_DONE}: {err}")
            return
        self.loop.on_done(done, time.monotonic())
        self.tick()

    def on_estop(self, msg: Bool) -> None:
        self.loop.on_estop(bool(msg.data))
        self.publish_status()

    def tick(self) -> None:
        command = self.loop.tick(time.monotonic(), now_ns(self))
        if command is not None:
            self.action_pub.publish(string(command.to_json()))
        if self.loop.changed:
            self.publish_status()

    def publish_status(self) -> None:
        self.loop.changed = False
        status = self.loop.status(now_ns(self))
        status.extra["frames_received"] = dict(self.frames_received)
        if self.problems:
            status.extra["problems"] = self.problems[-5:]
        self.status_pub.publish(string(status.to_json()))

    def close(self) -> None:
        if self.loop.running:
            self.get_logger().warning(f"shutting down mid-episode {self.loop.episode}")


def main() -> None:
    run_node(PolicyNode)


if __name__ == "__main__":
    main()
