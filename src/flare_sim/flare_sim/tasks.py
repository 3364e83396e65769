"""Task families mirroring CHORES, built on BabyAI instructions, and when a goal counts as satisfied.

Semantics follow CHORES, not BabyAI: reaching the goal does not end the episode. The agent must call `end`
while the goal is satisfied (success), and calling `end` anywhere else fails the episode. RoomVisit goals are
a sequence of places; the agent marks each intermediate place with `sub_done` while at it, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from minigrid.core.constants import COLOR_NAMES, COLOR_TO_IDX, DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.core.world_object import WorldObj
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling
from minigrid.envs.babyai.core.verifier import (
    ActionInstr,
    BeforeInstr,
    GoToInstr,
    Instr,
    ObjDesc,
    PickupInstr,
    PutNextInstr,
    dot_product,
)

if TYPE_CHECKING:
    from flare_sim.house import HouseLevel


@dataclass(frozen=True)
class TaskFamily:
    """A family of goals: how to pose one in a generated house, and its step limit."""

    name: str
    held_out: bool  # kept out of training, for generalisation tests
    step_limit: int
    description: str
    pose: Callable[[HouseLevel, list[WorldObj]], Instr]


class FastObjDesc(ObjDesc):
    """BabyAI's object description with the same matching rules, scanning only the grid's occupied cells.

    BabyAI calls `find_matching_objs` two or three times per house over every cell; this is most of a reset.
    """

    def find_matching_objs(self, env, use_location=True):
        env = env.unwrapped
        if use_location:
            self.obj_set = []
        self.obj_poss = []
        agent_room = env.room_from_pos(*env.agent_pos)
        width = env.grid.width
        d1 = DIR_TO_VEC[env.agent_dir]
        d2 = (-d1[1], d1[0])
        # Type and colour first (cheap, order-free); the grid is row-major (index = y * width + x) and BabyAI
        # scans column-major (x outer), so the few matches are sorted to BabyAI's order.
        kind, color = self.type, self.color
        matches = [
            (i % width, i // width, c)
            for i, c in enumerate(env.grid.grid)
            if c is not None and (kind is None or c.type == kind) and (color is None or c.color == color)
        ]
        matches.sort(key=lambda m: (m[0], m[1]))
        for i, j, cell in matches:
            if not use_location and not any(cell is obj for obj in self.obj_set):
                continue
            if use_location and self.loc in ("left", "right", "front", "behind"):
                if not agent_room.pos_inside(i, j):
                    continue
                v = (i - env.agent_pos[0], j - env.agent_pos[1])
                matches = {
                    "left": dot_product(v, d2) < 0,
                    "right": dot_product(v, d2) > 0,
                    "front": dot_product(v, d1) > 0,
                    "behind": dot_product(v, d1) < 0,
                }
                if not matches[self.loc]:
                    continue
            if use_location:
                self.obj_set.append(cell)
            self.obj_poss.append((i, j))
        return self.obj_set, self.obj_poss


def _desc(obj: WorldObj) -> ObjDesc:
    return FastObjDesc(obj.type, obj.color)


def _pose_objectnav(level: HouseLevel, objs: list[WorldObj]) -> Instr:
    return GoToInstr(_desc(level._rand_elem(objs)))


def _pose_pickup(level: HouseLevel, objs: list[WorldObj]) -> Instr:
    return PickupInstr(_desc(level._rand_elem(objs)))


def _pose_fetch(level: HouseLevel, objs: list[WorldObj]) -> Instr:
    move, fixed = level._rand_subset(objs, 2)
    if (move.type, move.color) == (fixed.type, fixed.color):
        raise RejectSampling("fetch needs two distinguishable objects")
    return PutNextInstr(_desc(move), _desc(fixed))


def _pose_roomvisit(level: HouseLevel, objs: list[WorldObj]) -> Instr:
    first = level._rand_elem(objs)
    first_room = level.room_from_pos(*first.cur_pos)
    others = [
        o
        for o in objs
        if level.room_from_pos(*o.cur_pos) is not first_room and (o.type, o.color) != (first.type, first.color)
    ]
    if not others:
        raise RejectSampling("roomvisit needs two distinguishable places in different rooms")
    second = level._rand_elem(others)
    return BeforeInstr(GoToInstr(_desc(first)), GoToInstr(_desc(second)))


def _pose_objectnav_relative(level: HouseLevel, objs: list[WorldObj]) -> Instr:
    """Held out: the goal names the object's type and where it is relative to the agent's start pose."""
    room = level.room_from_pos(*level.agent_pos)
    local = [o for o in objs if room.pos_inside(*o.cur_pos)]
    if not local:
        raise RejectSampling("no object in the agent's start room to describe relative to it")
    obj = level._rand_elem(local)
    forward = DIR_TO_VEC[level.agent_dir]
    right = (-forward[1], forward[0])
    offset = (obj.cur_pos[0] - level.agent_pos[0], obj.cur_pos[1] - level.agent_pos[1])
    side = dot_product(offset, right)
    ahead = dot_product(offset, forward)
    locs = [
        loc for loc, ok in (("right", side > 0), ("left", side < 0), ("front", ahead > 0), ("behind", ahead < 0)) if ok
    ]
    return GoToInstr(FastObjDesc(obj.type, None, level._rand_elem(locs)))


def _pose_pickup_attribute(level: HouseLevel, objs: list[WorldObj]) -> Instr:
    """Held out: the goal names only the object's colour ("pick up a red object")."""
    door_colors = {door.color for row in level.room_grid for room in row for door in room.doors if door is not None}
    colors = sorted({o.color for o in objs} - door_colors)  # "a red object" must not match a red door
    if not colors:
        raise RejectSampling("every object colour is also a door colour")
    return PickupInstr(FastObjDesc(None, level._rand_elem(colors)))


