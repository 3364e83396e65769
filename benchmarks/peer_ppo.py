"""Our FLaRe PPO beside what a user would pick instead, on the same gridhouse task and observations, one run.

The peer is sb3-contrib's `RecurrentPPO` (an LSTM policy; the recurrent PPO a new user finds first), used as its
documentation shows: `MultiInputLstmPolicy`, its default hyper-parameters, `make_vec_env` with the same number
of envs. It sees the gridhouse through a gymnasium wrapper with the same information: the navigation frame as
an image, the manipulation frame and the goal's word ids as vectors, the previous action and whether something
is held; its actions are the gridhouse's valid ones (what our mask allows). Both start from scratch on ObjectNav +
Pickup with the same env-step budget, then are evaluated on the same unseen houses. Ours is a fresh policy with
CleanRL's from-scratch settings in place of FLaRe's fine-tuning ones (`FROM_SCRATCH`) over a frozen visual
encoder, as FLaRe's is: a randomly initialised CNN, or with `--visual-from runs/perception` the pretrained one
(the stand-in for DINOv2, as FLaRe's RL-from-scratch baseline keeps DINOv2); with `--train-visual` the CNN
trains with the policy, end to end, as the peers train theirs.

Sample Factory's APPO (its defaults: GRU core, asynchronous sampling) runs in a venv of its own, since
sample-factory 2.1.1 pins gymnasium 0.29.1 and numpy < 2 (`benchmarks/peer_sample_factory.py`, which this script
runs with `--sample-factory-python`; create that venv as `benchmarks/requirements-sample-factory.txt` says).

    .venv/bin/pip install -r benchmarks/requirements-peer.txt
    .venv/bin/python benchmarks/peer_ppo.py [--steps 8192] [--episodes 50] [--sample-factory-python .venv-sf/bin/python]
        [--visual-from runs/perception | --train-visual] [--epochs 4] [--minibatches 4]
        [--max-grad-norm 0.5] [--normalize-returns] [--no-visual-grad-prefix] [--seed 0]

Prints `sps_ours=`, `sps_recurrentppo=`, `ratio_vs_recurrentppo=` (and `sps_sample_factory=`,
`ratio_vs_sample_factory=`) last (env steps per second, training included), and each method's success on unseen
houses after the budget.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from flare_core.actions import NO_PREVIOUS_ACTION, NUM_ACTIONS
from flare_sim import GridhouseEnv
from flare_training.checkpoint import load_checkpoint, save_checkpoint
from flare_training.evaluate import evaluate_policy
from flare_training.inputs import ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig
from flare_training.ppo import PPOConfig, train_ppo

FAMILIES = ("objectnav", "pickup")
VALID = np.flatnonzero(GridhouseEnv.embodiment.mask)  # m, r, l, end, sub_done, p, d


class GymGridhouse(gym.Env):
    """The gridhouse as stable-baselines3 takes it: Box/Discrete observations, the valid actions only."""

    def __init__(self, split: str = "train", families=FAMILIES) -> None:
        self.env = GridhouseEnv(families=families, split=split)
        self.tokenizer = gridhouse_tokenizer()
        nav, manip = self.env.observation_space["nav_rgb"], self.env.observation_space["manip_rgb"]
        self.observation_space = spaces.Dict(
            {
                "nav": nav,
                "manip": spaces.Box(0, 255, (int(np.prod(manip.shape)),), np.uint8),
                "goal": spaces.Box(0, len(self.tokenizer), (self.tokenizer.max_tokens,), np.float32),
                "prev_action": spaces.Discrete(NUM_ACTIONS + 1),
                "holding": spaces.Discrete(2),
            }
        )
        self.action_space = spaces.Discrete(len(VALID))

    def _obs(self, obs: dict) -> dict:
        prev = obs["prev_action"]
        return {
            "nav": obs["nav_rgb"],
            "manip": obs["manip_rgb"].reshape(-1),
            "goal": self.tokenizer.encode(obs["goal"]).astype(np.float32),
            "prev_action": NUM_ACTIONS if prev == NO_PREVIOUS_ACTION else int(prev),
            "holding": int(obs["holding"]),
        }

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._obs(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(int(VALID[int(action)]))
        return self._obs(obs), reward, terminated, truncated, info


# CleanRL's ppo.py settings where ours differ (learning rate, entropy bonus, 4 minibatches, normalised
# advantages) and no critic warm-up. FLaRe's own recipe (lr 2e-5, no entropy bonus, 200k steps of value-only
# updates) is for fine-tuning a pretrained policy: from a random one, within a peer benchmark's budget, its actor
# barely moves (0 % success at 65k steps, where these settings reach their first successes).
FROM_SCRATCH = dict(lr=2.5e-4, entropy_coef=0.01, minibatches=4, normalize_advantages=True, critic_warmup_steps=0)


def run_ours(steps: int, episodes: int, tmp: str, visual_from: str = "", train_visual: bool = False, seed: int = 0,
             **settings):  # fmt: skip
    """A random policy trained by our PPO: over `visual_from`'s frozen encoder (as `ppo --visual-from` does), or
    over a frozen, randomly initialised CNN when it is empty (no visual knowledge, as the peers start); with
    `train_visual` that CNN trains with the policy, end to end, as the peers' do; `seed`: the policy's
    initialisation and the training houses; `settings`: PPOConfig fields in place of `FROM_SCRATCH`'s."""
    if not visual_from:
        adapter = ObservationAdapter(gridhouse_tokenizer(), gridhouse_cameras())
        torch.manual_seed(seed)
        fresh = ActorCritic(ModelConfig(vocab_size=len(adapter.tokenizer)), adapter.camera_shapes)
        visual_from = str(save_checkpoint(Path(tmp) / "random_cnn" / "checkpoint.pt", fresh, adapter, kind="bc"))
    config = PPOConfig(out=f"{tmp}/ours", visual_from=visual_from, families=FAMILIES, total_env_steps=steps,
                       eval_every=10**12, eval_episodes=1, final_eval_episodes=0, train_visual=train_visual,
                       seed=seed, **{**FROM_SCRATCH, **settings})  # fmt: skip
    start = time.perf_counter()
    train_ppo(config)
    elapsed = time.perf_counter() - start
    model, adapter, payload = load_checkpoint(f"{tmp}/ours")
    sps = payload["env_steps"] / elapsed  # whole updates: the budget rounded up to 32 x 128 steps
    results = evaluate_policy(model, adapter, FAMILIES, episodes, progress=False)
    return sps, {f: r["success"] for f, r in results.items()}


