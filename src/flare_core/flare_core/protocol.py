"""What the nodes say to each other: topic names and the JSON payloads of their `std_msgs/String` messages.

Standard messages only (docs/design.md, contract 7): actions, completions and status are JSON in `std_msgs/String`,
readable with `ros2 topic echo` and recordable in any bag. An operator can also drive a bridge by hand with a
bare action name (`ros2 topic pub --once /flare/action std_msgs/String "data: m"`). Names are relative, so
a launch namespace prefixes them all.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum

# Topics (relative names).
GOAL = "flare/goal"  # std_msgs/String: goal text; each message starts a new episode
ACTION = "flare/action"  # std_msgs/String: ActionCommand JSON (or a bare action name)
ACTION_DONE = "flare/action_done"  # std_msgs/String: ActionDone JSON
POLICY_STATUS = "flare/policy/status"  # std_msgs/String: PolicyStatus JSON
BRIDGE_STATUS = "flare/bridge/status"  # std_msgs/String: bridge events JSON
ESTOP = "flare/estop"  # std_msgs/Bool, reliable + transient-local (latched): true halts everything at once;
# false releases (a new goal is needed)
RUNSTOP_SERVICE = "flare/runstop"  # std_srvs/SetBool on the bridge, as stretch_ros2's /runstop: true = e-stop
SIM_RESET = "flare/sim/reset"  # std_msgs/String: {"family": ..., "house": ...}; simulated robot only
SIM_TASK = "flare/sim/task"  # std_msgs/String: the task the simulated world posed (goal text, stamp_ns, and
# for_episode when it was posed for a policy episode that started with no task running)


CAMERAS = ("nav", "manip")  # the policy's cameras (SPOC/FLaRe: navigation, manipulation), in observation order


def camera_topic(camera: str) -> str:
    """sensor_msgs/Image topic of a policy camera (`nav`, `manip`, ...)."""
    return f"flare/camera/{camera}/image"


def clip_text(text: str, limit: int = 120) -> str:
    """`text` short enough for a log line or a status message (a 10 kB message is not echoed back whole)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class ProtocolError(ValueError):
    """A message that does not follow the protocol; says what was received and what was expected."""


class Result(StrEnum):
    DONE = "done"  # the motion finished
    CLIPPED = "clipped"  # it finished short of what was asked (a soft limit); the message says how far it went
    REFUSED = "refused"  # not attempted: masked, unknown, busy, e-stopped, robot not ready; nothing moved
    FAILED = "failed"  # attempted and went wrong (driver error, timeout, the robot ignored it); nothing to trust
    STOPPED = "stopped"  # halted part-way by an e-stop


@dataclass(frozen=True)
class ActionCommand:
    action: str  # vocabulary name
    id: int = 0  # echoed in the completion; 0 for hand-sent commands
    episode: int = 0
    step: int = 0
    stamp_ns: int = 0  # when the policy decided
    frames: dict[str, int] = field(default_factory=dict)  # camera -> header stamp of the frame decided on

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> ActionCommand:
        """JSON from the policy node, or a bare action name from an operator."""
        text = text.strip()
        if not text.startswith("{"):
            if not text or any(c.isspace() for c in text):
                raise ProtocolError(
                    f'expected an action name (e.g. m) or ActionCommand JSON ({{"action": "m", "id": 1}}), '
                    f"got {clip_text(text)!r}"
                )
            return cls(action=text)
        data = _load(text, "ActionCommand")
        if not isinstance(data.get("action"), str):
            raise ProtocolError(f"ActionCommand needs a string 'action' (a name such as m), got {clip_text(text)!r}")
        if not isinstance(data.get("frames", {}), dict):
            raise ProtocolError(f"ActionCommand 'frames' must map camera names to stamps, got {clip_text(text)!r}")
        for name in ("id", "episode", "step", "stamp_ns"):
            if type(data.get(name, 0)) is not int:
                raise ProtocolError(f"ActionCommand {name!r} must be an integer, got {clip_text(text)!r}")
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class ActionDone:
    id: int
    action: str
    result: Result
    message: str = ""
    stamp_ns: int = 0  # when the motion finished (frames for the next decision must be taken after this)
    holding: bool | None = None  # whether the gripper holds an object afterwards, where the robot knows
    episode_over: bool = False  # the robot ended the episode (`end`, or the simulated world's step limit)
    success: bool | None = None  # the episode's outcome where the robot can judge it (simulated world)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> ActionDone:
        data = _load(text, "ActionDone")
        try:
            data["result"] = Result(data["result"])
            return cls(**_known(cls, data))
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"malformed ActionDone ({err}): {clip_text(text)!r}") from None


@dataclass
class PolicyStatus:
    state: str
    episode: int = 0
    step: int = 0
    goal: str = ""
    reason: str = ""
    last_action: str = ""
    latency_ms: float = 0.0
    stamp_ns: int = 0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> PolicyStatus:
        return cls(**_known(cls, _load(text, "PolicyStatus")))


def _load(text: str, what: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"{what} is not valid JSON ({err}): {clip_text(text)!r}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {clip_text(text)!r}")
    return data


def _known(cls, data: dict) -> dict:
    names = cls.__dataclass_fields__
    return {k: v for k, v in data.items() if k in names}
