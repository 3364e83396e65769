"""Perception pretraining: the embedded simulator's stand-in for DINOv2.

FLaRe (and SPOC) keep a general-purpose pretrained visual encoder frozen through imitation and RL. No such
model exists for gridhouse frames and none can be downloaded, so this pretrains one: each camera's CNN learns
to say what is in every cell of its view (object type, colour and state, minigrid's symbolic encoding) from
frames of random walks in training houses. The result knows nothing about goals or tasks, like DINOv2, and is
then frozen for BC and PPO (`--visual-from`). An encoder learned by BC alone keeps only what imitation needed
and loses object colours (a linear probe recovered colour+type of the object ahead 32 % of the time vs 8 %
chance), which no amount of RL over frozen features can restore.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from torch import nn
from tqdm import tqdm

from flare_sim import TRAIN_FAMILIES, GridhouseEnv
from flare_sim.cameras import MANIP_CELLS
from flare_training.checkpoint import CHECKPOINT_NAME, save_checkpoint
from flare_training.inputs import ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer
from flare_training.model import ActorCritic, ModelConfig

_FIELDS = (len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX))  # classes per cell: type, colour, state
_MOVES = np.array([0, 0, 0, 1, 2, 8, 19])  # m m m r l p d: wander, sometimes pick up or drop


@dataclass
class PerceptionConfig:
    out: str = "runs/perception"
    frames: int = 40_000  # random-walk frames from training houses
    epochs: int = 6
    batch: int = 256
    lr: float = 1e-3
    seed: int = 0
    model: ModelConfig = ModelConfig()


def collect_frames(n: int, seed: int) -> dict[str, np.ndarray]:
    """Random walks; per frame both cameras and their cells' symbolic codes, laid out [row, col, field]."""
    env = GridhouseEnv(families=TRAIN_FAMILIES, split="train")
    rng = np.random.default_rng(seed)
    out = {"nav_rgb": [], "manip_rgb": [], "nav_cells": [], "manip_cells": []}
    obs, _ = env.reset(seed=seed)
    for i in tqdm(range(n), desc="frames", unit="frame", leave=False):
        cells = env._view.transpose(1, 0, 2)  # minigrid [x, y] -> [row, col], as the frames are drawn
        out["nav_rgb"].append(obs["nav_rgb"])
        out["manip_rgb"].append(obs["manip_rgb"])
        out["nav_cells"].append(cells)
        out["manip_cells"].append(cells[MANIP_CELLS])
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(_MOVES)))
        if terminated or truncated or rng.random() < 0.03:
            obs, _ = env.reset(seed=seed * 1_000_003 + i)
    return {k: np.stack(v) for k, v in out.items()}


class CellHeads(nn.Module):
    """Per-cell classifiers over a camera's feature map: type, colour and state of what each cell shows."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Conv1d(channels, n, 1) for n in _FIELDS)

    def loss(self, fmap: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fmap [B, C, cells]; cells [B, cells, 3] codes -> summed cross-entropy, and all-fields accuracy."""
        losses, correct = [], []
        for field, head in enumerate(self.heads):
            logits = head(fmap)
            losses.append(F.cross_entropy(logits, cells[..., field]))
            correct.append(logits.argmax(1) == cells[..., field])
        return sum(losses), torch.stack(correct).all(0).float().mean()


def train_perception(config: PerceptionConfig) -> Path:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    data = collect_frames(config.frames, config.seed)
    adapter = ObservationAdapter(gridhouse_tokenizer(config.model.max_goal_tokens), gridhouse_cameras())
    model_config = ModelConfig(**{**asdict(config.model), "fusion": "film", "vocab_size": len(adapter.tokenizer)})
    model = ActorCritic(model_config, adapter.camera_shapes, adapter.tokenizer.vocab)
    heads = nn.ModuleDict({name: CellHeads(c) for name, (c, _) in model.visual.maps.items()})
    params = list(model.visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    n = len(data["nav_rgb"])
    val = np.arange(n) >= int(n * 0.9)
    keys = {"nav": ("nav_rgb", "nav_cells"), "manip": ("manip_rgb", "manip_cells")}

    def batch_loss(idx: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        frames = adapter.frames({k: data[k][idx] for k in ("nav_rgb", "manip_rgb")})
        total, accuracy = 0.0, {}
        for name, (_, cells_key) in keys.items():
            fmap = model.visual.encoders[name].feature_map(frames[name])
            cells = torch.from_numpy(data[cells_key][idx].reshape(len(idx), -1, 3).astype(np.int64))
            loss, acc = heads[name].loss(fmap, cells)
            total = total + loss
            accuracy[name] = acc.item()
        return total, accuracy

    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()
    train_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    for epoch in range(1, config.epochs + 1):
        rng.shuffle(train_idx)
        for i in tqdm(range(0, len(train_idx), config.batch), desc=f"epoch {epoch}/{config.epochs}", leave=False):
            loss, _ = batch_loss(train_idx[i : i + config.batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss, acc = batch_loss(val_idx[:2000])
        print(f"epoch {epoch}  val loss {val_loss.item():.3f}  cells fully right: "
              + "  ".join(f"{k} {v:.1%}" for k, v in acc.items()))  # fmt: skip
    print(f"pretrained in {time.perf_counter() - start:.0f} s")
    return save_checkpoint(out / CHECKPOINT_NAME, model, adapter, kind="perception", env_steps=0,
                           cell_accuracy=acc, config=asdict(config))  # fmt: skip
