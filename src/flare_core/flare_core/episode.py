"""The policy node's logic, without rclpy: one episode per goal, one decision per completed action.

A goal starts an episode (fresh KV-cache). The loop then alternates: wait for a frame from every camera that
was taken after the last motion finished (never a stale one), decide, send the action, wait for its
completion. It stops on `end`, when the robot reports the episode over, at the step limit, on a refused or
failed action, on e-stop, or when the simulated world is reset under it. While a camera is silent (or sends
only frames that cannot be used) for `camera_timeout_s` the loop is paused and says why; it resumes by itself
when frames come back.

A goal is refused, and whatever runs goes on, when it is empty, while the e-stop is engaged, or when the model
would misread it (words outside its vocabulary, more words than it reads; `accept_unknown_words` lets such a
goal through with a warning). A goal that arrives while the last episode's motion still runs starts its
episode at once, but the first decision waits for that motion's completion and for frames taken after it.
Time is passed in (seconds, monotonic; stamps in ns), so tests drive it without sleeping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from flare_core.protocol import ActionCommand, ActionDone, PolicyStatus, Result, clip_text

log = logging.getLogger("flare.policy")


class Policy(Protocol):
    def check_goal(self, goal: str) -> str: ...
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
    accept_unknown_words: bool = False  # run goals the model would misread (warned), instead of refusing them


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
        self.in_flight: ActionCommand | None = None  # a previous episode's command whose motion still runs
        self.goal_stamp_ns = 0
        self.goal_at = -1e18  # monotonic time of the last accepted goal
        self.goal_refused = ""  # why the last goal was refused (cleared by the next accepted one)
        self.camera_problems: dict[str, str] = {}  # camera -> why its frames are not used (black, undecodable)
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
        refusal = self._goal_refusal(goal)
        if refusal:
            self.goal_refused = f"goal {clip_text(goal, 80)!r} refused: {refusal}"
            log.warning(self.goal_refused)
            self.changed = True
            return
        if self.running:
            log.warning(f"new goal while episode {self.episode} was running: it ends here")
        if self.pending is not None:  # its motion is still under way on the robot: the new episode waits for it
            self.in_flight = self.pending
        self.policy.reset(goal)
        self.episode += 1
        self.step, self.goal, self.holding, self.pending, self.outcome = 0, goal, False, None, None
        self.goal_refused = ""
        self.frames_after_ns = self.goal_stamp_ns = stamp_ns
        self.goal_at = now
        self._set(State.WAITING_FRAME, self._waiting_reason())
        log.info(f"episode {self.episode}: goal {clip_text(goal)!r}")
        self._check_cameras(now)

    def _goal_refusal(self, goal: str) -> str:
        if not goal:
            return "the goal is empty"
        if self.state == State.ESTOPPED:
            return "the e-stop is engaged; release it (false on flare/estop), then send the goal again"
        problem = self.policy.check_goal(goal)
        if problem and not self.config.accept_unknown_words:
            return f"{problem} (rephrase it, or set accept_unknown_words to run it anyway)"
        if problem:
            log.warning(f"goal {clip_text(goal, 80)!r}: {problem}; running it anyway (accept_unknown_words)")
        return ""

    def on_world_reset(self, stamp_ns: int, for_episode: int = 0) -> None:
        """The simulated world was posed anew at `stamp_ns`: an episode started before that (and not the one
        the world was posed for) belongs to a world that is gone, so it ends rather than resume in the new one."""
        if self.running and self.episode != for_episode and self.goal_stamp_ns < stamp_ns:
            self.pending = self.in_flight = None
            self._finish("the simulated world was reset under this episode; send the goal again", stopped=True)

    @property
    def running(self) -> bool:
        return self.state in (State.WAITING_FRAME, State.ACTING, State.PAUSED)

    def on_frame(self, camera: str, frame: np.ndarray, stamp_ns: int, now: float) -> None:
        if camera not in self.cameras:
            return
        self.frames[camera] = (frame, stamp_ns)
        self.last_frame_at[camera] = now
        if self.camera_problems.pop(camera, None) is not None:
            self.changed = True
        if self.state == State.PAUSED and not self._silent(now):
            log.info("cameras are back: resuming")
            self._set(State.WAITING_FRAME, self._waiting_reason())

    def on_camera_problem(self, camera: str, why: str, now: float) -> None:
        """Frames from `camera` arrive but cannot be used (undecodable, all black): the reason a pause gives."""
        if camera in self.cameras and self.camera_problems.get(camera) != why:
            self.camera_problems[camera] = why
            self.changed = True
            if self.state == State.PAUSED:
                self._check_cameras(now)

    def clear_camera_problem(self, camera: str, why: str) -> None:
        """`why` no longer holds for `camera` (e.g. a publisher appeared): a pause must not give it as a reason."""
        if self.camera_problems.get(camera) == why:
            del self.camera_problems[camera]
            self.changed = True

    def on_done(self, done: ActionDone, now: float) -> None:
        if self.in_flight is not None and done.id == self.in_flight.id:
            self.in_flight = None  # the previous episode's motion is over: decide on frames taken after it
            self.frames_after_ns = max(self.frames_after_ns, done.stamp_ns)
            if self.state == State.WAITING_FRAME:
                self._set(State.WAITING_FRAME, "")
            return
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
            self.pending = self.in_flight = None  # the bridge halts and reports them: nothing left to wait for
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
        if self.in_flight is not None and now - self.sent_at > self.config.action_timeout_s:
            action, self.in_flight = self.in_flight.action, None
            self.fail(f"no completion for the last episode's action {action!r} within {self.config.action_timeout_s} s")
            return None
        if self.state in (State.WAITING_FRAME, State.PAUSED):
            self._check_cameras(now)
        if self.state != State.WAITING_FRAME or self.in_flight is not None:
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
        if self.goal_refused:
            extra["goal_refused"] = self.goal_refused
        if self.camera_problems:
            extra["camera_problems"] = dict(self.camera_problems)
        return PolicyStatus(self.state.value, self.episode, self.step, clip_text(self.goal), self.reason,
                            self.last_action, round(self.last_latency_ms, 3), stamp_ns, extra)  # fmt: skip

    def fail(self, reason: str) -> None:
        """End the episode on an error (logged as a warning; the robot is not moved again)."""
        self.pending = None
        self._finish(reason, stopped=True)

    # -- internals -------------------------------------------------------------------------------------
    def _silent(self, now: float) -> list[str]:
        """Cameras with no frame for `camera_timeout_s`, counted from the goal at the earliest: a camera that
        only shows a world while a task runs (the simulated robot) gets that long to deliver its first frame."""
        since = {c: max(self.last_frame_at.get(c, -1e18), self.goal_at) for c in self.cameras}
        return [c for c in self.cameras if now - since[c] > self.config.camera_timeout_s]

    def _waiting_reason(self) -> str:
        if self.in_flight is None:
            return ""
        return f"waiting for the last episode's action {self.in_flight.action!r} to finish before deciding"

    def _check_cameras(self, now: float) -> None:
        silent = self._silent(now)
        if silent and self.state in (State.WAITING_FRAME, State.PAUSED):
            never = [c for c in silent if c not in self.last_frame_at]
            if never:
                why = f"no frames yet from camera(s) {', '.join(never)}"
            else:
                why = f"no frames from camera(s) {', '.join(silent)} for {self.config.camera_timeout_s:.1f} s"
            known = [f"{c}: {self.camera_problems[c]}" for c in silent if c in self.camera_problems]
            if known:
                why += f" ({'; '.join(known)})"
            if self.state == State.PAUSED and why == self.reason:
                return
            log.error(f"PAUSED: {why}; the robot is not moved until frames come back")
            self._set(State.PAUSED, why)

    def _finish(self, reason: str, stopped: bool = False) -> None:
        (log.warning if stopped else log.info)(f"episode {self.episode} finished after {self.step} steps: {reason}")
        self._set(State.FINISHED, reason)

    def _set(self, state: State, reason: str) -> None:
        self.state, self.reason, self.changed = state, reason, True
