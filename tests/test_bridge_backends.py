"""The action bridge and the robot backends behind it, against fakes faithful to stretch_body and the ROS 2
Interbotix SDK (queued commands, silent ignores and clips, blocking tilt, use_base): masked and unknown actions
are refused with nothing moved, ignored moves are FAILED and clipped ones CLIPPED, never DONE, halt stops every
joint, the e-stop triggers and its release resets the run-stop, the watchdog stops an idle robot."""

import time

import numpy as np
import pytest

from flare_core.bridge import ActionBridge, BridgeConfig
from flare_core.embodiments import LOCOBOT, STRETCH_RE1
from flare_core.protocol import ActionCommand, Result
from flare_robots.errors import BackendUnavailable
from flare_robots.locobot import fake_interbotix
from flare_robots.locobot.interbotix import InterbotixBackend, InterbotixConfig, sdk_problem
from flare_robots.stretch import fake_stretch_body
from flare_robots.stretch.fake_stretch_body import press_runstop_button
from flare_robots.stretch.stretch_body import StretchBodyBackend, StretchBodyConfig
from flare_robots.velocity import VelocityLimits, plan_base_motion
from flare_sim.robot import SimulatedRobot


def run(bridge: ActionBridge, command: ActionCommand, timeout: float = 5.0):
    """Submit and tick like the node's timer until the completion arrives."""
    refused = bridge.submit(command, time.monotonic())
    if refused is not None:
        return refused
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = bridge.tick(time.monotonic())
        if done is not None:
            return done
        time.sleep(0.005)
    raise AssertionError(f"no completion for {command}")


def stretch_robot(motion_s: float = 0.05):
    robot = fake_stretch_body.Robot()
    robot.fake.motion_s = motion_s
    return robot


@pytest.fixture
def stretch():
    fake = stretch_robot()
    return fake, ActionBridge(StretchBodyBackend(fake), BridgeConfig(command_timeout_s=0.2), time.monotonic())


def test_stretch_body_backend_does_every_action_through_the_queued_sdk(stretch):
    fake, bridge = stretch
    started = time.monotonic()
    done = run(bridge, ActionCommand("m", id=7))
    assert done.result == Result.DONE and done.id == 7
    assert time.monotonic() - started >= 0.05  # waited for the motion generator, not just the push
    for name in STRETCH_RE1.valid_names[1:]:
        done = run(bridge, ActionCommand(name))
        assert done.result == Result.DONE, (name, done.message)
    assert fake.fake.pushes >= 18  # every stepper command was pushed


# What each action must send through stretch_body (REP 103 / stretch_body conventions: + yaw = counter-clockwise
# from above for the base and the wrist, lift + up, arm + out): (part, axis, signed change).
STRETCH_BODY_SIGNS = {
    "m": ("base", "x", 0.2), "b": ("base", "x", -0.2),
    "r": ("base", "theta", -np.pi / 6), "l": ("base", "theta", np.pi / 6),
    "rs": ("base", "theta", -np.pi / 30), "ls": ("base", "theta", np.pi / 30),
    "zp": ("arm", "goal", 0.1), "zm": ("arm", "goal", -0.1),
    "zps": ("arm", "goal", 0.02), "zms": ("arm", "goal", -0.02),
    "yp": ("lift", "goal", 0.1), "ym": ("lift", "goal", -0.1),
    "yps": ("lift", "goal", 0.02), "yms": ("lift", "goal", -0.02),
    "wp": ("wrist_yaw", "goal", np.pi / 18), "wm": ("wrist_yaw", "goal", -np.pi / 18),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(STRETCH_BODY_SIGNS))
def test_each_action_moves_its_joint_the_sdk_way_round(name):
    fake = stretch_robot(motion_s=0.0)
    bridge = ActionBridge(StretchBodyBackend(fake), now=time.monotonic())
    before = {"lift": fake.lift.status["pos"], "arm": fake.arm.status["pos"],
              "wrist_yaw": fake.end_of_arm.motors["wrist_yaw"].status["pos"]}  # fmt: skip
    assert run(bridge, ActionCommand(name)).result == Result.DONE
    part, axis, change = STRETCH_BODY_SIGNS[name]
    (sent,) = [c for c in fake.fake.commands if c[0] == part]
    moved = sent[2] - before[part] if axis == "goal" else sent[2]
    assert sent[1] == axis and moved == pytest.approx(change)


