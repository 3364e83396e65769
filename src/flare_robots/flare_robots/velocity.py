"""Discrete base actions as timed velocity commands, for bases driven by velocity (LoCoBot, cmd_vel topics).

A motion is the plan's constant velocity for its duration, then zero; it is DONE only once the base has
stopped: odometry below `stop_speed` for `stopped_polls` polls in a row where the backend has odometry, else
`settle_s` after the zero command (a documented guess at the deceleration tail: Create 3, Kobuki and the
Stretch's VEL_PID ramp down within a few tenths of a second at these speeds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flare_core.actions import Joint
from flare_core.embodiments import Motion


@dataclass(frozen=True)
class VelocityLimits:
    linear_m_s: float = 0.2
    angular_rad_s: float = 0.5
    stop_speed: float = 0.01  # m/s and rad/s: below both, odometry says the base stands still
    stopped_polls: int = 2  # odometry must say so this many polls in a row
    settle_s: float = 0.5  # without odometry: wait this long after the zero command


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


class VelocityMotion:
    """One base motion in progress: what to command at each poll, and whether the base has come to rest.

    `odometry` returns the measured (linear m/s, angular rad/s), or None while none has been received.
    """

    def __init__(self, plan: VelocityPlan, limits: VelocityLimits, started: float,
                 odometry: Callable[[], tuple[float, float] | None] | None = None) -> None:  # fmt: skip
        self.plan, self.limits, self.started, self.odometry = plan, limits, started, odometry
        self.still_polls = 0

    def command(self, now: float) -> tuple[float, float]:
        return self.plan.command_at(now - self.started)

    def stopped(self, now: float) -> bool:
        """True once the commanded motion is over and the base is at rest."""
        after = now - self.started - self.plan.duration_s
        if after < 0:
            return False
        speeds = self.odometry() if self.odometry is not None else None
        if speeds is None:
            return after >= self.limits.settle_s
        still = abs(speeds[0]) < self.limits.stop_speed and abs(speeds[1]) < self.limits.stop_speed
        self.still_polls = self.still_polls + 1 if still else 0
        return self.still_polls >= self.limits.stopped_polls
