"""The AI2-THOR CHORES env against a stand-in faithful to ai2thor's Controller (tests/thor_standin.py): the 20
actions send FLaRe's calls, success rules, cameras, timeouts, the ObjectNav expert, refusals."""

from __future__ import annotations

import importlib.metadata
import math

import numpy as np
import pytest
import thor_standin
import torch
from thor_standin import FAULTS

from flare_core.actions import ACTION_NAMES
from flare_training.envs import get_simulator
from flare_training.evaluate import EPISODE_TRIES, evaluate_policy
from flare_training.inputs import ObservationAdapter
from flare_training.model import ActorCritic, ModelConfig
from flare_training.thor.controller import (
    FLARE_THOR_COMMIT,
    LIFT_OFFSET,
    StretchController,
    ThorConfig,
    ThorSetupError,
)
from flare_training.thor.env import FRAME_SHAPE, SUCCESS_REWARD, ThorEnv
from flare_training.thor.houses import HouseSet
from flare_training.thor.tasks import TASKS, room_at

STANDIN = "thor_standin:Controller"
A = {name: i for i, name in enumerate(ACTION_NAMES)}


@pytest.fixture(autouse=True)
def clean_faults():
    FAULTS.clear()
    yield
    FAULTS.clear()


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    return thor_standin.write_houses(tmp_path_factory.mktemp("houses"), train=6, val=4)


def config(houses, **overrides) -> ThorConfig:
    return ThorConfig(houses=str(houses), controller=STANDIN, **overrides)


def house_of_two_rooms() -> dict:
    """Two 3 x 3 m rooms along x; a mug 1 m ahead (+z) of the start, a sofa in the second room."""
    house = thor_standin.make_house(np.random.default_rng(0), rooms=2, objects=0)
    house["objects"] = [
        {"id": "Mug|0|1", "assetId": "Mug_1", "position": {"x": 1.5, "y": 0.6, "z": 2.5}, "children": []},
        {"id": "Sofa|1|2", "assetId": "Sofa_1", "position": {"x": 4.5, "y": 0.4, "z": 1.5}, "children": []},
    ]
    return house


@pytest.fixture
def stretch(houses):
    controller = StretchController(config(houses))
    controller.reset(house_of_two_rooms())
    controller.teleport({"x": 1.5, "y": 0.9, "z": 1.5}, 0.0)
    yield controller
    controller.stop()


def sent_after(controller, index: int) -> list[dict]:
    before = len(controller.controller.sent)
    controller.agent_step(index)
    return controller.controller.sent[before:]


# --- the 20 actions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, call",
    [
        ("m", dict(action="MoveAheadQuick", moveMagnitude=0.2)),
        ("b", dict(action="MoveBackQuick", moveMagnitude=0.2)),
        ("r", dict(action="RotateRightQuick", degrees=30.0)),
        ("l", dict(action="RotateRightQuick", degrees=-30.0)),
        ("rs", dict(action="RotateRightQuick", degrees=6.0)),
        ("ls", dict(action="RotateRightQuick", degrees=-6.0)),
        ("p", dict(action="PickupObject")),
    ],
)
def test_base_and_pickup_actions_send_flares_calls(stretch, name, call):
    assert sent_after(stretch, A[name]) == [dict(call, renderImageSynthesis=False)]  # as StretchController.step


@pytest.mark.parametrize(
    "name, dy, dz",
    [("yp", 0.1, 0), ("ym", -0.1, 0), ("zp", 0, 0.1), ("zm", 0, -0.1),
     ("yps", 0.02, 0), ("yms", -0.02, 0), ("zps", 0, 0.02), ("zms", 0, -0.02)],
)  # fmt: skip
def test_arm_actions_send_absolute_moves_from_the_arm_state(stretch, name, dy, dz):
    """MoveArm's target is the arm-root-relative state (lift = joints[0].y - 0.16297..., extension =
    joints[-1].z) plus the step, with returnToStart and speed as FLaRe's ADDITIONAL_ARM_ARGS."""
    joints = stretch.metadata["arm"]["joints"]
    lift, extension = joints[0]["rootRelativePosition"]["y"] - LIFT_OFFSET, joints[-1]["rootRelativePosition"]["z"]
    (call,) = sent_after(stretch, A[name])
    assert call["action"] == "MoveArm" and call["returnToStart"] is True and call["speed"] == 1
    assert call["position"] == pytest.approx({"x": 0.0, "y": lift + dy, "z": extension + dz})


