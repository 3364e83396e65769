"""Gridhouse demo: expert and random success per task family over unseen (evaluation-split) houses."""

from __future__ import annotations

import argparse
import time

from flare_sim.scripted import evaluate, expert_policy, random_policy
from flare_sim.tasks import FAMILIES, HELD_OUT_FAMILIES


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=50, help="unseen houses per task family (default: 50)")
    parser.add_argument(
        "--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES), help="task families (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")

    families = tuple(args.families)
    start = time.perf_counter()
    expert = evaluate(expert_policy, families, args.episodes, label="expert")
    rand = evaluate(random_policy(args.seed), families, args.episodes, label="random", expert=False)

    print(f"Gridhouse: {args.episodes} unseen houses per family (evaluation split), success rate")
    print(f"{'family':<31} {'expert':>8} {'random':>8} {'expert steps':>13}")
    for e, r in zip(expert, rand, strict=True):
        tag = " (held out)" if e.family in HELD_OUT_FAMILIES else ""
        print(f"{e.family + tag:<31} {e.success_rate:>8.0%} {r.success_rate:>8.0%} {e.mean_steps:>13.1f}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
