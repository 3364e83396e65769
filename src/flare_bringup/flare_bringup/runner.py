"""Drives episodes on a running graph with a simulated robot, through its topics only: asks the simulated
world for a task, sends its goal as an operator would, and reads the outcome and latencies back.
`make demo` and the multi-process tests use it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Bool, String

from flare_bag.topics import RECORDED
from flare_core import protocol
from flare_ros.common import COMMAND_QOS, ESTOP_KEEP_ALIVE_S, ESTOP_QOS

# `ros2 topic pub --once -w 2 --keep-alive 1 --qos-reliability reliable --qos-durability transient_local ...` as
# the README gives it: ros2cli's "default" profile (keep last 10) with those overrides.
ONE_SHOT_ESTOP_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)  # fmt: skip


def one_shot_estop(engaged: bool, wait_matching: int = 2, keep_alive_s: float = ESTOP_KEEP_ALIVE_S) -> None:
    """What `ros2 topic pub --once -w 2 --keep-alive K` does (ros2topic/verb/pub.py, jazzy), in a DDS participant
    of its own: wait until `wait_matching` subscriptions match this publisher, publish once, stay alive
    `keep_alive_s`, leave. A subscriber whose side of the discovery has not yet matched this publisher fetches the
    latched sample when it does, if the publisher still lives: the keep-alive is what makes that possible."""
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("one_shot_estop", context=context)
    try:
        publisher = node.create_publisher(Bool, protocol.ESTOP, ONE_SHOT_ESTOP_QOS)
        deadline = time.monotonic() + 10
        while publisher.get_subscription_count() < wait_matching and time.monotonic() < deadline:
            time.sleep(0.01)
        publisher.publish(Bool(data=engaged))
        time.sleep(keep_alive_s)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


class GraphError(RuntimeError):
    """The graph did not answer in time; the message says which part."""


@dataclass
class EpisodeOutcome:
    family: str
    house: int
    goal: str
    success: bool
    steps: int
    reason: str
    actions: list[str] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)  # preprocessing + ONNX Runtime + choice
    decision_ms: list[float] = field(default_factory=list)  # end of the last motion -> next command


class EpisodeRunner:
    def __init__(self, name: str = "flare_episode_runner") -> None:
        self.context = rclpy.Context()
        # No rclpy signal handler: Ctrl-C raises KeyboardInterrupt in the caller, which stops and cleans up,
        # instead of shutting this context down under a loop that keeps waiting on it.
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.reset_pub = self.node.create_publisher(String, protocol.SIM_RESET, COMMAND_QOS)
        self.goal_pub = self.node.create_publisher(String, protocol.GOAL, COMMAND_QOS)
        self.estop_pub = self.node.create_publisher(Bool, protocol.ESTOP, ESTOP_QOS)
        self.action_pub = self.node.create_publisher(String, protocol.ACTION, COMMAND_QOS)
        self.tasks: list[dict] = []
        self.statuses: list[protocol.PolicyStatus] = []
        self.dones: list[protocol.ActionDone] = []
        self.bridge_events: list[dict] = []
        self.actions: list[protocol.ActionCommand] = []
        sub = self.node.create_subscription
        sub(String, protocol.SIM_TASK, lambda m: self.tasks.append(json.loads(m.data)), COMMAND_QOS)
        sub(String, protocol.POLICY_STATUS, lambda m: self.statuses.append(protocol.PolicyStatus.parse(m.data)),
            COMMAND_QOS)  # fmt: skip
        sub(String, protocol.ACTION_DONE, lambda m: self.dones.append(protocol.ActionDone.parse(m.data)), COMMAND_QOS)
        sub(String, protocol.BRIDGE_STATUS, lambda m: self.bridge_events.append(json.loads(m.data)), COMMAND_QOS)
        sub(String, protocol.ACTION, self._on_action, COMMAND_QOS)

    def _on_action(self, msg: String) -> None:
        try:
            self.actions.append(protocol.ActionCommand.parse(msg.data))
        except protocol.ProtocolError:
            pass  # not a command anyone could run (the bridge answers it on its status): nothing to follow

    # -- waiting ---------------------------------------------------------------------------------------
    def spin_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise GraphError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def wait_ready(self, timeout: float = 60.0, recorders: int = 0, settle_s: float = 1.0) -> None:
        """Until the policy reports and every node listens on the topics it needs: ROS discovery takes a moment
        per topic, and a message sent before its subscriber is matched is lost (a recorder would miss it). This
        node sees a subscription before every other publisher has matched it (discovery is pairwise), so it
        waits `settle_s` more once it sees them all: on a loaded machine a recorder otherwise missed the
        simulated camera's first frames."""
        self.spin_until(lambda: self.statuses, timeout, f"the policy node's status on {protocol.POLICY_STATUS}")
        needed = {  # topic -> subscribers besides the recorders (this runner's own are counted too)
            protocol.GOAL: 1,
            protocol.SIM_RESET: 1,
            protocol.ACTION: 2,  # bridge + runner
            protocol.ACTION_DONE: 2,  # policy + runner
            protocol.POLICY_STATUS: 1,
            **{protocol.camera_topic(c): 1 for c in protocol.CAMERAS},
        }

        def unmatched() -> list[str]:
            return [
                t for t, n in needed.items() if self.node.count_subscribers(t) < n + (recorders if t in RECORDED else 0)
            ]

        try:
            self.spin_until(lambda: not unmatched(), timeout, "subscribers")
        except GraphError:
            missing = ", ".join(unmatched())
            raise GraphError(f"timed out after {timeout:.0f} s waiting for subscribers on {missing}") from None
        self.spin_for(settle_s)

    # -- commands --------------------------------------------------------------------------------------
    def start_task(self, family: str, house: int, timeout: float = 20.0) -> dict:
        before = len(self.tasks)
        self.reset_pub.publish(String(data=json.dumps({"family": family, "house": house})))
        self.spin_until(lambda: len(self.tasks) > before, timeout, f"the simulated world to pose {family} {house}")
        return self.tasks[-1]

    def send_goal(self, goal: str) -> int:
        """Sends the goal; returns the episode number the policy gives it."""
        last = max((s.episode for s in self.statuses), default=0)
        self.goal_pub.publish(String(data=goal))
        self.spin_until(lambda: any(s.episode > last for s in self.statuses), 20.0, "the policy to start the episode")
        return last + 1

    def estop(self, engaged: bool) -> None:
        self.estop_pub.publish(Bool(data=engaged))

    def bridge_estops(self) -> list[dict]:
        """The bridge's e-stop events so far (engaged and released), oldest first."""
        return [e for e in self.bridge_events if e["event"] in ("estop", "estop_released")]

    def latest_status(self, episode: int | None = None) -> protocol.PolicyStatus | None:
        for s in reversed(self.statuses):
            if episode is None or s.episode == episode:
                return s
        return None

    def run_episode(self, family: str, house: int, timeout: float = 120.0) -> EpisodeOutcome:
        task = self.start_task(family, house)
        first_status = len(self.statuses)
        episode = self.send_goal(task["goal"])

        def finished() -> bool:
            s = self.latest_status(episode)
            return s is not None and s.state in ("finished", "estopped")

        self.spin_until(finished, timeout, f"episode {episode} ({family}, house {house}) to finish")
        mine = [s for s in self.statuses[first_status:] if s.episode == episode]
        acting = {s.step: s for s in mine if s.state == "acting"}  # one per decision
        final = mine[-1]
        return EpisodeOutcome(
            family, house, task["goal"], bool(final.extra.get("success", False)), final.step, final.reason,
            [acting[k].last_action for k in sorted(acting)],
            [acting[k].latency_ms for k in sorted(acting)],
            [acting[k].extra.get("decision_ms", 0.0) for k in sorted(acting)],
        )  # fmt: skip

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
