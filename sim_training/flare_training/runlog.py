"""What an RL run writes (rank 0): metrics.jsonl and TensorBoard every update, learning-curve evaluations on
unseen houses every `eval_every` env steps, and the final evaluation over every family. PPO and GRPO share it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from flare_training.evaluate import evaluate_policy, save_results
from flare_training.thor.controller import ThorConfig


@dataclass
class RunConfig:
    """What a PPO and a GRPO run share: where they train, how they are evaluated, the machine's share."""

    # Task families to train on; empty: the simulator's training families (evaluation at the end: all of them).
    families: tuple[str, ...] = ()
    env: str = "gridhouse"  # gridhouse (embedded) or thor (AI2-THOR, CHORES tasks; see the --thor-* options)
    thor: ThorConfig = field(default_factory=ThorConfig)
    eval_every: int = 100_000  # env steps between evaluations on unseen houses (learning curves)
    eval_episodes: int = 30  # per family, during training
    final_eval_episodes: int = 100  # per family, at the end, all families (held-out included)
    # Processes stepping the envs, each its own lane of them: the learner decides for one lane while the others
    # step (2 keeps both cores of a small machine busy); 0 = every env in the learner's process, in turn.
    env_workers: int = 2
    seed: int = 0
    threads: int = 0  # torch threads; 0 = torch's default
    # The learner (rollout inference, updates, evaluation): cpu, or cuda (each torchrun rank its local rank's
    # GPU; ranks reduce with nccl). The envs and their frame encoders stay in CPU worker processes.
    device: str = "cpu"


class RunLog:
    """`evals` carries over on resume (the checkpoint keeps it); `kind` names the algorithm in TensorBoard."""

    def __init__(self, out: Path, kind: str, model, adapter, families, sim, config, evals: list) -> None:
        self.out, self.kind, self.model, self.adapter, self.sim = out, kind, model, adapter, sim
        self.families, self.config, self.evals = families, config, evals
        self.writer = SummaryWriter(out / "tb")
        self.metrics = open(out / "metrics.jsonl", "a")

    def evaluate(self, families, episodes: int, progress: bool = False) -> dict:
        return evaluate_policy(self.model, self.adapter, families, episodes, seed=self.config.seed,
                               progress=progress, sim=self.sim)  # fmt: skip

    def start(self) -> None:
        """The policy before any update: the first point of the learning curve."""
        if not self.evals:
            self.evals.append({"env_steps": 0, "results": self.evaluate(self.families, self.config.eval_episodes)})

    def record(self, row: dict) -> None:
        """One update's figures: a line of metrics.jsonl, and TensorBoard scalars against env steps."""
        for k, v in row.items():
            if k not in ("update", "env_steps") and not isinstance(v, bool):
                self.writer.add_scalar(k if "/" in k else f"{self.kind}/{k}", v, row["env_steps"])
        self.metrics.write(json.dumps(row) + "\n")
        self.metrics.flush()

    def maybe_evaluate(self, env_steps: int, last: bool) -> str | None:
        """Every `eval_every` env steps and after the last update: success on unseen houses; a line to show."""
        every = self.config.eval_every
        if env_steps // every <= self.evals[-1]["env_steps"] // every and not last:
            return None
        results = self.evaluate(self.families, self.config.eval_episodes)
        self.evals.append({"env_steps": env_steps, "results": results})
        for f, r in results.items():
            self.writer.add_scalar(f"eval_success/{f}", r["success"], env_steps)
        return f"{env_steps:>9,} steps  eval " + "  ".join(f"{f} {r['success']:.0%}" for f, r in results.items())

    def finish(self, env_steps: int) -> None:
        """evals.json (the learning curve) and eval.json: every family, held-out ones included."""
        self.metrics.close()
        (self.out / "evals.json").write_text(json.dumps(self.evals, indent=2) + "\n")
        episodes = self.config.final_eval_episodes
        if episodes:
            results = self.evaluate(self.sim.families, episodes, progress=True)
            save_results(self.out / "eval.json", results, kind=self.kind, env_steps=env_steps, episodes=episodes)
            for family, r in results.items():
                print(f"  {family:<20} success {r['success']:.0%}  steps {r['mean_steps']:.1f}")
        self.writer.close()
