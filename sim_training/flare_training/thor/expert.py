"""A shortest-path expert for ObjectNav in AI2-THOR, for behaviour cloning.

SPOC made its data with planners it has not released (SPOC issue #30); this follows the published reconstruction
in Ai2's RING (`utils/data_generation_utils/navigation_utils.py`, `environment/action_spaces.py`): the path is
AI2-THOR's own `GetShortestPath` to the nearest target (widest nav mesh first), each corner is reached by turning
toward it (30 deg turns beyond 15 deg of bearing, 6 deg turns beyond 10) and moving ahead, a corner within
0.19 m counts as reached, a target visible within 2 m ends the episode. A failed move replans from where the
robot stands. Pickup, Fetch and RoomVisit have no published expert; for them the expert has no action (-1).
"""

from __future__ import annotations

import math

from flare_core.actions import ACTION_NAMES
from flare_training.thor.controller import StretchController
from flare_training.thor.tasks import VISIBLE_DISTANCE, Task

NO_ACTION = -1
REACHED = 0.19  # m: a corner this close is reached
ALIGNED = 10.0  # deg: within this bearing the robot moves ahead
BIG_TURN = 15.0  # deg: beyond it a 30 deg turn, else 6 (RING turns big from 15 on; here exactly 15 see-saws)
LOOK_AROUND = 12  # turns at the end of the path before giving up (a full circle of 30 deg turns)
BLOCKED = 5  # failed moves in a row before giving up (replanning from the same spot gives the same path)


class ObjectNavExpert:
    def __init__(self, controller: StretchController) -> None:
        self.controller = controller
        self.task: Task | None = None
        self.path: list[dict] = []
        self.turns = 0

    def start(self, task: Task) -> None:
        self.task, self.turns, self.blocked = task, 0, 0
        self.path = self._plan() if task.family == "ObjectNavType" else []

    def act(self) -> int:
        """The next action's index, or -1 where the expert has none."""
        if self.task is None or self.task.family != "ObjectNavType":
            return NO_ACTION
        last = self.controller.metadata  # the last action's event: read before the visibility query replaces it
        if not last["lastActionSuccess"] and last["lastAction"] in ("MoveAheadQuick", "MoveBackQuick"):
            self.blocked += 1
            if self.blocked >= BLOCKED:
                return ACTION_NAMES.index("end")  # stuck: the episode fails and BC drops it
            self.path = self._plan()
        elif last["lastAction"] in ("MoveAheadQuick", "MoveBackQuick"):
            self.blocked = 0
        agent = self.controller.metadata["agent"]
        if set(self.controller.visible_objects(VISIBLE_DISTANCE)) & self.task.target_ids:
            return ACTION_NAMES.index("end")
        while self.path and _distance(agent["position"], self.path[0]) <= REACHED:
            self.path.pop(0)
        if self.path:
            return ACTION_NAMES.index(_toward(agent, self.path[0]))
        if self.turns >= LOOK_AROUND:
            return ACTION_NAMES.index("end")  # the episode fails; BC keeps only successful demonstrations
        self.turns += 1
        return ACTION_NAMES.index("r")

    def _plan(self) -> list[dict]:
        """Corners to the nearest target (by path length), without the start point."""
        best: list[dict] | None = None
        for object_id in sorted(self.task.target_ids):
            corners = self.controller.shortest_path(object_id)
            if corners and (best is None or _length(corners) < _length(best)):
                best = corners
        return list(best[1:]) if best else []


def _toward(agent: dict, corner: dict) -> str:
    """RING's `state_difference_to_action` for a base goal: back up, turn, or move ahead."""
    dx, dz = corner["x"] - agent["position"]["x"], corner["z"] - agent["position"]["z"]
    bearing = (math.degrees(math.atan2(dx, dz)) - agent["rotation"]["y"] + 180) % 360 - 180
    yaw = math.radians(agent["rotation"]["y"])
    ahead = dx * math.sin(yaw) + dz * math.cos(yaw)  # the corner's distance along the heading
    if abs(bearing) > 178 and abs(ahead) < 0.25:
        return "b"
    if abs(bearing) > ALIGNED:
        if abs(bearing) > BIG_TURN:
            return "r" if bearing > 0 else "l"
        return "rs" if bearing > 0 else "ls"
    return "m"


def _distance(a: dict, b: dict) -> float:
    return math.hypot(a["x"] - b["x"], a["z"] - b["z"])


def _length(corners: list[dict]) -> float:
    return sum(_distance(a, b) for a, b in zip(corners, corners[1:], strict=False))