def test_wrist_actions_rotate_toward_the_bounds(stretch):
    """wp: -min(10, |w - 100|); wm: +min(10, |75 - w|), w the wrist angle from joints[-1] (FLaRe agent_step)."""
    (call,) = sent_after(stretch, A["wp"])
    wrist = dict(action="RotateWristRelative", returnToStart=True, speed=1, renderImageSynthesis=False)
    assert call == dict(wrist, yaw=-10.0)
    (call,) = sent_after(stretch, A["wm"])
    assert call == dict(wrist, yaw=10.0)
    for _ in range(10):  # 180 -> 100 deg: at the bound the next step is what is left, then nothing
        stretch.agent_step(A["wp"])
    assert stretch.wrist_angle() == pytest.approx(100.0)
    (call,) = sent_after(stretch, A["wp"])
    assert call["yaw"] == pytest.approx(0.0) and stretch.metadata["lastActionSuccess"] is False


def test_drop_releases_and_settles_physics(stretch):
    plain = dict(renderImageSynthesis=False)
    assert sent_after(stretch, A["d"]) == [
        dict(action="ReleaseObject", **plain),
        dict(action="AdvancePhysicsStep", simSeconds=2, **plain),
    ]


def test_episode_actions_are_never_sent(stretch):
    for name in ("end", "sub_done"):
        with pytest.raises(ValueError, match="not sent to AI2-THOR"):
            stretch.action_call(name)


def test_every_action_is_mapped():
    sent = {n for n in ACTION_NAMES if n not in ("end", "sub_done")}
    assert len(sent) == 18 and len(ACTION_NAMES) == 20


# --- FLaRe's lastActionSuccess ------------------------------------------------------------------------
def test_success_is_flares_verdict(stretch):
    stretch.teleport({"x": 0.3, "y": 0.9, "z": 1.5}, 270.0)  # facing the house's outer wall, 0.3 m away
    assert stretch.agent_step(A["m"]).metadata["lastActionSuccess"] is False  # "collided"
    assert stretch.agent_step(A["r"]).metadata["lastActionSuccess"] is True
    assert stretch.agent_step(A["d"]).metadata["lastActionSuccess"] is True  # a drop always counts
    for _ in range(12):
        stretch.agent_step(A["yp"])
    assert stretch.agent_step(A["yp"]).metadata["lastActionSuccess"] is False  # at the top: the arm did not move
    assert stretch.agent_step(A["ym"]).metadata["lastActionSuccess"] is True


def test_pickup_never_counts_as_a_successful_action(stretch):
    """FLaRe overrides PickupObject's success to False even when the magnet took the object."""
    world = stretch.controller.world
    hand = world.hand()
    world.objects["Mug|0|1"].update(x=hand["x"], y=hand["y"], z=hand["z"])
    event = stretch.agent_step(A["p"])
    assert stretch.held_objects() == ["Mug|0|1"] and event.metadata["lastActionSuccess"] is False


# --- cameras ------------------------------------------------------------------------------------------
def test_cameras_are_flares_crop(stretch):
    event = stretch.controller.last_event
    assert event.frame.shape == (224, 396, 3) and event.third_party_camera_frames[0].shape == (224, 396, 4)
    nav, manip = stretch.frames()
    assert nav.shape == manip.shape == FRAME_SHAPE == (224, 384, 3)
    np.testing.assert_array_equal(nav, event.frame[:, 6:-6])
    np.testing.assert_array_equal(manip, event.third_party_camera_frames[0][:, 6:-6, :3])
    world = stretch.controller.world
    np.testing.assert_array_equal(nav, world.render(0.0, 224, 396)[:, 6:-6])  # the right way up