def test_raw_is_moving_flicker_does_not_end_a_motion():
    fake = stretch_robot(motion_s=0.3)
    bridge = ActionBridge(StretchBodyBackend(fake), now=time.monotonic())
    assert run(bridge, ActionCommand("yp")).result == Result.DONE
    assert fake.lift.status["pos"] == pytest.approx(0.4)  # the whole move, though is_moving dropped mid-way


def test_masked_and_unknown_actions_are_refused_and_nothing_moves():
    fake = stretch_robot()
    bridge = ActionBridge(StretchBodyBackend(fake, StretchBodyConfig(embodiment="stretch_nav")), now=time.monotonic())
    for name, why in [("zp", "masked for stretch_nav"), ("fly", "unknown action name")]:
        done = bridge.submit(ActionCommand(name, id=3), time.monotonic())
        assert done.result == Result.REFUSED and why in done.message
    assert fake.fake.commands == [] and fake.fake.pushes == 0
    assert any("not moved" in e for e in bridge.events)


def test_not_homed_is_derived_from_the_joints_and_refused(stretch):
    fake, bridge = stretch
    fake.arm.motor.pos_calibrated = False
    assert "not homed" in bridge.submit(ActionCommand("m"), time.monotonic()).message
    fake.arm.motor.pos_calibrated = True
    fake.end_of_arm.motors["wrist_yaw"].is_calibrated = 0
    assert "not homed" in bridge.submit(ActionCommand("m"), time.monotonic()).message
    assert fake.fake.commands == []


def test_moves_the_sdk_ignores_are_failed_never_done(stretch):
    fake, bridge = stretch
    fake.lift.in_collision_stop["pos"] = True
    done = run(bridge, ActionCommand("yp"))
    assert done.result == Result.FAILED and "collision stop" in done.message
    fake.lift.in_collision_stop["pos"] = False
    fake.end_of_arm.motors["wrist_yaw"].was_runstopped = True  # the sentry saw a run-stop the bridge missed
    done = run(bridge, ActionCommand("wp"))
    assert done.result == Result.FAILED and "run-stopped" in done.message
    assert not any(c[1] == "goal" for c in fake.fake.commands)  # no goal reached a motor


def test_a_move_the_robot_silently_skips_is_failed():
    fake = stretch_robot()
    bridge = ActionBridge(StretchBodyBackend(fake), now=time.monotonic())
    fake.fake.runstopped = True  # firmware holds the steppers; stretch_body says nothing
    done = run(bridge, ActionCommand("zp"))
    assert done.result == Result.FAILED and "did not move" in done.message


def test_soft_limit_clips_are_reported_clipped(stretch):
    fake, bridge = stretch
    fake.lift.track.go(1.05, 0.0)  # 5 cm below the 1.10 m soft limit
    done = run(bridge, ActionCommand("yp"))
    assert done.result == Result.CLIPPED and "soft limit 1.100" in done.message and "+0.050 of +0.100" in done.message
    done = run(bridge, ActionCommand("yps"))  # already at the limit: moves nothing, still reported
    assert done.result == Result.CLIPPED and "+0.000 of +0.020" in done.message


def test_halt_stops_every_joint(stretch):
    fake, bridge = stretch
    fake.fake.motion_s = 10.0
    assert bridge.submit(ActionCommand("yp"), time.monotonic()) is None
    fake.end_of_arm.move_by("wrist_yaw", 0.5)  # something else moving too
    bridge.abort("test")
    stops = {c[0] for c in fake.fake.commands if c[1] in ("stop", "quick_stop")}
    assert stops == {"base", "lift", "arm", "wrist_yaw", "stretch_gripper"}
    time.sleep(0.06)
    assert not fake.lift.motor.status["is_mg_moving"] and not fake.end_of_arm.motors["wrist_yaw"].motor.is_moving()


