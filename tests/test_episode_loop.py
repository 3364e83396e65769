"""The policy node's logic (flare_core.episode) with the real ONNX Runtime policy: it only decides on frames
taken after the last motion finished, pauses on a silent camera, stops on end / step limit / refusal /
e-stop, and never acts on garbage. Image decoding and the wire protocol refuse what they cannot read."""

import numpy as np
import pytest

from flare_core.episode import LoopConfig, PolicyLoop, State
from flare_core.images import RawImage, decode_rgb, encode_rgb
from flare_core.preprocessing import FrameError
from flare_core.protocol import ActionCommand, ActionDone, ProtocolError, Result
from flare_core.runtime import OnnxPolicy
from flare_sim import GridhouseEnv

MODEL = "models/gridhouse_demo"
S = 1_000_000_000  # ns per second


@pytest.fixture
def loop():
    policy = OnnxPolicy(MODEL, "gridhouse", greedy=True)
    return PolicyLoop(policy, ["nav", "manip"], LoopConfig(step_limit=3, camera_timeout_s=1.0, action_timeout_s=5.0))


# What the cameras show: an unseen house's first view (a uniform grey frame is nothing the policy was trained
# on, and the demo model calls `end` on it).
VIEW, _ = GridhouseEnv(families=("objectnav",), split="eval").reset(seed=0, options={"house": 0})


def frames(loop, stamp_ns, now):
    loop.on_frame("nav", VIEW["nav_rgb"], stamp_ns, now)
    loop.on_frame("manip", VIEW["manip_rgb"], stamp_ns, now)


def test_decides_only_on_frames_taken_after_the_motion(loop):
    frames(loop, 1 * S, now=1.0)
    loop.on_goal("go to the red ball", now=1.1, stamp_ns=2 * S)
    assert loop.tick(1.2, 2 * S) is None  # frames older than the goal are stale
    frames(loop, 3 * S, now=1.3)
    command = loop.tick(1.3, 3 * S)
    assert command is not None and loop.state == State.ACTING and command.episode == 1 and command.step == 0
    assert loop.tick(1.4, 3 * S) is None  # one action in flight at a time
    assert command.action != "end", "this test needs a motion first: frames on which the model moves"
    loop.on_done(ActionDone(command.id, command.action, Result.DONE, stamp_ns=5 * S), now=1.5)
    frames(loop, 4 * S, now=1.6)  # taken during the motion
    assert loop.tick(1.6, 5 * S) is None
    frames(loop, 6 * S, now=1.7)
    assert loop.tick(1.7, 6 * S).step == 1


def test_step_limit_end_and_foreign_completions(loop):
    loop.on_goal("go to the red ball", 0.0, 0)
    for i in range(3):
        frames(loop, (i + 1) * S, now=0.1 * i)
        command = loop.tick(0.1 * i, (i + 1) * S)
        loop.on_done(ActionDone(999, "m", Result.DONE), now=0.1 * i)  # not ours: ignored
        assert loop.state == State.ACTING
        loop.on_done(ActionDone(command.id, "m", Result.DONE, stamp_ns=(i + 1) * S), now=0.1 * i)
    assert loop.state == State.FINISHED and "step limit 3" in loop.reason
    loop.on_goal("go to the blue key", 1.0, 10 * S)
    frames(loop, 11 * S, now=1.0)
    command = loop.tick(1.0, 11 * S)
    loop.on_done(ActionDone(command.id, "end", Result.DONE, stamp_ns=12 * S, episode_over=True, success=True), 1.1)
    assert loop.state == State.FINISHED and loop.status(0).extra["success"] is True and loop.episode == 2


def test_silent_camera_pauses_and_fresh_frames_resume(loop):
    frames(loop, 1 * S, now=0.0)
    loop.on_goal("go to the red ball", 0.5, 2 * S)
    assert loop.tick(2.0, 2 * S) is None and loop.state == State.PAUSED
    assert "nav" in loop.reason and "manip" in loop.reason
    loop.on_frame("nav", np.zeros((56, 56, 3), np.uint8), 3 * S, 2.1)
    assert loop.state == State.PAUSED  # manip still silent
    loop.on_frame("manip", np.zeros((24, 24, 3), np.uint8), 3 * S, 2.1)
    assert loop.state == State.WAITING_FRAME
    assert loop.tick(2.1, 3 * S) is not None


