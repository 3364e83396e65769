"""Camera frames at real sizes through the ROS graph: two cameras (nav, manip) publishing rgb8 frames at
1280x720 and at 1920x1080, 15 Hz, into the policy node (separate process, real rclpy + Fast DDS), which decides
and drives the simulated Stretch bridge. Per size: frames delivered / sent (the policy node counts every frame
message it takes), and the median fresh-frame -> action latency (a command's publish stamp minus the newest
stamp of the frames it decided on: transport, decoding, preprocessing and inference), beside the same policy
step in-process on the same frames (`OnnxPolicy.act`), measured in the same run.

The transport is what the graph uses: `flare_ros.common.IMAGE_QOS` and the Fast DDS profile of
`flare_bringup.graph.graph_environment` (shared memory for whole frames), for this process's camera publishers
too; `--no-profile` measures Fast DDS's default transports instead. Prints key=value lines.

    .venv/bin/python benchmarks/ros_frames.py [--seconds 20] [--sizes 1280x720,1920x1080] [--hz 15] [--no-profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import String

from flare_bringup.graph import DDS_PROFILE_VARIABLE, Graph, default_model, graph_environment
from flare_bringup.runner import EpisodeRunner
from flare_core import protocol
from flare_core.runtime import OnnxPolicy
from flare_ros.common import IMAGE_QOS, now_ns, rgb_to_image
from flare_sim.robot import SimulatedRobot

GOAL_FAMILY, GOAL_HOUSE = "objectnav", 3


def frames_at(width: int, height: int) -> tuple[str, dict[str, np.ndarray]]:
    """The simulated house's camera frames scaled up to a real camera's size, and the goal posed there."""
    sim = SimulatedRobot()
    task = sim.reset_task(GOAL_FAMILY, GOAL_HOUSE)
    big = {c: cv2.resize(f, (width, height), interpolation=cv2.INTER_NEAREST) for c, f in sim.frames().items()}
    return task["goal"], big


def in_process_ms(goal: str, frames: dict[str, np.ndarray], repeats: int = 30) -> float:
    policy = OnnxPolicy(default_model(), "gridhouse")
    policy.reset(goal)
    policy.act(frames, False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.act(frames, False)
        times.append((time.perf_counter() - start) * 1000)
        policy.reset(goal)  # keep the cache short, as at the start of an episode
    return statistics.median(times)


def through_graph(goal: str, frames: dict[str, np.ndarray], seconds: float, hz: float) -> dict:
    overrides = {"stretch_bridge": {"publish_camera": False, "sim_motion_s": 0.2}}
    graph = Graph("stretch", overrides=overrides).start()
    runner = EpisodeRunner("flare_frames_bench")
    try:
        runner.wait_ready()
        pubs = {c: runner.node.create_publisher(Image, protocol.camera_topic(c), IMAGE_QOS) for c in frames}
        messages = {c: rgb_to_image(f, 0, f"{c}_camera") for c, f in frames.items()}
        runner.spin_until(lambda: all(p.get_subscription_count() for p in pubs.values()), 20, "the policy's cameras")
        sent = dict.fromkeys(frames, 0)
        runner.start_task(GOAL_FAMILY, GOAL_HOUSE)
        period, next_at, end = 1.0 / hz, time.monotonic(), time.monotonic() + seconds
        while time.monotonic() < end:
            if time.monotonic() >= next_at:
                stamp = now_ns(runner.node)
                for camera, msg in messages.items():
                    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                    pubs[camera].publish(msg)
                    sent[camera] += 1
                next_at += period
            state = runner.latest_status().state
            if state in ("idle", "finished") and runner.latest_status().stamp_ns > 0:
                runner.goal_pub.publish(String(data=goal))  # keep deciding: a new episode when one ends
                runner.spin_until(lambda: runner.latest_status().state not in ("idle", "finished"), 5, "an episode")
            runner.executor.spin_once(timeout_sec=max(0.0, min(0.005, next_at - time.monotonic())))
        runner.spin_for(1.5)  # the last frames in flight, and a status with the final counts
        received = runner.latest_status().extra.get("frames_received", {})
        latency = [(a.stamp_ns - max(a.frames.values())) / 1e6 for a in runner.actions if a.frames]
    finally:
        runner.close()
        graph.stop()
    return {"sent": sent, "received": received, "latency_ms": latency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sizes", default="1280x720,1920x1080")
    parser.add_argument("--hz", type=float, default=15.0)
    parser.add_argument("--no-profile", action="store_true", help="Fast DDS's default transports, no profile")
    args = parser.parse_args()
    if args.no_profile:
        os.environ[DDS_PROFILE_VARIABLE] = ""  # set, so the graph keeps it; empty, so Fast DDS loads nothing
    os.environ.update(graph_environment())
    print(f"dds_profile={os.environ.get(DDS_PROFILE_VARIABLE) or 'none (Fast DDS default transports)'}")
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        goal, frames = frames_at(width, height)
        result = through_graph(goal, frames, args.seconds, args.hz)
        baseline = in_process_ms(goal, frames)
        sent, received = sum(result["sent"].values()), sum(result["received"].values())
        latency = statistics.median(result["latency_ms"]) if result["latency_ms"] else float("nan")
        print(f"size={size} frames_sent={sent} frames_received={received} delivered={received / sent:.3f} "
              f"decisions={len(result['latency_ms'])} fresh_frame_to_action_ms_median={latency:.1f} "
              f"in_process_step_ms_median={baseline:.1f} ratio_vs_in_process={latency / baseline:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
