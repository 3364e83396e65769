"""The robots of the FLaRe stack, one folder each (`stretch/`, `locobot/`): a `RobotSpec` naming the embodiment,
backends and graph parameters, the backends themselves (SDKs imported lazily, on the robot only) and fakes of
those SDKs for tests. See `robot.py`, and "Adding a robot" in the README."""

from flare_robots.errors import BackendUnavailable

__all__ = ["BackendUnavailable"]
