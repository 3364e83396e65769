"""The 20-action Stretch vocabulary in SPOC/FLaRe order: index = policy output.

This table is the one definition of what each policy output means. Training, export, the policy node and
the bridges all read it; a model card whose action names differ from it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Joint(StrEnum):
    """What an action moves (or, for the episode-control actions, what it signals)."""

    BASE_TRANSLATE = "base_translate"  # metres, + forward
    BASE_ROTATE = "base_rotate"  # radians, + counter-clockwise seen from above (left), ROS REP 103
    LIFT = "lift"  # metres, + up
    ARM = "arm"  # metres, + extend
    WRIST_YAW = "wrist_yaw"  # radians, + counter-clockwise seen from above (as stretch_body's wrist_yaw)
    GRIPPER = "gripper"  # pick (close on an object) or drop (open)
    CAMERA_TILT = "camera_tilt"  # radians, + up (LoCoBot's re-purposed lift slots; Interbotix's tilt is + down)
    EPISODE = "episode"  # end the episode or mark a sub-goal; nothing moves


@dataclass(frozen=True)
class Action:
    """One entry of the vocabulary: its short name, meaning and nominal motion on a Stretch RE1."""

    index: int
    name: str
    description: str
    joint: Joint
    delta: float  # signed amount in the joint's unit; 0 for gripper/episode actions


_DEG = 3.141592653589793 / 180.0

ACTIONS: tuple[Action, ...] = (
    Action(0, "m", "base forward 0.2 m", Joint.BASE_TRANSLATE, 0.2),
    Action(1, "r", "rotate right 30 deg", Joint.BASE_ROTATE, -30 * _DEG),
    Action(2, "l", "rotate left 30 deg", Joint.BASE_ROTATE, 30 * _DEG),
    Action(3, "b", "base back 0.2 m", Joint.BASE_TRANSLATE, -0.2),
    Action(4, "end", "finish episode", Joint.EPISODE, 0.0),
    Action(5, "sub_done", "mark sub-goal", Joint.EPISODE, 0.0),
    Action(6, "ls", "rotate left 6 deg", Joint.BASE_ROTATE, 6 * _DEG),
    Action(7, "rs", "rotate right 6 deg", Joint.BASE_ROTATE, -6 * _DEG),
    Action(8, "p", "pick up", Joint.GRIPPER, 0.0),
    Action(9, "zm", "arm in 0.1 m", Joint.ARM, -0.1),
    Action(10, "zp", "arm out 0.1 m", Joint.ARM, 0.1),
    Action(11, "yp", "lift up 0.1 m", Joint.LIFT, 0.1),
    Action(12, "ym", "lift down 0.1 m", Joint.LIFT, -0.1),
    Action(13, "wp", "wrist yaw 10 deg counter-clockwise", Joint.WRIST_YAW, 10 * _DEG),
    Action(14, "wm", "wrist yaw 10 deg clockwise", Joint.WRIST_YAW, -10 * _DEG),
    Action(15, "yms", "lift down 0.02 m", Joint.LIFT, -0.02),
    Action(16, "zms", "arm in 0.02 m", Joint.ARM, -0.02),
    Action(17, "zps", "arm out 0.02 m", Joint.ARM, 0.02),
    Action(18, "yps", "lift up 0.02 m", Joint.LIFT, 0.02),
    Action(19, "d", "drop off", Joint.GRIPPER, 0.0),
)

ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIONS)
NUM_ACTIONS = len(ACTIONS)
# The "previous action" observation at an episode's first step: one past the last real index.
NO_PREVIOUS_ACTION = NUM_ACTIONS

_BY_NAME = {a.name: a for a in ACTIONS}


class UnknownActionError(ValueError):
    """An action index or name that is not in the vocabulary."""


def action_by_name(name: str) -> Action:
    """Look an action up by its short name (`m`, `end`, ...), refusing unknown names clearly."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownActionError(
            f"unknown action name {name!r}; the vocabulary is: {', '.join(ACTION_NAMES)}"
        ) from None


def action_by_index(index: object) -> Action:
    """Look an action up by policy-output index, refusing anything that is not an integer in range."""
    if isinstance(index, bool) or not _is_integral(index):
        raise UnknownActionError(
            f"action must be an integer index 0..{NUM_ACTIONS - 1}, got {index!r} ({type(index).__name__})"
        )
    i = int(index)  # type: ignore[call-overload]
    if not 0 <= i < NUM_ACTIONS:
        raise UnknownActionError(
            f"action index {i} is outside the {NUM_ACTIONS}-action vocabulary (0..{NUM_ACTIONS - 1})"
        )
    return ACTIONS[i]


def _is_integral(value: object) -> bool:
    """True for Python and numpy integers (and integral numpy 0-d arrays), false for floats and the rest."""
    import numbers

    if isinstance(value, numbers.Integral):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and getattr(value, "shape", None) == () and dtype.kind in "iu"
