"""What every FLaRe node shares: image message conversion, QoS, logging into the ROS logger, a clean main."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import rclpy
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, String

from flare_core import protocol
from flare_core.images import RawImage, decode_rgb, encode_rgb

# Camera frames inside the graph: reliable, keep the newest 2. Best effort (sensor data QoS) loses a 1280x720
# rgb8 frame whenever one of its ~42 UDP fragments is lost (151 of 450 arrived at 15 Hz, benchmarks/ros_frames.py);
# reliable repairs the fragments, and keep-last never blocks the camera.
IMAGE_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
# Goals, actions, completions, status, e-stop: reliable, with history deep enough that a subscriber starved of
# CPU for seconds (a recorder on a busy machine) still gets every message.
COMMAND_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
# The e-stop is latched (reliable + transient-local): a node that joins or restarts late still gets the last
# state from every live publisher. DDS connects only publishers that offer transient-local too (a plain
# `ros2 topic pub` does not): those are reported, with the command that works.
ESTOP_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# A one-shot publisher's latched sample reaches a subscriber only while the publisher lives: one whose side of
# discovery lags (a loaded computer) fetches it when it matches. ros2cli lingers 0.1 s by default; 1 s covers a
# lagging node at the cost of a second (benchmarks/estop_oneshot.py).
ESTOP_KEEP_ALIVE_S = 1.0
ESTOP_COMMAND = (
    f"ros2 topic pub --once -w 2 --keep-alive {ESTOP_KEEP_ALIVE_S:g} --qos-reliability reliable "
    "--qos-durability transient_local "
    f'/{protocol.ESTOP} std_msgs/msg/Bool "{{data: true}}"'
)


def image_to_rgb(msg: Image, source: str) -> np.ndarray:
    return decode_rgb(RawImage.from_msg(msg), source)


def rgb_to_image(frame: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    raw = encode_rgb(frame, frame_id)
    msg = Image(height=raw.height, width=raw.width, encoding=raw.encoding, step=raw.step, data=raw.data)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


def subscribe_estop(node: Node, callback: Callable[[Bool], None], on_problem: Callable[[str], None]) -> None:
    """The e-stop subscription (ESTOP_QOS). A publisher DDS will not connect is reported through `on_problem`,
    since its e-stop would otherwise never arrive and nobody would know."""

    def problem(text: str) -> None:
        on_problem(f"{text}: its e-stop NEVER reaches this node. Publish reliable + transient-local "
                   f"({ESTOP_COMMAND}) or call the {protocol.RUNSTOP_SERVICE} service")  # fmt: skip

    events = on_incompatible_publisher(protocol.ESTOP, problem)
    node.create_subscription(Bool, protocol.ESTOP, callback, ESTOP_QOS, event_callbacks=events)


def qos_matching_publishers(node: Node, topic: str) -> QoSProfile | None:
    """A reader profile every current publisher of `topic` connects to (what `ros2 topic echo` picks): reliable
    only when all of them are, keep the newest 2. None while nobody publishes."""
    publishers = node.get_publishers_info_by_topic(topic)
    if not publishers:
        return None
    reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
    return QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


def on_incompatible_publisher(topic: str, report: Callable[[str], None]) -> SubscriptionEventCallbacks:
    """Subscription events that report a publisher DDS will not connect to (its messages never arrive)."""

    def incompatible(info: QoSRequestedIncompatibleQoSInfo) -> None:
        policy = QoSPolicyKind(info.last_policy_kind).name.lower()
        report(f"a publisher on {topic} offers incompatible QoS ({policy}), so none of its messages arrive")

    return SubscriptionEventCallbacks(incompatible_qos=incompatible)


def now_ns(node: Node) -> int:
    return node.get_clock().now().nanoseconds


def string(text: str) -> String:
    return String(data=text)


class RosLogHandler(logging.Handler):
    """Sends the core's `flare.*` log records to the node's ROS logger (one log stream per node)."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            self.logger.error(text)
        elif record.levelno >= logging.WARNING:
            self.logger.warning(text)
        else:
            self.logger.info(text)


def route_core_logs(node: Node) -> None:
    core = logging.getLogger("flare")
    core.handlers[:] = [RosLogHandler(node)]
    core.setLevel(logging.INFO)
    core.propagate = False


def declare_parameters(node: Node, defaults: dict) -> dict:
    """Declare each parameter with its default (its type follows); returns the values in effect."""
    return {name: node.declare_parameter(name, default).value for name, default in defaults.items()}


def run_node(make: Callable[[], Node], drain_s: float = 0.0) -> None:
    """Init, spin until Ctrl-C/SIGTERM or shutdown, clean up; a node that cannot start says why and exits 1.

    rclpy's own signal handler is not installed: it would invalidate the ROS context on SIGINT before the
    node's `close()` runs, and a bridge's last stop command to the base would then fail ("publisher's context
    is invalid"). Instead SIGINT and SIGTERM raise KeyboardInterrupt (re-installed after the node is made,
    because stretch_body's `Robot.startup()` replaces both), the node spins in short slices so Python can
    raise it, and `close()` runs while the context is still valid. A signal that lands while Python runs a
    finalizer (rclpy's `Future.__del__`) has its exception swallowed ("Exception ignored in"), so the handler
    also sets `STOP_REQUESTED`, which ends the spin loop within one slice.

    With `drain_s`, the node keeps taking the messages that had already reached it until none has come for
    `drain_s` (a node's `count` of messages taken says so; at most `DRAIN_MAX_S`), then closes. A recorder
    stopped right after a run, still writing a backlog of frames, would otherwise lose the run's last messages.
    """
    rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    _raise_on_stop_signals()
    node = None
    executor = SingleThreadedExecutor()  # one executor holding the node (rclpy.spin_once re-adds it every call)
    try:
        node = make()
        _raise_on_stop_signals()
        executor.add_node(node)
        while rclpy.ok() and not STOP_REQUESTED.is_set():
            executor.spin_once(timeout_sec=SPIN_SLICE_S)
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt("stop signal")  # its own KeyboardInterrupt was swallowed by a finalizer
    except KeyboardInterrupt:
        if node is not None and drain_s > 0:
            _drain(executor, node, drain_s)
    except StartupError as err:
        print(f"[FATAL] {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


SPIN_SLICE_S = 0.1  # longest a stop signal waits to be noticed; messages are handled as they come
STOP_REQUESTED = threading.Event()  # set by SIGINT / SIGTERM, even where their KeyboardInterrupt is lost


def _raise_on_stop_signals() -> None:
    def stop(signum, frame):
        STOP_REQUESTED.set()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


DRAIN_MAX_S = 8.0  # below the 10 s a graph gives its nodes to stop before it kills them


def _drain(executor, node: Node, quiet_s: float) -> None:
    """Spin until the node has taken no message for `quiet_s` (or DRAIN_MAX_S has passed)."""
    start = last_change = time.monotonic()
    taken = getattr(node, "count", 0)
    while rclpy.ok() and time.monotonic() - last_change < quiet_s and time.monotonic() - start < DRAIN_MAX_S:
        executor.spin_once(timeout_sec=0.05)
        now_taken = getattr(node, "count", 0)
        if now_taken != taken:
            taken, last_change = now_taken, time.monotonic()


class StartupError(RuntimeError):
    """A node that cannot start (missing model, unknown backend, ...): the message says what to do."""