def run_recurrent_ppo(steps: int, episodes: int, num_envs: int, seed: int = 0) -> tuple[float, dict]:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(GymGridhouse, n_envs=num_envs, seed=seed)
    model = RecurrentPPO("MultiInputLstmPolicy", envs, seed=seed, verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    sps = model.num_timesteps / (time.perf_counter() - start)  # whole rollouts, as ours
    success = {}
    for family in FAMILIES:
        env, wins = GymGridhouse("eval", (family,)), 0
        for house in range(episodes):
            obs, _ = env.reset(seed=house, options={"family": family, "house": house})
            state, start_flag, done, info = None, np.ones((1,), bool), False, {}
            while not done:
                action, state = model.predict(obs, state=state, episode_start=start_flag, deterministic=False)
                obs, _, terminated, truncated, info = env.step(action)
                start_flag, done = np.zeros((1,), bool), terminated or truncated
            wins += bool(info["success"])
        success[family] = wins / episodes
    envs.close()
    return sps, success


def run_sample_factory(python: str, steps: int, episodes: int, num_envs: int, seed: int = 0) -> tuple[float, dict]:
    """benchmarks/peer_sample_factory.py in Sample Factory's own venv; its `key=value` lines read back."""
    script = Path(__file__).with_name("peer_sample_factory.py")
    argv = ["--steps", steps, "--episodes", episodes, "--num-envs", num_envs, "--seed", seed]
    done = subprocess.run([python, str(script), *map(str, argv)], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"peer_sample_factory.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures = dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)
    return float(figures["sps_sample_factory"]), {f: float(figures[f"success_sample_factory_{f}"]) for f in FAMILIES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8192, help="env steps each method trains for")
    parser.add_argument("--episodes", type=int, default=50, help="unseen houses per family afterwards")
    parser.add_argument(
        "--peers",
        nargs="*",
        default=["recurrentppo", "sample_factory"],
        choices=["recurrentppo", "sample_factory"],
        help="which peers to run beside ours (none: ours alone)",
    )
    parser.add_argument("--sample-factory-python", default="",
                        help="python of Sample Factory's venv (see benchmarks/requirements-sample-factory.txt); "
                             "empty: Sample Factory is not run")  # fmt: skip
    parser.add_argument("--visual-from", default="",
                        help="checkpoint whose frozen visual encoder ours trains over (e.g. runs/perception, the "
                             "stand-in for FLaRe's DINOv2); empty: a random CNN, as the peers start")  # fmt: skip
    parser.add_argument(
        "--train-visual",
        action="store_true",
        help="ours trains its CNN with the policy, end to end (ppo --train-visual), as the peers do",
    )
    parser.add_argument("--epochs", type=int, default=PPOConfig.epochs,
                        help="ours: PPO epochs over each rollout (Sample Factory's default is 1)")  # fmt: skip
    parser.add_argument("--minibatches", type=int, default=FROM_SCRATCH["minibatches"],
                        help="ours: minibatches (gradient steps) per epoch")  # fmt: skip
    parser.add_argument("--max-grad-norm", type=float, default=PPOConfig.max_grad_norm,
                        help="ours: gradient clipping (global norm; Sample Factory's default is 4.0)")  # fmt: skip
    parser.add_argument("--normalize-returns", action="store_true",
                        help="ours: the critic learns normalised returns (ppo --normalize-returns), as Sample "
                             "Factory's APPO does by default")  # fmt: skip
    parser.add_argument("--no-visual-grad-prefix", dest="visual_grad_prefix", action="store_false",
                        help="ours, with --train-visual: episode prefixes keep the features the rollout acted on; "
                             "only each rollout's own frames are encoded again and trained through (ppo "
                             "--no-visual-grad-prefix; faster)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0,
                        help="every method's training seed (initialisation, training houses); the unseen houses "
                             "stay the same")  # fmt: skip
    args = parser.parse_args()
    if "sample_factory" in args.peers and not args.sample_factory_python and args.peers != parser.get_default("peers"):
        parser.error(
            "--peers sample_factory needs --sample-factory-python (see benchmarks/requirements-sample-factory.txt)"
        )
    num_envs = PPOConfig.num_envs
    sps, success = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        sps["ours"], success["ours"] = run_ours(args.steps, args.episodes, tmp, args.visual_from, args.train_visual,
                                                args.seed, epochs=args.epochs, minibatches=args.minibatches,
                                                max_grad_norm=args.max_grad_norm,
                                                normalize_returns=args.normalize_returns,
                                                visual_grad_prefix=args.visual_grad_prefix)  # fmt: skip
    if "recurrentppo" in args.peers:
        sps["recurrentppo"], success["recurrentppo"] = run_recurrent_ppo(args.steps, args.episodes, num_envs, args.seed)
    if "sample_factory" in args.peers and args.sample_factory_python:
        sps["sample_factory"], success["sample_factory"] = run_sample_factory(
            args.sample_factory_python, args.steps, args.episodes, num_envs, args.seed
        )
    for name, rates in success.items():
        print(f"{name:<15} " + "  ".join(f"{f} {s:.0%}" for f, s in rates.items()) + f"  ({args.episodes} houses each)")
    print(f"envs={num_envs} steps={args.steps} peers={','.join(n for n in sps if n != 'ours')} "
          f"ours_visual={args.visual_from or 'random_cnn'}{'_trained' if args.train_visual else ''} "
          f"ours_epochs={args.epochs} ours_minibatches={args.minibatches} ours_max_grad_norm={args.max_grad_norm} "
          f"ours_normalize_returns={args.normalize_returns} ours_visual_grad_prefix={args.visual_grad_prefix} "
          f"seed={args.seed}")  # fmt: skip
    print(" ".join(f"success_{name}={np.mean(list(rates.values())):.3f}" for name, rates in success.items()))
    print(" ".join(f"sps_{name}={value:.0f}" for name, value in sps.items()) + " " +
          " ".join(f"ratio_vs_{name}={sps['ours'] / sps[name]:.1f}" for name in sps if name != "ours"))  # fmt: skip


if __name__ == "__main__":
    main()