def test_refusal_estop_and_timeout_stop_the_episode(loop):
    loop.on_goal("go to the red ball", 0.0, 0)
    frames(loop, 1 * S, 0.0)
    command = loop.tick(0.0, S)
    loop.on_done(ActionDone(command.id, command.action, Result.REFUSED, "masked"), 0.1)
    assert loop.state == State.FINISHED and "refused" in loop.reason
    loop.on_goal("go to the red ball", 1.0, 2 * S)
    frames(loop, 3 * S, 1.0)
    loop.tick(1.0, 3 * S)
    loop.on_estop(True)
    assert loop.state == State.ESTOPPED and loop.tick(1.1, 4 * S) is None
    loop.on_estop(False)
    assert loop.state == State.IDLE
    loop.on_goal("go to the red ball", 2.0, 5 * S)
    frames(loop, 6 * S, 2.0)
    loop.tick(2.0, 6 * S)
    loop.tick(8.0, 7 * S)  # no completion within action_timeout_s
    assert loop.state == State.FINISHED and "no completion" in loop.reason


def test_garbage_frames_end_the_episode_without_acting(loop):
    loop.on_goal("go to the red ball", 0.0, 0)
    loop.on_frame("nav", np.zeros((56, 56), np.uint8), S, 0.0)  # greyscale: no channels
    loop.on_frame("manip", np.zeros((24, 24, 3), np.uint8), S, 0.0)
    assert loop.tick(0.0, S) is None
    assert loop.state == State.FINISHED and "policy step failed" in loop.reason


def test_image_decoding_accepts_colour_encodings_and_refuses_the_rest():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    raw = encode_rgb(rgb)
    np.testing.assert_array_equal(decode_rgb(raw), rgb)
    bgra = np.concatenate([rgb[..., ::-1], np.full((4, 5, 1), 255, np.uint8)], axis=2)
    padded = np.zeros((4, 24), np.uint8)  # step 24 > 20: row padding is skipped
    padded[:, :20] = bgra.reshape(4, 20)
    np.testing.assert_array_equal(decode_rgb(RawImage(4, 5, "bgra8", 24, padded.tobytes())), rgb)
    with pytest.raises(FrameError, match="depth image"):
        decode_rgb(RawImage(4, 5, "16UC1", 10, bytes(40)))
    with pytest.raises(FrameError, match="truncated"):
        decode_rgb(RawImage(4, 5, "rgb8", 15, bytes(59)))
    with pytest.raises(FrameError, match="shorter than a row"):
        decode_rgb(RawImage(4, 5, "rgb8", 12, bytes(60)))


def test_protocol_parses_json_and_bare_names_and_refuses_garbage():
    assert ActionCommand.parse("m") == ActionCommand("m")
    command = ActionCommand("l", id=4, episode=2, step=9, stamp_ns=5)
    assert ActionCommand.parse(command.to_json()) == command
    done = ActionDone(4, "l", Result.DONE, stamp_ns=7, holding=True)
    assert ActionDone.parse(done.to_json()) == done
    for bad in ("", "move forward", '{"id": 3}', "{not json"):
        with pytest.raises(ProtocolError):
            ActionCommand.parse(bad)
    with pytest.raises(ProtocolError, match="malformed"):
        ActionDone.parse('{"id": 1, "action": "m", "result": "exploded"}')


def test_a_goal_while_estopped_is_refused_and_the_loop_stays_estopped(loop):
    loop.on_estop(True)
    loop.on_goal("go to the red ball", 0.0, 1 * S)
    status = loop.status(0)
    assert loop.state == State.ESTOPPED and loop.episode == 0
    assert "e-stop is engaged" in status.extra["goal_refused"]
    frames(loop, 2 * S, now=0.1)
    assert loop.tick(0.1, 2 * S) is None and loop.state == State.ESTOPPED
    loop.on_estop(False)
    loop.on_goal("go to the red ball", 0.2, 3 * S)
    assert loop.state == State.WAITING_FRAME and "goal_refused" not in loop.status(0).extra