# --- tasks --------------------------------------------------------------------------------------------
def env_with(houses, family: str, **kwargs) -> ThorEnv:
    env = ThorEnv(config(houses, **kwargs), families=(family,))
    env.reset(seed=0)
    env.controller.reset(house_of_two_rooms())
    env.controller.teleport({"x": 1.5, "y": 0.9, "z": 1.5}, 0.0)
    return env


def pose_task(env: ThorEnv, target: str | None) -> None:
    from flare_training.thor.tasks import TaskSpec, sample_task

    spec = TaskSpec(env.task.family, 0, {"x": 1.5, "y": 0.9, "z": 1.5}, 0.0, target)
    env.task = sample_task(spec.family, 0, env.controller, env.np_random, spec)


def test_objectnav_succeeds_only_with_the_target_in_view_within_2_m(houses):
    env = env_with(houses, "ObjectNavType")
    pose_task(env, "Mug")
    assert env.task.goal.endswith("a mug") and env.task.target_ids == {"Mug|0|1"}
    _, reward, terminated, _, info = env.step(A["end"])
    assert terminated and info["success"] and reward == SUCCESS_REWARD
    env.reset(seed=1)
    env.controller.reset(house_of_two_rooms())
    pose_task(env, "Mug")
    for _ in range(6):  # turn away: 180 deg
        env.step(A["r"])
    _, reward, terminated, _, info = env.step(A["end"])
    assert terminated and not info["success"] and reward == 0.0
    env.close()


@pytest.mark.parametrize("family", ["PickupType", "FetchType"])
def test_pickup_and_fetch_succeed_only_holding_the_target(houses, family):
    env = env_with(houses, family)
    pose_task(env, "Mug")
    assert ("and" in env.task.goal) == (family == "FetchType")
    _, _, _, _, info = env.step(A["p"])  # nothing in the magnet
    assert env.controller.held_objects() == []
    world = env.controller.controller.world
    hand = world.hand()
    world.objects["Mug|0|1"].update(x=hand["x"], y=hand["y"], z=hand["z"])
    obs, _, _, _, _ = env.step(A["p"])
    assert obs["holding"] == 1
    _, reward, terminated, _, info = env.step(A["end"])
    assert terminated and info["success"] and reward == SUCCESS_REWARD
    env.reset(seed=3)
    env.controller.reset(house_of_two_rooms())
    pose_task(env, "Mug")
    _, reward, _, _, info = env.step(A["end"])
    assert not info["success"] and reward == 0.0
    env.close()


def test_a_house_kept_for_the_next_episode_is_put_back(houses):
    """Objects held or moved in one Pickup episode are back in place for the next one (FLaRe reloads the house
    unless training goes from ObjectNav to ObjectNav)."""
    env = ThorEnv(config(houses), families=("PickupType",))
    env.reset(seed=0)
    world = env.controller.controller.world
    target = sorted(env.task.target_ids)[0]
    hand = world.hand()
    world.objects[target].update(x=hand["x"], y=hand["y"], z=hand["z"])
    env.step(A["p"])
    assert env.controller.held_objects() == [target]
    _, _, _, _, info = env.step(A["end"])
    assert info["success"]
    env.reset()
    assert env.controller.held_objects() == [] and env.task.house == info["house"]
    env.close()


def test_roomvisit_needs_every_room_marked(houses):
    env = env_with(houses, "RoomVisit")
    pose_task(env, None)
    assert env.task.goal.startswith("go to all 2 rooms")
    env.step(A["sub_done"])
    env.step(A["sub_done"])  # the same room again: no new room
    assert env.task.seen_rooms == ["room|0"]
    for _ in range(3):
        env.step(A["r"])  # face +x
    for _ in range(10):
        env.step(A["m"])  # into room|1
    assert room_at(env.task.rooms, env.controller.agent_position()) == "room|1"
    env.step(A["sub_done"])
    _, reward, terminated, _, info = env.step(A["end"])
    assert terminated and info["success"] and reward == SUCCESS_REWARD
    env.reset(seed=2)
    env.controller.reset(house_of_two_rooms())
    pose_task(env, None)
    env.step(A["sub_done"])
    _, _, _, _, info = env.step(A["end"])
    assert not info["success"]
    env.close()


