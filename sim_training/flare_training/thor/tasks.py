"""CHORES tasks as SPOC/FLaRe define them: ObjectNavType, PickupType, FetchType, RoomVisit.

Targets are SPOC's "fifteen" object types (`utils/constants/object_constants.py`: OBJNAV_TYPES_THOR, and
PICKUP_TYPES_THOR for Pickup/Fetch) with their WordNet synsets and the lemmas SPOC's instructions use
(`utils/task_spec_to_instruction.py`). An object counts as a target when its synset is the target's: AI2-THOR
objects through their objectType, Objaverse objects through objathor's annotations (`synset` per assetId).
Success needs `end` (AllenAct's task): ObjectNav, a target in `GetVisibleObjects(maxDistance=2)` of the
navigation camera; Pickup and Fetch, a target in `arm.heldObjects`; RoomVisit, every room marked with `sub_done`.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from flare_training.thor.controller import StretchController

# OBJNAV_TYPES_THOR -> (synset, SPOC's best lemma); PICKUP_TYPES_THOR is the subset Pickup and Fetch use.
OBJNAV_TARGETS = {
    "AlarmClock": ("alarm_clock.n.01", "alarm clock"),
    "Apple": ("apple.n.01", "apple"),
    "BasketBall": ("basketball.n.02", "basketball"),
    "Bed": ("bed.n.01", "bed"),
    "Bowl": ("bowl.n.03", "bowl"),
    "Chair": ("straight_chair.n.01", "chair"),
    "GarbageCan": ("ashcan.n.01", "trash can"),
    "HousePlant": ("houseplant.n.01", "houseplant"),
    "Laptop": ("laptop.n.01", "laptop"),
    "Mug": ("mug.n.04", "mug"),
    "Sofa": ("sofa.n.01", "sofa"),
    "SprayBottle": ("atomizer.n.01", "spray bottle"),
    "Television": ("television_receiver.n.01", "television"),
    "Toilet": ("toilet.n.02", "toilet"),
    "Vase": ("vase.n.01", "vase"),
}
PICKUP_TARGETS = ("AlarmClock", "Apple", "BasketBall", "Bowl", "Laptop", "Mug", "SprayBottle", "Vase")
GOTO_VERBS = ("go to", "locate", "find", "search for", "navigate to")
PICKUP_VERBS = ("pick up", "take", "grab", "grasp", "clutch", "hold")
TASKS = ("ObjectNavType", "PickupType", "FetchType", "RoomVisit")
TRAIN_TASKS = TASKS
VISIBLE_DISTANCE = 2.0  # m: ObjectNav's success radius, GetVisibleObjects(maxDistance=2)
YAWS = np.arange(0, 360, 30)  # start headings, as RING's online sampler draws them
START_TRIES = 10

# Every word a goal can use: the vocabulary of a word-level goal tokenizer for these tasks.
GOAL_WORDS = tuple(
    sorted(
        {w for verb in GOTO_VERBS + PICKUP_VERBS for w in verb.split()}
        | {w for _, lemma in OBJNAV_TARGETS.values() for w in lemma.split()}
        | set("a an and that all rooms in the house . indicate when you have seen new room are done".split())
        | {str(n) for n in range(1, 21)}
    )
)


def article(word: str) -> str:
    """SPOC's determiner without phonemizer (its own fallback): 'an' before a vowel letter."""
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class TaskSpec:
    """What makes an episode repeatable: family, house, start pose, target type (None for RoomVisit)."""

    family: str
    house: int
    position: dict
    yaw: float
    target: str | None


@dataclass
class Task:
    """One episode's goal and success test."""

    spec: TaskSpec
    goal: str
    target_ids: frozenset[str] = frozenset()
    rooms: dict = field(default_factory=dict)  # room id -> floor polygon [(x, z), ...]
    seen_rooms: list = field(default_factory=list)
    previous_room: str | None = None

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def house(self) -> int:
        return self.spec.house

    @property
    def subgoal(self) -> int:
        return len(self.seen_rooms)

    def before_step(self, controller: StretchController) -> None:
        """AllenAct's task step: the room the agent is in as the step starts (RoomVisit's `previous_room`)."""
        room = room_at(self.rooms, controller.agent_position())
        if room is not None:
            self.previous_room = room

    def sub_done(self, controller: StretchController) -> bool:
        """RoomVisit marks the room as seen (success when it is new); any other task: a failed action."""
        if self.family != "RoomVisit" or self.previous_room in self.seen_rooms:
            return False
        self.seen_rooms.append(self.previous_room)
        return True

    def successful(self, controller: StretchController) -> bool:
        """Whether `end` now succeeds."""
        if self.family == "ObjectNavType":
            return bool(self.target_ids & set(controller.visible_objects(VISIBLE_DISTANCE)))
        if self.family in ("PickupType", "FetchType"):
            return bool(self.target_ids & set(controller.held_objects()))
        return len(self.seen_rooms) == len(self.rooms)