def test_estop_triggers_the_runstop_and_release_resets_it(stretch):
    fake, bridge = stretch
    assert bridge.submit(ActionCommand("m", id=1), time.monotonic()) is None
    stopped = bridge.estop(True)
    assert stopped.result == Result.STOPPED and stopped.id == 1
    assert ("pimu", "runstop") in fake.fake.commands and fake.pimu.status["runstop_event"]
    assert bridge.tick(time.monotonic()) is None  # nothing left in flight
    assert bridge.submit(ActionCommand("m"), time.monotonic()).result == Result.REFUSED
    bridge.estop(False)
    assert ("pimu", "runstop_reset") in fake.fake.commands and not fake.pimu.status["runstop_event"]
    assert run(bridge, ActionCommand("m")).result == Result.DONE


def test_runstop_button_mid_motion_fails_the_motion(stretch):
    fake, bridge = stretch
    fake.fake.motion_s = 5.0
    assert bridge.submit(ActionCommand("zp"), time.monotonic()) is None
    press_runstop_button(fake)
    done = bridge.tick(time.monotonic())
    assert done.result == Result.FAILED and "run-stop" in done.message
    assert "run-stopped" in bridge.submit(ActionCommand("m"), time.monotonic()).message


def test_busy_bridge_refuses_a_second_command(stretch):
    _, bridge = stretch
    assert bridge.submit(ActionCommand("m", id=1), time.monotonic()) is None
    assert "busy" in bridge.submit(ActionCommand("l", id=2), time.monotonic()).message


def test_watchdog_halts_an_idle_robot_once(stretch):
    fake, bridge = stretch
    run(bridge, ActionCommand("m"))
    time.sleep(0.25)
    bridge.tick(time.monotonic())
    bridge.tick(time.monotonic())
    assert fake.fake.commands.count(("base", "stop")) == 1
    assert any("watchdog" in e for e in bridge.events)


def test_failed_motion_is_reported_and_halts():
    fake = stretch_robot(motion_s=10.0)
    bridge = ActionBridge(StretchBodyBackend(fake), BridgeConfig(motion_timeout_s=0.05), time.monotonic())
    done = run(bridge, ActionCommand("m"))
    assert done.result == Result.FAILED and "not finished" in done.message
    assert ("base", "stop") in fake.fake.commands


def locobot(**kwargs):
    robot = fake_interbotix.InterbotixLocobotXS("locobot_base", use_base=True, **kwargs)
    robot.camera.info["tilt"]["profile_velocity"] = 0.2  # the SDK's 2 s profile, shortened for the test
    return robot


def test_interbotix_backend_needs_the_base():
    with pytest.raises(BackendUnavailable, match="use_base=True"):
        InterbotixBackend(fake_interbotix.InterbotixLocobotXS("locobot_base"))


def test_interbotix_backend_drives_the_base_until_odometry_says_it_stopped():
    robot = locobot(base_type=fake_interbotix.BaseType.KOBUKI)
    assert robot.base.topic_cmd_vel == "mobile_base/commands/velocity"
    backend = InterbotixBackend(robot, InterbotixConfig(linear_m_s=1.0, angular_rad_s=2.0))
    bridge = ActionBridge(backend, now=time.monotonic())
    start = time.monotonic()
    assert run(bridge, ActionCommand("m")).result == Result.DONE
    assert time.monotonic() - start >= 0.2 + robot.base.decel_s  # 0.2 m at 1 m/s, then the deceleration tail
    assert robot.base.twists[0] == (1.0, 0.0) and robot.base.twists[-1] == (0.0, 0.0)
    assert run(bridge, ActionCommand("l")).result == Result.DONE
    assert (0.0, 2.0) in robot.base.twists  # left = counter-clockwise = +yaw (REP 103)
    for name in ("end", "sub_done"):
        assert run(bridge, ActionCommand(name)).result == Result.DONE
    done = bridge.submit(ActionCommand("p"), time.monotonic())
    assert done.result == Result.REFUSED and "masked for locobot" in done.message


