"""ros2 launch flare_bringup stretch.launch.py [robot:=sim|real] [backend:=stretch_body|stretch_driver] [model:=DIR]
    [actions:=stretch_nav]

The FLaRe graph on a Hello Robot Stretch RE1, or on the simulated Stretch. Nodes and parameters come from
flare_bringup.graph (the same definition `python -m flare_bringup.graph --robot stretch` runs) and
flare_robots/stretch/config.yaml.
"""

from flare_bringup.launch_description import robot_launch_description


def generate_launch_description():
    return robot_launch_description("stretch")
