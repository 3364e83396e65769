"""The node graph in separate processes over real ROS 2 (rclpy + Fast DDS): episodes from goal messages on the
simulated Stretch and LoCoBot match the runtime's in-simulator evaluation; a masked action is refused; an
e-stop halts mid-motion within one control period; a dead camera pauses the policy and the bridge stops."""

import cv2
import pytest
from std_msgs.msg import String

from flare_bringup.graph import Graph, NodeSpec
from flare_bringup.runner import EpisodeRunner
from flare_core.runtime import OnnxPolicy
from flare_sim import CAMERA_KEYS, GridhouseEnv
from flare_sim.robot import SimulatedRobot

MODEL = "models/gridhouse_demo"
CONTROL_PERIOD_MS = 50  # bridges run at control_hz 20 (config YAML)


def in_sim(robot: str, family: str, houses: range) -> list[tuple[bool, list[str]]]:
    """The same policy through the runtime alone, no ROS: (success, actions) per house."""
    policy = OnnxPolicy(MODEL, "gridhouse", greedy=True, robot=robot)
    env = GridhouseEnv(families=(family,), split="eval")
    results = []
    for house in houses:
        obs, info = env.reset(seed=house, options={"family": family, "house": house})
        policy.reset(obs["goal"])
        actions, done = [], False
        while not done:
            step = policy.act({c: obs[k] for c, k in CAMERA_KEYS.items()}, holding=bool(obs["holding"]))
            actions.append(step.name)
            obs, _, terminated, truncated, info = env.step(step.action)
            done = terminated or truncated
        results.append((bool(info["success"]), actions))
    return results


def graph_with_runner(tmp_path, robot, **kwargs):
    graph = Graph(robot, log_dir=tmp_path / "logs", **kwargs).start()
    runner = EpisodeRunner()
    try:
        runner.wait_ready()
    except Exception:
        logs = "\n".join(f"--- {n}\n{graph.log(n)[-2000:]}" for n in graph.processes)
        runner.close()
        graph.stop()
        pytest.fail(f"graph did not come up; dead: {graph.dead()}\n{logs}")
    return graph, runner


@pytest.mark.parametrize("robot, embodiment", [("stretch", "stretch_re1"), ("locobot", "locobot")])
def test_graph_episodes_match_the_runtime_in_simulation(tmp_path, robot, embodiment):
    graph, runner = graph_with_runner(tmp_path, robot)
    try:
        houses = range(6)
        outcomes = [runner.run_episode(family, h) for family in ("objectnav", "pickup") for h in houses]
        reference = [r for family in ("objectnav", "pickup") for r in in_sim(embodiment, family, houses)]
        assert not graph.dead(), graph.dead()
    finally:
        runner.close()
        graph.stop()
    same_actions = sum(o.actions == ref[1] for o, ref in zip(outcomes, reference, strict=True))
    graph_success = sum(o.success for o in outcomes)
    sim_success = sum(ref[0] for ref in reference)
    assert same_actions >= len(outcomes) - 1, [(o.actions, ref[1]) for o, ref in zip(outcomes, reference, strict=True)]
    assert abs(graph_success - sim_success) <= 1, (graph_success, sim_success)
    assert all(o.inference_ms and o.decision_ms for o in outcomes)
    if robot == "locobot":  # its own mask: the gridhouse's pick/drop never reach the LoCoBot
        assert not {"p", "d"} & {a for o in outcomes for a in o.actions}


def test_masked_action_is_refused_by_the_locobot_bridge(tmp_path):
    graph, runner = graph_with_runner(tmp_path, "locobot", overrides={"locobot_bridge": {"sim_motion_s": 0.3}})
    try:
        runner.start_task("pickup", 0)
        runner.spin_until(lambda: runner.action_pub.get_subscription_count() > 0, 10, "the bridge to subscribe")
        runner.action_pub.publish(String(data='{"action": "p", "id": 41}'))
        runner.spin_until(lambda: any(d.id == 41 for d in runner.dones), 10, "the bridge's answer")
        done = next(d for d in runner.dones if d.id == 41)
        assert done.result == "refused" and "masked for locobot" in done.message
        runner.spin_for(0.5)
        assert any("not moved" in e.get("message", "") for e in runner.bridge_events)
        # the bridge still works: a valid action right after runs to completion
        runner.action_pub.publish(String(data='{"action": "l", "id": 42}'))
        runner.spin_until(lambda: any(d.id == 42 for d in runner.dones), 10, "the valid action to finish")
        assert next(d for d in runner.dones if d.id == 42).result == "done"
    finally:
        runner.close()
        graph.stop()