def test_episodes_end_at_the_step_limit_and_observations_follow_the_contract(houses):
    env = ThorEnv(config(houses, max_steps=5), families=TASKS)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"nav_rgb", "manip_rgb", "goal", "prev_action", "holding"} and info["family"] in TASKS
    assert obs["nav_rgb"].shape == FRAME_SHAPE and env.observation_space.contains(obs)
    for _ in range(5):
        obs, _, terminated, truncated, _ = env.step(A["ls"])
    assert truncated and not terminated and obs["prev_action"] == A["ls"]
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step(A["m"])
    env.close()


def test_evaluation_episodes_take_spocs_step_limits(houses):
    env = ThorEnv(config(houses), families=TASKS, split="eval")
    limits = {f: env.reset(seed=0, options={"family": f, "house": 0})[0] and env.step_limit for f in TASKS}
    assert limits == {"ObjectNavType": 600, "PickupType": 600, "FetchType": 600, "RoomVisit": 1000}
    assert ThorEnv(config(houses), split="train").reset(seed=0) and ThorConfig().max_steps == 500
    env.close()


def test_houses_follow_their_split(houses):
    env = ThorEnv(config(houses), split="eval")
    assert env.houses.path.name == "val.jsonl.gz" and len(env.houses) == 4
    with pytest.raises(ValueError, match="outside the eval split"):
        env.reset(seed=0, options={"house": 4})
    env.close()


# --- the expert ---------------------------------------------------------------------------------------
def test_objectnav_expert_finds_its_targets(houses):
    env = ThorEnv(config(houses, max_steps=200), families=("ObjectNavType",), expert=True)
    outcomes = []
    for seed in range(5):
        _, info = env.reset(seed=seed)
        done = False
        while not done:
            assert info["expert_action"] >= 0
            _, _, terminated, truncated, info = env.step(info["expert_action"])
            done = terminated or truncated
        outcomes.append(info["success"])
    assert all(outcomes)
    env.close()


def test_expert_has_no_action_where_none_is_published(houses):
    env = ThorEnv(config(houses), families=("RoomVisit",), expert=True)
    assert env.reset(seed=0)[1]["expert_action"] == -1
    env.close()


# --- timeouts ----------------------------------------------------------------------------------------
def test_a_timeout_restarts_the_controller_and_the_episode_is_played_again(houses):
    env = ThorEnv(config(houses), families=("ObjectNavType",))
    obs, _ = env.reset(seed=0)
    spec, goal, started = env.task.spec, obs["goal"], FAULTS.started
    env.step(A["r"])
    FAULTS.timeout_on.append("MoveAheadQuick")
    _, reward, terminated, truncated, info = env.step(A["m"])
    assert truncated and not terminated and info["timeout"] and reward == 0.0
    assert FAULTS.started == started + 1  # a fresh controller, the house loaded again
    obs, _ = env.reset()
    assert env.task.spec == spec and env.controller.agent_position()["x"] == pytest.approx(spec.position["x"])
    assert obs["prev_action"] == 20 and env.controller.metadata["agent"]["rotation"]["y"] == pytest.approx(spec.yaw)
    assert goal.split()[-1] == obs["goal"].split()[-1]
    env.close()


def test_a_timeout_loading_a_house_is_retried(houses):
    env = ThorEnv(config(houses), families=("ObjectNavType",))
    FAULTS.timeout_on.append("Reset")
    obs, info = env.reset(seed=0)
    assert FAULTS.started == 2 and obs["nav_rgb"].shape == FRAME_SHAPE
    env.close()


