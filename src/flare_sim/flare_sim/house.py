"""A generated house: BabyAI's room grid with open doors, scattered objects and one posed goal.

The layout, the objects and the agent's start depend only on the house seed; the family then poses a goal in
that house. Doors are open because the Stretch vocabulary has no "open door" action.
"""

from __future__ import annotations

import random

from minigrid.envs.babyai.core.roomgrid_level import RejectSampling, RoomGridLevel

from flare_sim.config import GridhouseConfig
from flare_sim.egoview import EgocentricView
from flare_sim.tasks import TaskFamily

_UNLIMITED = 10**9  # the environment wrapper enforces the family's step limit itself
_MAX_TRIES = 1000


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
