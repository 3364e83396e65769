"""Interbotix LoCoBot: navigation and camera tilt through the Interbotix SDK, or the base alone through cmd_vel."""

from pathlib import Path

from flare_robots.robot import RobotSpec

LOCOBOT = RobotSpec(
    name="locobot",
    embodiment="locobot",
    folder=Path(__file__).resolve().parent,
    backends={
        "interbotix": "flare_robots.locobot:make_interbotix",
        "cmd_vel": "flare_robots.locobot:make_cmd_vel",
    },
    bridge_parameters={
        "robot_model": "locobot_base",  # interbotix
        "base_type": "create3",  # interbotix: create3 | kobuki
        "cmd_vel_topic": "/locobot/mobile_base/cmd_vel",  # cmd_vel (Kobuki: /locobot/mobile_base/commands/velocity)
        "odom_topic": "",  # cmd_vel: nav_msgs/Odometry topic ("" = wait settle_s instead)
        "linear_m_s": 0.2,
        "angular_rad_s": 0.5,
        "settle_s": 0.5,
    },
)


def make_interbotix(node, p: dict):
    from flare_robots.locobot.interbotix import InterbotixBackend, InterbotixConfig

    config = InterbotixConfig(p["robot_model"], p["base_type"], p["linear_m_s"], p["angular_rad_s"], p["settle_s"])
    return InterbotixBackend(config=config)


def make_cmd_vel(node, p: dict):
    from flare_robots.velocity import VelocityLimits
    from flare_ros.topic_backends import CmdVelBackend

    limits = VelocityLimits(p["linear_m_s"], p["angular_rad_s"], settle_s=p["settle_s"])
    return CmdVelBackend(node, "locobot", p["cmd_vel_topic"], limits, p["odom_topic"])
