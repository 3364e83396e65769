"""`eval --why`'s breakdown of failed gridhouse episodes, read from the world state as the episode ended:
grounding (ended at the goal's type in another colour) against search (out of steps); Fetch's moved object and
where it was left; RoomVisit's places and `sub_done`."""

import numpy as np
from minigrid.core.world_object import Ball, Box, Key

from flare_core.actions import action_by_name
from flare_sim import GridhouseEnv
from flare_training.failures import OTHER_COLOUR, FailureTally

OBJECTS = {"ball": Ball, "box": Box, "key": Key}


def play(env: GridhouseEnv, action: str) -> tuple[dict, bool]:
    """Repeat one action until the episode ends; the last info and whether it ran out of steps."""
    while True:
        _, _, terminated, truncated, info = env.step(action_by_name(action).index)
        if terminated or truncated:
            return info, truncated


def test_ending_at_the_goals_type_in_another_colour_is_a_grounding_failure():
    env = GridhouseEnv(None, ("objectnav",), "eval")
    env.reset(seed=0, options={"family": "objectnav", "house": 0})  # "go to the green ball", nothing ahead
    desc, level = env.subgoals[-1].desc, env.level
    assert level.grid.get(*level.front_pos) is None
    level.grid.set(*level.front_pos, OBJECTS[desc.type]("purple" if desc.color != "purple" else "blue"))
    tally = FailureTally()
    tally(env, *play(env, "end"))
    assert tally.kinds["objectnav"] == {OTHER_COLOUR: 1}
    assert tally.colours["objectnav"] == {(desc.color, "purple" if desc.color != "purple" else "blue"): 1}
    assert any("asked -> there: green -> purple 1" in line for line in tally.lines())


def test_success_search_and_other_endings_are_told_apart():
    tally = FailureTally()
    env = GridhouseEnv(None, ("objectnav",), "eval", expert=True)
    _, info = env.reset(seed=0, options={"family": "objectnav", "house": 0})
    while True:  # the expert succeeds
        _, _, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            break
    tally(env, info, truncated)
    env.reset(seed=0, options={"family": "objectnav", "house": 0})
    tally(env, *play(env, "end"))  # facing an empty cell
    env.reset(seed=0, options={"family": "objectnav", "house": 0})
    tally(env, *play(env, "l"))  # turning on the spot until the step limit
    kinds = tally.kinds["objectnav"]
    assert kinds["success"] == 1 and kinds["ended facing no object"] == 1 and sum(kinds.values()) == 3
    assert sum(n for k, n in kinds.items() if k.startswith("out of steps")) == 1


def test_running_out_of_steps_holding_the_goal_is_not_a_search_failure():
    """A held object has no position (minigrid sets (-1, -1) on pickup): not "the goal is far away"."""
    env = GridhouseEnv(None, ("pickup",), "eval")
    env.reset(seed=0, options={"family": "pickup", "house": 0})
    level, goal = env.level, env.subgoals[-1].desc.obj_set[0]
    level.grid.set(*goal.cur_pos, None)  # what minigrid's pickup does
    goal.cur_pos, level.carrying = np.array([-1, -1]), goal
    tally = FailureTally()
    tally(env, *play(env, "l"))  # holds it, never calls `end`
    assert tally.kinds["pickup"] == {"out of steps, holding the goal object": 1}


def test_search_failures_say_whether_the_goal_was_ever_in_view():
    """Turning on the spot until the step limit, with the goal more than 3 cells away: in a house where it is in
    view from the start, "in view on the way"; where it never comes into view, "never in view". Each episode
    starts afresh on the same env."""
    tally, env = FailureTally(), GridhouseEnv(None, ("objectnav",), "eval")
    wanted = {True: None, False: None}
    for house in range(40):
        env.reset(seed=0, options={"family": "objectnav", "house": house})
        level, goal = env.level, env.subgoals[-1].desc.obj_set
        x, y = level.agent_pos
        far = min(abs(o.cur_pos[0] - x) + abs(o.cur_pos[1] - y) for o in goal) > 3
        seen = False
        for _ in range(4):  # what turning on the spot will show
            seen |= bool(env.goal_cells().any())
            level.agent_dir = (level.agent_dir + 1) % 4
            env._view = level.gen_obs()["image"]
        if far and wanted[seen] is None:
            wanted[seen] = house
    assert None not in wanted.values(), wanted
    for seen in (True, False):
        env.reset(seed=0, options={"family": "objectnav", "house": wanted[seen]})
        tally.step(env)
        while True:
            _, _, terminated, truncated, info = env.step(action_by_name("l").index)
            tally.step(env)
            if terminated or truncated:
                break
        tally(env, info, truncated)
    kinds = tally.kinds["objectnav"]
    assert kinds["out of steps, goal farther, its object in view on the way"] == 1
    assert kinds["out of steps, goal farther, its object never in view"] == 1


