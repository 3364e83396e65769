"""Recorder node: writes the policy-relevant topics of a running graph into a ROS 2 bag with rosbags.

    python -m flare_bag.record --ros-args -p path:=runs/bags/run1 -p storage:=mcap     # or sqlite3

Messages are stored exactly as they arrived (raw CDR, no re-serialisation), stamped with their receipt time,
so the bag is what `ros2 bag record` would have written. On a robot with the ROS 2 CLI the equivalent is
`flare_bag.topics.ros2_bag_record_command()`; both kinds of bag replay. On Ctrl-C/SIGINT the recorder keeps
taking the messages already on their way (its backlog of frames included) until none has come for half a
second, then closes the bag.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, String

from flare_bag.topics import RECORDED
from flare_ros.common import StartupError, declare_parameters, run_node

PARAMETERS = {"path": "", "storage": "mcap"}
# Frames reliable, as the graph's cameras publish them (a best-effort reader would lose large frames to DDS
# fragmentation); a deep history keeps frames while the recorder is busy writing.
FRAME_QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
# Everything else reliable and deep: a recorder must not lose a command while it writes frames.
MESSAGE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_TYPES = {"std_msgs/msg/String": String, "std_msgs/msg/Bool": Bool, "sensor_msgs/msg/Image": Image}


class Recorder(Node):
    def __init__(self) -> None:
        super().__init__("flare_recorder")
        p = declare_parameters(self, PARAMETERS)
        if not p["path"]:
            raise StartupError("parameter `path` is empty: give the bag directory to create")
        if p["storage"] not in STORAGE:
            raise StartupError(f"storage {p['storage']!r} unknown; use mcap or sqlite3")
        path = Path(p["path"])
        if path.exists():
            raise StartupError(f"{path} exists; a bag is never overwritten: choose a new path")
        path.parent.mkdir(parents=True, exist_ok=True)
        typestore = get_typestore(Stores.ROS2_JAZZY)
        self.writer = Writer(path, version=9, storage_plugin=STORAGE[p["storage"]])
        self.writer.open()
        self.count = 0  # messages written; run_node drains on SIGINT until it stops changing
        namespace = self.get_namespace().rstrip("/")
        for topic, msgtype in RECORDED.items():
            connection = self.writer.add_connection(f"{namespace}/{topic}", msgtype, typestore=typestore)
            qos = FRAME_QOS if msgtype.endswith("Image") else MESSAGE_QOS
            self.create_subscription(_TYPES[msgtype], topic, partial(self.write, connection), qos, raw=True)
        self.get_logger().info(f"recording {len(RECORDED)} topics into {path} ({p['storage']})")

    def write(self, connection, raw: bytes) -> None:  # raw CDR, as received
        self.writer.write(connection, self.get_clock().now().nanoseconds, raw)
        self.count += 1

    def close(self) -> None:
        self.writer.close()
        self.get_logger().info(f"bag closed: {self.count} messages")


def main() -> None:
    run_node(Recorder, drain_s=0.5)


if __name__ == "__main__":
    main()
