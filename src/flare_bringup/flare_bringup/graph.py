"""The FLaRe node graph, defined once: the launch files and the plain Python entry point both build it here.

    python -m flare_bringup.graph --robot stretch            # simulated Stretch, shipped demo model
    python -m flare_bringup.graph --robot locobot --real     # real LoCoBot (interbotix backend)

`ros2 launch flare_bringup stretch.launch.py robot:=real` starts the same nodes with the same parameters on
a ROS 2 install; this entry point exists because the PyPI ROS 2 wheels have no `launch`/`ros2` CLI. Each
node runs in its own process, as under `ros2 launch`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from flare_core.embodiments import get_embodiment
from flare_core.protocol import CAMERAS
from flare_robots.robot import SIM_BACKEND, get_robot, robots

ROBOTS = tuple(robots())

DEMO_MODEL = "gridhouse_demo"
DDS_PROFILE = Path(__file__).with_name("fastdds_frames.xml")  # shared memory for whole camera frames
DDS_PROFILE_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"


def graph_environment(environ: dict | None = None) -> dict:
    """The environment the graph's nodes run in: the frame transport profile, unless Fast DDS already has one
    (a user's profile wins) or another RMW is chosen."""
    env = dict(os.environ if environ is None else environ)
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") == "rmw_fastrtps_cpp":
        env.setdefault(DDS_PROFILE_VARIABLE, str(DDS_PROFILE))
    return env


@dataclass(frozen=True)
class NodeSpec:
    package: str
    executable: str  # console script, as `ros2 launch` runs it
    module: str  # python -m entry, as the plain entry point runs it
    name: str
    parameters: dict = field(default_factory=dict)  # on top of the YAML file
    required: bool = False  # the graph ends when it dies (policy, bridge); a dead camera only pauses the policy


def config_file(robot: str) -> Path:
    """The robot's graph parameters: `config.yaml` in its `flare_robots/<robot>/` folder."""
    return get_robot(robot).config


def default_model() -> Path:
    """The shipped demo model: in the installed share directory, else in the source tree's models/."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("flare_bringup")) / "models" / DEMO_MODEL)
    except (ImportError, LookupError, OSError):  # no ament index (plain Python), or not installed by colcon
        pass
    candidates.append(Path(__file__).resolve().parents[3] / "models" / DEMO_MODEL)
    for path in candidates:
        if (path / "model.json").is_file():
            return path
    return candidates[-1]


def graph_nodes(
    robot: str,
    real: bool = False,
    backend: str = "",
    model: str = "",
    greedy: bool = True,
    record: str = "",
    storage: str = "mcap",
    actions: str = "",
) -> list[NodeSpec]:
    """The nodes for `robot`: policy + bridge, camera nodes on a real robot (the simulated one renders), and a
    bag recorder when `record` names a bag directory to create. `actions`: the embodiment whose actions the
    policy may choose (default the YAML's `robot`; `stretch_nav` keeps a Stretch's arm still)."""
    if robot not in ROBOTS:
        raise ValueError(f"unknown robot {robot!r}; use one of {', '.join(ROBOTS)}")
    real_backends = get_robot(robot).real_backends
    if real:
        backend = backend or real_backends[0]
        if backend not in real_backends:
            raise ValueError(f"{robot} real backends are {', '.join(real_backends)}, not {backend!r}")
    elif backend not in ("", SIM_BACKEND):
        raise ValueError(f"backend {backend!r} needs robot:=real; the simulated robot's backend is sim")
    backend = backend if real else SIM_BACKEND
    policy_params = {"model": str(model or default_model()), "greedy": greedy}
    if actions:
        get_embodiment(actions)  # refuse an unknown name here, not in the node
        policy_params["robot"] = actions
    if not real:  # the simulated robot moves in the gridhouse: it can do only what both bodies can
        policy_params["robot"] = f"{actions or get_robot(robot).embodiment}+gridhouse"
        if not model:
            policy_params["embodiment"] = "gridhouse"  # the demo model was trained in the gridhouse
    bridge = f"{robot}_bridge"  # its executable and its node name
    nodes = [
        NodeSpec("flare_ros", "policy_node", "flare_ros.policy_node", "flare_policy", policy_params, required=True),
        NodeSpec("flare_ros", bridge, "flare_ros.bridge_node", bridge, {"backend": backend}, required=True),
    ]
    if real:
        nodes += [NodeSpec("flare_ros", "camera_node", "flare_ros.camera_node", f"flare_camera_{c}") for c in CAMERAS]
    if record:
        nodes.append(NodeSpec("flare_bag", "recorder", "flare_bag.record", "flare_recorder",
                              {"path": record, "storage": storage}))  # fmt: skip
    return nodes


def _ros_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def node_command(spec: NodeSpec, robot: str, extra: dict | None = None) -> list[str]:
    args = [sys.executable, "-m", spec.module]
    if spec.module == "flare_ros.bridge_node":
        args.append(robot)
    args += ["--ros-args", "-r", f"__node:={spec.name}", "--params-file", str(config_file(robot))]
    for key, value in {**spec.parameters, **(extra or {})}.items():
        args += ["-p", f"{key}:={_ros_value(value)}"]
    return args


class Graph:
    """The node processes of one graph; a context manager that stops them all (SIGINT, then SIGKILL)."""

    def __init__(self, robot: str, real: bool = False, backend: str = "", model: str = "", greedy: bool = True,
                 overrides: dict[str, dict] | None = None, log_dir: Path | None = None,
                 extra: list[NodeSpec] | None = None, record: str = "", storage: str = "mcap",
                 actions: str = "") -> None:  # fmt: skip
        """`overrides`: node name -> parameters on top of the YAML; `extra`: more nodes (tests: cameras);
        `record`: a bag directory to record the run into."""
        self.robot = robot
        self.specs = graph_nodes(robot, real, backend, model, greedy, record, storage, actions) + list(extra or [])
        self.overrides = overrides or {}
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> Graph:
        env = {**graph_environment(), "PYTHONUNBUFFERED": "1"}
        for spec in self.specs:
            out = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{spec.name}.log", "w")
            command = node_command(spec, self.robot, self.overrides.get(spec.name))
            self.processes[spec.name] = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT if out else None
            )
        return self

    def dead(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def dead_required(self) -> dict[str, int]:
        required = {s.name for s in self.specs if s.required}
        return {name: code for name, code in self.dead().items() if name in required}

    def kill(self, name: str) -> None:
        """Kill one node outright (tests: a camera dying)."""
        self.processes[name].kill()
        self.processes[name].wait()

    def stop(self) -> None:
        for p in self.processes.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for p in self.processes.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def log(self, name: str) -> str:
        if self.log_dir is None:
            return ""
        path = self.log_dir / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def __enter__(self) -> Graph:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", choices=ROBOTS, default="stretch")
    parser.add_argument("--real", action="store_true", help="the real robot (default: the simulated one)")
    parser.add_argument("--backend", default="", help="real backend (stretch: stretch_body|stretch_driver; "
                        "locobot: interbotix|cmd_vel); default the first")  # fmt: skip
    parser.add_argument("--model", default="", help="model directory (default: the shipped demo model)")
    parser.add_argument("--sampled", action="store_true", help="sample actions instead of argmax")
    parser.add_argument("--record", default="", help="record the run into this new bag directory")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    parser.add_argument("--actions", default="", help="embodiment whose actions the policy may choose (default: "
                        "the robot's; stretch_nav keeps a Stretch's arm still)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        graph = Graph(args.robot, args.real, args.backend, args.model, not args.sampled, record=args.record,
                      storage=args.storage, actions=args.actions)  # fmt: skip
    except ValueError as err:
        parser.error(str(err))
    print(f"starting {', '.join(s.name for s in graph.specs)}; Ctrl-C stops all", flush=True)
    with graph:
        try:
            reported: set[str] = set()
            while not graph.dead_required():
                for name in set(graph.dead()) - reported:
                    print(f"{name} exited ({graph.dead()[name]}); the policy pauses without it", file=sys.stderr)
                    reported.add(name)
                time.sleep(0.5)
            print(f"node(s) exited: {graph.dead_required()}; stopping the graph", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
