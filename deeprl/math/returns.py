"""Returns: the quantities the notes' policy-gradient and Monte Carlo sections are built on."""

from __future__ import annotations

import numpy as np


def discounted_returns(rewards: np.ndarray, gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    """G_t = r_{t+1} + γ r_{t+2} + … for every t of one trajectory (the notes' R_t^future).

    `rewards[t]` is the reward received after the action at step t. `bootstrap` is the value of the
    state after the last reward: 0 when the episode terminated, V(s_T) when it was truncated.
    Computed backwards, G_t = r_t + γ G_{t+1}, so the cost is linear in the length.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.empty_like(rewards)
    running = float(bootstrap)
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out
