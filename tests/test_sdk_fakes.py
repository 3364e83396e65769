"""The SDK fakes take exactly the real SDKs' arguments: every public method of a fake class has the signature
(names, order, defaults) recorded from the real source of the class it mirrors (`tests/sdk/signatures.json`:
stretch_body 0.7.31 @ 6af4f5c, interbotix_ros_toolboxes jazzy @ 4c72047 and f256c9d for the LoCoBot class;
`tests/sdk/record_signatures.py` re-records them from a checkout)."""

import inspect
import json
import sys
from pathlib import Path

import pytest

from flare_robots.locobot import fake_interbotix
from flare_robots.stretch import fake_stretch_body

sys.path.insert(0, str(Path(__file__).resolve().parent / "sdk"))
from sdk_signatures import signature_of

RECORDED = json.loads((Path(__file__).resolve().parent / "sdk" / "signatures.json").read_text())
REAL = {name: entry["methods"] for sdk in RECORDED.values() for name, entry in sdk["classes"].items()}
FAKES = [
    cls
    for module in (fake_stretch_body, fake_interbotix)
    for cls in vars(module).values()
    if inspect.isclass(cls) and cls.__module__ == module.__name__ and hasattr(cls, "MIRRORS")
]


def public_methods(cls):
    """Methods the fake defines itself (inherited ones are checked on their own class)."""
    return {
        name: f for name, f in vars(cls).items()
        if inspect.isfunction(f) and (not name.startswith("_") or name == "__init__")
    }  # fmt: skip


def test_recorded_versions_are_named():
    assert RECORDED["stretch_body"]["version"] == "0.7.31"
    assert RECORDED["stretch_body"]["commit"].startswith("6af4f5c")
    assert RECORDED["interbotix_xs_modules"]["commit"].startswith("4c72047")


@pytest.mark.parametrize("fake", FAKES, ids=lambda c: f"{c.__module__.rsplit('.', 1)[1]}.{c.__name__}")
def test_fake_methods_have_the_real_signatures(fake):
    for real in fake.MIRRORS:
        assert real in REAL, f"{fake.__name__} mirrors {real}, which was not recorded"
    for name, method in public_methods(fake).items():
        owners = [real for real in fake.MIRRORS if name in REAL[real]]
        assert owners, f"{fake.__name__}.{name} is not a method of {', '.join(fake.MIRRORS)} in the real SDK"
        assert signature_of(method) == REAL[owners[0]][name], f"{fake.__name__}.{name} differs from {owners[0]}"


def test_the_fakes_cover_what_the_backends_call():
    assert {"translate_by", "rotate_by", "set_velocity"} <= set(public_methods(fake_stretch_body.Base))
    assert {"move_by", "set_velocity"} <= set(public_methods(fake_stretch_body.PrismaticJoint))
    assert {"runstop_event_trigger", "runstop_event_reset"} <= set(public_methods(fake_stretch_body.Pimu))
    assert {"command_velocity", "command_velocity_xyaw"} <= set(
        public_methods(fake_interbotix.InterbotixMobileBaseInterface)
    )
    assert "tilt" in public_methods(fake_interbotix.InterbotixTurretXSInterface)


def test_the_ros1_two_float_command_velocity_fails_as_on_ros2():
    base = fake_interbotix.InterbotixLocobotXS("locobot_base", use_base=True).base
    with pytest.raises(TypeError, match="positional arguments"):
        base.command_velocity(0.2, 0.0)
    assert not hasattr(fake_interbotix.InterbotixLocobotXS("locobot_base"), "base")  # use_base defaults False
