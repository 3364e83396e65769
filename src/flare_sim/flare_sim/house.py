"""A generated house: BabyAI's room grid with open doors, scattered objects and one posed goal.

The layout, the objects and the agent's start depend only on the house seed; the family then poses a goal in
that house. Doors are open because the Stretch vocabulary has no "open door" action.
"""

from __future__ import annotations

import math
import random

from minigrid.core.constants import COLOR_NAMES
from minigrid.core.roomgrid import reject_next_to
from minigrid.core.world_object import Ball, Box, Key
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling, RoomGridLevel

from flare_sim.config import GridhouseConfig
from flare_sim.egoview import EgocentricView
from flare_sim.tasks import TaskFamily

_UNLIMITED = 10**9  # the environment wrapper enforces the family's step limit itself
_MAX_TRIES = 1000
_OBJECT_KINDS = ["key", "ball", "box"]  # minigrid's order: draws index into it
_OBJECT_CLASSES = {"key": Key, "ball": Ball, "box": Box}


class HouseLevel(RoomGridLevel):
    """One house generator. Set `family` before `reset(seed=house_seed)`."""

    def __init__(self, config: GridhouseConfig, family: TaskFamily) -> None:
        self.config = config
        self.family = family
        self._egocentric_view = EgocentricView()
        super().__init__(
            room_size=config.room_size,
            num_rows=config.num_rows,
            num_cols=config.num_cols,
            max_steps=_UNLIMITED,
        )

    def _rand_int(self, low: int, high: int) -> int:
        # minigrid draws each integer through numpy's Generator (~3 us a call, hundreds per house); a Python
        # RNG seeded from it at every reset keeps houses deterministic per seed at a tenth of the cost.
        return low + int(self._house_rng.random() * (high - low))

    def _rand_pos(self, x_low: int, x_high: int, y_low: int, y_high: int) -> tuple[int, int]:
        return self._rand_int(x_low, x_high), self._rand_int(y_low, y_high)

    def place_obj(self, obj, top=None, size=None, reject_fn=None, max_tries=math.inf) -> tuple[int, int]:
        """minigrid's rejection sampling with the same draws in the same order (so the same houses), without its
        per-try numpy comparison and bounds-checked grid reads: placing objects was a fifth of a reset."""
        grid = self.grid
        top = (0, 0) if top is None else (max(top[0], 0), max(top[1], 0))
        size = (grid.width, grid.height) if size is None else size
        x_high, y_high = min(top[0] + size[0], grid.width), min(top[1] + size[1], grid.height)
        agent = None if self.agent_pos is None else tuple(int(v) for v in self.agent_pos)
        cells, width = grid.grid, grid.width
        tries = 0
        while True:
            if tries > max_tries:
                raise RecursionError("rejection sampling failed in place_obj")
            tries += 1
            pos = (self._rand_int(top[0], x_high), self._rand_int(top[1], y_high))
            if cells[pos[1] * width + pos[0]] is not None or pos == agent:
                continue
            if reject_fn and reject_fn(self, pos):
                continue
            break
        grid.set(pos[0], pos[1], obj)
        if obj is not None:
            obj.init_pos = obj.cur_pos = pos
        return pos

    def _gen_grid(self, width: int, height: int) -> None:
        self._house_rng = random.Random(int(self.np_random.integers(2**63)))
        # RoomGridLevel retries forever and prints each rejection; we retry quietly and give up loudly.
        for _ in range(_MAX_TRIES):
            try:
                super(RoomGridLevel, self)._gen_grid(width, height)
                self.gen_mission()
                self.validate_instrs(self.instrs)
            except RejectSampling:
                continue
            self.surface = self.instrs.surface(self)
            self.mission = self.surface
            return
        raise RuntimeError(
            f"could not pose a {self.family.name!r} goal in {_MAX_TRIES} tries: house config {self.config}"
        )

    def gen_obs(self) -> dict:
        """minigrid's observation, with the view computed by the fast numpy path (same values)."""
        return {"image": self._egocentric_view(self), "direction": self.agent_dir, "mission": self.mission}

    def gen_mission(self) -> None:
        self.place_agent()
        self.connect_all()
        for row in self.room_grid:
            for room in row:
                for door in room.doors:
                    if door is not None:
                        door.is_open = True
        objs = self._scatter_objects()
        self.instrs = self.family.pose(self, objs)

    def add_distractors(self, i=None, j=None, num_distractors: int = 10, all_unique: bool = True) -> list:
        """RoomGrid.add_distractors with the same draws in the same order (so the same houses), without its
        per-draw list copies: scattering objects, retries included, is most of a reset."""
        if i is not None or j is not None or all_unique:
            return super().add_distractors(i, j, num_distractors, all_unique)
        dists = []
        for _ in range(num_distractors):
            color = COLOR_NAMES[self._rand_int(0, len(COLOR_NAMES))]
            kind = _OBJECT_KINDS[self._rand_int(0, len(_OBJECT_KINDS))]
            room_i, room_j = self._rand_int(0, self.num_cols), self._rand_int(0, self.num_rows)
            room = self.room_grid[room_j][room_i]
            obj = _OBJECT_CLASSES[kind](color)
            self.place_obj(obj, room.top, room.size, reject_fn=reject_next_to, max_tries=1000)
            room.objs.append(obj)
            dists.append(obj)
        return dists

    def _scatter_objects(self) -> list:
        """Place the house's objects so that every one is reachable without moving another.

        Re-scattering only the objects (not the whole house) when one blocks another keeps generation cheap.
        """
        n_objects = self.config.objects_per_room * self.num_rows * self.num_cols
        for _ in range(_MAX_TRIES):
            objs = self.add_distractors(num_distractors=n_objects, all_unique=False)
            if self._all_objects_reachable():
                return objs
            for obj in objs:
                self.grid.set(*obj.cur_pos, None)
                self.room_from_pos(*obj.cur_pos).objs.remove(obj)
        raise RejectSampling("could not scatter the objects reachably")

    def _all_objects_reachable(self) -> bool:
        """RoomGridLevel.check_objs_reachable's rule (objects block, open doors do not) as a tight flood fill."""
        width, cells = self.grid.width, self.grid.grid
        start = self.agent_pos[1] * width + self.agent_pos[0]
        reached = bytearray(len(cells))
        stack = [start]
        while stack:
            idx = stack.pop()
            if reached[idx]:
                continue
            reached[idx] = 1
            cell = cells[idx]
            if cell is not None and cell.type != "door" and idx != start:
                continue  # reachable, but nothing behind it is reachable through it
            stack.extend((idx + 1, idx - 1, idx + width, idx - width))  # the outer wall bounds the fill
        return all(reached[i] for i, c in enumerate(cells) if c is not None and c.type != "wall")
