"""The action vocabulary and embodiments: one definition, strict lookups, the masks DESIGN.md promises."""

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

# DESIGN.md contract 1, copied by hand on purpose: a reordering in code must fail here.
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
