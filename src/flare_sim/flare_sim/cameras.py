"""Egocentric camera frames rendered from the agent's 7 x 7 view by table look-up.

Each (object, colour, state) cell code maps to a pre-rendered minigrid tile, so a frame is one numpy gather
instead of per-cell drawing: fast enough for thousands of steps per second with frames on.
- navigation camera: the whole 7 x 7 view ahead of the agent (the agent at the bottom centre, facing up);
- manipulation camera: the 3 x 3 cells around the gripper (the agent's cell, showing what it holds, and the
  cells ahead and beside it), at a higher resolution, like Stretch's arm-facing camera.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import WorldObj

VIEW = 7  # minigrid's agent view size
AGENT_X, AGENT_Y = VIEW // 2, VIEW - 1  # where the agent sits in its own view
# The manipulation camera's cells, as [rows, cols] of the view: the agent's row and two ahead, one each side.
MANIP_CELLS = (slice(AGENT_Y - 2, AGENT_Y + 1), slice(AGENT_X - 1, AGENT_X + 2))
# Each camera's cells of the view, [rows, cols], in the order its frame draws them.
CAMERA_VIEW_CELLS = {"nav": (slice(None), slice(None)), "manip": MANIP_CELLS}
_N_TYPES, _N_COLORS, _N_STATES = len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX)
_UNSEEN_RGB = (40, 40, 40)


class _TileTable:
    """Pre-rendered tiles indexed by flat cell code, rendered on first sight (most codes never occur)."""

    def __init__(self, tile_px: int) -> None:
        n = _N_TYPES * _N_COLORS * _N_STATES
        self.tile_px = tile_px
        self.cells = np.zeros((n, tile_px, tile_px, 3), dtype=np.uint8)
        self.agent = np.zeros_like(self.cells)
        self._ready = np.zeros(n, dtype=bool)

    def ensure(self, codes: np.ndarray) -> None:
        if self._ready[codes].all():
            return
        for code in np.unique(codes[~self._ready[codes]]).tolist():
            t, rest = divmod(code, _N_COLORS * _N_STATES)
            c, s = divmod(rest, _N_STATES)
            obj = _decode(t, c, s)
            if t == OBJECT_TO_IDX["unseen"]:
                self.cells[code] = _UNSEEN_RGB
            else:
                self.cells[code] = Grid.render_tile(obj, tile_size=self.tile_px)
            self.agent[code] = Grid.render_tile(obj, agent_dir=3, tile_size=self.tile_px)
            self._ready[code] = True


@cache
def tile_table(tile_px: int) -> _TileTable:
    return _TileTable(tile_px)


def _decode(t: int, c: int, s: int) -> WorldObj | None:
    try:
        return WorldObj.decode(t, c, s)
    except (AssertionError, ValueError, KeyError):
        return None


def _codes(view: np.ndarray) -> np.ndarray:
    """minigrid's [x, y, (type, colour, state)] encoding -> flat codes laid out [row=y, col=x]."""
    v = view.astype(np.intp)
    return ((v[..., 0] * _N_COLORS + v[..., 1]) * _N_STATES + v[..., 2]).T


def _assemble(codes: np.ndarray, tile_px: int, agent_at: tuple[int, int]) -> np.ndarray:
    table = tile_table(tile_px)
    table.ensure(codes)
    tiles = table.cells[codes]  # [rows, cols, px, px, 3]
    ay, ax = agent_at
    tiles[ay, ax] = table.agent[codes[ay, ax]]
    rows, cols = codes.shape
    return tiles.transpose(0, 2, 1, 3, 4).reshape(rows * tile_px, cols * tile_px, 3)


def navigation_frame(view: np.ndarray, tile_px: int) -> np.ndarray:
    """The full egocentric view as an RGB frame of (7 * tile_px) x (7 * tile_px)."""
    return _assemble(_codes(view), tile_px, (AGENT_Y, AGENT_X))


def manipulation_frame(view: np.ndarray, tile_px: int) -> np.ndarray:
    """The 3 x 3 cells around the gripper as an RGB frame of (3 * tile_px) x (3 * tile_px)."""
    codes = _codes(view)[MANIP_CELLS]
    return _assemble(codes, tile_px, (2, 1))