def test_a_goal_mid_motion_waits_for_the_motion_and_decides_on_a_later_frame(loop):
    loop.on_goal("go to the red ball", 0.0, 0)
    frames(loop, 1 * S, now=0.0)
    running = loop.tick(0.0, 1 * S)
    loop.on_goal("go to the blue key", 0.5, 2 * S)  # the robot is still executing `running`
    assert loop.episode == 2 and loop.state == State.WAITING_FRAME and repr(running.action) in loop.reason
    frames(loop, 3 * S, now=0.6)  # taken while the old motion still runs
    assert loop.tick(0.6, 3 * S) is None
    loop.on_done(ActionDone(running.id, running.action, Result.DONE, stamp_ns=4 * S), now=0.7)
    assert loop.state == State.WAITING_FRAME and loop.reason == ""
    assert loop.tick(0.7, 4 * S) is None  # the frames at 3 s were taken before the motion stopped
    frames(loop, 5 * S, now=0.8)
    command = loop.tick(0.8, 5 * S)
    assert command is not None and command.episode == 2 and command.step == 0 and command.frames["nav"] == 5 * S


def test_a_motion_that_never_completes_ends_the_next_episode(loop):
    loop.on_goal("go to the red ball", 0.0, 0)
    frames(loop, 1 * S, now=0.0)
    loop.tick(0.0, 1 * S)
    loop.on_goal("go to the blue key", 1.0, 2 * S)
    frames(loop, 3 * S, now=6.0)
    assert loop.tick(6.0, 3 * S) is None  # 6 s after it was sent: past action_timeout_s (5 s)
    assert loop.state == State.FINISHED and "last episode's action" in loop.reason


def test_goals_the_model_would_misread_are_refused_naming_the_words(loop):
    loop.on_goal("go to the golden unicorn", 0.0, 0)
    refused = loop.status(0).extra["goal_refused"]
    assert loop.state == State.IDLE and "'golden'" in refused and "'unicorn'" in refused and "'go'" not in refused
    loop.on_goal("go to the red ball " * 2000, 0.1, 0)  # 40 kB: longer than the model reads
    refused = loop.status(0).extra["goal_refused"]
    assert "words where the model reads at most" in refused and len(refused) < 400
    loop.config.accept_unknown_words = True
    loop.on_goal("go to the golden ball", 0.2, 0)
    assert loop.episode == 1 and loop.goal == "go to the golden ball"


def test_a_world_reset_ends_a_paused_episode_instead_of_resuming_it(loop):
    loop.on_goal("go to the red ball", 0.0, 1 * S)
    loop.tick(2.0, 2 * S)
    assert loop.state == State.PAUSED and "no frames yet" in loop.reason
    loop.on_world_reset(stamp_ns=3 * S, for_episode=1)  # posed for this very episode: it goes on
    assert loop.state == State.PAUSED
    loop.on_world_reset(stamp_ns=3 * S)
    frames(loop, 4 * S, now=2.1)
    assert loop.state == State.FINISHED and "reset" in loop.reason and loop.tick(2.1, 4 * S) is None


def test_a_pause_says_why_the_frames_were_not_used(loop):
    loop.on_goal("go to the red ball", 0.0, 0)
    loop.on_frame("manip", np.full((24, 24, 3), 100, np.uint8), 1 * S, 0.0)
    loop.on_camera_problem("nav", "all-black frame: is the lens covered?", 0.0)  # nav frames are not passed on
    loop.tick(2.0, 2 * S)
    assert loop.state == State.PAUSED and "lens covered" in loop.reason
    assert "nav" in loop.status(0).extra["camera_problems"]
    frames(loop, 3 * S, now=2.1)
    assert loop.state == State.WAITING_FRAME and "camera_problems" not in loop.status(0).extra
    loop.on_camera_problem("manip", "no node publishes on flare/camera/manip/image", 2.2)
    loop.clear_camera_problem("manip", "something else")
    assert "manip" in loop.status(0).extra["camera_problems"]
    loop.clear_camera_problem("manip", "no node publishes on flare/camera/manip/image")  # a publisher appeared
    assert "camera_problems" not in loop.status(0).extra
