"""The main job on the embedded default: the FLaRe graph with the simulated Stretch and the shipped model.

Starts the graph (policy node + Stretch bridge on the simulated robot, separate processes talking over ROS 2),
runs episodes on unseen houses by sending goals, and prints success and decision latency next to the same
policy evaluated in the simulator without ROS (same houses), which the graph should match.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from flare_bringup.graph import Graph, default_model
from flare_bringup.runner import EpisodeRunner, GraphError
from flare_robots.robot import get_robot, robots


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--robot", choices=tuple(robots()), default="stretch", help="simulated robot (default: stretch)"
    )
    parser.add_argument("--families", nargs="+", default=["objectnav", "pickup"], help="task families")
    parser.add_argument("--episodes", type=int, default=10, help="unseen houses per family (default: 10)")
    parser.add_argument("--model", default="", help="model directory (default: the shipped demo model)")
    parser.add_argument("--record", default="", help="also record the run into this new bag directory")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    args = parser.parse_args(argv)
    model = args.model or str(default_model())

    logs = Path(tempfile.mkdtemp(prefix="flare_demo_"))
    print(f"FLaRe graph: simulated {args.robot}, model {model}; node logs in {logs}", flush=True)
    start = time.perf_counter()
    outcomes = []
    with Graph(args.robot, model=args.model, log_dir=logs, record=args.record, storage=args.storage) as graph:
        runner = EpisodeRunner()
        try:
            runner.wait_ready(recorders=1 if args.record else 0)
            jobs = [(f, h) for f in args.families for h in range(args.episodes)]
            for family, house in tqdm(jobs, desc="episodes", unit="ep"):
                outcomes.append(runner.run_episode(family, house))
        except GraphError as err:
            dead = graph.dead()
            print(f"!! {err}" + (f"; nodes that exited (name: code): {dead}" if dead else ""), file=sys.stderr)
            for name in graph.processes:
                print(
                    f"--- {name} log (last lines) ---\n" + "\n".join(graph.log(name).splitlines()[-15:]),
                    file=sys.stderr,
                )
            sys.exit(1)
        finally:
            runner.close()
    elapsed = time.perf_counter() - start
    if args.record:
        print(f"recorded into {args.record}: replay with python -m flare_bag.replay {args.record} {model}")

    from flare_sim.onnx_eval import evaluate_exported

    reference = evaluate_exported(model, tuple(args.families), args.episodes, greedy=True, progress=False,
                                  robot=get_robot(args.robot).embodiment)  # fmt: skip
    print(f"\n{len(outcomes)} episodes over ROS 2 in {elapsed:.0f} s (greedy; unseen houses 0..{args.episodes - 1})")
    print(f"{'family':<12} {'graph success':>14} {'in-sim runtime':>15} {'mean steps':>11}")
    for family in args.families:
        mine = [o for o in outcomes if o.family == family]
        rate = sum(o.success for o in mine) / len(mine)
        steps = statistics.mean(o.steps for o in mine)
        print(f"{family:<12} {rate:>14.0%} {reference[family]['success']:>15.0%} {steps:>11.1f}")
    inference = [x for o in outcomes for x in o.inference_ms]
    decision = [x for o in outcomes for x in o.decision_ms]
    if inference:
        print(f"decision latency, median over {len(decision)} decisions: {statistics.median(decision):.1f} ms from the "
              f"end of a motion to the next command (fresh frame + inference); inference alone "
              f"{statistics.median(inference):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
