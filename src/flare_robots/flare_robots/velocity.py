"""Discrete base actions as timed velocity commands, for bases driven by velocity (LoCoBot, cmd_vel topics)."""

from __future__ import annotations

from dataclasses import dataclass

from flare_core.actions import Joint
from flare_core.embodiments import Motion


@dataclass(frozen=True)
class VelocityLimits:
    linear_m_s: float = 0.2
    angular_rad_s: float = 0.5


@dataclass(frozen=True)
class VelocityPlan:
    linear: float  # m/s, + forward
    angular: float  # rad/s, + counter-clockwise
    duration_s: float

    def command_at(self, elapsed_s: float) -> tuple[float, float]:
        """The velocity to command `elapsed_s` into the motion: the plan, then zero."""
        return (self.linear, self.angular) if elapsed_s < self.duration_s else (0.0, 0.0)


def plan_base_motion(motion: Motion, limits: VelocityLimits) -> VelocityPlan:
    """Constant-speed profile covering `motion.delta` (open loop: odometry-closed control is the driver's job)."""
    if motion.joint == Joint.BASE_TRANSLATE:
        speed = limits.linear_m_s if motion.delta >= 0 else -limits.linear_m_s
        return VelocityPlan(speed, 0.0, abs(motion.delta) / limits.linear_m_s)
    if motion.joint == Joint.BASE_ROTATE:
        speed = limits.angular_rad_s if motion.delta >= 0 else -limits.angular_rad_s
        return VelocityPlan(0.0, speed, abs(motion.delta) / limits.angular_rad_s)
    raise ValueError(f"{motion.joint} is not a base motion")
