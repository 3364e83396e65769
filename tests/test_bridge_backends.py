"""The action bridge and the robot backends behind it: masked and unknown actions are refused with nothing
moved, e-stop halts part-way, the watchdog stops an idle robot, and each backend drives its SDK (fakes of
stretch_body and interbotix_xs_modules, the simulated robot) the way the real one would be driven."""

import time

import numpy as np
import pytest

from flare_core.bridge import ActionBridge, BridgeConfig
from flare_core.embodiments import LOCOBOT
from flare_core.protocol import ActionCommand, Result
from flare_robots.fakes import FakeInterbotixLocobot, FakeStretchBodyRobot
from flare_robots.interbotix_backend import InterbotixBackend
from flare_robots.stretch_body_backend import StretchBodyBackend, StretchBodyConfig
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


@pytest.fixture
def stretch():
    fake = FakeStretchBodyRobot(motion_s=0.05)
    return fake, ActionBridge(StretchBodyBackend(fake), BridgeConfig(command_timeout_s=0.2), time.monotonic())


def test_stretch_body_backend_drives_each_joint_and_waits_for_completion(stretch):
    fake, bridge = stretch
    started = time.monotonic()
    done = run(bridge, ActionCommand("m", id=7))
    assert done.result == Result.DONE and done.id == 7
    assert time.monotonic() - started >= 0.05  # waited for is_moving to clear, not just the push
    for name in ("l", "yp", "zp", "wm", "p", "d"):
        assert run(bridge, ActionCommand(name)).result == Result.DONE
    assert fake.commands[:3] == [("base", "translate_by", 0.2), ("base", "rotate_by", pytest.approx(np.pi / 6)),
                                 ("lift", "move_by", 0.1)]  # fmt: skip
    assert ("arm", "move_by", 0.1) in fake.commands and (
        "wrist_yaw",
        "move_by",
        pytest.approx(np.pi / 18),
    ) in fake.commands
    grips = [c for c in fake.commands if c[0] == "stretch_gripper"]
    assert grips == [("stretch_gripper", "move_to", -40.0), ("stretch_gripper", "move_to", 50.0)]
    assert fake.pushes == 7


def test_masked_and_unknown_actions_are_refused_and_nothing_moves():
    fake = FakeStretchBodyRobot()
    bridge = ActionBridge(StretchBodyBackend(fake, StretchBodyConfig(embodiment="stretch_nav")), now=time.monotonic())
    for name, why in [("zp", "masked for stretch_nav"), ("fly", "unknown action name")]:
        done = bridge.submit(ActionCommand(name, id=3), time.monotonic())
        assert done.result == Result.REFUSED and why in done.message
    assert fake.commands == [] and fake.pushes == 0
    assert any("not moved" in e for e in bridge.events)


def test_not_homed_or_runstopped_robot_refuses(stretch):
    fake, bridge = stretch
    fake.homed = False
    assert "not homed" in bridge.submit(ActionCommand("m"), time.monotonic()).message
    fake.homed = True
    fake.pimu.status["runstop_event"] = True
    assert "run-stop" in bridge.submit(ActionCommand("m"), time.monotonic()).message
    assert fake.commands == []


def test_estop_halts_mid_motion_and_refuses_until_released(stretch):
    fake, bridge = stretch
    assert bridge.submit(ActionCommand("m", id=1), time.monotonic()) is None
    stopped = bridge.estop(True)
    assert stopped.result == Result.STOPPED and stopped.id == 1
    assert ("runstop",) in fake.commands  # the hardware run-stop, not just a software flag
    assert bridge.tick(time.monotonic()) is None  # nothing left in flight
    assert bridge.submit(ActionCommand("m"), time.monotonic()).result == Result.REFUSED
    bridge.estop(False)
    fake.pimu.status["runstop_event"] = False  # the operator releases the robot's button too
    assert run(bridge, ActionCommand("m")).result == Result.DONE


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
    assert fake.commands.count(("base", "set_velocity", 0.0, 0.0)) == 1
    assert any("watchdog" in e for e in bridge.events)


def test_failed_motion_is_reported_and_halts():
    fake = FakeStretchBodyRobot(motion_s=10.0)
    bridge = ActionBridge(StretchBodyBackend(fake), BridgeConfig(motion_timeout_s=0.05), time.monotonic())
    done = run(bridge, ActionCommand("m"))
    assert done.result == Result.FAILED and "not finished" in done.message
    assert ("base", "set_velocity", 0.0, 0.0) in fake.commands


def test_interbotix_backend_times_velocities_and_tilts_the_camera():
    fake = FakeInterbotixLocobot()
    backend = InterbotixBackend(fake)
    backend.config.tilt_settle_s = 0.01
    bridge = ActionBridge(backend, now=time.monotonic())
    start = time.monotonic()
    assert run(bridge, ActionCommand("m")).result == Result.DONE
    assert time.monotonic() - start >= 0.2 / 0.2 - 0.01  # 0.2 m at 0.2 m/s
    assert fake.commands[0] == ("base", "command_velocity", 0.2, 0.0)
    assert fake.last_velocity == (0.0, 0.0)  # zeroed at the end of the motion
    assert run(bridge, ActionCommand("yp")).result == Result.DONE
    assert fake.commands[-1] == ("camera", "tilt", pytest.approx(np.radians(15)))
    done = bridge.submit(ActionCommand("p"), time.monotonic())
    assert done.result == Result.REFUSED and "masked for locobot" in done.message


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
