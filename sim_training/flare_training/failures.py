"""Why gridhouse episodes fail, read from the world state as each one ended (`eval --why`).

ObjectNav and Pickup: what the robot faced or held when it called `end` off the goal (an object of the goal's
type in another colour is a grounding failure; the colour pairs say which), and how far the goal was when an
episode ran out of steps (a search failure), and whether its object was ever in view on the way (`step`).
Fetch: which object it moved (the one asked, the one to put it next to, or another) and where it left it.
RoomVisit: where it called `end`, and whether it had marked the first place with `sub_done`."""

from __future__ import annotations

from collections import Counter

from flare_sim import GridhouseEnv
from flare_sim.tasks import satisfied

FAMILIES = ("objectnav", "pickup", "fetch", "roomvisit")  # the families whose failures are told apart
ONE_OBJECT = ("objectnav", "pickup")  # one object described by type and colour: grounding and search
OTHER_COLOUR = "ended at an object of the goal's type in another colour"
FARTHER = "out of steps, goal farther"


class FailureTally:
    """Called at the end of each episode `evaluate_policy` counts (its `on_episode_end`)."""

    def __init__(self) -> None:
        self.kinds: dict[str, Counter] = {}
        self.colours: dict[str, Counter] = {}  # (asked, there) for OTHER_COLOUR
        self._goal_seen: dict[int, bool] = {}  # per env, this episode so far: was the goal's object ever in view
        self._moved: dict[int, object] = {}  # per env, this episode so far: the object it held last (Fetch)

    def step(self, env) -> None:
        """After each reset and step (`evaluate_policy`'s `on_step`): whether the goal's object is in view, and
        what the robot holds."""
        if not isinstance(env, GridhouseEnv) or env.family not in FAMILIES:
            return
        key = id(env)
        if env.steps == 0:
            self._goal_seen.pop(key, None)
            self._moved.pop(key, None)
        if env.family in ONE_OBJECT:
            self._goal_seen[key] = self._goal_seen.get(key, False) or bool(env.goal_cells().any())
        if env.level.carrying is not None:
            self._moved[key] = env.level.carrying

    def __call__(self, env, info: dict, truncated: bool) -> None:
        if not isinstance(env, GridhouseEnv) or info["family"] not in FAMILIES:
            return
        kind, colours = self.kind(env, info, truncated, self._moved.pop(id(env), None))
        seen = self._goal_seen.pop(id(env), None)  # None: not followed step by step
        if kind == FARTHER and seen is not None:
            kind += ", its object in view on the way" if seen else ", its object never in view"
        self.kinds.setdefault(info["family"], Counter())[kind] += 1
        if colours:
            self.colours.setdefault(info["family"], Counter())[colours] += 1

    @staticmethod
    def kind(env: GridhouseEnv, info: dict, truncated: bool, moved=None) -> tuple[str, tuple[str, str] | None]:
        """The episode's kind of ending (and, for OTHER_COLOUR, the colours asked and found); `moved`: the
        object the robot held last (Fetch; None: nothing, or not followed step by step)."""
        if info["success"]:
            return "success", None
        if info["family"] == "fetch":
            return _fetch_kind(env, truncated, moved), None
        if info["family"] == "roomvisit":
            return _roomvisit_kind(env, truncated), None
        level, desc = env.level, env.subgoals[-1].desc
        if truncated:
            if any(level.carrying is o for o in desc.obj_set):  # a held object has no position (-1, -1)
                return "out of steps, holding the goal object", None
            distance = _nearest(level.agent_pos, [o for o in desc.obj_set if o.cur_pos is not None])
            return ("out of steps, goal within 3 cells" if distance <= 3 else FARTHER), None
        at_hand = level.carrying or level.grid.get(*level.front_pos)
        if at_hand is None or at_hand.type == "wall":
            return "ended facing no object", None
        if any(at_hand is o for o in desc.obj_set):
            return "ended at the goal object without picking it up", None
        if at_hand.type == desc.type:
            return OTHER_COLOUR, (desc.color, at_hand.color)
        return "ended at an object of another type", None

    def lines(self) -> list[str]:
        out = []
        for family, kinds in self.kinds.items():
            total = sum(kinds.values())
            out.append(f"{family}: {total} episodes")
            for kind, n in kinds.most_common():
                out.append(f"  {n / total:6.1%}  {kind}")
                if kind == OTHER_COLOUR:
                    pairs = self.colours[family].most_common()
                    out.append("          asked -> there: " + ", ".join(f"{a} -> {b} {c}" for (a, b), c in pairs))
        return out


def _nearest(position, objects) -> int:
    """Grid steps (Manhattan) from `position` to the nearest of `objects`."""
    x, y = position
    return min(abs(o.cur_pos[0] - x) + abs(o.cur_pos[1] - y) for o in objects)


def _fetch_kind(env: GridhouseEnv, truncated: bool, moved) -> str:
    goal, level = env.subgoals[-1], env.level
    if truncated:
        return "out of steps"
    if level.carrying is not None:
        return "ended holding an object"
    if moved is None:
        return "ended without moving an object"
    if any(moved is o for o in goal.desc_fixed.obj_set):
        return "ended after moving the object to put the other next to (roles swapped)"
    if not any(moved is o for o in goal.desc_move.obj_set):
        return "ended after moving an object the goal does not name"
    distance = _nearest(moved.cur_pos, goal.desc_fixed.obj_set)
    return f"ended with the object asked put down {'2 cells' if distance == 2 else 'farther'} from the other"


def _roomvisit_kind(env: GridhouseEnv, truncated: bool) -> str:
    if truncated:
        return "out of steps"
    first, second = env.subgoals
    at_first, at_second = satisfied(env.level, first), satisfied(env.level, second)
    if env.subgoal_index > 0:  # the first place was marked with `sub_done`
        return "ended at the first place again after marking it" if at_first else "ended away from the second place"
    if at_second:
        return "ended at the second place without marking the first with sub_done"
    if at_first:
        return "ended at the first place instead of marking it with sub_done"
    return "ended at neither place, the first not marked"
