"""Bags: record the simulated closed loop (MCAP and sqlite3), replay with the same model (100 % greedy
agreement) and a different one (lower, reported); replay a bag written directly with rosbags with robot-style
topics; refuse malformed bags, missing topics, wrong message types and wrong frames with messages that say
which episode and why."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from flare_bag.bagio import BagError, FlareBag
from flare_bag.replay import replay
from flare_bringup.graph import Graph, NodeSpec
from flare_bringup.runner import EpisodeRunner
from flare_core import ACTIONS, protocol
from flare_sim import GridhouseEnv
from flare_training.checkpoint import save_checkpoint
from flare_training.export import export_policy
from flare_training.inputs import ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig

MODEL = "models/gridhouse_demo"
TYPES = get_typestore(Stores.ROS2_JAZZY)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One graph run recorded by two recorders at once: an MCAP bag and a sqlite3 bag."""
    root = tmp_path_factory.mktemp("bags")
    sqlite = NodeSpec("flare_bag", "recorder", "flare_bag.record", "flare_recorder_sqlite",
                      {"path": str(root / "run_sqlite"), "storage": "sqlite3"})  # fmt: skip
    graph = Graph("stretch", log_dir=root / "logs", record=str(root / "run_mcap"), extra=[sqlite]).start()
    runner = EpisodeRunner()
    try:
        runner.wait_ready(recorders=2)
        outcomes = [runner.run_episode(family, house) for family in ("objectnav", "pickup") for house in range(3)]
    finally:
        runner.close()
        graph.stop()
    assert not any(code not in (0, None) for code in graph.dead().values()), graph.dead()
    return root, outcomes


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A different policy: a small untrained network exported the same way."""
    root = tmp_path_factory.mktemp("other")
    adapter = ObservationAdapter(gridhouse_tokenizer(), gridhouse_cameras())
    torch.manual_seed(1)
    config = ModelConfig(d_model=32, layers=1, heads=2, visual_dim=16, goal_dim=16, vocab_size=len(adapter.tokenizer))
    model = ActorCritic(config, adapter.camera_shapes)
    ckpt = save_checkpoint(root / "run" / "checkpoint.pt", model, adapter, kind="bc", env_steps=0)
    return export_policy(ckpt, root / "model")


@pytest.mark.parametrize("bag", ["run_mcap", "run_sqlite"])
def test_replay_with_the_same_model_agrees_fully(recorded, bag):
    root, outcomes = recorded
    report, _ = replay(root / bag, MODEL, progress=False)
    s = report["summary"]
    assert s["episodes"] == s["episodes_replayed"] == len(outcomes), [e["error"] for e in report["episodes"]]
    assert s["decisions"] == sum(len(o.actions) for o in outcomes)
    assert s["agreement"] == 1.0 and s["episodes_identical"] == len(outcomes)
    assert [e["recorded"] for e in report["episodes"]] == [o.actions for o in outcomes]
    assert s["recorded_successes"] == sum(o.success for o in outcomes)
    assert all(e["recorded_outcome"].get("reason") for e in report["episodes"])
    assert s["recorded_inference_ms_median"] and s["recorded_decision_ms_median"] and s["replay_inference_ms_median"]
    confusion = np.array(report["confusion"]["matrix"])
    assert confusion.sum() == s["decisions"] and np.trace(confusion) == s["decisions"]


def test_replay_with_a_different_model_agrees_less_and_says_where(recorded, other_model):
    root, _ = recorded
    report, _ = replay(root / "run_mcap", other_model, progress=False)
    s = report["summary"]
    assert s["episodes_replayed"] == s["episodes"] and s["agreement"] < 0.9
    diverged = [e for e in report["episodes"] if e["first_divergence"]]
    assert diverged and all(e["first_divergence"]["recorded"] != e["first_divergence"]["predicted"] for e in diverged)
    first = diverged[0]
    step = first["first_divergence"]["step"]
    assert first["recorded"][:step] == first["predicted"][:step]


def test_cli_writes_json_report_and_plots(recorded, tmp_path):
    root, _ = recorded
    out = tmp_path / "report"
    command = [sys.executable, "-m", "flare_bag.replay", str(root / "run_mcap"), MODEL, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "agreement 100.0%" in result.stdout
    assert json.loads((out / "replay.json").read_text())["summary"]["agreement"] == 1.0
    assert {"report.md", "agreement_over_time.png", "confusion.png", "episode_1.png"} <= {p.name for p in out.iterdir()}
    assert "| 1 |" in (out / "report.md").read_text()


# -- bags written by others ------------------------------------------------------------------------------------


def _image(frame: np.ndarray, stamp_ns: int, encoding: str = "bgr8", claimed_height: int | None = None):
    data = frame[..., ::-1] if encoding == "bgr8" else frame
    header = TYPES.types["std_msgs/msg/Header"](
        stamp=TYPES.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
        frame_id="camera_color_optical_frame",
    )
    h, w = frame.shape[:2]
    msg = TYPES.types["sensor_msgs/msg/Image"](
        header=header, height=claimed_height or h, width=w, encoding=encoding, is_bigendian=0, step=w * 3,
        data=np.ascontiguousarray(data).reshape(-1),
    )  # fmt: skip
    return TYPES.serialize_cdr(msg, "sensor_msgs/msg/Image")


def _string(text: str):
    return TYPES.serialize_cdr(TYPES.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String")


def write_robot_bag(path, episodes=2, frame_size=(240, 240), goal_type="std_msgs/msg/String", drop_manip=False,
                    corrupt=""):  # fmt: skip
    """A bag as a robot logger would write it: a RealSense-style colour topic (bgr8, larger than the model's
    input), a gripper camera, the goal, bare action names; no completions or status. Frames and actions come
    from the expert in the simulator, upscaled."""
    env = GridhouseEnv(families=("objectnav",), split="eval", expert=True)
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    nav = writer.add_connection("/camera/color/image_raw", "sensor_msgs/msg/Image", typestore=TYPES)
    manip = writer.add_connection("/gripper_camera/image_raw", "sensor_msgs/msg/Image", typestore=TYPES)
    goal = writer.add_connection("/flare/goal", goal_type, typestore=TYPES)
    action = writer.add_connection("/flare/action", "std_msgs/msg/String", typestore=TYPES)
    odom = writer.add_connection("/odom", "std_msgs/msg/String", typestore=TYPES)  # unrelated traffic
    t, decisions = 10**9, 0
    for house in range(episodes):
        obs, info = env.reset(seed=house, options={"family": "objectnav", "house": house})
        writer.write(goal, t, _string(obs["goal"]) if goal_type.endswith("String") else _image(obs["nav_rgb"], t))
        done = False
        while not done:
            t += 100_000_000
            for conn, key in ((nav, "nav_rgb"), (manip, "manip_rgb")):
                if conn is manip and drop_manip and decisions >= 3:
                    continue
                frame = cv2.resize(obs[key], frame_size, interpolation=cv2.INTER_NEAREST)
                raw = _image(frame, t)
                if corrupt == "cdr" and house == 0 and decisions == 1 and conn is nav:  # a cut-off message
                    raw = bytes(raw)[: len(raw) // 2]
                if corrupt == "rows" and house == 0 and decisions == 1 and conn is nav:  # data short of its rows
                    raw = _image(frame[: frame.shape[0] // 2], t, claimed_height=frame.shape[0])
                writer.write(conn, t + 1_000_000, raw)
            writer.write(odom, t + 2_000_000, _string("x: 0"))
            writer.write(action, t + 5_000_000, _string(ACTIONS[info["expert_action"]].name))
            obs, _, terminated, truncated, info = env.step(info["expert_action"])
            done = terminated or truncated
            decisions += 1
    writer.close()
    return decisions


CAMERAS = {"nav": "/camera/color/image_raw", "manip": "/gripper_camera/image_raw"}


def test_bag_written_directly_with_rosbags_replays(tmp_path):
    decisions = write_robot_bag(tmp_path / "robot")
    report, _ = replay(tmp_path / "robot", MODEL, cameras=CAMERAS, progress=False)
    s = report["summary"]
    assert s["episodes"] == s["episodes_replayed"] == 2 and s["decisions"] == decisions
    assert 0 < s["agreement"] <= 1 and s["recorded_inference_ms_median"] is None  # not recorded by this logger
    assert report["episodes"][0]["recorded_outcome"] == {}


def test_missing_topics_are_named_with_what_the_bag_has(tmp_path):
    write_robot_bag(tmp_path / "robot", episodes=1)
    with pytest.raises(BagError) as err:
        replay(tmp_path / "robot", MODEL, progress=False)  # default camera topics are not in this bag
    text = str(err.value)
    assert "missing camera nav (flare/camera/nav/image)" in text and "/camera/color/image_raw" in text
    assert "--camera" in text


def test_wrong_message_type_is_refused(tmp_path):
    write_robot_bag(tmp_path / "robot", episodes=1, goal_type="sensor_msgs/msg/Image")
    with pytest.raises(BagError, match="/flare/goal is sensor_msgs/msg/Image, the goal must be std_msgs/msg/String"):
        replay(tmp_path / "robot", MODEL, cameras=CAMERAS, progress=False)


def test_malformed_and_absent_bags_are_refused(tmp_path):
    with pytest.raises(BagError, match="no such bag"):
        replay(tmp_path / "nothing", MODEL, progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: [oops")
    with pytest.raises(BagError, match="not a readable ROS 2 bag"):
        replay(broken, MODEL, progress=False)


def test_bad_frames_fail_only_their_episode_and_say_which_and_why(tmp_path):
    write_robot_bag(tmp_path / "small", episodes=2, frame_size=(16, 16))
    report, _ = replay(tmp_path / "small", MODEL, cameras=CAMERAS, progress=False)
    errors = [e["error"] for e in report["episodes"]]
    assert len(errors) == 2 and all("decision 0" in e and "smaller than the model's 56x56 input" in e for e in errors)

    for corrupt, why in [("cdr", "cannot be decoded"), ("rows", "truncated")]:
        write_robot_bag(tmp_path / corrupt, episodes=2, corrupt=corrupt)
        first, second = replay(tmp_path / corrupt, MODEL, cameras=CAMERAS, progress=False)[0]["episodes"]
        assert why in first["error"] and second["error"] == "" and second["agreement"] > 0

    write_robot_bag(tmp_path / "dropped", episodes=2, drop_manip=True)  # the gripper camera dies at decision 3
    first, second = replay(tmp_path / "dropped", MODEL, cameras=CAMERAS, progress=False)[0]["episodes"]
    assert first["error"].startswith("decision 3 ('") and "no frame from camera(s) manip" in first["error"]
    assert second["error"].startswith("decision 0")  # never a stale frame from before

    result = subprocess.run([sys.executable, "-m", "flare_bag.replay", str(tmp_path / "small"), MODEL, "--out",
                             str(tmp_path / "out"), *[f"--camera={k}={v}" for k, v in CAMERAS.items()]],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "episode 1" in result.stdout + result.stderr
    assert "not replayed" in (tmp_path / "out" / "report.md").read_text()


def test_late_completions_and_status_reach_the_episode_they_belong_to(tmp_path):
    """Topics have no order between them: a recorder may log an episode's last completion and its "finished"
    status after the next episode's goal. Each lands on its own episode (by command id, by goal)."""
    writer = Writer(tmp_path / "late", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conn = {role: writer.add_connection(f"/flare/{topic}", "std_msgs/msg/String", typestore=TYPES)
            for role, topic in (("goal", "goal"), ("action", "action"), ("done", "action_done"),
                                ("status", "policy/status"))}  # fmt: skip
    cams = {n: writer.add_connection(f"/flare/camera/{n}/image", "sensor_msgs/msg/Image", typestore=TYPES)
            for n in ("nav", "manip")}  # fmt: skip
    frame = {"nav": np.zeros((56, 56, 3), np.uint8), "manip": np.zeros((24, 24, 3), np.uint8)}
    goals = ("go to the red ball", "go to the blue key")
    t = 10**9

    def write(role, text):
        nonlocal t
        t += 1_000_000
        writer.write(conn[role], t, _string(text))

    for n in frame:
        writer.write(cams[n], t, _image(frame[n], t))
    write("goal", goals[0])
    write("action", protocol.ActionCommand("end", id=1, episode=1, frames={"nav": 10**9, "manip": 10**9}).to_json())
    write("goal", goals[1])  # the next episode starts before the first one's completion and status are logged
    write("done", protocol.ActionDone(1, "end", "done", episode_over=True, success=True).to_json())
    write("status", protocol.PolicyStatus("finished", 1, 1, goals[0], reason="policy ended").to_json())
    write("action", protocol.ActionCommand("end", id=2, episode=2, frames={"nav": 10**9, "manip": 10**9}).to_json())
    write("done", protocol.ActionDone(2, "end", "done", episode_over=True, success=False).to_json())
    write("status", protocol.PolicyStatus("finished", 2, 1, goals[1], reason="policy ended").to_json())
    writer.close()
    bag = FlareBag(tmp_path / "late", {"nav": "/flare/camera/nav/image", "manip": "/flare/camera/manip/image"})
    first, second = list(bag.episodes())
    assert (first.goal, second.goal) == goals
    assert first.decisions[0].done.id == 1 and first.outcome == {"success": True, "reason": "policy ended"}
    assert second.decisions[0].done.id == 2 and second.outcome == {"success": False, "reason": "policy ended"}


def test_commands_logged_before_their_goal_open_its_episode(tmp_path):
    """The other way round: a recorder may log an episode's first command before its goal (the fresh-clone CI
    run saw it: 145 of 146 decisions). Such commands open the goal's episode, in order; a recording that
    starts mid-episode still skips that episode's tail."""
    writer = Writer(tmp_path / "early", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conn = {role: writer.add_connection(f"/flare/{topic}", "std_msgs/msg/String", typestore=TYPES)
            for role, topic in (("goal", "goal"), ("action", "action"))}  # fmt: skip
    cams = {n: writer.add_connection(f"/flare/camera/{n}/image", "sensor_msgs/msg/Image", typestore=TYPES)
            for n in ("nav", "manip")}  # fmt: skip
    frame = {"nav": np.zeros((56, 56, 3), np.uint8), "manip": np.zeros((24, 24, 3), np.uint8)}
    goals = ("go to the red ball", "go to the blue key")
    t = 10**9

    def command(action, id, episode, step):
        nonlocal t
        t += 1_000_000
        for n in frame:
            writer.write(cams[n], t, _image(frame[n], t))
        stamps = {"nav": t, "manip": t}
        text = protocol.ActionCommand(action, id=id, episode=episode, step=step, frames=stamps).to_json()
        writer.write(conn["action"], t + 1, _string(text))

    def goal(text):
        nonlocal t
        t += 1_000_000
        writer.write(conn["goal"], t, _string(text))

    command("m", 1, 6, 4)  # the tail of an episode whose goal was never recorded
    command("m", 2, 7, 0)  # logged before its goal
    goal(goals[0])
    command("l", 3, 7, 1)
    command("m", 4, 8, 0)  # the next episode's first two commands, before its goal
    command("end", 5, 8, 1)
    goal(goals[1])
    command("end", 6, 8, 2)
    writer.close()
    bag = FlareBag(tmp_path / "early", {"nav": "/flare/camera/nav/image", "manip": "/flare/camera/manip/image"})
    first, second = list(bag.episodes())
    assert (first.goal, second.goal) == goals
    assert [d.command.id for d in first.decisions] == [2, 3] and [d.index for d in first.decisions] == [0, 1]
    assert [d.command.id for d in second.decisions] == [4, 5, 6] and [d.action for d in second.decisions] == [
        "m",
        "end",
        "end",
    ]
    assert not first.problem and not second.problem
    assert all(f is not None for d in first.decisions + second.decisions for f in d.frames.values())
