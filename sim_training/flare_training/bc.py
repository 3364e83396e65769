"""Behaviour cloning, SPOC-style: collect shortest-path-expert demonstrations in parallel, then train the
actor with cross-entropy over whole-episode sequences (block-causal, exactly as the policy runs).

Optionally DAgger (Ross et al. 2011) after it: the trained policy acts, the expert labels every state the policy
visits (the expert replans from wherever it is), the labelled episodes join the training set and training goes
on; a cloned policy's errors come from states the expert never visits, and this is where they get labels."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from flare_core.actions import action_by_name
from flare_core.preprocessing import PreprocessConfig, resample
from flare_sim import CAMERA_KEYS
from flare_sim.cameras import CAMERA_VIEW_CELLS
from flare_training import distributed
from flare_training.checkpoint import CHECKPOINT_NAME, check_resume, load_checkpoint, save_checkpoint
from flare_training.distributed import GradientSync
from flare_training.envs import Simulator, get_simulator
from flare_training.evaluate import choose, evaluate_policy, policy_logits, save_results
from flare_training.inputs import ACTION_MASK, ObservationAdapter, to_device
from flare_training.model import ActorCritic, ModelConfig
from flare_training.thor.controller import ThorConfig

_FIELDS = ("nav_rgb", "manip_rgb", "prev_action", "holding")
_LABELS = ("action", "goal_cells")  # from the expert's info
END = action_by_name("end").index
DAGGER_ENVS = 16  # envs a DAgger round's policy plays at once (one batched step for all of them)


@dataclass
class BCConfig:
    out: str = "runs/bc"
    demos: int = 400  # successful expert episodes; "modest" on purpose: BC should plateau below the expert
    workers: int = 2  # subprocess envs collecting demonstrations
    epochs: int = 20
    batch_episodes: int = 16
    lr: float = 2e-4  # FLaRe fine-tunes with 10x less
    visual_from: str = ""  # a pretrained perception checkpoint: its visual encoder is used frozen (FLaRe/SPOC)
    validation_fraction: float = 0.1
    eval_episodes: int = 100  # unseen houses per family for the final evaluation (0: skip)
    # Task families to demonstrate; empty: those the simulator has an expert for (gridhouse: its training
    # families; thor: ObjectNavType)
    families: tuple[str, ...] = ()
    env: str = "gridhouse"  # gridhouse (embedded) or thor (AI2-THOR, CHORES tasks; see the --thor-* options)
    thor: ThorConfig = field(default_factory=ThorConfig)
    dagger_rounds: int = 0  # DAgger rounds after the BC epochs (0: plain BC)
    dagger_episodes: int = 2000  # per round: training episodes the policy plays (sampling), the expert labelling
    dagger_epochs: int = 2  # per round: epochs over everything labelled so far
    # Weight of the goal-cell loss (binary cross-entropy of the model's per-cell "this shows the goal's object"
    # logits against the gridhouse's labels, summed over a step's cells) beside the action loss; used when the
    # model has --model-goal-cells
    goal_cell_coef: float = 1.0
    seed: int = 0
    device: str = "cpu"  # where the network trains: cpu, or cuda (each torchrun rank its local rank's GPU, nccl)
    model: ModelConfig = field(default_factory=ModelConfig)


# What a resumed BC run may change: where it writes, how long it trains, how it is evaluated, the machine's share.
BC_RESUMABLE = {"out", "workers", "epochs", "eval_episodes", "dagger_rounds", "dagger_episodes", "thor", "device"}


@dataclass
class Demos:
    """Labelled episodes (the expert's successful ones; with DAgger also the policy's, expert-labelled), stored
    flat: step arrays plus episode start offsets."""

    nav_rgb: np.ndarray
    manip_rgb: np.ndarray
    goal: np.ndarray  # one goal text per episode
    prev_action: np.ndarray
    holding: np.ndarray
    action: np.ndarray
    goal_cells: np.ndarray  # per step, the view's cells that show the goal's object ([steps, 0] where unknown)
    starts: np.ndarray  # episode i spans starts[i]:starts[i+1]

    def __len__(self) -> int:
        return len(self.goal)

    def episode(self, i: int) -> slice:
        return slice(int(self.starts[i]), int(self.starts[i + 1]))

    def first(self, n: int) -> Demos:
        """The first n episodes (every rank of a DD run must train on as many)."""
        end = int(self.starts[n])
        steps = {k: getattr(self, k)[:end] for k in (*_FIELDS, *_LABELS)}
        return Demos(goal=self.goal[:n], starts=self.starts[: n + 1], **steps)

    def __add__(self, other: Demos) -> Demos:
        if self.has_goal_cells != other.has_goal_cells:  # e.g. demonstrations saved before labels existed
            return self.without_goal_cells() + other.without_goal_cells()
        steps = {k: np.concatenate([getattr(self, k), getattr(other, k)]) for k in (*_FIELDS, *_LABELS)}
        starts = np.concatenate([self.starts, self.starts[-1] + other.starts[1:]])
        return Demos(goal=np.concatenate([self.goal, other.goal]), starts=starts, **steps)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **asdict(self))

    @classmethod
    def load(cls, path: Path) -> Demos:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        arrays.setdefault("goal_cells", np.zeros((len(arrays["action"]), 0), dtype=bool))  # collected without them
        return cls(**arrays)

    @property
    def has_goal_cells(self) -> bool:
        return self.goal_cells.ndim == 3 and self.goal_cells.shape[1] > 0

    def without_goal_cells(self) -> Demos:
        return replace(self, goal_cells=np.zeros((len(self.action), 0), dtype=bool))


class SampledPolicy:
    """The policy acting in a batch of envs through its KV-cache, sampling from its masked distribution (DAgger's
    learner-driven rollouts)."""

    def __init__(self, model: ActorCritic, adapter: ObservationAdapter, num_envs: int, mask: torch.Tensor, seed: int):
        self.model, self.adapter, self.mask = model.eval(), adapter, mask
        self.cache, _ = model.new_caches(num_envs)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, obs: dict) -> np.ndarray:
        logits = policy_logits(self.model, self.adapter, obs, self.cache)
        return choose(logits, greedy=False, generator=self.generator, mask=self.mask).numpy()

    def ended(self, rows: np.ndarray) -> None:
        self.cache.reset(torch.as_tensor(rows))


def collect_demos(
    count: int, workers: int, families: tuple[str, ...], seed: int, sim: Simulator, cameras: tuple = (),
    policy: SampledPolicy | None = None, num_envs: int = 0,
) -> Demos:  # fmt: skip
    """`count` labelled episodes on training houses from `num_envs` envs (default: one per worker) stepped by
    `workers` subprocesses. The expert acts and only its successful episodes are kept; or, with `policy`
    (DAgger), the policy acts, the expert labels every step, and every episode is kept. Frames of `cameras`
    whose preprocessing neither rotates nor crops are kept resampled to the model's size (an AI2-THOR frame:
    250 KB -> 16 KB), which preprocessing then leaves as it is: the same model inputs."""
    shrink = {CAMERA_KEYS[c.name]: c.preprocessing for c in cameras if _idempotent(c.preprocessing)}
    num_envs = num_envs or workers
    envs = sim.vector(num_envs, families, "train", expert=True, workers=workers)
    steps: dict[str, list] = {k: [] for k in (*_FIELDS, *_LABELS)}
    goals, starts = [], [0]
    current = [{k: [] for k in (*_FIELDS, *_LABELS)} for _ in range(num_envs)]
    current_goal = [""] * num_envs
    try:
        obs, info = envs.reset(seed=seed)
        current_goal = list(obs["goal"])
        with tqdm(total=count, desc="demos" if policy is None else "dagger", unit="ep") as bar:
            while len(goals) < count:
                labels = np.asarray(info["expert_action"])
                cells = info.get("goal_cells", np.zeros((num_envs, 0), dtype=bool))  # AI2-THOR has none
                for i in range(num_envs):
                    for k in _FIELDS:
                        current[i][k].append(resample(obs[k][i], shrink[k], k) if k in shrink else obs[k][i])
                    current[i]["action"].append(labels[i])
                    current[i]["goal_cells"].append(cells[i])
                acting = labels if policy is None else policy(obs)
                # An expert without an action (never seen in testing) ends its episode, which is then dropped.
                obs, _, terminated, truncated, info = envs.step(np.where(labels < 0, END, acting))
                ended = np.flatnonzero(terminated | truncated)
                if policy is not None and len(ended):
                    policy.ended(ended)
                for i in ended:
                    labelled = min(current[i]["action"]) >= 0
                    keep = labelled and (policy is not None or info["final_info"]["success"][i])
                    if keep and len(goals) < count:
                        for k in steps:
                            steps[k].extend(current[i][k])
                        goals.append(current_goal[i])
                        starts.append(len(steps["action"]))
                        bar.update()
                    current[i] = {k: [] for k in current[i]}
                    current_goal[i] = obs["goal"][i]
    finally:
        envs.close()
    arrays = {k: np.asarray(v) for k, v in steps.items()}
    return Demos(goal=np.asarray(goals), starts=np.asarray(starts), **arrays)


def _idempotent(config: PreprocessConfig) -> bool:
    crops = (config.crop_top, config.crop_bottom, config.crop_left, config.crop_right)
    return not config.rotate_cw and not any(crops)


def _batch(demos: Demos, episodes: np.ndarray, adapter: ObservationAdapter) -> dict[str, torch.Tensor]:
    """Pad whole episodes to one length; padding gets episode id -1 and is excluded from the loss."""
    lengths = [demos.starts[i + 1] - demos.starts[i] for i in episodes]
    b, t = len(episodes), max(lengths)
    index = np.zeros((b, t), dtype=np.int64)
    valid = np.zeros((b, t), dtype=bool)
    for row, (i, n) in enumerate(zip(episodes, lengths, strict=True)):
        index[row, :n] = np.arange(demos.starts[i], demos.starts[i] + n)
        valid[row, :n] = True
    flat = index.reshape(-1)
    frames = adapter.frames({"nav_rgb": demos.nav_rgb[flat], "manip_rgb": demos.manip_rgb[flat]})
    goals = adapter.goals([demos.goal[i] for i in episodes])
    batch = {
        "frames": {k: v.reshape(b, t, *v.shape[1:]) for k, v in frames.items()},
        "goal": goals[:, None].expand(b, t, -1),
        "prev_action": torch.from_numpy(demos.prev_action[index]),
        "holding": torch.from_numpy(demos.holding[index]),
        "step": torch.arange(t)[None].expand(b, t),
        "episode": torch.where(torch.from_numpy(valid), 0, -1 - torch.arange(t)[None]),
        "action": torch.from_numpy(demos.action[index]),
        "valid": torch.from_numpy(valid),
    }
    if demos.has_goal_cells:
        cells = torch.from_numpy(demos.goal_cells[index])  # [b, t, rows, cols]
        batch["goal_cells"] = {cam: cells[..., r, c].flatten(-2).float() for cam, (r, c) in CAMERA_VIEW_CELLS.items()}
    return batch


def bc_loss(
    model: ActorCritic, batch: dict, mask: torch.Tensor = ACTION_MASK, goal_cell_coef: float = 0.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of the logits, under the embodiment's mask, against the expert's actions, plus (a model
    with goal-cell heads) `goal_cell_coef` x the heads' binary cross-entropy against the labels. Also the
    action accuracy and the share of steps whose cells the heads all call right."""
    batch = {**batch, "visual": model.visual(batch["frames"])}
    out = model.actor.sequence(batch)
    logits = out["logits"].masked_fill(~mask, float("-inf"))
    valid = batch["valid"]
    loss = F.cross_entropy(logits[valid], batch["action"][valid])
    metrics = {"accuracy": (logits[valid].argmax(-1) == batch["action"][valid]).float().mean()}
    predicted = out.get("goal_cells", {})  # per camera with a goal-cell head
    if predicted:
        labels = {cam: batch["goal_cells"][cam][valid] for cam in predicted}
        # summed over a step's cells (a mean over ~60 cells, nearly all negative, barely moves the heads)
        cell_loss = sum(_cell_bce(predicted[c][valid], labels[c]) for c in predicted)
        loss = loss + goal_cell_coef * cell_loss
        right = torch.stack([((predicted[c][valid] > 0) == labels[c].bool()).all(-1) for c in predicted]).all(0)
        metrics.update(goal_cell_loss=cell_loss.detach(), goal_cells_right=right.float().mean())
    return loss, metrics


