"""Read a FLaRe bag back into episodes: the goal, and at each decision the frames decided on, the recorded
action, its completion and the recorded latencies. Streams: one episode in memory at a time.

Works on bags from our recorder and on bags written by anything else (`ros2 bag record`, rosbags) with other
camera topics and bare action names: frames are then matched by time (the newest frame received before the
action) instead of by the stamps the policy node puts in each command.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flare_core import protocol
from flare_core.images import RawImage, header_stamp_ns

GOAL, ACTION, DONE, STATUS = protocol.GOAL, protocol.ACTION, protocol.ACTION_DONE, protocol.POLICY_STATUS
STRING, IMAGE = "std_msgs/msg/String", "sensor_msgs/msg/Image"
_RECENT_FRAMES = 64  # per camera: enough to find the frame a decision used, bounded for long runs
_CLOSING_NS = 2_000_000_000  # bag time an episode keeps taking late messages after the next goal


class BagError(ValueError):
    """A bag that cannot be replayed: unreadable, missing topics, wrong message types. Says what to do."""


@dataclass
class Decision:
    index: int  # within the episode
    action: str  # recorded
    log_ns: int  # when the recorder received the command
    frames: dict[str, tuple[int, RawImage]]  # camera -> (header stamp, image)
    command: protocol.ActionCommand
    done: protocol.ActionDone | None = None
    recorded_inference_ms: float | None = None
    recorded_decision_ms: float | None = None


@dataclass
class Episode:
    number: int  # 1-based order in the bag
    goal: str
    start_ns: int
    decisions: list[Decision] = field(default_factory=list)
    outcome: dict = field(default_factory=dict)  # recorded: reason, success (where the run knew it)
    problem: str = ""  # why this episode cannot be replayed (its frames are missing, ...)


def _resolve(connections: dict[str, str], wanted: str, namespace: str) -> str | None:
    """The bag topic for a relative or absolute name: exact, namespaced, or the unique one ending with it."""
    if wanted.startswith("/"):
        return wanted if wanted in connections else None
    exact = f"/{namespace.strip('/')}/{wanted}" if namespace.strip("/") else f"/{wanted}"
    if exact in connections:
        return exact
    ending = [t for t in connections if t.endswith("/" + wanted)]
    return ending[0] if len(ending) == 1 else None


class FlareBag:
    """An open bag and where each FLaRe stream lives in it."""

    def __init__(self, path: str | Path, cameras: dict[str, str], namespace: str = "") -> None:
        from rosbags.rosbag2 import Reader
        from rosbags.rosbag2.errors import ReaderError
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag (a ROS 2 bag is a directory with metadata.yaml)")
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except (ReaderError, OSError, ValueError, KeyError) as err:
            raise BagError(f"{self.path}: not a readable ROS 2 bag ({err}); re-record it or check the copy") from None
        self.typestore = get_typestore(Stores.ROS2_JAZZY)
        types = {c.topic: c.msgtype for c in self.reader.connections}
        wanted = {"goal": (GOAL, STRING), "action": (ACTION, STRING)}
        wanted |= {f"camera {name}": (topic, IMAGE) for name, topic in cameras.items()}
        optional = {"completion": (DONE, STRING), "status": (STATUS, STRING)}
        self.topics: dict[str, str] = {}
        missing, wrong = [], []
        for role, (name, msgtype) in {**wanted, **optional}.items():
            topic = _resolve(types, name, namespace)
            if topic is None:
                if role in wanted:
                    missing.append(f"{role} ({name})")
                continue
            if types[topic] != msgtype:
                wrong.append(f"{topic} is {types[topic]}, the {role} must be {msgtype}")
                continue
            self.topics[role] = topic
        if missing or wrong:
            listing = "\n  - ".join([*([f"missing {m}" for m in missing]), *wrong])
            raise BagError(
                f"{self.path}: cannot replay:\n  - {listing}\n"
                f"topics in the bag: {', '.join(f'{t} [{m}]' for t, m in sorted(types.items())) or 'none'}\n"
                "map other camera topics with --camera NAME=/topic, or pass --namespace"
            )
        self.cameras = {name: self.topics[f"camera {name}"] for name in cameras}
        self.message_count = self.reader.message_count

    def close(self) -> None:
        self.reader.close()

    def episodes(self) -> Iterator[Episode]:
        """Episodes in bag order; an action before any goal (recording started mid-episode) is skipped.

        Topics have no order between them, so an episode's last completion or its "finished" status can be
        logged after the next episode's goal: an episode stays open for `_CLOSING_NS` of bag time after the
        next goal, and late messages go to the episode they belong to (by command id, by goal). Likewise a new
        episode's first commands can be logged before its goal: the policy node's commands (episode number and
        a frame stamp per camera) of another policy episode than the open one's, or with none open, are held,
        and open the next goal's episode when they are its steps 0, 1, ... logged within `_CLOSING_NS` before.
        """
        role_of = {topic: role for role, topic in self.topics.items()}
        wanted = [c for c in self.reader.connections if c.topic in role_of]
        recent: dict[str, deque] = {name: deque(maxlen=_RECENT_FRAMES) for name in self.cameras}
        camera_of = {topic: name for name, topic in self.cameras.items()}
        current: _Open | None = None
        closing: _Open | None = None  # the previous episode, still taking late messages
        early: list[Decision] = []  # commands logged before their episode's goal
        count = 0
        for connection, log_ns, raw in self.reader.messages(connections=wanted):
            if closing is not None and log_ns > closing.deadline_ns:
                yield closing.finish()
                closing = None
            role = role_of[connection.topic]
            try:
                msg = self.typestore.deserialize_cdr(raw, connection.msgtype)
            except Exception as err:  # rosbags raises several types for corrupt CDR
                if current is not None and not current.episode.problem:
                    current.episode.problem = f"{connection.topic} message at {log_ns} ns cannot be decoded ({err})"
                continue
            open_ = [o for o in (closing, current) if o is not None]  # oldest first
            if role.startswith("camera"):
                stamp, image = header_stamp_ns(msg), RawImage.from_msg(msg)
                camera = camera_of[connection.topic]
                recent[camera].append((stamp, log_ns, image))
                # A recorder may log a command before the frame it was decided on (separate topics, no order).
                for o in open_:
                    o.frame_arrived(camera, stamp, image)
            elif role == "goal":
                if closing is not None:
                    yield closing.finish()
                closing = current
                if closing is not None:
                    closing.deadline_ns = log_ns + _CLOSING_NS
                count += 1
                current = _Open(Episode(count, msg.data.strip(), log_ns))
                for decision in _opening(early, log_ns):
                    decision.index = len(current.episode.decisions)
                    decision.frames = {
                        name: f or _pick(recent[name], decision.command.frames[name], 0, log_ns)
                        for name, f in decision.frames.items()
                    }  # frames logged between the command and the goal (held commands carry every stamp)
                    current.add(decision)
                early = []
            elif role == "action":
                try:
                    command = protocol.ActionCommand.parse(msg.data)
                except protocol.ProtocolError as err:
                    if current is not None:
                        episode = current.episode
                        episode.problem = episode.problem or f"decision {len(episode.decisions)}: {err}"
                    continue
                stamped = all(name in command.frames for name in self.cameras)  # frames findable by stamp alone
                if stamped and command.episode and _belongs_to_next_goal(current, command):
                    frames = {name: _pick(recent[name], command.frames[name], 0, log_ns) for name in self.cameras}
                    early.append(Decision(0, command.action, log_ns, frames, command))
                    continue
                if current is None:
                    continue
                episode = current.episode
                since = episode.decisions[-1].log_ns if episode.decisions else episode.start_ns
                frames = {name: _pick(recent[name], command.frames.get(name), since, log_ns) for name in self.cameras}
                current.add(Decision(len(episode.decisions), command.action, log_ns, frames, command))
            elif role == "completion" and open_:
                try:
                    done = protocol.ActionDone.parse(msg.data)
                except protocol.ProtocolError:
                    continue
                owner = next((o for o in open_ if done.id in o.by_id), None)
                if owner is not None:
                    owner.by_id[done.id].done = done
                if done.success is not None:  # a hand-sent command (id 0) counts for the current episode
                    (owner or open_[-1]).episode.outcome["success"] = done.success
            elif role == "status" and open_:
                try:
                    status = protocol.PolicyStatus.parse(msg.data)
                except (protocol.ProtocolError, TypeError):
                    continue
                for o in open_:
                    if o.take_status(status):
                        break
        for o in (closing, current):
            if o is not None:
                yield o.finish()


class _Open:
    """An episode being rebuilt: its decisions by command id, and those still waiting for a frame."""

    def __init__(self, episode: Episode) -> None:
        self.episode = episode
        self.by_id: dict[int, Decision] = {}
        self.waiting: list[Decision] = []
        self.deadline_ns = 0
        self.policy_episode: int | None = None  # the policy node's episode number, from its first command

    def add(self, decision: Decision) -> None:
        if self.policy_episode is None and decision.command.episode:
            self.policy_episode = decision.command.episode
        self.episode.decisions.append(decision)
        if any(f is None for f in decision.frames.values()):
            self.waiting.append(decision)
        if decision.command.id:
            self.by_id[decision.command.id] = decision

    def frame_arrived(self, camera: str, stamp: int, image: RawImage) -> None:
        for decision in self.waiting:
            if decision.frames.get(camera) is None and decision.command.frames.get(camera) == stamp:
                decision.frames[camera] = (stamp, image)
        self.waiting = [d for d in self.waiting if any(f is None for f in d.frames.values())]

    def take_status(self, status: protocol.PolicyStatus) -> bool:
        """Use a policy status if it is about this episode; say whether it was."""
        episode = self.episode
        if status.goal != episode.goal:
            return False
        if status.state == "acting" and episode.decisions:
            last = episode.decisions[-1]
            if last.command.step == status.step and last.action == status.last_action:
                last.recorded_inference_ms = status.latency_ms
                last.recorded_decision_ms = status.extra.get("decision_ms")
                return True
            return False
        if status.state in ("finished", "estopped") and "reason" not in episode.outcome:
            episode.outcome["reason"] = status.reason
            if "success" in status.extra:
                episode.outcome["success"] = status.extra["success"]
            return True
        return False

    def finish(self) -> Episode:
        return _finished(self.episode, self.waiting)


def _belongs_to_next_goal(current: _Open | None, command: protocol.ActionCommand) -> bool:
    """Whether a command belongs to an episode whose goal is not logged yet: none is open, or the open one is
    another policy episode."""
    return current is None or current.policy_episode not in (None, command.episode)


def _opening(early: list[Decision], goal_ns: int) -> list[Decision]:
    """The held commands that open the episode of a goal logged at `goal_ns`: the newest policy episode's
    steps 0, 1, ... in order, logged shortly before it; anything else (the tail of an episode whose goal was
    not recorded) is dropped."""
    recent = [d for d in early if goal_ns - d.log_ns <= _CLOSING_NS]
    recent = [d for d in recent if d.command.episode == recent[-1].command.episode] if recent else []
    if [d.command.step for d in recent] != list(range(len(recent))):
        return []
    return recent


def _finished(episode: Episode, waiting: list[Decision]) -> Episode:
    """Name the first decision whose frames never showed up."""
    if waiting and not episode.problem:
        d = waiting[0]
        absent = [name for name, f in d.frames.items() if f is None]
        episode.problem = (
            f"decision {d.index} ({d.action!r}): no frame from camera(s) {', '.join(absent)} in the bag"
            + (" with the stamp the policy decided on" if d.command.frames else " since the previous decision")
        )
    return episode


def _pick(frames: deque, stamp: int | None, since_ns: int, log_ns: int):
    """The frame a decision used: the one with the stamp the policy recorded; for bags without stamps, the
    newest received since the previous decision (a stale frame from before it is never used)."""
    for frame_stamp, frame_log, image in reversed(frames):
        if stamp is not None:
            if frame_stamp == stamp:
                return frame_stamp, image
        elif since_ns <= frame_log <= log_ns:
            return frame_stamp, image
    return None