def test_interbotix_tilt_never_blocks_and_yp_looks_up():
    robot = locobot()
    robot.camera.info["tilt"]["profile_velocity"] = 2.0  # the SDK's default profile
    bridge = ActionBridge(InterbotixBackend(robot), now=time.monotonic())
    start_angle = robot.core.robot_get_single_joint_state("tilt")["position"]
    started = time.monotonic()
    assert bridge.submit(ActionCommand("yp"), time.monotonic()) is None
    assert time.monotonic() - started < 0.1  # the 2 s blocking sleep is not taken in the bridge's thread
    assert bridge.tick(time.monotonic()) is None  # still moving
    assert robot.core.writes == [("tilt", pytest.approx(start_angle - np.radians(15)))]  # Interbotix: - = up


def test_interbotix_tilt_completes_from_the_joint_state_and_honours_the_limits():
    robot = locobot()
    bridge = ActionBridge(InterbotixBackend(robot), now=time.monotonic())
    start = time.monotonic()
    assert run(bridge, ActionCommand("ym")).result == Result.DONE
    assert time.monotonic() - start >= 0.2  # the servo's profile, read back from the joint state
    robot.core.servos["tilt"].go(np.radians(70), 0.0)  # 5 deg from the 75 deg lower (down) limit
    done = run(bridge, ActionCommand("ym"))
    assert done.result == Result.CLIPPED and "limit" in done.message
    assert robot.core.robot_get_single_joint_state("tilt")["position"] == pytest.approx(np.radians(75))


def test_interbotix_close_keeps_the_bridges_ros_context():
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        backend = InterbotixBackend(locobot())
        backend.close()
        assert context.ok() and backend.locobot.base.twists[-1] == (0.0, 0.0)
    finally:
        rclpy.shutdown(context=context)


def test_a_broken_interbotix_sdk_is_refused_with_what_to_install():
    from rclpy.node import Node

    class Core:  # after PR #67: a plain object
        pass

    class Locobot:  # before PR #82: start/shutdown, no get_node
        def start(self): ...

    assert "PR #82" in sdk_problem(Locobot, Core) and "cmd_vel" in sdk_problem(Locobot, Core)
    assert sdk_problem(fake_interbotix.InterbotixLocobotXS, Core) == ""  # post-#82
    assert sdk_problem(Locobot, type("NodeCore", (Node,), {})) == ""  # pre-#67: the core is a node


def test_velocity_plan_covers_the_motion():
    plan = plan_base_motion(LOCOBOT.motions["r"], VelocityLimits(0.2, 0.5))
    assert plan.angular == -0.5 and plan.duration_s * 0.5 == pytest.approx(np.pi / 6)
    assert plan.command_at(plan.duration_s + 0.01) == (0.0, 0.0)


def test_simulated_robot_steps_the_world_and_masks_by_robot():
    stretch = SimulatedRobot("stretch_re1", motion_s=0.0)
    locobot = SimulatedRobot("locobot", motion_s=0.0)
    assert "p" in stretch.embodiment.valid_names and "b" not in stretch.embodiment.valid_names
    assert set(locobot.embodiment.valid_names) == {"m", "r", "l", "end", "sub_done"}
    bridge = ActionBridge(stretch, now=time.monotonic())
    assert "no task" in bridge.submit(ActionCommand("m"), time.monotonic()).message
    task = stretch.reset_task("objectnav", 0)
    assert task["goal"] and set(stretch.frames()) == {"nav", "manip"}
    before = stretch.frames()["nav"].copy()
    assert run(bridge, ActionCommand("l")).result == Result.DONE
    assert not np.array_equal(before, stretch.frames()["nav"])  # the view turned
    done = run(bridge, ActionCommand("end"))
    assert done.episode_over and done.success is False
    assert "no task" in bridge.submit(ActionCommand("m"), time.monotonic()).message


def test_a_run_stop_reset_that_fails_is_reported_and_the_robot_stays_stopped(stretch):
    fake, bridge = stretch
    bridge.estop(True)

    def broken():
        raise OSError("pimu not responding")

    fake.pimu.runstop_event_reset = broken
    bridge.estop(False)
    assert any("could not be reset: pimu not responding" in e for e in bridge.events)
    assert "run-stopped" in bridge.submit(ActionCommand("m"), time.monotonic()).message