def test_a_unity_crash_is_handled_as_a_timeout(houses):
    """ai2thor re-raises any server failure as RuntimeError after stopping Unity; later sends fail with
    "write to closed file". Both mean a restart and the episode again."""
    env = ThorEnv(config(houses), families=("ObjectNavType",))
    env.reset(seed=0)
    spec = env.task.spec
    FAULTS.crash_on.append("RotateRightQuick")
    _, _, _, truncated, info = env.step(A["r"])
    assert truncated and info["timeout"] and FAULTS.started == 2
    env.reset()
    assert env.task.spec == spec
    env.close()


def test_a_house_ai2thor_cannot_build_gives_way_to_another(houses):
    env = ThorEnv(config(houses), families=("ObjectNavType",), split="eval")
    FAULTS.bad_houses = 1
    with pytest.warns(UserWarning, match="could not build the house"):
        _, info = env.reset(seed=0, options={"house": 2})
    assert info["house"] == 3
    env.close()


def test_controllers_that_keep_timing_out_end_with_advice(houses):
    controller = StretchController(config(houses, restarts=2))
    controller.reset(house_of_two_rooms())
    FAULTS.timeout_on.extend(["MoveAheadQuick", "Reset", "Reset"])
    with pytest.raises(ThorSetupError, match="did not come back after 2 restarts"):
        controller.agent_step(A["m"])


