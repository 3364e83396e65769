"""Gridhouse: the observation/action contract, refusal of invalid actions, CHORES success semantics, splits."""

import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import WorldObj
from minigrid.minigrid_env import MiniGridEnv

from flare_core import NO_PREVIOUS_ACTION, MaskedActionError, UnknownActionError, action_by_name
from flare_sim import (
    EVAL_HOUSES,
    FAMILIES,
    HELD_OUT_FAMILIES,
    TRAIN_FAMILIES,
    TRAIN_HOUSES,
    GridhouseEnv,
    make_vector_env,
)
from flare_sim.cameras import AGENT_X, AGENT_Y
from flare_sim.tasks import FastObjDesc, named_cells, target

END, SUB_DONE = action_by_name("end").index, action_by_name("sub_done").index


def run_expert(env, stop_before_end=False):
    """Follow the expert; return the last step's (obs, reward, terminated, truncated, info)."""
    obs, info = env.reset(seed=3, options={"family": env.families[0], "house": 3})
    result = (obs, 0.0, False, False, info)
    while True:
        action = result[4]["expert_action"]
        if stop_before_end and action == END:
            return result
        result = env.step(action)
        if result[2] or result[3]:
            return result


def test_observations_follow_the_contract():
    env = GridhouseEnv()
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["nav_rgb"].shape == (56, 56, 3) and obs["manip_rgb"].shape == (24, 24, 3)
    assert obs["prev_action"] == NO_PREVIOUS_ACTION and obs["holding"] == 0
    assert obs["goal"] and info["family"] in TRAIN_FAMILIES
    obs, *_ = env.step(action_by_name("l").index)
    assert obs["prev_action"] == action_by_name("l").index


@pytest.mark.parametrize("bad", [20, -1, 2.5, "m", None])
def test_unknown_actions_are_refused(bad):
    env = GridhouseEnv()
    env.reset(seed=0)
    with pytest.raises(UnknownActionError):
        env.step(bad)


@pytest.mark.parametrize("name", ["b", "ls", "rs", "zm", "yp", "wm", "yps"])
def test_masked_actions_are_refused_not_ignored(name):
    env = GridhouseEnv()
    env.reset(seed=0)
    before = (tuple(env.level.agent_pos), env.level.agent_dir, env.steps)
    with pytest.raises(MaskedActionError, match=f"'{name}'.*masked for embodiment 'gridhouse'"):
        env.step(action_by_name(name).index)
    assert (tuple(env.level.agent_pos), env.level.agent_dir, env.steps) == before  # nothing moved or counted


@pytest.mark.parametrize("family", list(FAMILIES))
def test_expert_episode_succeeds_with_sparse_reward(family):
    env = GridhouseEnv(families=(family,), split="eval", expert=True)
    _, reward, terminated, truncated, info = run_expert(env)
    assert terminated and not truncated and info["success"] and reward == 10.0


def test_reaching_the_goal_is_not_success_until_end():
    env = GridhouseEnv(families=("pickup",), expert=True)
    obs, reward, terminated, truncated, info = run_expert(env, stop_before_end=True)
    assert env.goal_satisfied() and not terminated and reward == 0.0 and obs["holding"] == 1
    _, reward, terminated, _, info = env.step(END)
    assert terminated and info["success"] and reward == 10.0


def test_end_away_from_the_goal_fails_the_episode():
    env = GridhouseEnv(families=("objectnav",))
    env.reset(seed=0)
    assert not env.goal_satisfied()
    _, reward, terminated, truncated, info = env.step(END)
    assert terminated and not truncated and not info["success"] and reward == 0.0
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(END)


def test_roomvisit_needs_sub_done_at_each_intermediate_place():
    env = GridhouseEnv(families=("roomvisit",), expert=True)
    obs, info = env.reset(seed=5, options={"house": 5})
    assert ", then " in obs["goal"]
    env.step(SUB_DONE)  # off the mark: nothing happens
    assert env.subgoal_index == 0
    actions = []
    while info["expert_action"] != END:
        actions.append(info["expert_action"])
        _, _, terminated, _, info = env.step(info["expert_action"])
        assert not terminated
    assert actions.count(SUB_DONE) == 1 and env.subgoal_index == 1


