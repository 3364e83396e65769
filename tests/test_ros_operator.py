"""The graph as an operator meets it, over real rclpy in separate processes: a one-shot e-stop reaches every
node (late joiners too), the runstop service works, a goal while e-stopped is refused, a goal sent mid-motion
starts a working episode, malformed commands and goals the model would misread are answered on the status
topics, and a node that dies ends the graph."""

import subprocess
import sys
import time

from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool

from flare_bringup.graph import Graph
from flare_bringup.runner import EpisodeRunner, one_shot_estop
from flare_core import protocol


def policy_state(runner) -> str:
    status = runner.latest_status()
    return status.state if status else ""


def test_operator_graph(tmp_path):
    runner = EpisodeRunner()
    runner.estop(True)  # before any node exists: the latched e-stop must reach them when they join
    graph = Graph("stretch", log_dir=tmp_path / "logs", overrides={"stretch_bridge": {"sim_motion_s": 1.0}}).start()
    try:
        runner.wait_ready()
        runner.spin_until(lambda: policy_state(runner) == "estopped", 10, "the late-joining policy to be e-stopped")
        runner.spin_until(runner.bridge_estops, 10, "the late-joining bridge to be e-stopped")
        runner.estop(False)
        runner.spin_until(lambda: policy_state(runner) == "idle" and runner.bridge_estops()[-1]["event"] ==
                          "estop_released", 10, "the release")  # fmt: skip
        runner.node.destroy_publisher(runner.estop_pub)  # from here on only one-shot publishers and the service

        # 1. One-shot e-stop publishes reach both nodes, 20 of 20.
        reached = 0
        for _ in range(20):
            before = len(runner.bridge_estops())
            one_shot_estop(True)
            runner.spin_until(lambda b=before: len(runner.bridge_estops()) > b and policy_state(runner) == "estopped",
                              5, "the one-shot e-stop")  # fmt: skip
            reached += runner.bridge_estops()[-1]["event"] == "estop"
            one_shot_estop(False)
            runner.spin_until(lambda: policy_state(runner) == "idle" and runner.bridge_estops()[-1]["event"] ==
                              "estop_released", 5, "the one-shot release")  # fmt: skip
        assert reached == 20
        plain = runner.node.create_publisher(Bool, protocol.ESTOP, 10)  # volatile, as a plain `ros2 topic pub`
        runner.spin_until(lambda: any("NEVER reaches" in e.get("message", "") for e in runner.bridge_events), 10,
                          "the bridge to report the publisher it cannot hear")  # fmt: skip
        runner.spin_until(lambda: any("NEVER reaches" in p for p in runner.latest_status().extra.get("problems", [])),
                          10, "the policy to report it on its status")  # fmt: skip
        runner.node.destroy_publisher(plain)

        # 2. The runstop service, and a goal while e-stopped: refused, the policy stays e-stopped.
        client = runner.node.create_client(SetBool, protocol.RUNSTOP_SERVICE)
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(SetBool.Request(data=True))
        runner.spin_until(future.done, 5, "the runstop service")
        assert future.result().success and "halted" in future.result().message
        runner.spin_until(lambda: policy_state(runner) == "estopped", 5, "the policy to follow the service")
        episodes = runner.latest_status().episode
        runner.goal_pub.publish(String(data="go to the red ball"))
        runner.spin_until(lambda: "goal_refused" in runner.latest_status().extra, 5, "the goal's refusal")
        runner.spin_for(1.0)
        status = runner.latest_status()
        assert status.state == "estopped" and status.episode == episodes and runner.actions == []
        assert "e-stop is engaged" in status.extra["goal_refused"]
        future = client.call_async(SetBool.Request(data=False))
        runner.spin_until(future.done, 5, "the runstop release")
        runner.spin_until(lambda: policy_state(runner) == "idle", 5, "the policy to follow the release")

        # 3. Goals mid-motion (1 s motions): each new episode works, 10 of 10.
        task = runner.start_task("objectnav", 3)
        working = 0
        for _ in range(10):
            sent = len(runner.actions)
            episode = runner.send_goal(task["goal"])
            runner.spin_until(lambda s=sent: len(runner.actions) > s, 10, "the new episode's first action")
            first = runner.actions[sent]
            runner.spin_until(lambda f=first: any(d.id == f.id for d in runner.dones), 10, "its completion")
            done = next(d for d in runner.dones if d.id == first.id)
            working += first.episode == episode and done.result == "done"
            runner.spin_for(0.3)  # the next goal lands while the following motion runs (or the episode is over)
        assert working == 10, [d.message for d in runner.dones if d.result != "done"]
        waited = {s.episode for s in runner.statuses if "last episode's action" in s.reason}
        assert len(waited) >= 8  # those goals did land mid-motion: their episodes waited for it

        # 4. Malformed commands and goals the model would misread are answered on the status topics.
        for bad in ("{not json", '{"id": 3}', '{"action": 5}', "", '{"action": "m", "id": "x"}'):
            runner.action_pub.publish(String(data=bad))
        runner.spin_until(lambda: sum(e["event"] == "malformed_command" for e in runner.bridge_events) == 5, 5,
                          "the bridge to answer five malformed commands")  # fmt: skip
        runner.goal_pub.publish(String(data="go to the zorblax " + "blue " * 4000))
        runner.spin_until(lambda: "zorblax" in runner.latest_status().extra.get("goal_refused", ""), 5,
                          "the policy to refuse the goal")  # fmt: skip
        assert max(len(m) for m in (runner.latest_status().extra["goal_refused"], runner.latest_status().goal)) < 400
        assert not graph.dead(), graph.dead()
    finally:
        runner.close()
        graph.stop()


def test_a_node_that_dies_ends_the_graph(tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "flare_bringup.graph", "--robot", "stretch", "--model",
                             str(tmp_path / "no_model")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1 and "flare_policy" in result.stderr and "stopping the graph" in result.stderr
    assert "cannot load the policy" in result.stderr + result.stdout
    assert time.monotonic() - started < 45