FAMILIES: dict[str, TaskFamily] = {
    f.name: f
    for f in (
        TaskFamily("objectnav", False, 64, "go to an object, possibly in another room", _pose_objectnav),
        TaskFamily("pickup", False, 64, "find an object and pick it up", _pose_pickup),
        TaskFamily("fetch", False, 100, "pick an object up and put it next to another", _pose_fetch),
        TaskFamily("roomvisit", False, 100, "visit two places in two rooms, in order", _pose_roomvisit),
        TaskFamily(
            "objectnav_relative", True, 64, "held out: object described by where it is", _pose_objectnav_relative
        ),
        TaskFamily("pickup_attribute", True, 64, "held out: object described by colour only", _pose_pickup_attribute),
    )
}
TRAIN_FAMILIES: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if not f.held_out)
HELD_OUT_FAMILIES: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if f.held_out)


# Every word a gridhouse goal can use (BabyAI surface forms); the goal tokenizer's vocabulary is built from it.
GOAL_WORDS: tuple[str, ...] = tuple(
    sorted(
        set("go to the a pick up put next then , object in front of you behind on your left right".split())
        | set(COLOR_NAMES)
        | {"key", "ball", "box", "door"}
    )
)


def get_family(name: str) -> TaskFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown task family {name!r}; known: {', '.join(FAMILIES)}") from None


def subgoals(instr: Instr) -> list[ActionInstr]:
    """Flatten a sequence instruction into the ordered sub-goals the agent must satisfy."""
    if isinstance(instr, BeforeInstr):
        return subgoals(instr.instr_a) + subgoals(instr.instr_b)
    assert isinstance(instr, ActionInstr), f"unsupported instruction {type(instr).__name__}"
    return [instr]


def _next_to(a, b) -> bool:
    return abs(int(a[0]) - int(b[0])) + abs(int(a[1]) - int(b[1])) == 1


def satisfied(level: HouseLevel, goal: ActionInstr) -> bool:
    """Whether the world state satisfies one sub-goal now (objects tracked by identity, not by position)."""
    if isinstance(goal, GoToInstr):
        fx, fy = level.front_pos
        return any(o.cur_pos is not None and o.cur_pos[0] == fx and o.cur_pos[1] == fy for o in goal.desc.obj_set)
    if isinstance(goal, PickupInstr):
        return any(level.carrying is o for o in goal.desc.obj_set)
    if isinstance(goal, PutNextInstr):
        return any(
            level.carrying is not m and _next_to(m.cur_pos, f.cur_pos)
            for m in goal.desc_move.obj_set
            for f in goal.desc_fixed.obj_set
            if f is not m and level.carrying is not f
        )
    raise TypeError(f"no success predicate for {type(goal).__name__}")


_MOVABLE = [OBJECT_TO_IDX[t] for t in ("key", "ball", "box")]  # what "an object" can be


def target(level: HouseLevel, goal: ActionInstr) -> ObjDesc:
    """The object description a sub-goal sends the agent to now: Fetch's object to move until it is held, then
    the object to put it next to."""
    if isinstance(goal, PutNextInstr):
        held = any(level.carrying is o for o in goal.desc_move.obj_set)
        return goal.desc_fixed if held else goal.desc_move
    return goal.desc


def named_cells(view: np.ndarray, desc: ObjDesc) -> np.ndarray:
    """Which cells of an agent view (minigrid's [x, y, (type, colour, state)] encoding) show an object of the
    description's type and colour, laid out [row, col] as the frames draw them. Where it is (`loc`) is not
    read: the words name what the object looks like."""
    kinds, colours = view[..., 0], view[..., 1]
    match = np.isin(kinds, _MOVABLE) if desc.type is None else kinds == OBJECT_TO_IDX[desc.type]
    if desc.color is not None:
        match &= colours == COLOR_TO_IDX[desc.color]
    return match.T
