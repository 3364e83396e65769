"""End-to-end PPO throughput: env steps per second of FLaRe PPO (rollouts + updates) with the embedded model.

Runs a few PPO updates with the default recipe and model (32 envs x 128-step rollouts, 4 epochs, separate
critic), from fresh weights unless --init names a checkpoint, and reports the median over full updates: the
first update is the only critic warm-up (value-only, cheaper) and pays one-time costs, so it is excluded.
`--env-workers` splits the envs into that many lanes (PPOConfig.env_workers; 0 = in the learner's process).
Baseline measured in the same run: the same envs stepped with no model (`env_only_sps`), so
`sps_over_env_only` is the share of simulator speed that learning keeps. A fresh policy calls `end` often,
so its episodes are short and resets frequent: pass --init runs/bc for a trained policy's episodes.
`--train-visual` trains the CNN with the policy (`ppo --train-visual`, every update pass encodes the frames)
and `--epochs` sets PPO's epochs per rollout (4 by default).

`--ranks N` measures DD-PPO instead: the same run under torchrun with 1 rank and with N ranks (each rank its
own 32 envs), `scaling_efficiency` = N-rank env steps/s / (N x 1-rank env steps/s), both measured in this run.
On a machine with fewer cores than ranks x env workers the ranks share cores and the efficiency says so.
`--device cuda` puts each rank's learner on its own GPU (ranks reduce with nccl): on an N-GPU machine,
`--ranks N --device cuda` measures the multi-GPU scaling.

    .venv/bin/python benchmarks/ppo_throughput.py [--updates 6] [--init runs/bc] [--train-visual] [--epochs 1]
    .venv/bin/python benchmarks/ppo_throughput.py [--updates 6] [--init runs/bc] --ranks 2 [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flare_sim import GridhouseEnv, make_vector_env
from flare_training.checkpoint import save_checkpoint
from flare_training.inputs import ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig
from flare_training.ppo import PPOConfig, train_ppo


def env_only_sps(num_envs: int, workers: int, steps: int, seed: int = 0) -> float:
    envs = make_vector_env(num_envs, workers=workers)
    valid = np.flatnonzero(GridhouseEnv.embodiment.mask)
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    envs.step(rng.choice(valid, size=num_envs))
    start = time.perf_counter()
    for _ in range(steps):
        envs.step(rng.choice(valid, size=num_envs))
    rate = steps * num_envs / (time.perf_counter() - start)
    envs.close()
    return rate


def ranks_sps(init: str, ranks: int, updates: int, env_workers: int, device: str, tmp: str) -> float:
    """Median env steps/s of all ranks together over full updates of a torchrun run (the first excluded)."""
    config = PPOConfig()
    batch = config.batch_steps * ranks
    out = Path(tmp) / f"ranks{ranks}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks), "-m",
           "flare_training", "ppo", "--init", init, "--out", str(out), "--total-env-steps", str(batch * updates),
           "--critic-warmup-steps", str(batch), "--eval-every", str(10**12), "--eval-episodes", "1",
           "--final-eval-episodes", "0", "--env-workers", str(env_workers), "--device", device]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{ranks}-rank run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(batch / (r["rollout_s"] + r["update_s"]) for r in rows if not r["critic_warmup"])


def main_ranks(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        init = args.init or fresh_init(tmp)
        one = ranks_sps(init, 1, args.updates, args.env_workers, args.device, tmp)
        many = ranks_sps(init, args.ranks, args.updates, args.env_workers, args.device, tmp)
    print(f"DD-PPO on {args.device}: 1 rank {one:.0f} env steps/s, {args.ranks} ranks {many:.0f} env steps/s")
    print(f"sps_1rank={one:.0f} sps_{args.ranks}ranks={many:.0f} scaling_efficiency={many / (args.ranks * one):.2f}")


def fresh_init(tmp: str) -> str:
    adapter = ObservationAdapter(gridhouse_tokenizer(), gridhouse_cameras())
    model = ActorCritic(ModelConfig(vocab_size=len(adapter.tokenizer)), adapter.camera_shapes)
    return str(save_checkpoint(Path(tmp) / "init" / "checkpoint.pt", model, adapter, kind="bc"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=6, help="PPO updates to run (the first is excluded)")
    parser.add_argument("--init", default="", help="start from this checkpoint instead of fresh weights")
    parser.add_argument("--env-workers", type=int, default=PPOConfig.env_workers,
                        help="processes stepping the envs (0 = in the learner's process)")  # fmt: skip
    parser.add_argument("--ranks", type=int, default=1, help="DD-PPO: compare 1 rank with this many (torchrun)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="each rank's learner: cpu (gloo) or its own GPU (nccl); with --ranks")  # fmt: skip
    parser.add_argument("--train-visual", action="store_true",
                        help="the CNN trains with the policy (ppo --train-visual), not frozen")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=PPOConfig.epochs, help="PPO epochs over each rollout")
    args = parser.parse_args()
    if args.ranks > 1 and (args.train_visual or args.epochs != PPOConfig.epochs):
        parser.error("--train-visual and --epochs measure one process; leave --ranks out")
    if args.ranks > 1:
        main_ranks(args)
        return
    if args.device != "cpu":
        parser.error("--device applies to --ranks N (the one-process figures compare with the CPU env baseline)")

    with tempfile.TemporaryDirectory() as tmp:
        init = args.init or fresh_init(tmp)
        config = PPOConfig(out=f"{tmp}/run", init=init, eval_every=10**12, eval_episodes=1, final_eval_episodes=0,
                           env_workers=args.env_workers, train_visual=args.train_visual,
                           epochs=args.epochs)  # fmt: skip
        config.critic_warmup_steps = config.batch_steps  # one value-only update, then the full update is timed
        config.total_env_steps = config.batch_steps * args.updates
        where = f"{config.env_workers} lanes, a worker process each" if config.env_workers else "the learner's process"
        encoder = "trained with the policy" if config.train_visual else "frozen"
        print(f"PPO: {config.num_envs} envs in {where}, {config.rollout}-step rollouts, {config.epochs} epochs, "
              f"{args.updates} updates, visual encoder {encoder}")  # fmt: skip
        train_ppo(config)
        rows = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
        rows = [r for r in rows if not r["critic_warmup"]]
        batch = config.batch_steps
        figures = {
            "sps": statistics.median(batch / (r["rollout_s"] + r["update_s"]) for r in rows),
            "rollout_sps": statistics.median(batch / r["rollout_s"] for r in rows),
            "update_s": statistics.median(r["update_s"] for r in rows),
            "env_only_sps": env_only_sps(config.num_envs, config.env_workers, 200),
        }
    figures["sps_over_env_only"] = figures["sps"] / figures["env_only_sps"]
    print(f"end to end {figures['sps']:.0f} env steps/s (rollouts {figures['rollout_sps']:.0f}/s, "
          f"{figures['update_s']:.2f} s per update); env alone {figures['env_only_sps']:.0f}/s")  # fmt: skip
    print(
        " ".join(
            f"{k}={v:.2f}" if k in ("update_s", "sps_over_env_only") else f"{k}={v:.0f}" for k, v in figures.items()
        )
    )


if __name__ == "__main__":
    main()
