"""Gridhouse settings. The defaults are the houses the shipped demo model is trained and evaluated on."""

from __future__ import annotations

from dataclasses import dataclass

# Disjoint seed ranges: a training run only ever draws houses from TRAIN_HOUSES, evaluation from EVAL_HOUSES,
# so "unseen houses" are unseen by construction.
TRAIN_HOUSES = range(0, 1_000_000)
EVAL_HOUSES = range(1_000_000, 1_010_000)
SPLITS = {"train": TRAIN_HOUSES, "eval": EVAL_HOUSES}


@dataclass(frozen=True)
class GridhouseConfig:
    """House size, clutter, camera resolution and reward."""

    num_rows: int = 2  # rooms per column
    num_cols: int = 2  # rooms per row
    room_size: int = 6  # cells per room side, walls included
    objects_per_room: int = 2  # keys, balls and boxes scattered over the house (on average per room)
    nav_tile_px: int = 8  # navigation camera: 7 x 7 cells ahead of the agent
    manip_tile_px: int = 8  # manipulation camera: the 3 x 3 cells around the gripper
    success_reward: float = 10.0  # FLaRe: sparse reward, success only
    step_limit_scale: float = 1.0  # multiplies every family's step limit

    def __post_init__(self) -> None:
        if self.num_rows < 1 or self.num_cols < 1 or self.num_rows * self.num_cols < 2:
            raise ValueError(f"a house needs at least 2 rooms, got {self.num_rows} x {self.num_cols}")
        if self.room_size < 5:
            raise ValueError(f"room_size must be >= 5 (walls included), got {self.room_size}")
        if self.objects_per_room < 1:
            raise ValueError(f"objects_per_room must be >= 1, got {self.objects_per_room}")
        if self.step_limit_scale <= 0:
            raise ValueError(f"step_limit_scale must be > 0, got {self.step_limit_scale}")
