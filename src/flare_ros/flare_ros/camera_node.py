"""Camera node: frames from an OpenCV source or an existing driver's topic, published for the policy.

Parameters: camera (policy camera name: nav, manip), source (`device:0`, a video file, a folder of images,
or `topic:/camera/color/image_raw` to republish a driver's stream), rate_hz, rotate_cw (0/90/180/270: the
mounting, e.g. Stretch RE1's head RealSense is 90 deg off; rotate here *or* in the model card, not both),
width/height (0 = keep; a smaller frame saves bandwidth, the policy resizes anyway), loop (files, folders),
stall_timeout_s. Publishes flare/camera/<camera>/image (sensor_msgs/Image rgb8; reliable, keep last 2: large
frames arrive whole). A driver's topic is read with the reliability its publishers offer.
A dead or stalled source is logged as an error, once per stall, and nothing is published: the policy pauses.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from flare_core import protocol
from flare_core.images import header_stamp_ns
from flare_core.preprocessing import FrameError
from flare_ros.common import (
    IMAGE_QOS,
    StartupError,
    declare_parameters,
    image_to_rgb,
    now_ns,
    qos_matching_publishers,
    rgb_to_image,
    run_node,
)

PARAMETERS = {
    "camera": "nav",
    "source": "",
    "rate_hz": 10.0,
    "rotate_cw": 0,
    "width": 0,
    "height": 0,
    "loop": True,
    "stall_timeout_s": 1.0,
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class FrameSource:
    """OpenCV frames (RGB) from a device, a video file or an image folder; None when none is available."""

    def __init__(self, source: str, loop: bool) -> None:
        self.loop, self.files, self.capture, self.index = loop, [], None, 0
        path = Path(source)
        if source.startswith("device:"):
            self.capture = cv2.VideoCapture(int(source.split(":", 1)[1]))
        elif path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise StartupError(f"image folder {path} holds no {'/'.join(sorted(IMAGE_SUFFIXES))} files")
        elif path.is_file():
            self.capture = cv2.VideoCapture(str(path))
        else:
            raise StartupError(
                f"camera source {source!r} is neither device:N, an existing video file or image folder, nor topic:NAME"
            )
        if self.capture is not None and not self.capture.isOpened():
            raise StartupError(f"OpenCV cannot open camera source {source!r}")
        self.description = source

    def read(self) -> np.ndarray | None:
        if self.files:
            if self.index >= len(self.files):
                if not self.loop:
                    return None
                self.index = 0
            bgr = cv2.imread(str(self.files[self.index]), cv2.IMREAD_COLOR)
            self.index += 1
        else:
            ok, bgr = self.capture.read()
            if not ok and self.loop and self.capture.get(cv2.CAP_PROP_FRAME_COUNT) > 0:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self.capture.read()
            bgr = bgr if ok else None
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def adjust(frame: np.ndarray, rotate_cw: int, width: int, height: int) -> np.ndarray:
    if rotate_cw:
        frame = cv2.rotate(frame, _ROTATE[rotate_cw])
    if width and height and frame.shape[:2] != (height, width):
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return frame


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("flare_camera")
        p = declare_parameters(self, PARAMETERS)
        if p["rotate_cw"] not in (0, 90, 180, 270):
            raise StartupError(f"rotate_cw must be 0, 90, 180 or 270, got {p['rotate_cw']}")
        if not p["source"]:
            raise StartupError(
                "parameter `source` is empty: give device:N, a video file, an image folder or topic:NAME"
            )
        self.p = p
        self.topic = protocol.camera_topic(p["camera"])
        self.publisher = self.create_publisher(Image, self.topic, IMAGE_QOS)
        self.last_frame = time.monotonic()
        self.stalled = False
        if p["source"].startswith("topic:"):
            self.upstream = p["source"].split(":", 1)[1]
            self.source = None
            self.connect_timer = self.create_timer(0.5, self.connect_upstream)
            what = f"topic {self.upstream}"
        else:
            self.source = FrameSource(p["source"], p["loop"])
            self.create_timer(1.0 / p["rate_hz"], self.capture)
            what = p["source"]
        self.create_timer(0.25, self.watch)
        self.get_logger().info(f"camera {p['camera']!r}: {what} -> {self.topic} (rotate {p['rotate_cw']} deg)")

    def publish(self, frame: np.ndarray, stamp: int) -> None:
        frame = adjust(frame, self.p["rotate_cw"], self.p["width"], self.p["height"])
        self.publisher.publish(rgb_to_image(frame, stamp, f"{self.p['camera']}_camera"))
        self.last_frame = time.monotonic()
        if self.stalled:
            self.get_logger().info(f"camera {self.p['camera']!r} is delivering frames again")
            self.stalled = False

    def capture(self) -> None:
        frame = self.source.read()
        if frame is not None:
            self.publish(frame, now_ns(self))

    def connect_upstream(self) -> None:
        """Subscribe to the driver's stream with QoS its publishers offer (realsense2_camera publishes reliable,
        many drivers best effort): a reader asking for more than they offer would never be connected."""
        qos = qos_matching_publishers(self, self.upstream)
        if qos is None:
            return  # the driver is not up yet: the stall watchdog says so if it stays away
        self.connect_timer.cancel()
        self.create_subscription(Image, self.upstream, self.on_upstream, qos)
        self.get_logger().info(f"subscribed to {self.upstream} ({qos.reliability.name.lower()}, as its publishers)")

    def on_upstream(self, msg: Image) -> None:
        try:
            frame = image_to_rgb(msg, f"upstream camera {self.p['source']}")
        except FrameError as err:
            self.get_logger().error(f"{err}; not republished", throttle_duration_sec=5.0)
            return
        self.publish(frame, header_stamp_ns(msg) or now_ns(self))  # the driver's capture time, where it gives one

    def watch(self) -> None:
        silent = time.monotonic() - self.last_frame
        if silent > self.p["stall_timeout_s"] and not self.stalled:
            self.stalled = True
            self.get_logger().error(
                f"camera {self.p['camera']!r} STALLED: no frame from {self.p['source']} for {silent:.1f} s; "
                "nothing is published, so the policy pauses. Check the cable/driver."
            )


def main() -> None:
    run_node(CameraNode)


if __name__ == "__main__":
    main()
