"""Record the public method signatures of the robot SDKs our backends drive, from their real source.

    python tests/sdk/record_signatures.py --stretch-body DIR[@REF] --interbotix DIR[@REF] > tests/sdk/signatures.json

DIR is a git checkout (or bare mirror) of hello-robot/stretch_body or Interbotix/interbotix_ros_toolboxes; REF
defaults to HEAD for stretch_body and to the `jazzy` branch for Interbotix (its `main` is ROS 1). The entry
`...InterbotixLocobotXS@f256c9d` (the API after PR #82, which the LoCoBot backend is written against) was added
by hand from that commit's locobot.py, as the fetched mirror predates the merge. Each method
is kept as its parameter names, kinds and default expressions (annotations dropped), the form
`sdk_signatures.signature_of` gives the fakes, so `tests/test_sdk_fakes.py` can hold the fakes to the SDKs.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sdk_signatures import signature_from_ast

STRETCH_BODY = "body/stretch_body/"
INTERBOTIX = "interbotix_xs_toolbox/interbotix_xs_modules/interbotix_xs_modules/xs_robot/"

# (module as imported on the robot, file in the repository, classes)
CLASSES = {
    "stretch_body": [
        ("stretch_body.robot", STRETCH_BODY + "robot.py", ["Robot"]),
        ("stretch_body.base", STRETCH_BODY + "base.py", ["Base"]),
        ("stretch_body.prismatic_joint", STRETCH_BODY + "prismatic_joint.py", ["PrismaticJoint"]),
        ("stretch_body.lift", STRETCH_BODY + "lift.py", ["Lift"]),
        ("stretch_body.arm", STRETCH_BODY + "arm.py", ["Arm"]),
        ("stretch_body.stepper", STRETCH_BODY + "stepper.py", ["StepperBase"]),
        ("stretch_body.end_of_arm", STRETCH_BODY + "end_of_arm.py", ["EndOfArm"]),
        ("stretch_body.dynamixel_X_chain", STRETCH_BODY + "dynamixel_X_chain.py", ["DynamixelXChain"]),
        ("stretch_body.dynamixel_hello_XL430", STRETCH_BODY + "dynamixel_hello_XL430.py", ["DynamixelHelloXL430"]),
        ("stretch_body.dynamixel_XL430", STRETCH_BODY + "dynamixel_XL430.py", ["DynamixelXL430"]),
        ("stretch_body.stretch_gripper", STRETCH_BODY + "stretch_gripper.py", ["StretchGripper"]),
        ("stretch_body.pimu", STRETCH_BODY + "pimu.py", ["PimuBase", "Pimu"]),
    ],
    "interbotix_xs_modules": [
        ("interbotix_xs_modules.xs_robot.locobot", INTERBOTIX + "locobot.py", ["InterbotixLocobotXS"]),
        ("interbotix_xs_modules.xs_robot.mobile_base", INTERBOTIX + "mobile_base.py",
         ["InterbotixMobileBaseInterface"]),
        ("interbotix_xs_modules.xs_robot.create3", INTERBOTIX + "create3.py", ["InterbotixCreate3Interface"]),
        ("interbotix_xs_modules.xs_robot.kobuki", INTERBOTIX + "kobuki.py", ["InterbotixKobukiInterface"]),
        ("interbotix_xs_modules.xs_robot.turret", INTERBOTIX + "turret.py", ["InterbotixTurretXSInterface"]),
        ("interbotix_xs_modules.xs_robot.core", INTERBOTIX + "core.py", ["InterbotixRobotXSCore"]),
    ],
}  # fmt: skip


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def version(sdk: str, repo: str, ref: str) -> str:
    if sdk == "stretch_body":
        text = git(repo, "show", f"{ref}:{STRETCH_BODY}version.py")
        return re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text).group(1)
    text = git(repo, "show", f"{ref}:interbotix_xs_toolbox/interbotix_xs_modules/package.xml")
    return re.search(r"<version>([^<]+)</version>", text).group(1)


def record(sdk: str, spec: str, default_ref: str) -> dict:
    repo, _, ref = spec.partition("@")
    ref = ref or default_ref
    out = {
        "repository": {"stretch_body": "hello-robot/stretch_body",
                       "interbotix_xs_modules": "Interbotix/interbotix_ros_toolboxes"}[sdk],
        "ref": ref,
        "commit": git(repo, "rev-parse", ref).strip(),
        "version": version(sdk, repo, ref),
        "classes": {},
    }  # fmt: skip
    for module, path, classes in CLASSES[sdk]:
        tree = ast.parse(git(repo, "show", f"{ref}:{path}"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in classes:
                methods = {
                    f.name: signature_from_ast(f)
                    for f in node.body
                    if isinstance(f, ast.FunctionDef) and (not f.name.startswith("_") or f.name == "__init__")
                }
                out["classes"][f"{module}.{node.name}"] = {"file": f"{path}:{node.lineno}", "methods": methods}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stretch-body", required=True, help="stretch_body git directory[@ref]")
    parser.add_argument("--interbotix", required=True, help="interbotix_ros_toolboxes git directory[@ref]")
    args = parser.parse_args()
    result = {
        "stretch_body": record("stretch_body", args.stretch_body, "HEAD"),
        "interbotix_xs_modules": record("interbotix_xs_modules", args.interbotix, "jazzy"),
    }
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
