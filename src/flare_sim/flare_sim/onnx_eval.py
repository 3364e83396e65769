"""Closed-loop evaluation of an exported policy (policy.onnx + model.json) in the gridhouse, through the same
ONNX Runtime policy the robot uses: no torch anywhere.

    python -m flare_sim.onnx_eval models/gridhouse_demo [--episodes 100] [--greedy]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from flare_core.runtime import OnnxPolicy
from flare_sim.env import CAMERA_KEYS
from flare_sim.scripted import evaluate
from flare_sim.tasks import FAMILIES


def evaluate_exported(
    model_dir: str,
    families: tuple[str, ...],
    episodes: int,
    greedy: bool = False,
    seed: int = 0,
    progress: bool = True,
    robot: str | None = None,
) -> dict[str, dict[str, float]]:
    """Success and mean length per family over houses 0..episodes-1 of the evaluation split.

    `robot` also masks what that robot cannot do (as the simulated robot of the ROS graph does).
    """
    policy = OnnxPolicy(model_dir, embodiment="gridhouse", greedy=greedy, seed=seed, robot=robot)
    latencies: list[float] = []

    def act(obs: dict, info: dict) -> int:
        if info["steps"] == 0:
            policy.reset(obs["goal"])  # every episode starts with an empty cache, even when goals repeat
        step = policy.act({cam: obs[key] for cam, key in CAMERA_KEYS.items()}, holding=bool(obs["holding"]))
        latencies.append(step.latency_ms)
        return step.action

    rows = evaluate(act, families, episodes, label="onnx", expert=False, progress=progress)
    results: dict[str, dict[str, float]] = {
        r.family: {"success": r.success_rate, "mean_steps": r.mean_steps, "episodes": r.episodes} for r in rows
    }
    results["_latency_ms_median"] = {"value": float(np.median(latencies))}
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="directory with policy.onnx and model.json")
    parser.add_argument("--episodes", type=int, default=100, help="unseen houses per family")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--greedy", action="store_true", help="argmax instead of sampling")
    parser.add_argument("--robot", default=None, help="also mask what this embodiment cannot do (e.g. locobot)")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args(argv)
    results = evaluate_exported(args.model_dir, tuple(args.families), args.episodes, args.greedy, robot=args.robot)
    for family in args.families:
        r = results[family]
        print(f"{family:<20} success {r['success']:6.1%}  mean steps {r['mean_steps']:5.1f}")
    print(
        f"median decision latency {results['_latency_ms_median']['value']:.2f} ms (preprocess + ONNX Runtime + choice)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
