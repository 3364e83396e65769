"""Embodiments as data: which actions a body can do and what motion each valid action becomes.

One definition serves training (the simulator's mask), export (recorded in the model card), the policy node
(masking logits before argmax/sampling) and the bridges (refusing anything masked). Masked actions are never
silently dropped: a bridge that receives one refuses it and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flare_core.actions import ACTION_NAMES, ACTIONS, NUM_ACTIONS, Action, Joint, action_by_index

_DEG = np.pi / 180.0


class MaskedActionError(ValueError):
    """An action that the embodiment cannot do was asked of it."""


@dataclass(frozen=True)
class Motion:
    """What a valid action does on one embodiment: move `joint` by `delta` (in `unit`)."""

    joint: Joint
    delta: float
    unit: str


def _nominal(action: Action) -> Motion:
    unit = {
        Joint.BASE_TRANSLATE: "m",
        Joint.LIFT: "m",
        Joint.ARM: "m",
        Joint.BASE_ROTATE: "rad",
        Joint.WRIST_YAW: "rad",
        Joint.CAMERA_TILT: "rad",
    }.get(action.joint, "")
    return Motion(action.joint, action.delta, unit)


@dataclass(frozen=True)
class Embodiment:
    """A body: its name, what it is, and the motion of each valid action (absent = masked)."""

    name: str
    description: str
    motions: dict[str, Motion] = field(repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.motions) - set(ACTION_NAMES)
        if unknown:
            raise ValueError(f"embodiment {self.name!r} names unknown actions: {sorted(unknown)}")

    @property
    def valid_names(self) -> tuple[str, ...]:
        """Valid action names in vocabulary order."""
        return tuple(n for n in ACTION_NAMES if n in self.motions)

    @property
    def mask(self) -> np.ndarray:
        """Boolean vector over the 20 actions: True where the action is valid."""
        return np.array([n in self.motions for n in ACTION_NAMES], dtype=bool)

    def is_valid(self, index: int) -> bool:
        return action_by_index(index).name in self.motions

    def motion(self, index: object) -> Motion:
        """The motion for a policy-output index; raises for unknown or masked actions, never guesses."""
        action = action_by_index(index)
        try:
            return self.motions[action.name]
        except KeyError:
            raise MaskedActionError(
                f"action {action.index} {action.name!r} ({action.description}) is masked for embodiment "
                f"{self.name!r}; valid actions: {', '.join(self.valid_names)}"
            ) from None


def _stretch_motions(names: tuple[str, ...]) -> dict[str, Motion]:
    return {a.name: _nominal(a) for a in ACTIONS if a.name in names}


_NAVIGATION = ("m", "r", "l", "b", "end", "sub_done", "ls", "rs")

STRETCH_RE1 = Embodiment(
    "stretch_re1",
    "Hello Robot Stretch RE1: mobile base, lift, telescoping arm, wrist yaw and gripper; all 20 actions.",
    _stretch_motions(ACTION_NAMES),
)

STRETCH_NAV = Embodiment(
    "stretch_nav",
    "Stretch RE1 restricted to navigation (base moves and episode control; arm actions masked).",
    _stretch_motions(_NAVIGATION),
)

LOCOBOT = Embodiment(
    "locobot",
    "Interbotix LoCoBot: navigation actions, and FLaRe's embodiment transfer re-purposes the lift slots "
    "`yp`/`ym` as camera tilt up/down 15 deg.",
    {
        **_stretch_motions(_NAVIGATION),
        "yp": Motion(Joint.CAMERA_TILT, 15 * _DEG, "rad"),
        "ym": Motion(Joint.CAMERA_TILT, -15 * _DEG, "rad"),
    },
)

GRIDHOUSE = Embodiment(
    "gridhouse",
    "The embedded grid simulator: one cell forward, 90 deg turns, pick up, drop and episode control. "
    "Backing up, small turns and the arm/lift/wrist are masked: the grid cannot do them.",
    {
        "m": Motion(Joint.BASE_TRANSLATE, 1.0, "cell"),
        "r": Motion(Joint.BASE_ROTATE, -90 * _DEG, "rad"),
        "l": Motion(Joint.BASE_ROTATE, 90 * _DEG, "rad"),
        "end": Motion(Joint.EPISODE, 0.0, ""),
        "sub_done": Motion(Joint.EPISODE, 0.0, ""),
        "p": Motion(Joint.GRIPPER, 0.0, ""),
        "d": Motion(Joint.GRIPPER, 0.0, ""),
    },
)

EMBODIMENTS: dict[str, Embodiment] = {e.name: e for e in (STRETCH_RE1, STRETCH_NAV, LOCOBOT, GRIDHOUSE)}


def restrict(embodiment: Embodiment, robot: Embodiment) -> Embodiment:
    """`embodiment`'s motions for the actions `robot` can also do (a simulated robot's body, for instance)."""
    return Embodiment(
        f"{robot.name}_as_{embodiment.name}",
        f"{robot.description} Restricted to what {embodiment.name} can do.",
        {n: m for n, m in embodiment.motions.items() if n in robot.motions},
    )


def get_embodiment(name: str) -> Embodiment:
    """Look an embodiment up by name, listing the known ones when it is not found. Names joined by `+` give
    what all of them can do, with the first one's motions ("stretch_re1+gridhouse": the simulated Stretch)."""
    first, *others = name.split("+")
    try:
        embodiment = EMBODIMENTS[first]
        for other in others:
            embodiment = restrict(embodiment, EMBODIMENTS[other])
    except KeyError as err:
        raise ValueError(f"unknown embodiment {err.args[0]!r} in {name!r}; known: {', '.join(EMBODIMENTS)}") from None
    return embodiment


assert all(len(e.mask) == NUM_ACTIONS for e in EMBODIMENTS.values())
