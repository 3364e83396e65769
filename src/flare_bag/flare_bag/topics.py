"""Which topics a FLaRe bag holds, and their message types (ROS 2 names, as rosbags and `ros2 bag` use them)."""

from __future__ import annotations

from flare_core import protocol
from flare_core.protocol import CAMERAS

# relative topic -> message type
RECORDED: dict[str, str] = {
    protocol.GOAL: "std_msgs/msg/String",
    protocol.ACTION: "std_msgs/msg/String",
    protocol.ACTION_DONE: "std_msgs/msg/String",
    protocol.POLICY_STATUS: "std_msgs/msg/String",
    protocol.BRIDGE_STATUS: "std_msgs/msg/String",
    protocol.ESTOP: "std_msgs/msg/Bool",
    protocol.SIM_TASK: "std_msgs/msg/String",
    **{protocol.camera_topic(c): "sensor_msgs/msg/Image" for c in CAMERAS},
}


def ros2_bag_record_command(out: str = "flare_run", namespace: str = "") -> str:
    """The equivalent `ros2 bag record` command for a robot (MCAP storage)."""
    prefix = "/" + namespace.strip("/") + "/" if namespace.strip("/") else "/"
    topics = " ".join(prefix + t for t in RECORDED)
    return f"ros2 bag record -s mcap -o {out} {topics}"
