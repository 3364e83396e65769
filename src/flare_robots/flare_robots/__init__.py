"""Robot backends behind `flare_core.bridge.RobotBackend`: Stretch RE1 through stretch_body, LoCoBot through
interbotix_xs_modules. The SDKs are imported lazily, on the robot only; `fakes` stands in for them in tests."""

from flare_robots.errors import BackendUnavailable

__all__ = ["BackendUnavailable"]
