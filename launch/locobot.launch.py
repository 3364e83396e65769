"""ros2 launch flare_bringup locobot.launch.py [robot:=sim|real] [backend:=interbotix|cmd_vel] [model:=DIR]

The FLaRe graph on an Interbotix LoCoBot, or on the simulated LoCoBot. Nodes and parameters come from
flare_bringup.graph (the same definition `python -m flare_bringup.graph --robot locobot` runs) and
flare_robots/locobot/config.yaml.
"""

from flare_bringup.launch_description import robot_launch_description


def generate_launch_description():
    return robot_launch_description("locobot")
