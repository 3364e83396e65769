"""Action bridge logic: the one gate between a policy's action and a robot's motion (no rclpy here).

A bridge refuses what its robot's embodiment masks, what it does not know, and anything while the e-stop is
engaged or a motion is still running; a refusal is reported and nothing moves. Motions are driven by
`tick()` once per control period, so an e-stop (handled at once, not at the next tick) halts a motion part-way
and a velocity-controlled base never runs longer than its motion. When no command arrives for
`command_timeout_s`, the bridge halts the robot again (a dead policy never leaves a base creeping).

Backends (stretch_body, interbotix, ROS topics, the simulated robot) implement `RobotBackend`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from flare_core.actions import Action, UnknownActionError, action_by_name
from flare_core.embodiments import Embodiment, Motion
from flare_core.protocol import ActionCommand, ActionDone, Result

log = logging.getLogger("flare.bridge")


@dataclass(frozen=True)
class Progress:
    """What a backend reports for the motion in progress."""

    done: bool = False
    error: str = ""  # non-empty: the motion failed
    clipped: str = ""  # non-empty with `done`: it ended short of what was asked, and why
    holding: bool | None = None
    episode_over: bool = False
    success: bool | None = None


@dataclass
class BackendInfo:
    """Static facts a backend reports once, for logs and status."""

    robot: str
    backend: str
    notes: list[str] = field(default_factory=list)


class RobotBackend(ABC):
    """A robot (or the simulated one) that performs one discrete action at a time."""

    #: the actions this backend can perform on this robot, and their motions
    embodiment: Embodiment
    info: BackendInfo

    def not_ready(self) -> str:
        """Why the robot cannot move now (run-stopped, not homed, ...); empty when it can."""
        return ""

    @abstractmethod
    def start(self, action: Action, motion: Motion, now: float) -> None:
        """Begin `action`; must return at once (the bridge polls)."""

    @abstractmethod
    def poll(self, now: float) -> Progress:
        """Drive and check the motion in progress (called every control period)."""

    @abstractmethod
    def halt(self) -> None:
        """Stop every motion now (a failed motion, the watchdog). Idempotent; must not raise."""

    def emergency_stop(self) -> None:
        """The e-stop: at least `halt`; a robot with a hardware run-stop triggers it."""
        self.halt()

    def release_estop(self) -> None:  # noqa: B027 (optional hook: robots without a run-stop have nothing to reset)
        """The e-stop was released: reset a hardware run-stop that `emergency_stop` triggered."""

    def close(self) -> None:  # noqa: B027 (optional hook: most backends hold nothing to release)
        """Release the hardware (called on shutdown after `halt`)."""


@dataclass
class BridgeConfig:
    control_period_s: float = 0.05
    command_timeout_s: float = 2.0  # no command for this long: halt again (watchdog)
    motion_timeout_s: float = 20.0  # a motion that has not finished by then failed


class ActionBridge:
    def __init__(self, backend: RobotBackend, config: BridgeConfig | None = None, now: float = 0.0) -> None:
        self.backend = backend
        self.config = config or BridgeConfig()
        self.current: ActionCommand | None = None
        self.started_at = 0.0
        self.estopped = False
        self.last_command_at = now
        self.watchdog_fired = False
        self.events: list[str] = []  # human-readable, drained by the node into its log and status

    @property
    def embodiment(self) -> Embodiment:
        return self.backend.embodiment

    def _event(self, text: str, level: int = logging.INFO) -> None:
        log.log(level, text)
        self.events.append(text)

    def _refuse(self, command: ActionCommand, why: str, stamp_ns: int) -> ActionDone:
        self._event(f"refused action {command.action!r} (id {command.id}): {why}; the robot was not moved",
                    logging.WARNING)  # fmt: skip
        return ActionDone(command.id, command.action, Result.REFUSED, why, stamp_ns)

    def submit(self, command: ActionCommand, now: float, stamp_ns: int = 0) -> ActionDone | None:
        """Start a command; a refusal comes back at once, a completion later from `tick`."""
        self.last_command_at = now
        self.watchdog_fired = False
        try:
            action = action_by_name(command.action)
        except UnknownActionError as err:
            return self._refuse(command, str(err), stamp_ns)
        if self.estopped:
            return self._refuse(command, "e-stop engaged (publish false on flare/estop to release)", stamp_ns)
        if self.current is not None:
            return self._refuse(command, f"busy with action {self.current.action!r} (id {self.current.id})", stamp_ns)
        if action.name not in self.embodiment.motions:
            valid = ", ".join(self.embodiment.valid_names)
            return self._refuse(
                command, f"{action.name!r} ({action.description}) is masked for {self.embodiment.name}; "
                f"valid: {valid}", stamp_ns,
            )  # fmt: skip
        not_ready = self.backend.not_ready()
        if not_ready:
            return self._refuse(command, f"robot not ready: {not_ready}", stamp_ns)
        try:
            self.backend.start(action, self.embodiment.motions[action.name], now)
        except Exception as err:  # a driver error must be reported, and the robot halted
            self.backend.halt()
            self._event(f"action {action.name!r} could not start: {err}; robot halted", logging.ERROR)
            return ActionDone(command.id, command.action, Result.FAILED, f"could not start: {err}", stamp_ns)
        self.current, self.started_at = command, now
        return None

    def tick(self, now: float, stamp_ns: int = 0) -> ActionDone | None:
        """Drive the motion in progress; the completion when it ends. Also the idle watchdog."""
        if self.current is None:
            idle = now - self.last_command_at
            if idle > self.config.command_timeout_s and not self.watchdog_fired:
                self.backend.halt()
                self.watchdog_fired = True
                self._event(f"no command for {idle:.1f} s: robot halted (watchdog)")
            return None
        command = self.current
        try:
            progress = self.backend.poll(now)
        except Exception as err:
            progress = Progress(error=f"driver error: {err}")
        if not progress.error and not progress.done and now - self.started_at > self.config.motion_timeout_s:
            progress = Progress(error=f"not finished after {self.config.motion_timeout_s:.0f} s")
        if progress.error:
            self.backend.halt()
            self.current = None
            self._event(f"action {command.action!r} (id {command.id}) failed: {progress.error}; robot halted",
                        logging.ERROR)  # fmt: skip
            return ActionDone(command.id, command.action, Result.FAILED, progress.error, stamp_ns)
        if not progress.done:
            return None
        self.current = None
        self.last_command_at = now  # the watchdog counts from the end of the last motion
        if progress.clipped:
            self._event(f"action {command.action!r} (id {command.id}) clipped: {progress.clipped}", logging.WARNING)
        return ActionDone(
            command.id, command.action, Result.CLIPPED if progress.clipped else Result.DONE, progress.clipped,
            stamp_ns,
            holding=progress.holding, episode_over=progress.episode_over, success=progress.success,
        )  # fmt: skip

    def estop(self, engaged: bool, stamp_ns: int = 0) -> ActionDone | None:
        """Engage (halt now, abort the motion in progress) or release the e-stop."""
        if not engaged:
            if self.estopped:
                try:
                    self.backend.release_estop()
                except Exception as err:  # the robot stays run-stopped; backend.not_ready() will say so
                    self._event(f"e-stop released, but the robot's run-stop could not be reset: {err}", logging.ERROR)
                self._event("e-stop released: commands are accepted again")
            self.estopped = False
            return None
        self.backend.emergency_stop()
        was_engaged, self.estopped = self.estopped, True
        if not was_engaged:
            self._event("E-STOP engaged: robot halted", logging.WARNING)
        command, self.current = self.current, None
        if command is None:
            return None
        return ActionDone(command.id, command.action, Result.STOPPED, "halted by e-stop", stamp_ns)

    def abort(self, reason: str, stamp_ns: int = 0) -> ActionDone | None:
        """Halt and drop the motion in progress (e.g. the simulated world was reset under it)."""
        command, self.current = self.current, None
        self.backend.halt()
        if command is None:
            return None
        self._event(f"action {command.action!r} (id {command.id}) aborted: {reason}", logging.WARNING)
        return ActionDone(command.id, command.action, Result.STOPPED, reason, stamp_ns)

    def shutdown(self) -> None:
        self.backend.halt()
        self.backend.close()
