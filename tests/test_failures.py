"""`eval --why`'s breakdown of failed gridhouse episodes: grounding (ended at the goal's type in another colour)
against search (out of steps), read from the world state as the episode ended."""

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
    tally(GridhouseEnv(None, ("fetch",), "eval"), {"family": "fetch", "success": False}, False)
    assert "fetch" not in tally.kinds  # defined for one-object goals only


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
