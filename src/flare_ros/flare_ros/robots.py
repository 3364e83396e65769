"""The robots the bridges drive, named once for the bridge node, the graph, the launch files and the demo (no
rclpy here, so bringup can read it without starting ROS)."""

ROBOT_EMBODIMENT = {"stretch": "stretch_re1", "locobot": "locobot"}  # bridge robot -> its core embodiment
ROBOTS = tuple(ROBOT_EMBODIMENT)
SIM_BACKEND = "sim"  # the gridhouse stepping as the robot
REAL_BACKENDS = {"stretch": ("stretch_body", "stretch_driver"), "locobot": ("interbotix", "cmd_vel")}  # first: default


def backends(robot: str) -> tuple[str, ...]:
    """Every backend a robot's bridge accepts."""
    return (SIM_BACKEND, *REAL_BACKENDS[robot])
