"""Bringup: one graph definition for `ros2 launch` and plain Python, YAML that only sets parameters the nodes
declare, the colcon install layout a robot gets, system-ROS setup, and nodes that refuse to start on bad
parameters with a message saying what to do."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flare_bringup.graph import ROBOTS, config_file, default_model, graph_nodes, node_command
from flare_ros import bridge_node, camera_node, policy_node

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("robot", ROBOTS)
def test_yaml_sets_only_declared_parameters(robot):
    declared = {
        "flare_policy": policy_node.PARAMETERS,
        f"{robot}_bridge": bridge_node.parameters(robot),
        "flare_camera_nav": camera_node.PARAMETERS,
        "flare_camera_manip": camera_node.PARAMETERS,
    }
    config = yaml.safe_load(config_file(robot).read_text())
    assert set(config) == set(declared)
    for node, section in config.items():
        values = section["ros__parameters"]
        unknown = set(values) - set(declared[node])
        assert not unknown, f"{config_file(robot).name}: {node} does not declare {unknown}"
        for key, value in values.items():  # same type as the default, or rclpy refuses it at start
            assert isinstance(value, type(declared[node][key])), (node, key, value)


def test_graph_nodes_for_each_robot_and_backend():
    sim = graph_nodes("stretch")
    assert [s.name for s in sim] == ["flare_policy", "stretch_bridge"]
    assert sim[1].parameters == {"backend": "sim"} and sim[0].parameters["model"] == str(default_model())
    real = graph_nodes("locobot", real=True)
    assert [s.name for s in real] == ["flare_policy", "locobot_bridge", "flare_camera_nav", "flare_camera_manip"]
    assert real[1].parameters == {"backend": "interbotix"}
    assert graph_nodes("stretch", real=True, backend="stretch_driver")[1].parameters["backend"] == "stretch_driver"
    # The simulated robot masks what the gridhouse cannot do; `actions` narrows what the policy may choose.
    assert sim[0].parameters["robot"] == "stretch_re1+gridhouse"
    assert graph_nodes("stretch", real=True, actions="stretch_nav")[0].parameters["robot"] == "stretch_nav"
    assert "robot" not in real[0].parameters  # a real robot: the YAML's
    for bad in [dict(robot="stretch", real=True, backend="interbotix"), dict(robot="stretch", backend="stretch_body"),
                dict(robot="spot"), dict(robot="stretch", actions="stretch_arm")]:  # fmt: skip
        with pytest.raises(ValueError):
            graph_nodes(**bad)
    command = node_command(sim[1], "stretch", {"sim_motion_s": 0.5, "publish_camera": False})
    assert command[-6:] == ["-p", "backend:=sim", "-p", "sim_motion_s:=0.5", "-p", "publish_camera:=false"]
    assert str(config_file("stretch")) in command


@pytest.mark.parametrize("robot", ROBOTS)
def test_launch_files_build_the_shared_graph(robot):
    source = (ROOT / "launch" / f"{robot}.launch.py").read_text()
    compile(source, f"{robot}.launch.py", "exec")
    assert "def generate_launch_description" in source and f'robot_launch_description("{robot}")' in source


def test_colcon_install_has_launch_files_config_model_and_executables():
    install = ROOT / "install"
    if not install.is_dir():
        pytest.skip("no colcon install tree: `make test` builds it first")
    share = install / "flare_bringup" / "share" / "flare_bringup"
    assert {p.name for p in (share / "launch").iterdir()} >= {"stretch.launch.py", "locobot.launch.py"}
    robots_share = install / "flare_robots" / "share" / "flare_robots"
    assert all((robots_share / robot / "config.yaml").is_file() for robot in ("stretch", "locobot"))
    assert (share / "models" / "gridhouse_demo" / "policy.onnx").is_file()
    executables = {p.name for p in (install / "flare_ros" / "lib" / "flare_ros").iterdir()}
    assert executables >= {"policy_node", "camera_node", "stretch_bridge", "locobot_bridge"}


def test_setup_uses_a_system_ros_when_there_is_one():
    def dry_run(*args):
        return subprocess.run(["make", "-n", "-B", "setup", *args], cwd=ROOT, capture_output=True, text=True).stdout

    system = dry_run("ROS_SETUP=/opt/ros/jazzy/setup.bash")
    assert "--system-site-packages" in system and "requirements-ros.txt" not in system
    assert ". /opt/ros/jazzy/setup.bash && " in system
    wheels = dry_run("ROS_SETUP=")
    assert "-r requirements-ros.txt" in wheels and "--system-site-packages" not in wheels


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("flare_ros.policy_node", ["-p", "model:=/nonexistent/model"], "cannot load the policy"),
        ("flare_ros.policy_node", [], "parameter `model` is empty"),
        ("flare_ros.bridge_node", ["-p", "backend:=interbotix"], "backend 'interbotix' unknown for stretch"),
        ("flare_ros.bridge_node", ["-p", "backend:=stretch_body"], "stretch_body is not importable"),
        ("flare_ros.camera_node", ["-p", "source:=/nonexistent.mp4"], "camera source '/nonexistent.mp4'"),
    ],
)
def test_nodes_refuse_to_start_with_a_clear_message(module, args, message):
    command = [sys.executable, "-m", module] + (["stretch"] if module.endswith("bridge_node") else [])
    result = subprocess.run([*command, "--ros-args", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    assert message in result.stderr and "[FATAL]" in result.stderr


def test_robot_dockerfile_copies_existing_files_and_shares_the_pins():
    dockerfile = (ROOT / "docker" / "robot.Dockerfile").read_text()
    base = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM "))
    assert ":" in base and not base.endswith(":latest")  # a pinned base
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"robot.Dockerfile copies {source}, which does not exist"
    pins = {line.split("==")[0]: line for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line}
    for line in (ROOT / "requirements-robot.txt").read_text().splitlines():
        if "==" in line:
            assert pins.get(line.split("==")[0]) == line, f"requirements-robot.txt {line} differs from requirements.txt"