# --- refusals ----------------------------------------------------------------------------------------
def test_a_wrong_houses_path_says_where_to_get_them(tmp_path):
    with pytest.raises(ThorSetupError, match=r"no train.jsonl.gz in .*houses_2023_07_28.*curl -L"):
        HouseSet(tmp_path, "train")
    with pytest.raises(ThorSetupError, match="--thor-houses is empty"):
        HouseSet("", "train")
    (tmp_path / "train.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(ThorSetupError, match="not a readable jsonl.gz"):
        HouseSet(tmp_path, "train")


def test_missing_vulkan_says_what_to_install(houses):
    FAULTS.vulkan = False
    with pytest.raises(ThorSetupError, match="Vulkan API driver missing.*libvulkan1.*--gpus all"):
        StretchController(config(houses, platform="CloudRendering"))


def test_gpus_are_shared_round_robin(houses):
    controller = StretchController(config(houses, platform="CloudRendering", gpu_devices="0,1"), gpu_index=3)
    assert controller.controller.gpu_device == 1
    controller.stop()


def test_a_build_of_another_commit_is_refused(houses):
    FAULTS.build_commit = "5e43486351ac6339c399c199e601c9dd18daecc3"
    with pytest.raises(ThorSetupError, match=f"where {FLARE_THOR_COMMIT} was asked.*ai2thor-pypi"):
        StretchController(config(houses))
    with pytest.raises(ThorSetupError, match="Invalid commit_id.*cannot be fetched"):
        StretchController(config(houses, commit="0" * 40))


def test_the_ai2thor_package_must_be_flares_build(houses, monkeypatch):
    """PyPI's ai2thor 5.0.0 (installed here for its Event) is not FLaRe's build: refused before it starts."""
    real = ThorConfig(houses=str(houses))
    version = importlib.metadata.version("ai2thor")
    with pytest.raises(ThorSetupError, match=f"ai2thor {version} is installed but the build {FLARE_THOR_COMMIT}"):
        StretchController(real)

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(ThorSetupError, match="ai2thor is not installed.*extra-index-url"):
        StretchController(real)


def test_the_stand_in_raises_where_ai2thor_raises(stretch):
    with pytest.raises(ValueError, match="Invalid action"):
        stretch.step("TeleportFull2")
    with pytest.raises(ValueError, match="missing"):
        stretch.step("MoveAheadQuick")  # moveMagnitude missing: MissingArguments
    stretch.teleport({"x": 0.3, "y": 0.9, "z": 1.5}, 270.0)
    assert not stretch.step("MoveAheadQuick", moveMagnitude=0.2)  # a plain failure returns a falsy Event
    with pytest.raises(RuntimeError, match="collided"):
        stretch.step("MoveAheadQuick", moveMagnitude=0.2, raise_for_failure=True)


def test_unknown_families_are_refused(houses):
    with pytest.raises(ValueError, match="unknown AI2-THOR task families.*ObjectNavType"):
        ThorEnv(config(houses), families=("objectnav",))


def test_wall_headings_match_ai2thor(stretch):
    """AI2-THOR's yaw: 0 faces +z, 90 faces +x; RotateRightQuick +30 turns right (clockwise seen from above)."""
    stretch.agent_step(A["r"])
    stretch.agent_step(A["r"])
    stretch.agent_step(A["r"])
    x0 = stretch.agent_position()["x"]
    stretch.agent_step(A["m"])
    assert stretch.agent_position()["x"] - x0 == pytest.approx(0.2) and math.isclose(
        stretch.metadata["agent"]["rotation"]["y"], 90.0
    )


def test_objaverse_objects_are_matched_through_objathor_annotations(houses, tmp_path):
    """Objaverse objects report objectType "Undefined"; their synset comes from annotations.json.gz by assetId."""
    import gzip
    import json

    from flare_training.thor.tasks import objects_by_target

    with gzip.open(tmp_path / "annotations.json.gz", "wt") as f:
        json.dump({"0a1b2c3d": {"synset": "mug.n.04"}, "ffee": {"synset": "teapot.n.01"}}, f)
    house = house_of_two_rooms()
    house["objects"] += [
        {"id": "0a1b2c3d|0|5", "assetId": "0a1b2c3d", "position": {"x": 2.0, "y": 0.5, "z": 2.0}, "children": []},
        {"id": "ffee|1|6", "assetId": "ffee", "position": {"x": 4.0, "y": 0.5, "z": 2.0}, "children": []},
    ]
    controller = StretchController(config(houses))
    controller.reset(house)
    found = objects_by_target(controller, str(tmp_path / "annotations.json.gz"))
    assert sorted(found["Mug"]) == ["0a1b2c3d|0|5", "Mug|0|1"] and "ffee|1|6" not in sum(found.values(), [])
    assert controller.metadata["objects"] == []  # the object filter is back on
    controller.stop()


def test_the_real_controller_gets_flares_server_asset_hook_and_arguments(houses, tmp_path, monkeypatch):
    """Where FLaRe's ai2thor is installed: its FIFO server and the Objaverse asset hook are passed; without
    --thor-assets the run is refused. ai2thor's modules are replaced here by recording ones."""
    import sys
    import types

    seen = {}

    class Runner:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class FifoServer:
        pass

    class Recording(thor_standin.Controller):
        def __init__(self, **kwargs):
            seen.update(kwargs)
            super().__init__(**{k: v for k, v in kwargs.items() if k != "action_hook_runner"})

    modules = {
        "ai2thor.controller": {"Controller": Recording},
        "ai2thor.fifo_server": {"FifoServer": FifoServer},
        "ai2thor.hooks.procedural_asset_hook": {"ProceduralAssetHookRunner": Runner},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: f"0+{FLARE_THOR_COMMIT}")
    with pytest.raises(ThorSetupError, match="--thor-assets must be objathor's 2023_07_28 directory"):
        StretchController(ThorConfig(houses=str(houses)))
    (tmp_path / "assets").mkdir()
    controller = StretchController(ThorConfig(houses=str(houses), assets=str(tmp_path)))
    assert seen["server_class"] is FifoServer and seen["commit_id"] == FLARE_THOR_COMMIT
    assert seen["action_hook_runner"].kwargs == dict(
        asset_directory=str(tmp_path / "assets"), asset_symlink=True, asset_limit=200
    )
    expected = dict(width=396, height=224, agentMode="stretch", fieldOfView=59, gridSize=0.15, snapToGrid=False,
                    server_timeout=1200, renderInstanceSegmentation=True, visibilityScheme="Distance")  # fmt: skip
    assert {k: seen[k] for k in expected} == expected
    controller.stop()


@pytest.mark.parametrize(
    "error, advice",
    [
        (RuntimeError("`nvidia-smi` failed to run. To use CloudRendering, please ensure you have nvidia GPUs "
                      "installed."), "NVIDIA GPU with Vulkan"),
        (Exception("Platform Linux64 failed validation with the following errors: No valid X display found\n"
                   "  Linux64 requires a X11 server"), "--thor-platform CloudRendering"),
        (ValueError("Invalid commit_id: 966bd - no build exists for arch=Linux platforms=Linux64"),
         "cannot be fetched"),
    ],
)  # fmt: skip
def test_start_failures_say_what_to_do(error, advice):
    """ai2thor's own messages (controller.py, platform.py) turned into one line with what to do."""
    from flare_training.thor.controller import _setup_error

    message = str(_setup_error(error, ThorConfig()))
    assert advice in message and "\n" not in message


def test_a_kept_house_is_queried_once_for_positions_and_objects(houses):
    """ObjectNav after ObjectNav keeps the house: its reachable positions and object list are not asked again."""
    env = ThorEnv(config(houses), families=("ObjectNavType",))
    env.reset(seed=0)
    house = env.task.house
    env.reset()
    assert env.task.house == house
    sent = [call["action"] for call in env.controller.controller.sent]
    assert sent.count("GetReachablePositions") == 1 and sent.count("ResetObjectFilter") == 1
    env.close()


def test_equal_seeds_pose_equal_tasks_whatever_came_before(houses):
    """GRPO's groups: envs that played different episodes before start the same task from the same seed."""
    first, second = (ThorEnv(config(houses), families=("ObjectNavType", "PickupType")) for _ in range(2))
    first.reset(seed=5)
    second.reset(seed=11)
    second.reset()  # a house kept for further episodes in this env, not in the other
    starts = []
    for env in (first, second):
        before = len(env.controller.controller.sent)
        obs, info = env.reset(seed=42)
        sent = [c.get("action") for c in env.controller.controller.sent[before:]]
        agent = env.controller.controller.last_event.metadata["agent"]["position"]
        starts.append((info["house"], env.task.family, sorted(env.task.target_ids), obs["goal"], agent, sent))
        env.close()
    assert starts[0] == starts[1]
    # The house is loaded again (the camera calibration drawn from the seed) and keeps its own materials:
    # RandomizeMaterials takes no seed, so a group's scenes would differ.
    sent = starts[0][-1]
    assert "ResetMaterials" in sent and "RandomizeMaterials" not in sent


def test_evaluation_counts_an_episode_that_keeps_timing_out_as_a_timeout(houses):
    """Played EPISODE_TRIES times, each try cut short by a Unity timeout: a failure of its own kind, not one that
    ran out of steps (a timeout ends the episode truncated)."""
    sim = get_simulator("thor", config(houses, max_steps=20, eval_steps=20))
    adapter = ObservationAdapter(sim.tokenizer(8), sim.cameras())
    torch.manual_seed(0)
    tokens, vocab = adapter.tokenizer.max_tokens, len(adapter.tokenizer)
    model_config = ModelConfig(d_model=32, layers=1, heads=2, visual_dim=16, goal_dim=16, max_goal_tokens=tokens,
                               vocab_size=vocab, max_context=sim.episode_steps)  # fmt: skip
    model = ActorCritic(model_config, adapter.camera_shapes, adapter.tokenizer.vocab)
    with torch.no_grad():  # always "m" (MoveAheadQuick)
        model.actor.heads["logits"].weight.zero_()
        model.actor.heads["logits"].bias.copy_(torch.where(torch.arange(len(ACTION_NAMES)) == A["m"], 10.0, 0.0))
    FAULTS.timeout_on.extend(["MoveAheadQuick"] * EPISODE_TRIES)
    r = evaluate_policy(model, adapter, ("ObjectNavType",), 2, "eval", greedy=True, num_envs=1, progress=False,
                        sim=sim)["ObjectNavType"]  # fmt: skip
    assert r["episodes"] == 2 and FAULTS.started == 1 + EPISODE_TRIES  # the first house, played three times
    assert r["timeout"] == 0.5 and r["step_limit"] == 0.5 and r["success"] == 0  # the second ran out of steps
