"""The retraining image (docker/train.Dockerfile) checked by construction: no Docker engine runs here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from flare_training.cli import build_parser
from flare_training.thor.controller import FLARE_THOR_COMMIT, THOR_INDEX

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "train.Dockerfile"


def instructions() -> list[str]:
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_base_is_a_pinned_cuda_image_with_vulkan():
    base = next(line.split()[1] for line in instructions() if line.startswith("FROM "))
    assert base.startswith("nvidia/cuda:12.") and "ubuntu" in base and not base.endswith(":latest")
    apt = next(line for line in instructions() if "apt-get install" in line)
    assert "libvulkan1" in apt and "vulkan-tools" in apt  # CloudRendering's check and ai2thor's vulkaninfo call
    assert any("NVIDIA_DRIVER_CAPABILITIES" in line and "graphics" in line for line in instructions())


def test_every_copied_file_exists():
    for line in instructions():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"train.Dockerfile copies {source}, which does not exist"


def test_ai2thor_is_flares_build_from_allen_ais_index():
    pins = [line for line in (ROOT / "requirements-thor.txt").read_text().splitlines() if line and line[0] != "#"]
    assert all("==" in line for line in pins)
    assert f"ai2thor==0+{FLARE_THOR_COMMIT}" in pins  # the build the controller asks for
    install = next(line for line in instructions() if "requirements-thor.txt" in line and "pip3 install" in line)
    assert THOR_INDEX in install and "uninstall -y opencv-python" in install
    assert "opencv-python-headless==" in (ROOT / "requirements.txt").read_text()


def test_the_image_runs_the_cli_the_tests_run():
    """The usage line at the top of the Dockerfile parses with the project's own command line."""
    header = DOCKERFILE.read_text().split("FROM ")[0]
    command = re.search(r"python -m flare_training (ppo .*?--out \S+)", header.replace("\\\n#", " "), re.S)
    assert command, "no training command in the Dockerfile's usage"
    args = build_parser().parse_args(shlex.split(command.group(1)))
    assert args.env == "thor" and getattr(args, "thor.platform") == "CloudRendering"
    assert getattr(args, "thor.houses") == "/data/houses" and args.init == "runs/bc_thor"
    checks = next(line for line in instructions() if "python3 -c" in line)
    for module in re.findall(r"import ([\w., ]+)\"", checks)[0].split(","):
        name = module.strip()
        if name.startswith("flare_training"):
            assert (ROOT / "sim_training" / (name.replace(".", "/") + ".py")).exists(), name
