"""BC, PPO and evaluation with `--env thor` through the command line, on the AI2-THOR stand-in (one env per
worker process, as with real Unity instances), and the command line's refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import thor_standin
import torch

TESTS = Path(__file__).parent


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "flare_training", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    return thor_standin.write_houses(tmp_path_factory.mktemp("houses"), train=6, val=4)


def thor_args(houses, max_steps: int = 60) -> list[str]:
    return ["--env", "thor", "--thor-houses", str(houses), "--thor-controller", "thor_standin:Controller",
            "--thor-max-steps", str(max_steps), "--thor-eval-steps", str(max_steps)]  # fmt: skip


@pytest.fixture(scope="module")
def bc_run(houses, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "thor_bc"
    done = cli("bc", *thor_args(houses), "--out", str(out), "--demos", "8", "--workers", "2", "--epochs", "3",
               "--eval-episodes", "2")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


def test_bc_learns_from_the_thor_expert(bc_run):
    out, stdout = bc_run
    assert "8 episodes" in stdout
    payload = torch.load(out / "checkpoint.pt", weights_only=False)
    assert payload["config"]["env"] == "thor" and tuple(payload["config"]["families"]) == ("ObjectNavType",)
    history = json.loads((out / "bc_history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert [c["preprocessing"]["height"] for c in payload["cameras"]] == [56, 56]
    assert payload["model_config"]["max_context"] >= 60  # the cache holds a whole AI2-THOR episode
    from flare_training.bc import Demos

    demos = Demos.load(out / "demos.npz")  # AI2-THOR frames stored at the model's size, not as rendered
    assert demos.nav_rgb.shape[1:] == (56, 96, 3) and demos.manip_rgb.shape[1:] == (56, 96, 3)
    results = json.loads((out / "eval.json").read_text())["results"]
    assert set(results) == {"ObjectNavType", "PickupType", "FetchType", "RoomVisit"}


def test_ppo_fine_tunes_in_thor_and_resumes(bc_run, houses, tmp_path):
    out = tmp_path / "thor_ppo"
    args = ["ppo", *thor_args(houses), "--init", str(bc_run[0]), "--out", str(out), "--num-envs", "4", "--rollout",
            "16", "--env-workers", "2", "--eval-episodes", "1", "--final-eval-episodes", "1"]  # fmt: skip
    done = cli(*args, "--total-env-steps", "128")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2] and rows[-1]["env_steps"] == 128
    assert rows[-1]["cache_vs_sequence_logprob"] < 1e-4  # the rollout's cached steps are the update's sequences
    more = cli(*args, "--total-env-steps", "192")
    assert more.returncode == 0 and "resuming" in more.stdout, more.stdout + more.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["update"] == 3
    evaluated = cli("eval", str(out), "--episodes", "1", "--families", "ObjectNavType", "RoomVisit")
    assert evaluated.returncode == 0 and "RoomVisit" in evaluated.stdout, evaluated.stderr
    exported = cli("export", str(out), str(tmp_path / "model"))
    assert exported.returncode == 0, exported.stderr
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    assert card["embodiments"] == ["stretch_re1"] and card["provenance"]["env"] == "ai2thor"
    assert card["provenance"]["tasks"] == ["ObjectNavType", "PickupType", "FetchType", "RoomVisit"]  # PPO's
    from flare_core.runtime import OnnxPolicy

    policy = OnnxPolicy(tmp_path / "model")
    frame = thor_standin.World(thor_standin.make_house(np.random.default_rng(0))).render(0.0, 224, 396)[:, 6:-6]
    step = policy.act({"nav": frame, "manip": frame}, holding=False, goal="find a mug")
    assert 0 <= step.action < 20 and np.isfinite(step.logits).all()


def test_a_gridhouse_checkpoint_is_refused_in_thor(houses, tmp_path):
    from flare_training.bc import BCConfig, train_bc

    gridhouse = train_bc(BCConfig(out=str(tmp_path / "grid"), demos=4, workers=1, epochs=1, eval_episodes=0))
    done = cli("ppo", *thor_args(houses), "--init", str(gridhouse), "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "trained with --env gridhouse" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--thor-houses", "/nonexistent"], "no train.jsonl.gz in /nonexistent"),
        (["--families", "PickupType"], "no expert demonstrates ['PickupType']"),
        (["--families", "objectnav"], "no task families ['objectnav']"),
        (["--thor-controller", "ai2thor.controller:Controller"], "is installed but the build"),
    ],
)
def test_refusals_are_one_line(houses, tmp_path, extra, message):
    done = cli("bc", *thor_args(houses), *extra, "--out", str(tmp_path / "bc"), "--demos", "2", "--workers", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
