"""The shortest-path expert: minigrid's BabyAI bot, speaking the project's action names, `end` included.

SPOC imitates shortest-path planners; the BabyAI bot plans shortest paths over what it has seen and explores
the rest. It is wrapped so that it emits vocabulary indices, calls `sub_done` at each intermediate place and
`end` once the goal is satisfied, and follows the agent when the agent did something else (DAgger-style).
"""

from __future__ import annotations

import logging

from minigrid.core.actions import Actions
from minigrid.envs.babyai.core.verifier import ActionInstr
from minigrid.utils.baby_ai_bot import BabyAIBot

from flare_core.actions import action_by_name
from flare_sim.tasks import satisfied

log = logging.getLogger(__name__)

NO_EXPERT_ACTION = -1
_A = Actions
_TO_VOCAB = {_A.forward: "m", _A.left: "l", _A.right: "r", _A.pickup: "p", _A.drop: "d", _A.done: "end"}
_FROM_VOCAB = {v: k for k, v in _TO_VOCAB.items() if v != "end"}
_END = action_by_name("end").index
_SUB_DONE = action_by_name("sub_done").index


class ShortestPathExpert:
    """Labels each step with the expert's next action for the current house and goal."""

    def start(self, level, goals: list[ActionInstr]) -> None:
        self.level = level
        self.goals = goals
        self.bot: BabyAIBot | None = None
        self.bot_goal = -1

    def act(self, goal_index: int, last_action: str | None) -> int:
        """Next action index, given the action the agent just took (None at an episode's start)."""
        goal = self.goals[goal_index]
        if satisfied(self.level, goal):
            return _END if goal_index == len(self.goals) - 1 else _SUB_DONE
        try:
            taken = None
            if self.bot is None or self.bot_goal != goal_index:
                self._new_bot(goal, goal_index)
            elif last_action is not None:
                # Actions the bot has no counterpart for (sub_done off the mark) leave the world unchanged.
                taken = _FROM_VOCAB.get(last_action, _A.done)
            suggestion = self.bot.replan(taken)
        except Exception as err:  # the bot asserts on states it cannot plan from
            log.debug("expert has no action: %s", err)
            return NO_EXPERT_ACTION
        name = _TO_VOCAB.get(suggestion)
        if name is None:
            log.debug("expert suggested %s, which the gridhouse cannot do", suggestion)
            return NO_EXPERT_ACTION
        return action_by_name(name).index

    def _new_bot(self, goal: ActionInstr, goal_index: int) -> None:
        seen = None if self.bot is None else self.bot.vis_mask
        saved, self.level.instrs = self.level.instrs, goal
        try:
            self.bot = BabyAIBot(self.level)
        finally:
            self.level.instrs = saved
        if seen is not None:
            self.bot.vis_mask = seen  # what was seen on the way to the last place stays known
        self.bot_goal = goal_index
