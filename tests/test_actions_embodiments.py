"""The action vocabulary and embodiments: one definition, strict lookups, the masks docs/design.md promises."""

import numpy as np
import pytest

from flare_core import (
    ACTION_NAMES,
    EMBODIMENTS,
    NO_PREVIOUS_ACTION,
    Joint,
    MaskedActionError,
    UnknownActionError,
    action_by_index,
    action_by_name,
    get_embodiment,
)

# docs/design.md, contract 1, copied by hand on purpose: a reordering in code must fail here.
SPOC_ORDER = "m r l b end sub_done ls rs p zm zp yp ym wp wm yms zms zps yps d".split()


def test_vocabulary_is_the_spoc_flare_order():
    assert list(ACTION_NAMES) == SPOC_ORDER
    assert NO_PREVIOUS_ACTION == 20
    assert action_by_name("end").index == 4
    assert action_by_index(np.int64(19)).name == "d"


def test_physical_meaning_of_a_few_actions():
    assert action_by_name("m").joint is Joint.BASE_TRANSLATE and action_by_name("m").delta == pytest.approx(0.2)
    assert action_by_name("r").delta == pytest.approx(-np.pi / 6)  # right = clockwise = negative yaw
    assert action_by_name("yms").delta == pytest.approx(-0.02)


@pytest.mark.parametrize("bad", [20, -1, 2.0, "m", None, True, np.float32(1)])
def test_unknown_action_indices_are_refused(bad):
    with pytest.raises(UnknownActionError, match="action"):
        action_by_index(bad)


def test_unknown_action_name_lists_the_vocabulary():
    with pytest.raises(UnknownActionError, match="unknown action name 'jump'.*sub_done"):
        action_by_name("jump")


def test_masks():
    assert get_embodiment("stretch_re1").mask.all()
    nav = {"m", "r", "l", "b", "end", "sub_done", "ls", "rs"}
    assert set(get_embodiment("stretch_nav").valid_names) == nav
    assert set(get_embodiment("locobot").valid_names) == nav | {"yp", "ym"}
    assert set(get_embodiment("gridhouse").valid_names) == {"m", "r", "l", "end", "sub_done", "p", "d"}
    for embodiment in EMBODIMENTS.values():
        assert embodiment.mask.shape == (20,) and embodiment.mask.dtype == bool


def test_locobot_repurposes_lift_slots_as_camera_tilt():
    locobot = get_embodiment("locobot")
    up, down = locobot.motion(action_by_name("yp").index), locobot.motion(action_by_name("ym").index)
    assert up.joint is down.joint is Joint.CAMERA_TILT
    assert up.delta > 0 > down.delta
    assert get_embodiment("stretch_re1").motion(11).joint is Joint.LIFT


def test_masked_action_motion_is_refused_naming_the_valid_ones():
    with pytest.raises(MaskedActionError, match=r"'p'.*masked for embodiment 'locobot'.*valid actions: m, r"):
        get_embodiment("locobot").motion(8)


def test_unknown_embodiment():
    with pytest.raises(ValueError, match="unknown embodiment 'spot'.*stretch_re1"):
        get_embodiment("spot")


# SPOC's AI2-THOR mapping of each action (FLaRe environment/stretch_controller.py `agent_step`, SPOC @ baaa237
# stretch_controller.py:514-585; constants AGENT_MOVEMENT_CONSTANT 0.2, AGENT_ROTATION_DEG 30, ARM_MOVE_CONSTANT
# 0.1, WRIST_ROTATION 10): (THOR action, the argument that moves, its value). AI2-THOR is left-handed with y up:
# RotateAgent/RotateRightQuick +degrees turns clockwise seen from above, RotateWristRelative -yaw turns the wrist
# counter-clockwise; MoveArm y is the lift (+ up), z the extension (+ out); MoveAgent ahead + is forward.
SPOC_THOR = {
    "m": ("MoveAgent", "ahead", 0.2), "b": ("MoveAgent", "ahead", -0.2),
    "r": ("RotateAgent", "degrees", 30), "l": ("RotateAgent", "degrees", -30),
    "rs": ("RotateAgent", "degrees", 6), "ls": ("RotateAgent", "degrees", -6),
    "yp": ("MoveArm", "y", 0.1), "ym": ("MoveArm", "y", -0.1),
    "yps": ("MoveArm", "y", 0.02), "yms": ("MoveArm", "y", -0.02),
    "zp": ("MoveArm", "z", 0.1), "zm": ("MoveArm", "z", -0.1),
    "zps": ("MoveArm", "z", 0.02), "zms": ("MoveArm", "z", -0.02),
    "wp": ("RotateWristRelative", "yaw", -10), "wm": ("RotateWristRelative", "yaw", 10),
}  # fmt: skip


def thor_to_physical(thor_action: str, value: float) -> tuple[Joint, float]:
    """A THOR motion in this project's physical convention (REP 103: + yaw = counter-clockwise from above)."""
    if thor_action == "MoveAgent":
        return Joint.BASE_TRANSLATE, value
    if thor_action == "RotateAgent":
        return Joint.BASE_ROTATE, -np.radians(value)  # left-handed: + is clockwise
    if thor_action == "RotateWristRelative":
        return Joint.WRIST_YAW, -np.radians(value)  # left-handed: - is counter-clockwise
    raise AssertionError(thor_action)


@pytest.mark.parametrize("name", sorted(SPOC_THOR))
def test_every_action_moves_the_way_spoc_moves_it_in_ai2thor(name):
    action = action_by_name(name)
    thor_action, axis, value = SPOC_THOR[name]
    if thor_action == "MoveArm":
        joint, delta = {"y": Joint.LIFT, "z": Joint.ARM}[axis], value
    else:
        joint, delta = thor_to_physical(thor_action, value)
    assert action.joint is joint and action.delta == pytest.approx(delta)


def test_wrist_plus_is_counter_clockwise_as_spoc_says():
    assert action_by_name("wp").delta > 0 > action_by_name("wm").delta  # SPOC README: wp = counter-clockwise
    assert "counter-clockwise" in action_by_name("wp").description


def test_locobot_camera_up_is_negative_interbotix_tilt():
    from flare_robots.locobot.fake_interbotix import TILT_LIMITS

    up = get_embodiment("locobot").motions["yp"]
    assert up.joint is Joint.CAMERA_TILT and up.delta > 0  # the core: + up
    assert TILT_LIMITS[0] < 0 < TILT_LIMITS[1] and abs(TILT_LIMITS[0]) > TILT_LIMITS[1]  # URDF: 90 deg up, 75 down