def test_estop_halts_mid_motion_within_one_control_period(tmp_path):
    graph, runner = graph_with_runner(tmp_path, "stretch", overrides={"stretch_bridge": {"sim_motion_s": 2.0}})
    try:
        task = runner.start_task("objectnav", 1)
        runner.send_goal(task["goal"])
        runner.spin_until(lambda: runner.actions, 20, "the first action")
        first = runner.actions[0]
        runner.spin_for(0.3)  # the simulated motion takes 2 s: we are mid-motion
        runner.estop(True)
        runner.spin_until(lambda: any(e["event"] == "estop" for e in runner.bridge_events), 5, "the bridge's e-stop")
        event = next(e for e in runner.bridge_events if e["event"] == "estop")
        assert event["halted_after_ms"] < CONTROL_PERIOD_MS and event["aborted"] == first.action
        runner.spin_until(lambda: any(d.id == first.id for d in runner.dones), 5, "the aborted action's report")
        assert next(d for d in runner.dones if d.id == first.id).result == "stopped"
        runner.spin_until(lambda: runner.latest_status().state == "estopped", 5, "the policy to stop")
        runner.spin_for(2.5)  # longer than the motion would have taken: nothing else is sent or done
        assert len(runner.actions) == 1 and not any(d.result == "done" for d in runner.dones)
    finally:
        runner.close()
        graph.stop()


def test_dead_camera_pauses_the_policy_and_the_bridge_stops(tmp_path):
    # Camera nodes replay frames of the simulated house from image folders; the simulated robot renders none.
    sim = SimulatedRobot()
    task = sim.reset_task("objectnav", 2)
    specs = []
    for camera, frame in sim.frames().items():
        folder = tmp_path / camera
        folder.mkdir()
        cv2.imwrite(str(folder / "0.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        params = {"camera": camera, "source": str(folder), "rate_hz": 20.0, "stall_timeout_s": 0.5}
        specs.append(NodeSpec("flare_ros", "camera_node", "flare_ros.camera_node", f"flare_camera_{camera}", params))
    first = OnnxPolicy(MODEL, "gridhouse").act(sim.frames(), False, goal=task["goal"]).name
    assert first != "end", "pick a house where the policy does not end at once"
    overrides = {"stretch_bridge": {"publish_camera": False, "command_timeout_s": 0.5, "sim_motion_s": 0.3},
                 "flare_policy": {"camera_timeout_s": 0.5}}  # fmt: skip
    graph, runner = graph_with_runner(tmp_path, "stretch", overrides=overrides, extra=specs)
    try:
        runner.start_task("objectnav", 2)
        runner.send_goal(task["goal"])
        runner.spin_until(lambda: runner.actions, 20, "the first action")
        graph.kill("flare_camera_nav")  # dies while the first motion runs
        runner.spin_until(lambda: runner.latest_status().state == "paused", 10, "the policy to pause")
        assert "nav" in runner.latest_status().reason
        n_actions = len(runner.actions)
        runner.spin_until(lambda: any("watchdog" in e.get("message", "") for e in runner.bridge_events), 10,
                          "the bridge's watchdog to stop the robot")  # fmt: skip
        runner.spin_for(1.0)
        assert len(runner.actions) == n_actions <= 2  # nothing decided without the camera
        assert "STALLED" not in graph.log("flare_camera_manip")
    finally:
        runner.close()
        graph.stop()


def test_unusable_frames_are_reported_and_never_acted_on(tmp_path):
    """Depth frames and all-black frames pause the policy with the reason; a world reset ends the paused episode."""
    from sensor_msgs.msg import Image

    from flare_core import protocol
    from flare_ros.common import IMAGE_QOS

    overrides = {"stretch_bridge": {"publish_camera": False}}
    graph, runner = graph_with_runner(tmp_path, "stretch", overrides=overrides)
    try:
        pubs = {c: runner.node.create_publisher(Image, protocol.camera_topic(c), IMAGE_QOS) for c in ("nav", "manip")}
        depth = Image(height=56, width=56, encoding="16UC1", step=112, data=bytes(56 * 112))
        runner.start_task("objectnav", 0)
        runner.send_goal("go to the red ball")
        for _ in range(20):
            for pub in pubs.values():
                pub.publish(depth)
            runner.spin_for(0.1)
        assert runner.actions == []
        assert runner.latest_status().state == "paused"
        log = graph.log("flare_policy")
        assert "depth image" in log and "depth image" in runner.latest_status().reason  # the pause says why
        assert log.count("frames from this camera are ignored") <= 2  # once per camera, not at 10 Hz
        assert log.count("PAUSED") <= 3  # once per change of reason
        black = Image(height=56, width=56, encoding="rgb8", step=168, data=bytes(56 * 168))  # a covered lens
        for _ in range(5):
            for pub in pubs.values():
                pub.publish(black)
            runner.spin_for(0.1)
        status = runner.latest_status()
        assert runner.actions == [] and status.state == "paused" and "all-black" in status.reason
        assert "all-black" in status.extra["camera_problems"]["nav"]
        runner.start_task("objectnav", 1)  # a new world: the paused episode must not resume under its old goal
        runner.spin_until(lambda: runner.latest_status().state == "finished", 5, "the paused episode to end")
        assert "reset" in runner.latest_status().reason
    finally:
        runner.close()
        graph.stop()
