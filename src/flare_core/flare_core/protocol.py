"""What the nodes say to each other: topic names and the JSON payloads of their `std_msgs/String` messages.

Standard messages only (DESIGN.md contract 6): actions, completions and status are JSON in `std_msgs/String`,
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
ESTOP = "flare/estop"  # std_msgs/Bool: true halts everything at once; false releases (a new goal is needed)
SIM_RESET = "flare/sim/reset"  # std_msgs/String: {"family": ..., "house": ...}; simulated robot only
SIM_TASK = "flare/sim/task"  # std_msgs/String: the task the simulated world posed, with its goal text


CAMERAS = ("nav", "manip")  # the policy's cameras (SPOC/FLaRe: navigation, manipulation), in observation order


def camera_topic(camera: str) -> str:
    """sensor_msgs/Image topic of a policy camera (`nav`, `manip`, ...)."""
    return f"flare/camera/{camera}/image"


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
            if not text or " " in text:
                raise ProtocolError(f"expected an action name or ActionCommand JSON, got {text!r}")
            return cls(action=text)
        data = _load(text, "ActionCommand")
        if not isinstance(data.get("action"), str):
            raise ProtocolError(f"ActionCommand needs a string 'action', got {text!r}")
        if not isinstance(data.get("frames", {}), dict):
            raise ProtocolError(f"ActionCommand 'frames' must map camera names to stamps, got {text!r}")
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
            raise ProtocolError(f"malformed ActionDone ({err}): {text!r}") from None


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
        raise ProtocolError(f"{what} is not valid JSON ({err}): {text[:200]!r}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {text[:200]!r}")
    return data


def _known(cls, data: dict) -> dict:
    names = cls.__dataclass_fields__
    return {k: v for k, v in data.items() if k in names}
