"""The policy node's logic, without rclpy: one episode per goal, one decision per completed action.

A goal starts an episode (fresh KV-cache). The loop then alternates: wait for a frame from every camera that
was taken after the last motion finished (never a stale one), decide, send the action, wait for its
completion. It stops on `end`, when the robot reports the episode over, at the step limit, on a refused or
failed action, or on e-stop. While a camera is silent for `camera_timeout_s` the loop is paused and says so;
it resumes by itself when frames come back. Time is passed in (seconds, monotonic; stamps in ns), so tests
drive it without sleeping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from flare_core.protocol import ActionCommand, ActionDone, PolicyStatus, Result

log = logging.getLogger("flare.policy")


class Policy(Protocol):
    def reset(self, goal: str) -> None: ...
    def act(self, frames: dict[str, np.ndarray], holding: bool): ...


class State(StrEnum):
    IDLE = "idle"  # no episode: waiting for a goal
    WAITING_FRAME = "waiting_frame"  # waiting for fresh frames to decide on
    ACTING = "acting"  # an action was sent; waiting for its completion
    PAUSED = "paused"  # a camera went silent: no decision until it is back
    FINISHED = "finished"  # the episode ended (reason says how); waiting for the next goal
    ESTOPPED = "estopped"  # e-stop engaged; a new goal is needed after release


@dataclass
class LoopConfig:
    step_limit: int = 500
    camera_timeout_s: float = 1.0  # a camera silent this long pauses the policy
    action_timeout_s: float = 30.0  # no completion this long ends the episode


class PolicyLoop:
    def __init__(self, policy: Policy, cameras: list[str], config: LoopConfig | None = None) -> None:
        self.policy = policy
        self.cameras = list(cameras)
        self.config = config or LoopConfig()
        self.state = State.IDLE
        self.episode = 0
        self.step = 0
        self.goal = ""
        self.reason = ""
        self.holding = False
        self.pending: ActionCommand | None = None
        self.sent_at = 0.0
        self.frames_after_ns = 0
        self.frames: dict[str, tuple[np.ndarray, int]] = {}  # camera -> (frame, stamp_ns)
        self.last_frame_at: dict[str, float] = {}  # camera -> monotonic receipt time
        self.next_id = 1
        self.last_action = ""
        self.last_latency_ms = 0.0  # preprocessing + inference + choice
        self.decision_ms = 0.0  # from the end of the last motion (or the goal) to the command
        self.outcome: bool | None = None
        self.changed = True  # status changed since the node last published it

    # -- inputs ----------------------------------------------------------------------------------------
    def on_goal(self, goal: str, now: float, stamp_ns: int) -> None:
        goal = goal.strip()
        if not goal:
            log.warning("ignored an empty goal")
            return
        if self.state in (State.WAITING_FRAME, State.ACTING, State.PAUSED):
            log.warning(f"new goal while episode {self.episode} was running: it ends here")
        self.policy.reset(goal)
        self.episode += 1
        self.step, self.goal, self.holding, self.pending, self.outcome = 0, goal, False, None, None
        self.frames_after_ns = stamp_ns
        self._set(State.WAITING_FRAME, "")
        log.info(f"episode {self.episode}: goal {goal!r}")
        self._check_cameras(now)

    def on_frame(self, camera: str, frame: np.ndarray, stamp_ns: int, now: float) -> None:
        if camera not in self.cameras:
            return
        self.frames[camera] = (frame, stamp_ns)
        self.last_frame_at[camera] = now
        if self.state == State.PAUSED and not self._silent(now):
            log.info("cameras are back: resuming")
            self._set(State.WAITING_FRAME, "")

    def on_done(self, done: ActionDone, now: float) -> None:
        if self.pending is None or done.id != self.pending.id:
            return  # not ours (hand-sent, or late after a reset)
        self.pending = None
        if done.holding is not None:
            self.holding = done.holding
        if done.result == Result.CLIPPED:
            log.info("action %r clipped: %s", done.action, done.message)  # as in simulation: a move cut short
        elif done.result != Result.DONE:
            self._finish(f"action {done.action!r} {done.result}: {done.message}", stopped=True)
            return
        self.step += 1
        if done.action == "end" or done.episode_over:
            self.outcome = done.success
            what = "policy chose end" if done.action == "end" else "robot ended the episode"
            self._finish(what + ("" if done.success is None else f" (success: {done.success})"))
        elif self.step >= self.config.step_limit:
            self._finish(f"step limit {self.config.step_limit} reached")
        else:
            self.frames_after_ns = done.stamp_ns
            self._set(State.WAITING_FRAME, "")

    def on_estop(self, engaged: bool) -> None:
        if engaged and self.state != State.ESTOPPED:
            self.pending = None
            log.warning(f"E-STOP: episode {self.episode} stopped at step {self.step}")
            self._set(State.ESTOPPED, "e-stop engaged")
        elif not engaged and self.state == State.ESTOPPED:
            self._set(State.IDLE, "e-stop released; send a goal to start an episode")

    # -- decisions -------------------------------------------------------------------------------------
    def tick(self, now: float, stamp_ns: int) -> ActionCommand | None:
        """Check timeouts; decide when fresh frames are there. Returns the command to publish, if any."""
        if self.state == State.ACTING and now - self.sent_at > self.config.action_timeout_s:
            self.fail(f"no completion for action {self.pending.action!r} within {self.config.action_timeout_s} s")
            return None
        if self.state in (State.WAITING_FRAME, State.PAUSED):
            self._check_cameras(now)
        if self.state != State.WAITING_FRAME:
            return None
        if any(c not in self.frames or self.frames[c][1] < self.frames_after_ns for c in self.cameras):
            return None  # only frames taken after the last motion finished
        frames = {c: self.frames[c][0] for c in self.cameras}
        try:
            result = self.policy.act(frames, self.holding)
        except (ValueError, KeyError, RuntimeError) as err:  # garbage in (bad frame, NaN logits): never act on it
            self.fail(f"policy step failed: {err}")
            return None
        self.decision_ms = (stamp_ns - self.frames_after_ns) / 1e6
        used = {c: self.frames[c][1] for c in self.cameras}  # lets a bag replay find exactly these frames
        self.pending = ActionCommand(result.name, self.next_id, self.episode, self.step, stamp_ns, used)
        self.next_id += 1
        self.sent_at = now
        self.last_action, self.last_latency_ms = result.name, result.latency_ms
        self._set(State.ACTING, "")
        return self.pending

    def status(self, stamp_ns: int) -> PolicyStatus:
        extra = {"holding": self.holding, "decision_ms": round(self.decision_ms, 3)}
        if self.outcome is not None:
            extra["success"] = self.outcome
        return PolicyStatus(self.state.value, self.episode, self.step, self.goal, self.reason, self.last_action,
                            round(self.last_latency_ms, 3), stamp_ns, extra)  # fmt: skip

    def fail(self, reason: str) -> None:
        """End the episode on an error (logged as a warning; the robot is not moved again)."""
        self.pending = None
        self._finish(reason, stopped=True)

    # -- internals -------------------------------------------------------------------------------------
    def _silent(self, now: float) -> list[str]:
        return [c for c in self.cameras if now - self.last_frame_at.get(c, -1e18) > self.config.camera_timeout_s]

    def _check_cameras(self, now: float) -> None:
        silent = self._silent(now)
        if silent and self.state == State.WAITING_FRAME:
            never = [c for c in silent if c not in self.last_frame_at]
            if never:
                why = f"no frames yet from camera(s) {', '.join(never)}"
            else:
                why = f"no frames from camera(s) {', '.join(silent)} for {self.config.camera_timeout_s:.1f} s"
            log.error(f"PAUSED: {why}; the robot is not moved until frames come back")
            self._set(State.PAUSED, why)

    def _finish(self, reason: str, stopped: bool = False) -> None:
        (log.warning if stopped else log.info)(f"episode {self.episode} finished after {self.step} steps: {reason}")
        self._set(State.FINISHED, reason)

    def _set(self, state: State, reason: str) -> None:
        self.state, self.reason, self.changed = state, reason, True
