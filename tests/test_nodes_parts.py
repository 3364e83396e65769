"""Node parts that need no graph: the cmd_vel backend publishing real Twist messages over rclpy, and the camera
node's OpenCV sources (video file, image folder) and frame adjustments."""

import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from flare_ros.camera_node import FrameSource, adjust
from flare_ros.common import StartupError


def test_camera_sources_video_and_folder(tmp_path):
    frames = [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(3)]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for f in frames:
        writer.write(f)
    writer.release()
    source = FrameSource(str(video), loop=False)
    read = [source.read() for _ in range(4)]
    assert [r is None for r in read] == [False, False, False, True]  # a finished file is reported as no frame
    assert abs(int(read[1].mean()) - 40) <= 3
    looping = FrameSource(str(video), loop=True)
    assert all(looping.read() is not None for _ in range(7))

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    source = FrameSource(str(folder), loop=True)
    means = [int(source.read().mean()) for _ in range(4)]
    assert means == [0, 40, 80, 0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(StartupError, match="holds no"):
        FrameSource(str(tmp_path / "empty"), loop=True)


def test_adjust_rotates_clockwise_and_resizes():
    frame = np.zeros((20, 40, 3), np.uint8)
    frame[0, 0] = 255  # top-left
    rotated = adjust(frame, 90, 0, 0)
    assert rotated.shape == (40, 20, 3) and rotated[0, -1, 0] == 255  # top-left -> top-right
    assert adjust(frame, 0, 10, 5).shape == (5, 10, 3)


def test_camera_node_reports_a_stalled_source(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.zeros((8, 8, 3), np.uint8))
    command = [sys.executable, "-m", "flare_ros.camera_node", "--ros-args", "-p", f"source:={folder}",
               "-p", "loop:=false", "-p", "stall_timeout_s:=0.5"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(4)
    finally:
        process.terminate()
        log = process.communicate(timeout=10)[0]
    assert "STALLED" in log and "no frame from" in log
    assert log.count("STALLED") == 1  # said once per stall, not at every check


def test_camera_node_reads_a_driver_with_the_reliability_it_offers():
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from flare_ros.common import qos_matching_publishers

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("qos_probe", context=context)
    try:
        assert qos_matching_publishers(node, "/driver/image") is None  # nobody publishes yet: wait
        node.create_publisher(Image, "/driver/image", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        assert qos_matching_publishers(node, "/driver/image").reliability == ReliabilityPolicy.RELIABLE
        node.create_publisher(Image, "/driver/image", QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        assert qos_matching_publishers(node, "/driver/image").reliability == ReliabilityPolicy.BEST_EFFORT
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


STOPPED_IN_A_FINALIZER = """
import os, signal
from rclpy.node import Node
from flare_ros.common import run_node

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in a finalizer: its exception is lost
        sum(range(1000))

class Stopper(Node):
    def __init__(self):
        super().__init__("stopper")
        self.timer = self.create_timer(0.2, self.tick)

    def tick(self):
        self.timer.cancel()
        Finalized()  # dropped at once

    def close(self):
        print("closed", flush=True)

run_node(Stopper)
"""


def test_a_stop_signal_swallowed_by_a_finalizer_still_stops_the_node():
    """SIGTERM landing in a `__del__` (rclpy's Future.__del__ in the field) loses its KeyboardInterrupt; the
    node must still stop and close within a spin slice, not run on until something else ends it."""
    done = subprocess.run([sys.executable, "-c", STOPPED_IN_A_FINALIZER], capture_output=True, text=True, timeout=30)
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt: SIGTERM" in done.stderr  # the case arose
    assert done.returncode == 0 and "closed" in done.stdout, done.stderr
