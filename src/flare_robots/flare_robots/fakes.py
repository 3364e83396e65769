"""Fakes of the robot SDKs that cannot exist here (stretch_body, interbotix_xs_modules).

They implement only the SDK surface our backends call, record every command, and move for `motion_s` of
wall time, so the real backend code (and the bridge around it) is exercised end to end without a robot.
Named fakes on purpose: nothing here talks to hardware.
"""

from __future__ import annotations

import time


class _Timed:
    """A joint that is moving for `motion_s` after each command."""

    def __init__(self, log: list, name: str, motion_s: float) -> None:
        self.log, self.name, self.motion_s = log, name, motion_s
        self.until = 0.0

    def command(self, *args) -> None:
        self.log.append((self.name, *args))
        self.until = time.monotonic() + self.motion_s

    def moving(self) -> bool:
        return time.monotonic() < self.until


class _StatusJoint:
    def __init__(self, joint: _Timed) -> None:
        self.joint = joint

    @property
    def status(self) -> dict:
        return {"is_moving": self.joint.moving()}


class _Dynamixel:
    def __init__(self, joint: _Timed) -> None:
        self.motor = self
        self.joint = joint

    def is_moving(self) -> bool:
        return self.joint.moving()


class FakeStretchBodyRobot:
    """Stands in for a started `stretch_body.robot.Robot`."""

    def __init__(self, motion_s: float = 0.1, homed: bool = True) -> None:
        self.commands: list[tuple] = []
        self.pushes = 0
        self.homed = homed
        self.stopped = False
        base, lift, arm = (_Timed(self.commands, n, motion_s) for n in ("base", "lift", "arm"))
        yaw, gripper = (_Timed(self.commands, n, motion_s) for n in ("wrist_yaw", "stretch_gripper"))
        robot = self

        class Pimu:
            status = {"runstop_event": False}

            def runstop_event_trigger(self) -> None:
                robot.commands.append(("runstop",))
                self.status["runstop_event"] = True
                for j in (base, lift, arm, yaw, gripper):
                    j.until = 0.0

        class Base:
            left_wheel = right_wheel = _StatusJoint(base)

            def translate_by(self, x_m: float) -> None:
                base.command("translate_by", x_m)

            def rotate_by(self, x_r: float) -> None:
                base.command("rotate_by", x_r)

            def set_velocity(self, v_m: float, w_r: float) -> None:
                robot.commands.append(("base", "set_velocity", v_m, w_r))
                base.until = 0.0

        class Prismatic:
            def __init__(self, joint: _Timed) -> None:
                self.joint, self.motor = joint, _StatusJoint(joint)

            def move_by(self, x_m: float) -> None:
                self.joint.command("move_by", x_m)

        class EndOfArm:
            motors = {"wrist_yaw": _Dynamixel(yaw), "stretch_gripper": _Dynamixel(gripper)}

            def move_by(self, name: str, x: float) -> None:
                {"wrist_yaw": yaw, "stretch_gripper": gripper}[name].command("move_by", x)

            def move_to(self, name: str, x: float) -> None:
                {"wrist_yaw": yaw, "stretch_gripper": gripper}[name].command("move_to", x)

        self.pimu, self.base, self.end_of_arm = Pimu(), Base(), EndOfArm()
        self.lift, self.arm = Prismatic(lift), Prismatic(arm)

    def is_homed(self) -> bool:
        return self.homed

    def push_command(self) -> None:
        self.pushes += 1

    def stop(self) -> None:
        self.stopped = True


class FakeInterbotixLocobot:
    """Stands in for `interbotix_xs_modules.xs_robot.locobot.InterbotixLocobotXS`."""

    def __init__(self) -> None:
        self.commands: list[tuple] = []
        fake = self

        class Base:
            def command_velocity(self, x: float = 0.0, yaw: float = 0.0) -> None:
                fake.commands.append(("base", "command_velocity", x, yaw))

        class Camera:
            def tilt(self, position: float) -> None:
                fake.commands.append(("camera", "tilt", position))

        self.base, self.camera = Base(), Camera()

    @property
    def last_velocity(self) -> tuple[float, float] | None:
        v = [c for c in self.commands if c[1] == "command_velocity"]
        return (v[-1][2], v[-1][3]) if v else None
