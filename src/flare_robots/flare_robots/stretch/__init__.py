"""Hello Robot Stretch RE1: all 20 actions through stretch_body, or the base alone through stretch_ros2's driver."""

from pathlib import Path

from flare_robots.robot import RobotSpec

STRETCH = RobotSpec(
    name="stretch",
    embodiment="stretch_re1",
    folder=Path(__file__).resolve().parent,
    backends={
        "stretch_body": "flare_robots.stretch:make_stretch_body",
        "stretch_driver": "flare_robots.stretch:make_stretch_driver",
    },
    bridge_parameters={
        "embodiment": "stretch_re1",  # stretch_body: stretch_nav keeps the arm still
        "cmd_vel_topic": "/stretch/cmd_vel",  # stretch_driver
        "odom_topic": "/odom",
        "linear_m_s": 0.2,
        "angular_rad_s": 0.5,
        "settle_s": 0.5,
    },
)


def make_stretch_body(node, p: dict):
    from flare_robots.stretch.stretch_body import StretchBodyBackend, StretchBodyConfig

    return StretchBodyBackend(config=StretchBodyConfig(embodiment=p["embodiment"]))


def make_stretch_driver(node, p: dict):
    from flare_robots.velocity import VelocityLimits
    from flare_ros.topic_backends import StretchDriverBackend

    limits = VelocityLimits(p["linear_m_s"], p["angular_rad_s"], settle_s=p["settle_s"])
    return StretchDriverBackend(node, p["cmd_vel_topic"], limits, p["odom_topic"])