def goal_text(family: str, target: str | None, rooms: int, rng: np.random.Generator) -> str:
    """SPOC's templated instruction for a task."""
    goto, pickup = str(rng.choice(GOTO_VERBS)), str(rng.choice(PICKUP_VERBS))
    if family == "RoomVisit":
        return f"go to all {rooms} rooms in the house. indicate when you have seen a new room and when you are done"
    lemma = OBJNAV_TARGETS[target][1]
    thing = f"{article(lemma)} {lemma}"
    if family == "ObjectNavType":
        return f"{goto} {thing}"
    if family == "PickupType":
        return f"{pickup} {thing}"
    return f"{goto} {thing} and {pickup} that {lemma}"


def sample_task(
    family: str, house_index: int, controller: StretchController, rng: np.random.Generator,
    spec: TaskSpec | None = None, annotations: str = "",
) -> Task:  # fmt: skip
    """A task in the loaded house: the given spec (a replay), or a target present in the house and a start pose
    on a reachable position, teleported to as FLaRe's sampler does."""
    rooms = {r["id"]: [(p["x"], p["z"]) for p in r["floorPolygon"]] for r in controller.house["rooms"]}
    by_type = objects_by_target(controller, annotations)
    if spec is None:
        target = None
        if family != "RoomVisit":
            choices = PICKUP_TARGETS if family in ("PickupType", "FetchType") else tuple(OBJNAV_TARGETS)
            present = [t for t in choices if by_type.get(t)]
            if not present:
                raise NoTask(f"house {house_index} has none of the {family} target types")
            target = str(rng.choice(present))
        spec = _start_pose(family, house_index, target, controller, rng)
    elif not controller.teleport(spec.position, spec.yaw).metadata["lastActionSuccess"]:
        raise NoTask(f"the start pose of the episode to replay is not reachable in house {house_index}")
    goal = goal_text(family, spec.target, len(rooms), rng)
    task = Task(spec, goal, frozenset(by_type.get(spec.target, ())), rooms)
    task.before_step(controller)
    return task


class NoTask(RuntimeError):
    """This house cannot pose the task (no target of the family, no reachable start): draw another."""


def _start_pose(family, house_index, target, controller, rng) -> TaskSpec:
    positions = controller.reachable_positions()
    if not positions:
        raise NoTask(f"house {house_index} has no reachable positions")
    for _ in range(START_TRIES):
        position = positions[int(rng.integers(len(positions)))]
        yaw = float(rng.choice(YAWS))
        if controller.teleport(position, yaw).metadata["lastActionSuccess"]:
            return TaskSpec(family, house_index, dict(position), yaw, target)
    raise NoTask(f"no start pose could be teleported to in house {house_index}")


def objects_by_target(controller: StretchController, annotations: str = "") -> dict[str, list[str]]:
    """Target type -> ids of the house's objects of that synset."""
    synsets = {synset: name for name, (synset, _) in OBJNAV_TARGETS.items()}
    table = load_annotations(annotations) if annotations else {}
    found: dict[str, list[str]] = {}
    for o in controller.objects():
        if o["objectType"] in OBJNAV_TARGETS:
            kind = o["objectType"]
        else:
            kind = synsets.get(table.get(o.get("assetId", ""), {}).get("synset", ""))
        if kind is not None:
            found.setdefault(kind, []).append(o["objectId"])
    return found


@lru_cache(maxsize=2)
def load_annotations(path: str) -> dict:
    """objathor's `annotations.json.gz` (assetId -> {synset, ...}), read once per process."""
    with gzip.open(Path(path), "rt") as f:
        return json.load(f)


def room_at(rooms: dict, position: dict) -> str | None:
    """SPOC's `get_room_id_from_location`: the room whose floor polygon holds the point (edges included)."""
    x, z = position["x"], position["z"]
    for room, polygon in rooms.items():
        if _inside(x, z, polygon) or _edge_distance(x, z, polygon) <= 1e-3:
            return room
    return None


def _inside(x: float, z: float, polygon: list) -> bool:
    inside = False
    for (x1, z1), (x2, z2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (z1 > z) != (z2 > z) and x < x1 + (z - z1) * (x2 - x1) / (z2 - z1):
            inside = not inside
    return inside


def _edge_distance(x: float, z: float, polygon: list) -> float:
    best = float("inf")
    for (x1, z1), (x2, z2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        dx, dz = x2 - x1, z2 - z1
        t = 0.0 if dx == dz == 0 else max(0.0, min(1.0, ((x - x1) * dx + (z - z1) * dz) / (dx * dx + dz * dz)))
        best = min(best, float(np.hypot(x - x1 - t * dx, z - z1 - t * dz)))
    return best