def _cell_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[steps, cells] -> binary cross-entropy summed over cells, averaged over steps."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(-1).mean()


@torch.no_grad()
def validation(model: ActorCritic, demos: Demos, episodes: np.ndarray, adapter: ObservationAdapter,
               mask: torch.Tensor, device: torch.device, chunk: int = 64,
               goal_cell_coef: float = 0.0) -> dict[str, float]:  # fmt: skip
    """`bc_loss` and its metrics over the held-back episodes, weighted by valid steps, `chunk` episodes at a
    time: the whole validation set in one batch outgrows memory (3,000 episodes of 30,000 demonstrations did)."""
    sums: dict[str, float] = {}
    steps = 0.0
    for i in range(0, len(episodes), chunk):
        batch = to_device(_batch(demos, episodes[i : i + chunk], adapter), device)
        loss, metrics = bc_loss(model, batch, mask, goal_cell_coef)
        n = float(batch["valid"].sum())
        for k, v in {"loss": loss, **metrics}.items():
            sums[k] = sums.get(k, 0.0) + v.item() * n
        steps += n
    return {k: v / steps for k, v in sums.items()}


def resumable(path: Path, config: BCConfig) -> dict | None:
    """The checkpoint of a BC run to go on with in `path`, None for a new run. Refused: another kind of run, one
    written without its optimiser state, other settings than its own (`BC_RESUMABLE` may change), or epochs done
    that the settings given would not do in that order (fewer BC epochs than done, once a DAgger round began)."""
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("kind") != "bc":
        raise ValueError(f"{path} is a {saved.get('kind')} checkpoint, not a BC run: give BC another --out")
    if "optimizer" not in saved:
        raise ValueError(f"{path} was written without its optimiser state and cannot go on; give a new --out "
                         "(copy its demos.npz there to reuse the demonstrations)")  # fmt: skip
    check_resume(saved.get("config"), config, BC_RESUMABLE)
    planned = [0] * config.epochs + [r for r in range(1, config.dagger_rounds + 1) for _ in range(config.dagger_epochs)]
    done = [row["dagger_round"] for row in saved["history"]]
    if done != planned[: len(done)]:
        raise ValueError(f"{path.parent} has done {len(done)} epochs (DAgger rounds {sorted(set(done))}), which "
                         f"--epochs {config.epochs} --dagger-rounds {config.dagger_rounds} do not begin with; give "
                         "settings that go on from there, or a new --out")  # fmt: skip
    return saved


