"""What a robot is to the FLaRe stack: one `RobotSpec` per robot folder (`flare_robots/<robot>/`).

A spec names the robot's embodiment (the one definition in `flare_core.embodiments`), its real backends (the
first is the default; each a `module:factory` imported only when chosen, so reading a spec needs neither rclpy
nor an SDK), and its graph parameters (`config.yaml` beside it: node parameters and which camera feeds each of
the policy's cameras, `flare_core.protocol.CAMERAS`). The simulated robot (`sim`) serves every robot.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

SIM_BACKEND = "sim"  # the gridhouse stepping as the robot


@dataclass(frozen=True)
class RobotSpec:
    name: str  # the bridge's name: <name>_bridge, <name>.launch.py
    embodiment: str  # flare_core embodiment
    folder: Path  # flare_robots/<name>/, holding config.yaml
    backends: dict[str, str]  # real backend name -> "module:factory(node, params) -> RobotBackend"; first = default
    bridge_parameters: dict = field(default_factory=dict)  # the backends' node parameters and their defaults

    @property
    def config(self) -> Path:
        """The graph's ROS 2 parameter file for this robot."""
        return self.folder / "config.yaml"

    @property
    def real_backends(self) -> tuple[str, ...]:
        return tuple(self.backends)

    @property
    def all_backends(self) -> tuple[str, ...]:
        return (SIM_BACKEND, *self.backends)

    def make_backend(self, backend: str, node, params: dict):
        """Build a real backend; `node` is the bridge's rclpy node (topic backends publish through it)."""
        module, _, factory = self.backends[backend].partition(":")
        return getattr(importlib.import_module(module), factory)(node, params)


def robots() -> dict[str, RobotSpec]:
    from flare_robots.locobot import LOCOBOT
    from flare_robots.stretch import STRETCH

    return {spec.name: spec for spec in (STRETCH, LOCOBOT)}


def get_robot(name: str) -> RobotSpec:
    known = robots()
    if name not in known:
        raise ValueError(f"unknown robot {name!r}; use one of {', '.join(known)}")
    return known[name]
