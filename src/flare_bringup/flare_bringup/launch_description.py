"""Launch descriptions for `ros2 launch` (needs `launch` and `launch_ros`, present on a ROS 2 Jazzy install,
not on PyPI): turns `graph.graph_nodes` into launch_ros Nodes, so both ways of starting share one graph: the
same parameters, the same Fast DDS frame transport (`graph.graph_environment`), and a policy or bridge that
dies ends the launch."""

from __future__ import annotations

from flare_bringup.graph import DDS_PROFILE_VARIABLE, config_file, graph_environment, graph_nodes
from flare_robots.robot import get_robot


def robot_launch_description(robot: str):
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    backends = " | ".join(get_robot(robot).real_backends)

    def nodes(context, *args, **kwargs):
        real = LaunchConfiguration("robot").perform(context) == "real"
        backend = LaunchConfiguration("backend").perform(context)
        model = LaunchConfiguration("model").perform(context)
        greedy = LaunchConfiguration("greedy").perform(context).lower() == "true"
        record = LaunchConfiguration("record").perform(context)
        storage = LaunchConfiguration("storage").perform(context)
        actions = LaunchConfiguration("actions").perform(context)
        profile = graph_environment().get(DDS_PROFILE_VARIABLE)  # the frame transport, unless one is set
        set_profile = [SetEnvironmentVariable(DDS_PROFILE_VARIABLE, profile)] if profile else []
        return set_profile + [
            Node(
                package=spec.package,
                executable=spec.executable,
                name=spec.name,
                parameters=[str(config_file(robot)), spec.parameters],
                output="screen",
                emulate_tty=True,
                on_exit=Shutdown(reason=f"{spec.name} exited") if spec.required else None,
            )
            for spec in graph_nodes(robot, real, backend, model, greedy, record, storage, actions)
        ]

    return LaunchDescription(
        [
            DeclareLaunchArgument("robot", default_value="sim", choices=["sim", "real"],
                                  description="sim: the simulated robot (gridhouse); real: the hardware"),
            DeclareLaunchArgument("backend", default_value="",
                                  description=f"real backend: {backends} (default the first)"),
            DeclareLaunchArgument("model", default_value="",
                                  description="directory with policy.onnx + model.json (default: shipped demo)"),
            DeclareLaunchArgument("greedy", default_value="true", choices=["true", "false"],
                                  description="argmax (true) or sampled actions"),
            DeclareLaunchArgument("record", default_value="",
                                  description="record the run into this new bag directory (empty: no recording)"),
            DeclareLaunchArgument("storage", default_value="mcap", choices=["mcap", "sqlite3"],
                                  description="bag storage when recording"),
            DeclareLaunchArgument("actions", default_value="",
                                  description="embodiment whose actions the policy may choose (default: the "
                                              "robot's; stretch_nav keeps a Stretch's arm still)"),
            OpaqueFunction(function=nodes),
        ]
    )  # fmt: skip