def train_bc(config: BCConfig) -> Path:
    """One process, or one rank of `torchrun`: each rank collects `demos / ranks` demonstrations of its own and
    trains on them, gradients weighted by valid steps and summed over ranks (data-parallel); rank 0 writes."""
    return distributed.run_ranked(_train_bc, config)


def _train_bc(config: BCConfig, ranks: distributed.Ranks) -> Path:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 7919 * ranks.rank)
    sim = get_simulator(config.env, config.thor)
    families = sim.check(config.families or tuple(f for f in sim.expert_families if f in sim.train_families))
    config = replace(config, families=families)  # recorded as trained (the card's tasks)
    missing = [f for f in families if f not in sim.expert_families]
    if missing:
        raise ValueError(f"no expert demonstrates {missing} in --env {sim.name}; use {', '.join(sim.expert_families)}")
    if config.model.goal_cells and sim.name != "gridhouse":
        raise ValueError(f"--model-goal-cells learns from the gridhouse's goal-cell labels; --env {sim.name} has none")
    saved = resumable(out / CHECKPOINT_NAME, config)
    cameras = sim.cameras()
    demo_path = out / ("demos.npz" if ranks.main else f"demos_rank{ranks.rank}.npz")
    count = -(-config.demos // ranks.world)  # this rank's share; its own houses
    if demo_path.exists() and len(demos := Demos.load(demo_path)) >= count:
        demos = demos.first(count)
        print(f"using {len(demos)} demonstrations from {demo_path}")
    else:
        demos = collect_demos(count, config.workers, families, config.seed + 1_000_003 * ranks.rank, sim, cameras)
        demos.save(demo_path)
    print(f"{len(demos)} episodes, {len(demos.action)} steps (mean {len(demos.action) / len(demos):.1f} per episode)")

    if config.model.goal_cells and not demos.has_goal_cells:
        raise ValueError(f"--model-goal-cells needs demonstrations labelled with the goal's cells: {demo_path} has "
                         "none (collected before they existed, or from a simulator without them: only gridhouse "
                         "gives them); move it away to collect new ones, or leave out --model-goal-cells")  # fmt: skip
    adapter = ObservationAdapter(sim.tokenizer(config.model.max_goal_tokens), cameras)
    inputs = {"vocab_size": len(adapter.tokenizer), "max_goal_tokens": adapter.tokenizer.max_tokens,
              "max_context": max(config.model.max_context, sim.episode_steps)}  # fmt: skip
    model_config = ModelConfig(**{**asdict(config.model), **inputs})
    model = ActorCritic(model_config, adapter.camera_shapes, adapter.tokenizer.vocab)
    params = list(model.actor.parameters())
    if config.visual_from:
        if model_config.fusion != "film":
            raise ValueError("--visual-from takes a perception encoder's feature maps: add --model-fusion film")
        pretrained, _, _ = load_checkpoint(config.visual_from)
        model.visual.load_state_dict(pretrained.visual.state_dict())
        model.visual.requires_grad_(False)
        print(f"visual encoder: pretrained and frozen, from {config.visual_from}")
    else:
        params += list(model.visual.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    history = []
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        history = saved["history"]
        if ranks.main:
            print(f"resuming {out} after epoch {len(history)}")
    model.to(ranks.device)
    mask = sim.action_mask.to(ranks.device)
    distributed.broadcast_parameters(model, ranks)
    sync = GradientSync(params, ranks)
    order = rng.permutation(len(demos))
    n_val = max(1, int(len(demos) * config.validation_fraction))
    val_episodes, train = order[:n_val], order[n_val:]
    writer = SummaryWriter(out / "tb") if ranks.main else None
    start = time.perf_counter()

    def train_epochs(demos: Demos, train: np.ndarray, epochs: int, round_: int) -> None:
        """`epochs` passes over the `train` episodes of `demos`; validation on the expert's held-back ones. Each
        epoch's order depends on the seed, the rank and the epoch alone, so a resumed run skips the epochs it has
        done and goes on exactly as it would have."""
        done = sum(row["dagger_round"] == round_ for row in history)
        for _ in range(done, epochs):
            epoch = len(history) + 1
            model.train()
            shuffled = np.random.default_rng((config.seed, ranks.rank, epoch)).permutation(train)
            losses = []
            batches = [shuffled[i : i + config.batch_episodes] for i in range(0, len(train), config.batch_episodes)]
            for episodes in tqdm(batches, desc=f"epoch {epoch}/{total_epochs}", unit="batch", leave=False,
                                 disable=not ranks.main):  # fmt: skip
                batch = to_device(_batch(demos, episodes, adapter), ranks.device)
                loss, _ = bc_loss(model, batch, mask, config.goal_cell_coef)
                optimizer.zero_grad()
                loss.backward()
                steps = float(batch["valid"].sum())  # the loss is a mean over valid steps: weigh ranks by them
                sync(steps, distributed.reduce_over_ranks(steps, ranks))
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                losses.append(loss.item())
            model.eval()
            scores = validation(
                model, demos, val_episodes, adapter, mask, ranks.device, goal_cell_coef=config.goal_cell_coef
            )
            row = {"epoch": epoch, "dagger_round": round_, "episodes": len(train), "train_loss": float(np.mean(losses)),
                   **{f"val_{k}": v for k, v in scores.items()},
                   "param_spread": distributed.param_spread(params, ranks)}  # fmt: skip
            history.append(row)
            if not ranks.main:
                continue
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(f"bc/{k}", v, epoch)
            losses_text = f"train loss {row['train_loss']:.3f}  val loss {row['val_loss']:.3f}"
            cells = f"  goal cells right {row['val_goal_cells_right']:.1%}" if "val_goal_cells_right" in row else ""
            print(f"epoch {epoch:3d}  {losses_text}  val acc {row['val_accuracy']:.1%}{cells}")
            save_checkpoint(out / CHECKPOINT_NAME, model, adapter, kind="bc", epoch=epoch, env_steps=0,
                            history=history, config=asdict(config), optimizer=optimizer.state_dict())  # fmt: skip

    total_epochs = config.epochs + config.dagger_rounds * config.dagger_epochs
    train_epochs(demos, train, config.epochs, 0)
    for round_ in range(1, config.dagger_rounds + 1):
        labelled_path = out / (f"dagger{round_}.npz" if ranks.main else f"dagger{round_}_rank{ranks.rank}.npz")
        if labelled_path.exists():  # a resumed run: the round's episodes as its policy played them then
            labelled = Demos.load(labelled_path)
        else:
            policy_seed = config.seed + 7919 * round_ + 104_729 * ranks.rank
            policy = SampledPolicy(model, adapter, DAGGER_ENVS, sim.action_mask, policy_seed)
            house_seed = config.seed + 2_000_003 * round_ + 1_000_003 * ranks.rank
            labelled = collect_demos(-(-config.dagger_episodes // ranks.world), config.workers, families, house_seed,
                                     sim, cameras, policy=policy, num_envs=DAGGER_ENVS)  # fmt: skip
            labelled.save(labelled_path)
        train = np.concatenate([train, len(demos) + np.arange(len(labelled))])  # validation stays the expert's
        demos = demos + labelled
        train_epochs(demos, train, config.dagger_epochs, round_)
    if not ranks.main:
        return out / CHECKPOINT_NAME
    writer.close()
    (out / "bc_history.json").write_text(json.dumps(history, indent=2) + "\n")
    print(f"trained in {time.perf_counter() - start:.0f} s -> {out / CHECKPOINT_NAME}")
    if config.eval_episodes:
        results = evaluate_policy(model, adapter, sim.families, config.eval_episodes, sim=sim)
        save_results(out / "eval.json", results, kind="bc", env_steps=0, episodes=config.eval_episodes)
        for family, r in results.items():
            print(f"  {family:<20} success {r['success']:.0%}  steps {r['mean_steps']:.1f}")
    return out / CHECKPOINT_NAME
