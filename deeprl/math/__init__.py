"""The notes' equations as pure functions, one idea each (see docs/notes-map.md)."""

from deeprl.math.returns import (
    discounted_returns,
    future_returns,
    gae,
    n_step_returns,
    normalize_rewards,
    trajectory_returns,
)
from deeprl.math.schedules import epsilon_at, glie_epsilon, linear_schedule
from deeprl.math.surrogate import (
    clipped_surrogate,
    clipped_value_loss,
    importance_ratio,
    is_surrogate,
    masked_mean,
    reinforce_loss,
    value_loss,
)
from deeprl.math.targets import (
    epsilon_greedy_expectation,
    epsilon_greedy_probs,
    expected_sarsa_target,
    sarsa_target,
    sarsamax_target,
    td_update,
)

__all__ = [
    "clipped_surrogate",
    "clipped_value_loss",
    "future_returns",
    "gae",
    "importance_ratio",
    "is_surrogate",
    "masked_mean",
    "n_step_returns",
    "normalize_rewards",
    "reinforce_loss",
    "trajectory_returns",
    "value_loss",
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
