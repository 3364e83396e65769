"""Sample Factory's APPO on the gridhouse task and observations that benchmarks/peer_ppo.py uses, one run.

Sample Factory 2.1.1 is used as its documentation shows for a custom environment: `register_env`, its
command-line configuration (`parse_sf_args` / `parse_full_cfg`) with default hyper-parameters, `run_rl`. Its
defaults include a recurrent policy (a GRU core, `use_rnn` True) and its default encoder for dictionary
observations (a CNN for images, an MLP for each vector). The only settings given are the CPU device, the
env-step budget and the number of envs (peer_ppo.py's `PPOConfig.num_envs`, spread over Sample Factory's
default number of workers, one per core); training runs in its default asynchronous multi-process mode.

The gridhouse reaches it with the information peer_ppo.py's `GymGridhouse` gives: the navigation frame as an
image (channels first, as Sample Factory's CNN takes it), the manipulation frame and the goal's word ids as
vectors, the previous action and whether something is held (one-hot, as stable-baselines3 feeds a `Discrete`
observation to its policy; Sample Factory's encoder takes vectors only). Its actions are the gridhouse's valid
ones. It trains from scratch on ObjectNav + Pickup houses of the training split for the env-step budget, then
is evaluated on the same unseen houses as the others (split "eval", houses 0..episodes-1 of each family),
sampling its actions.

Sample Factory pins gymnasium < 1 and numpy < 2, so it runs in a venv of its own, not the project's .venv:

    python3.11 -m venv .venv-sf
    .venv-sf/bin/pip install -r benchmarks/requirements-sample-factory.txt
    .venv-sf/bin/pip install --no-deps --no-build-isolation -e src/flare_core -e src/flare_sim
    .venv-sf/bin/python benchmarks/peer_sample_factory.py [--steps 8192] [--episodes 50] [--num-envs 32]

Prints `sps_sample_factory=` (env steps trained per second of wall-clock, from the start of `run_rl` to its
end: process start-up included) and `success_sample_factory_objectnav=`, `success_sample_factory_pickup=`
last, one `key=value` a line. Sample Factory's own log goes to stderr.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from sample_factory.algo.learning.learner import Learner
from sample_factory.algo.utils.misc import ExperimentStatus
from sample_factory.algo.utils.rl_utils import prepare_and_normalize_obs
from sample_factory.cfg.arguments import load_from_checkpoint, parse_full_cfg, parse_sf_args
from sample_factory.envs.env_utils import register_env
from sample_factory.model.actor_critic import create_actor_critic
from sample_factory.model.model_utils import get_rnn_size
from sample_factory.train import run_rl

from flare_core.actions import NO_PREVIOUS_ACTION, NUM_ACTIONS
from flare_core.goal_tokenizer import GoalTokenizer
from flare_sim import GOAL_WORDS, GridhouseEnv

FAMILIES = ("objectnav", "pickup")
VALID = np.flatnonzero(GridhouseEnv.embodiment.mask)  # m, r, l, end, sub_done, p, d
ENV_NAME = "gridhouse"
NUM_ENVS = 32  # peer_ppo.py's PPOConfig.num_envs
GOAL_TOKENS = 16  # flare_training.inputs.gridhouse_tokenizer's max_tokens


class SampleFactoryGridhouse(gym.Env):
    """The gridhouse as Sample Factory's default encoder takes it: a channels-first image and flat vectors."""

    def __init__(self, split: str = "train", families=FAMILIES, render_mode: str | None = None) -> None:
        self.env = GridhouseEnv(families=families, split=split)
        self.tokenizer = GoalTokenizer.from_words(GOAL_WORDS, GOAL_TOKENS)
        height, width, channels = self.env.observation_space["nav_rgb"].shape
        manip = self.env.observation_space["manip_rgb"]
        self.observation_space = spaces.Dict(
            {
                "nav": spaces.Box(0, 255, (channels, height, width), np.uint8),
                "manip": spaces.Box(0, 255, (int(np.prod(manip.shape)),), np.uint8),
                "goal": spaces.Box(0, len(self.tokenizer), (self.tokenizer.max_tokens,), np.float32),
                "prev_action": spaces.Box(0, 1, (NUM_ACTIONS + 1,), np.float32),
                "holding": spaces.Box(0, 1, (2,), np.float32),
            }
        )
        self.action_space = spaces.Discrete(len(VALID))
        self.render_mode = render_mode

    def _obs(self, obs: dict) -> dict:
        prev = NUM_ACTIONS if obs["prev_action"] == NO_PREVIOUS_ACTION else int(obs["prev_action"])
        return {
            "nav": np.ascontiguousarray(obs["nav_rgb"].transpose(2, 0, 1)),
            "manip": obs["manip_rgb"].reshape(-1),
            "goal": self.tokenizer.encode(obs["goal"]).astype(np.float32),
            "prev_action": np.eye(NUM_ACTIONS + 1, dtype=np.float32)[prev],
            "holding": np.eye(2, dtype=np.float32)[int(obs["holding"])],
        }

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._obs(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(int(VALID[int(action)]))
        return self._obs(obs), reward, terminated, truncated, info


def make_gridhouse(full_env_name, cfg=None, env_config=None, render_mode=None):
    """Sample Factory's env factory: training houses of both families."""
    return SampleFactoryGridhouse("train", FAMILIES, render_mode)


def sample_factory_cfg(steps: int, num_envs: int, train_dir: str, seed: int = 0):
    """Sample Factory's configuration from its own parser: its defaults, but for device, budget and envs."""
    workers = min(multiprocessing.cpu_count(), num_envs // 2)  # its default: one worker a core
    while num_envs % (2 * workers):  # each worker's envs split in two halves (its double-buffered sampling)
        workers -= 1
    argv = [f"--env={ENV_NAME}", "--experiment=appo", f"--train_dir={train_dir}", "--device=cpu", f"--seed={seed}",
            f"--train_for_env_steps={steps}", f"--num_workers={workers}",
            f"--num_envs_per_worker={num_envs // workers}"]  # fmt: skip
    parser, _ = parse_sf_args(argv)
    return parse_full_cfg(parser, argv)


def latest_checkpoint(cfg) -> dict:
    """The run's last checkpoint, read with weights_only=False: Sample Factory pickles numpy scalars into it, which
    torch >= 2.6 refuses by default (its own `Learner.load_checkpoint` then returns None); the file is the one
    this run has just written."""
    checkpoints = Learner.get_checkpoints(Learner.checkpoint_dir(cfg, 0))
    if not checkpoints:
        raise RuntimeError(f"Sample Factory wrote no checkpoint under {Learner.checkpoint_dir(cfg, 0)}")
    return torch.load(checkpoints[-1], map_location="cpu", weights_only=False)


def train(steps: int, num_envs: int, train_dir: str, seed: int = 0):
    cfg = sample_factory_cfg(steps, num_envs, train_dir, seed)
    start = time.perf_counter()
    status = run_rl(cfg)
    elapsed = time.perf_counter() - start
    if status != ExperimentStatus.SUCCESS:
        raise RuntimeError(f"Sample Factory training ended with status {status}")
    sps = latest_checkpoint(cfg)["env_steps"] / elapsed  # the learner's count: whole 1024-step batches, past the budget
    return sps, cfg


@torch.no_grad()
def evaluate(cfg, episodes: int) -> dict[str, float]:
    """The trained policy on unseen houses, sampling its actions, as Sample Factory's `enjoy` runs it."""
    cfg = load_from_checkpoint(cfg)
    probe = SampleFactoryGridhouse("eval", FAMILIES)
    model = create_actor_critic(cfg, probe.observation_space, probe.action_space)
    model.eval()
    model.model_to_device(torch.device("cpu"))
    model.load_state_dict(latest_checkpoint(cfg)["model"])
    success = {}
    for family in FAMILIES:
        env, wins = SampleFactoryGridhouse("eval", (family,)), 0
        for house in range(episodes):
            obs, _ = env.reset(seed=house, options={"family": family, "house": house})
            rnn_states = torch.zeros([1, get_rnn_size(cfg)], dtype=torch.float32)
            done, info = False, {}
            while not done:
                batch = {key: torch.from_numpy(np.asarray(value))[None] for key, value in obs.items()}
                out = model(prepare_and_normalize_obs(model, batch), rnn_states)
                rnn_states = out["new_rnn_states"]
                obs, _, terminated, truncated, info = env.step(int(out["actions"].item()))
                done = terminated or truncated
            wins += bool(info["success"])
        success[family] = wins / episodes
    return success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8192, help="env steps to train for")
    parser.add_argument("--episodes", type=int, default=50, help="unseen houses per family afterwards")
    parser.add_argument("--num-envs", type=int, default=NUM_ENVS, help="envs sampled at once (even)")
    parser.add_argument("--seed", type=int, default=0, help="Sample Factory's --seed (the unseen houses stay the same)")
    args = parser.parse_args()
    if args.num_envs < 2 or args.num_envs % 2:
        parser.error("--num-envs must be even: Sample Factory splits each worker's envs in two halves")
    register_env(ENV_NAME, make_gridhouse)
    with tempfile.TemporaryDirectory() as train_dir:
        sps, cfg = train(args.steps, args.num_envs, train_dir, args.seed)
        success = evaluate(cfg, args.episodes)
    print(f"envs={args.num_envs} steps={args.steps} episodes={args.episodes} seed={args.seed}")
    print(f"sps_sample_factory={sps:.0f}")
    for family, rate in success.items():
        print(f"success_sample_factory_{family}={rate:.3f}")


if __name__ == "__main__":
    main()
