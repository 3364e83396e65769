"""Why gridhouse ObjectNav and Pickup episodes fail: what the robot faced or held when it called `end` off the
goal (an object of the goal's type in another colour is a grounding failure; the colour pairs say which), and
how far the goal was when an episode ran out of steps (a search failure), and whether its object was ever in
view on the way (`step`). `eval --why` prints it."""

from __future__ import annotations

from collections import Counter

from flare_sim import GridhouseEnv

FAMILIES = ("objectnav", "pickup")  # one object described by type and colour: the failures above are defined
OTHER_COLOUR = "ended at an object of the goal's type in another colour"
FARTHER = "out of steps, goal farther"


class FailureTally:
    """Called at the end of each episode `evaluate_policy` counts (its `on_episode_end`)."""

    def __init__(self) -> None:
        self.kinds: dict[str, Counter] = {}
        self.colours: dict[str, Counter] = {}  # (asked, there) for OTHER_COLOUR
        self._goal_seen: dict[int, bool] = {}  # per env, this episode so far: was the goal's object ever in view

    def step(self, env) -> None:
        """After each reset and step (`evaluate_policy`'s `on_step`): whether the goal's object is in view."""
        if isinstance(env, GridhouseEnv) and env.family in FAMILIES:
            self._goal_seen[id(env)] = self._goal_seen.get(id(env), False) or bool(env.goal_cells().any())

    def __call__(self, env, info: dict, truncated: bool) -> None:
        if not isinstance(env, GridhouseEnv) or info["family"] not in FAMILIES:
            return
        kind, colours = self.kind(env, info, truncated)
        seen = self._goal_seen.pop(id(env), None)  # None: not followed step by step
        if kind == FARTHER and seen is not None:
            kind += ", its object in view on the way" if seen else ", its object never in view"
        self.kinds.setdefault(info["family"], Counter())[kind] += 1
        if colours:
            self.colours.setdefault(info["family"], Counter())[colours] += 1

    @staticmethod
    def kind(env: GridhouseEnv, info: dict, truncated: bool) -> tuple[str, tuple[str, str] | None]:
        level, desc = env.level, env.subgoals[-1].desc
        if info["success"]:
            return "success", None
        if truncated:
            if any(level.carrying is o for o in desc.obj_set):  # a held object has no position (-1, -1)
                return "out of steps, holding the goal object", None
            x, y = level.agent_pos
            distance = min(abs(o.cur_pos[0] - x) + abs(o.cur_pos[1] - y) for o in desc.obj_set if o.cur_pos is not None)
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