def test_roomvisit_end_at_the_first_place_fails():
    env = GridhouseEnv(families=("roomvisit",), expert=True)
    _, info = env.reset(seed=5, options={"house": 5})
    while info["expert_action"] != SUB_DONE:
        _, _, _, _, info = env.step(info["expert_action"])
    _, _, terminated, _, info = env.step(END)  # at the first place, but the goal is a sequence
    assert terminated and not info["success"]


def test_step_limit_truncates():
    env = GridhouseEnv(families=("objectnav",))
    env.reset(seed=0)
    turn = action_by_name("l").index
    for _ in range(env.step_limit - 1):
        assert not any(env.step(turn)[2:4])
    _, _, terminated, truncated, info = env.step(turn)
    assert truncated and not terminated and not info["success"] and info["steps"] == 64


def test_splits_are_disjoint_and_respected():
    assert set(TRAIN_HOUSES).isdisjoint(EVAL_HOUSES)
    train, evaluation = GridhouseEnv(split="train"), GridhouseEnv(split="eval")
    for seed in range(20):
        assert train.reset(seed=seed)[1]["house"] in TRAIN_HOUSES
        assert evaluation.reset(seed=seed)[1]["house"] in EVAL_HOUSES
    with pytest.raises(ValueError, match="unknown split"):
        GridhouseEnv(split="test")
    with pytest.raises(ValueError, match="outside the eval split"):
        evaluation.reset(options={"house": len(EVAL_HOUSES)})


def test_houses_are_reproducible_and_shared_across_families():
    env = GridhouseEnv(families=tuple(FAMILIES))
    layouts = set()
    for family in TRAIN_FAMILIES:
        env.reset(seed=1, options={"family": family, "house": 42})
        walls = env.level.grid.encode()[..., 0] == 2
        layouts.add((walls.tobytes(), tuple(env.level.agent_pos), env.level.agent_dir))
    assert len(layouts) == 1  # same house seed, same house, whatever the family
    a = env.reset(seed=7)[0]
    b = env.reset(seed=7)[0]
    assert a["goal"] == b["goal"] and (a["nav_rgb"] == b["nav_rgb"]).all()


def test_held_out_families_are_kept_out_of_training():
    assert set(HELD_OUT_FAMILIES) == {"objectnav_relative", "pickup_attribute"}
    assert set(HELD_OUT_FAMILIES).isdisjoint(GridhouseEnv().families)
    goals = {GridhouseEnv(families=(f,)).reset(seed=0)[0]["goal"] for f in HELD_OUT_FAMILIES}
    assert any("on your" in g or "in front of" in g or "behind" in g for g in goals)
    assert any("object" in g for g in goals)


def test_fast_view_matches_minigrid_exactly():
    env = GridhouseEnv(families=tuple(FAMILIES))
    rng = np.random.default_rng(0)
    moves = [action_by_name(n).index for n in ("m", "m", "l", "r", "p", "d")]
    for episode in range(30):
        env.reset(seed=episode)
        for _ in range(40):
            env.step(int(rng.choice(moves)))
            np.testing.assert_array_equal(env.level.gen_obs()["image"], MiniGridEnv.gen_obs(env.level)["image"])


def test_holding_shows_in_the_manipulation_camera():
    env = GridhouseEnv(families=("pickup",), expert=True)
    empty_handed, *_ = env.reset(seed=3, options={"house": 3})
    holding, *_ = run_expert(env, stop_before_end=True)
    assert holding["holding"] == 1
    gripper = slice(16, 24), slice(8, 16)  # the agent's own cell: bottom centre of the 3 x 3 view
    assert not np.array_equal(holding["manip_rgb"][gripper], empty_handed["manip_rgb"][gripper])