def _fetch_ending(tally: FailureTally, held, put_at=None) -> None:
    """A Fetch episode (house 0) where the robot held `held` (None: nothing), put it down at `put_at`, then ended."""
    env = GridhouseEnv(None, ("fetch",), "eval")
    env.reset(seed=0, options={"family": "fetch", "house": 0})
    tally.step(env)
    level = env.level
    if held is not None:
        held = held(env.subgoals[-1])
        level.carrying = held
        tally.step(env)
        level.carrying = None
        if put_at is not None:
            level.grid.set(*held.cur_pos, None)
            held.cur_pos = put_at(env.subgoals[-1], level)
            level.grid.set(*held.cur_pos, held)
    tally(env, *play(env, "end"))


def _free_cell_at(level, fixed, distance: int):
    """An empty cell `distance` steps (Manhattan) from `fixed`, inside the house."""
    fx, fy = fixed.cur_pos
    for dx in range(-distance, distance + 1):
        for dy in (distance - abs(dx), abs(dx) - distance):
            x, y = fx + dx, fy + dy
            if 0 < x < level.grid.width - 1 and 0 < y < level.grid.height - 1 and level.grid.get(x, y) is None:
                return (x, y)
    raise AssertionError("no free cell at that distance from the fixed object in this house")


def _unnamed_object(goal):
    """An object of the house that the Fetch goal names neither to move nor to put it next to."""
    named = {id(o) for d in (goal.desc_move, goal.desc_fixed) for o in d.obj_set}
    return next(o for o in _objects(goal.env) if id(o) not in named)


def _objects(level):
    return [o for row in level.room_grid for room in row for o in room.objs]


def test_fetch_failures_say_which_object_was_moved_and_where_it_was_left():
    tally = FailureTally()
    _fetch_ending(tally, None)
    _fetch_ending(tally, lambda goal: goal.desc_fixed.obj_set[0])
    _fetch_ending(tally, lambda goal: goal.desc_move.obj_set[0],
                  lambda goal, level: _free_cell_at(level, goal.desc_fixed.obj_set[0], 2))  # fmt: skip
    env = GridhouseEnv(None, ("fetch",), "eval")
    env.reset(seed=0, options={"family": "fetch", "house": 0})
    _fetch_ending(tally, _unnamed_object)
    assert tally.kinds["fetch"] == {
        "ended without moving an object": 1,
        "ended after moving the object to put the other next to (roles swapped)": 1,
        "ended with the object asked put down 2 cells from the other": 1,
        "ended after moving an object the goal does not name": 1,
    }


def _roomvisit_ending(tally: FailureTally, facing: int | None, marked: bool) -> None:
    """A RoomVisit episode (house 0) ended facing the object of place `facing` (0 first, 1 second, None
    neither), with the first place marked or not."""
    env = GridhouseEnv(None, ("roomvisit",), "eval")
    env.reset(seed=0, options={"family": "roomvisit", "house": 0})
    level = env.level
    assert level.grid.get(*level.front_pos) is None
    if facing is not None:
        place = env.subgoals[facing].desc.obj_set[0]
        level.grid.set(*place.cur_pos, None)
        place.cur_pos = tuple(level.front_pos)
        level.grid.set(*place.cur_pos, place)
    env.subgoal_index = int(marked)
    tally(env, *play(env, "end"))


def test_roomvisit_failures_say_where_it_ended_and_whether_the_first_place_was_marked():
    tally = FailureTally()
    _roomvisit_ending(tally, 1, marked=True)  # the goal
    _roomvisit_ending(tally, 1, marked=False)
    _roomvisit_ending(tally, 0, marked=False)
    _roomvisit_ending(tally, 0, marked=True)
    _roomvisit_ending(tally, None, marked=True)
    _roomvisit_ending(tally, None, marked=False)
    assert tally.kinds["roomvisit"] == {
        "success": 1,
        "ended at the second place without marking the first with sub_done": 1,
        "ended at the first place instead of marking it with sub_done": 1,
        "ended at the first place again after marking it": 1,
        "ended away from the second place": 1,
        "ended at neither place, the first not marked": 1,
    }
