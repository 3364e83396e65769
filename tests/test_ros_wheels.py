"""The ROS 2 Jazzy wheels really work: a publisher process and a subscriber exchange sensor_msgs/Image."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 rclpy is part of the pinned requirements")
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

PUBLISHER = textwrap.dedent(
    """
    import sys, numpy as np, rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node("wheel_test_camera")
    pub = node.create_publisher(Image, "wheel_test/image", qos_profile_sensor_data)
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    seq = 0
    def tick():
        global seq
        msg = Image(height=4, width=6, encoding="rgb8", step=18, data=frame.tobytes())
        msg.header.frame_id = f"frame_{seq}"
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        seq += 1
    node.create_timer(0.05, tick)
    end = node.get_clock().now().nanoseconds + 20e9
    while rclpy.ok() and node.get_clock().now().nanoseconds < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    """
)


def test_image_crosses_processes():
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER], stderr=subprocess.PIPE, text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("wheel_test_listener", context=context)
        received: list[Image] = []
        node.create_subscription(Image, "wheel_test/image", received.append, qos_profile_sensor_data)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 15
        while len(received) < 3 and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert publisher.poll() is None, f"publisher died: {publisher.stderr.read()}"
        assert len(received) >= 3, "no images arrived from the publisher process within 15 s"
        msg = received[-1]
        assert (msg.height, msg.width, msg.encoding, msg.step) == (4, 6, "rgb8", 18)
        image = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(4, 6, 3)
        np.testing.assert_array_equal(image, np.arange(72, dtype=np.uint8).reshape(4, 6, 3))
        seqs = [int(m.header.frame_id.split("_")[1]) for m in received]
        assert seqs == sorted(seqs)  # in order, distinct messages
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        publisher.terminate()
        publisher.wait(timeout=10)