def test_vector_env_keeps_goal_text_and_autoresets():
    envs = make_vector_env(2, expert=True)
    try:
        obs, info = envs.reset(seed=0)
        assert all(isinstance(g, str) and g.startswith(("go", "pick", "put")) for g in obs["goal"])
        assert obs["nav_rgb"].shape == (2, 56, 56, 3)
        obs, reward, terminated, truncated, info = envs.step(np.array([END, END]))
        assert terminated.all() and info["_final_info"].all()
        assert not info["final_info"]["success"].any()  # `end` at the start fails
        assert (obs["prev_action"] == NO_PREVIOUS_ACTION).all()  # same-step autoreset: already a new episode
        assert (info["expert_action"] >= 0).all()
    finally:
        envs.close()


def _same(a, b) -> bool:
    """Deep equality of vector-env outputs: dicts, tuples, numpy arrays (dtype included)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            return isinstance(b, np.ndarray) and b.dtype == object and _same(a.tolist(), b.tolist())
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _expert_trace(workers: int, steps: int = 80, split_step: bool = False) -> list:
    envs = make_vector_env(5, expert=True, workers=workers)
    try:
        trace = [envs.reset(seed=11)]
        for _ in range(steps):
            actions = np.maximum(trace[-1][-1]["expert_action"], 0)  # -1 (no expert action) only after an end
            if split_step:
                envs.step_async(actions)
                trace.append(envs.step_wait())
            else:
                trace.append(envs.step(actions))
        return trace
    finally:
        envs.close()


def test_envs_split_over_worker_processes_step_exactly_like_one_process():
    in_process = _expert_trace(workers=0)
    assert sum(int(step[1].sum()) for step in in_process[1:]) > 0  # episodes do end in success
    assert _same(in_process, _expert_trace(workers=2))  # uneven shards: 3 + 2 envs
    # step_async + step_wait (a learner working while the workers step) is the same step, in both kinds
    assert _same(in_process, _expert_trace(workers=2, split_step=True))
    assert _same(in_process, _expert_trace(workers=0, split_step=True))


def test_a_dead_env_worker_is_named_not_a_broken_pipe():
    envs = make_vector_env(2, workers=2)
    try:
        envs.reset(seed=0)
        envs._processes[1].kill()
        envs._processes[1].join()
        with pytest.raises(RuntimeError, match=r"env worker 1 \(pid \d+\) died, exit code -9"):
            envs.step(np.array([0, 0]))
    finally:
        envs.close()


def test_env_worker_errors_reach_the_learner_with_the_cause():
    envs = make_vector_env(2, workers=2)
    try:
        envs.reset(seed=0)
        with pytest.raises(RuntimeError, match="env worker failed(.|\n)*masked"):
            envs.step(np.array([0, action_by_name("zp").index]))
    finally:
        envs.close()


def test_fast_house_generation_builds_minigrids_houses():
    """place_obj and add_distractors are re-implemented for speed with minigrid's draws in minigrid's order:
    every seed must stay the same house (models are trained and measured on these houses)."""
    from minigrid.core.roomgrid import RoomGrid

    from flare_sim.config import GridhouseConfig
    from flare_sim.house import HouseLevel

    class MinigridHouseLevel(HouseLevel):
        place_obj = MiniGridEnv.place_obj
        add_distractors = RoomGrid.add_distractors

    config = GridhouseConfig()
    for family in FAMILIES.values():
        fast, stock = HouseLevel(config, family), MinigridHouseLevel(config, family)
        for seed in range(15):
            fast.reset(seed=seed)
            stock.reset(seed=seed)
            assert np.array_equal(fast.grid.encode(), stock.grid.encode()), (family.name, seed)
            assert (fast.surface, tuple(fast.agent_pos), fast.agent_dir) == (
                stock.surface,
                tuple(stock.agent_pos),
                stock.agent_dir,
            )


def test_fast_object_descriptions_match_babyai():
    from minigrid.envs.babyai.core.verifier import ObjDesc

    from flare_sim.tasks import FastObjDesc

    env = GridhouseEnv(families=tuple(FAMILIES))
    for seed in range(40):
        env.reset(seed=seed)
        level = env.level
        for obj in [o for row in level.room_grid for room in row for o in room.objs][:4]:
            for args in ((obj.type, obj.color), (None, obj.color), (obj.type, None, "left"), (obj.type, None, "front")):
                ours, theirs = FastObjDesc(*args), ObjDesc(*args)
                assert ours.find_matching_objs(level) == theirs.find_matching_objs(level)
                assert ours.find_matching_objs(level, use_location=False) == theirs.find_matching_objs(
                    level, use_location=False
                )


def test_goal_cells_name_the_goal_objects_type_and_colour_only():
    """BC's goal-cell labels: an object of the goal's type and colour; not its type in another colour, not
    another type in its colour; a colour-only goal matches any object of that colour, never a door or wall."""
    view = np.zeros((7, 7, 3), dtype=np.uint8)  # minigrid [x, y, (type, colour, state)]
    view[..., 0] = OBJECT_TO_IDX["empty"]
    purple, blue, red = (COLOR_TO_IDX[c] for c in ("purple", "blue", "red"))
    view[1, 2] = OBJECT_TO_IDX["ball"], purple, 0
    view[3, 4] = OBJECT_TO_IDX["ball"], blue, 0
    view[5, 0] = OBJECT_TO_IDX["key"], purple, 0
    view[6, 6] = OBJECT_TO_IDX["door"], purple, 0
    view[0, 0] = OBJECT_TO_IDX["box"], red, 0
    cells = named_cells(view, FastObjDesc("ball", "purple"))
    assert cells.shape == (7, 7) and np.argwhere(cells).tolist() == [[2, 1]]  # [row = y, col = x]
    assert np.argwhere(named_cells(view, FastObjDesc(None, "purple"))).tolist() == [[0, 5], [2, 1]]
    assert np.argwhere(named_cells(view, FastObjDesc("ball", None))).tolist() == [[2, 1], [4, 3]]


@pytest.mark.parametrize("family", ["objectnav", "pickup", "fetch"])
def test_goal_cells_follow_the_expert_to_the_goal(family):
    """With the expert on, every step's info says which view cells show the object the goal sends the agent to:
    when the goal is satisfied the object is right ahead (ObjectNav), held in the agent's own cell (Pickup);
    for Fetch, the object to move until it is held, then the object to put it next to."""
    env = GridhouseEnv(families=(family,), split="eval", expert=True)
    obs, info = env.reset(seed=3, options={"house": 3})
    seen, seen_while_holding = [], []
    while info["expert_action"] != END:
        assert info["goal_cells"].shape == (7, 7) and info["goal_cells"].dtype == bool
        seen.append(info["goal_cells"].any())
        if family == "fetch":
            goal = env.subgoals[0]
            desc = goal.desc_fixed if obs["holding"] else goal.desc_move
            assert target(env.level, goal) is desc
            if obs["holding"]:
                seen_while_holding.append(info["goal_cells"].any())
        obs, _, _, _, info = env.step(info["expert_action"])
        desc = target(env.level, env.subgoals[env.subgoal_index])
        drawn = Grid.render_tile(
            WorldObj.decode(OBJECT_TO_IDX[desc.type], COLOR_TO_IDX[desc.color], 0), tile_size=8
        ).astype(np.uint8)
        for row, col in np.argwhere(info["goal_cells"]):  # each labelled tile of the frame draws the goal's object
            if (row, col) != (AGENT_Y, AGENT_X):  # drawn with the agent over it
                np.testing.assert_array_equal(obs["nav_rgb"][row * 8 : row * 8 + 8, col * 8 : col * 8 + 8], drawn)
    ahead, own = (AGENT_Y - 1, AGENT_X), (AGENT_Y, AGENT_X)
    if family == "objectnav":
        assert info["goal_cells"][ahead]
    elif family == "pickup":
        assert info["goal_cells"][own] and obs["holding"] == 1
    else:  # the object to put down next to was in view while carrying
        assert any(seen_while_holding)
    assert any(seen) and not all(seen)  # the goal is out of view at times, in view at others
