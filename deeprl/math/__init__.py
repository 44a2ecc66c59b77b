"""The notes' equations as pure functions, one idea each (see docs/notes-map.md)."""

from deeprl.math.returns import discounted_returns
from deeprl.math.schedules import epsilon_at, glie_epsilon, linear_schedule
from deeprl.math.targets import (
    epsilon_greedy_expectation,
    epsilon_greedy_probs,
    expected_sarsa_target,
    sarsa_target,
    sarsamax_target,
    td_update,
)

__all__ = [
    "discounted_returns",
    "epsilon_at",
    "epsilon_greedy_expectation",
    "epsilon_greedy_probs",
    "expected_sarsa_target",
    "glie_epsilon",
    "linear_schedule",
    "sarsa_target",
    "sarsamax_target",
    "td_update",
]
