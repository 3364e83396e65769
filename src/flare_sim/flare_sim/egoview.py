"""minigrid's egocentric 7 x 7 view encoding, computed with numpy from a cached encoding of the whole grid.

minigrid's own `gen_obs` slices and rotates Grid objects cell by cell (about half a millisecond a step);
this gives the same array (tests compare the two on random trajectories) an order of magnitude faster.
Between two observations only the cell in front of the agent can change (pick up / drop), so that one cell
is re-encoded each call and the whole grid only when a new house is generated.
"""

from __future__ import annotations

import functools

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from flare_sim.cameras import AGENT_X, AGENT_Y, VIEW

_WALL = np.array([OBJECT_TO_IDX["wall"], COLOR_TO_IDX["grey"], 0], dtype=np.uint8)
_EMPTY = np.array([OBJECT_TO_IDX["empty"], 0, 0], dtype=np.uint8)
_WALL_T, _DOOR_T = OBJECT_TO_IDX["wall"], OBJECT_TO_IDX["door"]


def _encode_cell(cell) -> np.ndarray:
    return _EMPTY if cell is None else np.asarray(cell.encode(), dtype=np.uint8)


def _encode_grid(grid) -> np.ndarray:
    """Grid.encode() without its per-cell Python indexing: [x, y, 3] uint8."""
    codes = [_EMPTY if c is None else c.encode() for c in grid.grid]  # row-major: index = y * width + x
    return np.asarray(codes, dtype=np.uint8).reshape(grid.height, grid.width, 3).transpose(1, 0, 2)


class EgocentricView:
    """Callable returning the agent's view as minigrid encodes it: [x, y, (type, colour, state)] uint8."""

    def __init__(self) -> None:
        self._grid = None
        self._padded = np.empty((0, 0, 3), dtype=np.uint8)

    def __call__(self, level) -> np.ndarray:
        width, height = level.grid.width, level.grid.height
        if level.grid is not self._grid:
            self._padded = np.empty((width + 2 * VIEW, height + 2 * VIEW, 3), dtype=np.uint8)
            self._padded[:] = _WALL  # minigrid shows outside-the-map cells as walls
            self._padded[VIEW : VIEW + width, VIEW : VIEW + height] = _encode_grid(level.grid)
            self._grid = level.grid
        else:
            fx, fy = level.front_pos
            if 0 <= fx < width and 0 <= fy < height:
                self._padded[fx + VIEW, fy + VIEW] = _encode_cell(level.grid.get(fx, fy))
        top_x, top_y, _, _ = level.get_view_exts()
        view = self._padded[top_x + VIEW : top_x + 2 * VIEW, top_y + VIEW : top_y + 2 * VIEW]
        view = np.rot90(view, k=-(level.agent_dir + 1), axes=(0, 1))  # minigrid's rotate_left, dir + 1 times
        types, states = view[..., 0], view[..., 2]
        opaque = (types == _WALL_T) | ((types == _DOOR_T) & (states != 0))
        out = np.where(_visible(opaque.tobytes())[..., None], view, np.uint8(0))
        out[AGENT_X, AGENT_Y] = _encode_cell(level.carrying)
        return out


@functools.lru_cache(maxsize=8192)
def _visible(opaque: bytes) -> np.ndarray:
    """Visibility mask for a 7 x 7 occlusion pattern; patterns recur (walls, doorways), so each is computed once."""
    mask = np.asarray(_visibility(np.frombuffer(opaque, dtype=bool).reshape(VIEW, VIEW).tolist()))
    mask.flags.writeable = False  # shared between calls
    return mask


def _visibility(opaque: list[list[bool]]) -> list[list[bool]]:
    """minigrid's Grid.process_vis on plain lists, indexed [x][y], agent at the bottom centre."""
    mask = [[False] * VIEW for _ in range(VIEW)]
    mask[AGENT_X][AGENT_Y] = True
    for j in reversed(range(VIEW)):
        for i in range(VIEW - 1):
            if mask[i][j] and not opaque[i][j]:
                mask[i + 1][j] = True
                if j > 0:
                    mask[i + 1][j - 1] = mask[i][j - 1] = True
        for i in reversed(range(1, VIEW)):
            if mask[i][j] and not opaque[i][j]:
                mask[i - 1][j] = True
                if j > 0:
                    mask[i - 1][j - 1] = mask[i][j - 1] = True
    return mask
