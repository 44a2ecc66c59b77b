"""Returns: the quantities the notes' policy-gradient and Monte Carlo sections are built on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


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


# ---------------------------------------------------------------- batched returns for policy gradients
# The functions below take [T, ...] tensors from a rollout of T steps (leading axis: time; any
# further axes, e.g. parallel envs). Row t holds the step taken in s_t: reward r_t, and the flags of
# the step's outcome. An episode ends at a `terminated` step (the true end of the task: nothing
# follows, bootstrap 0) or a `truncated` one (a time limit: the task goes on, so the return is
# completed with V(s_{t+1}) of the true final observation). `next_values[t]` is that V(s_{t+1});
# the batch's last row is cut like a truncation, and also bootstraps from `next_values`.
# Rows after an ended episode (vector-env autoreset steps) get values too, which callers mask out.


def _as_float(x: Any) -> torch.Tensor:
    import torch  # here, not at the top: the CLI imports deeprl.math for its checks before torch

    return x if torch.is_tensor(x) and x.is_floating_point() else torch.as_tensor(x, dtype=torch.float32)


def _flags(x: Any, like: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.as_tensor(x, device=like.device).to(like.dtype)


def _ends(terminated: Any, truncated: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(terminated, truncated-and-not-terminated, done) as 0/1 floats: a step that is both
    (an env ending exactly at its time limit) is a termination, which never bootstraps."""
    term = _flags(terminated, like)
    trunc = _flags(truncated, like) * (1.0 - term)
    return term, trunc, term + trunc


def future_returns(rewards: Any, terminated: Any, truncated: Any, gamma: float, next_values: Any = 0.0) -> torch.Tensor:
    """R_t^future = r_t + γ r_{t+1} + … up to the end of t's episode (the notes' "Credit Assignment").

    Terminated: the sum stops. Truncated, or the last row of the batch: it is completed with
    γ·next_values[t] (pass 0 for the notes' plain horizon-H sum, V(s_{t+1}) with a critic).
    With γ = 1 this is the notes' undiscounted sum of future rewards.
    """
    import torch

    rewards = _as_float(rewards)
    term, trunc, done = _ends(terminated, truncated, rewards)
    next_values = torch.broadcast_to(_as_float(next_values).to(rewards.device), rewards.shape)
    out = torch.empty_like(rewards)
    running = next_values[-1] * (1.0 - term[-1])
    for t in range(len(rewards) - 1, -1, -1):
        if (
            t < len(rewards) - 1
        ):  # what follows r_t: G_{t+1} in the episode, V(s_{t+1}) after a truncation, 0 after a termination
            running = (1.0 - done[t]) * running + trunc[t] * next_values[t]
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def trajectory_returns(
    rewards: Any, terminated: Any, truncated: Any, gamma: float, next_values: Any = 0.0
) -> torch.Tensor:
    """R(τ) for every step: the (discounted) return of the whole trajectory that step belongs to,
    counted from the trajectory's first step in the batch (the notes' REINFORCE estimator without
    credit assignment: every log π(a_t|s_t) of τ is weighted by the same R(τ))."""
    import torch

    returns = future_returns(rewards, terminated, truncated, gamma, next_values)
    _, _, done = _ends(terminated, truncated, returns)
    out = torch.empty_like(returns)
    out[0] = returns[0]
    for t in range(1, len(returns)):  # a new trajectory starts after each end: take its first return
        out[t] = done[t - 1] * returns[t] + (1.0 - done[t - 1]) * out[t - 1]
    return out


def normalize_rewards(returns: Any, mask: Any = None, eps: float = 1e-8) -> torch.Tensor:
    """R_i ← (R_i − μ) / σ with μ and σ over every valid entry of the batch (the notes' "Rewards
    normalization": σ is the population standard deviation, 1/N). `mask` (same shape, 1 = valid)
    leaves out vector-env autoreset rows; they come back as 0."""
    import torch

    returns = _as_float(returns)
    mask = torch.ones_like(returns) if mask is None else _flags(mask, returns)
    n = mask.sum().clamp(min=1.0)
    mu = (returns * mask).sum() / n
    sigma = (((returns - mu) ** 2 * mask).sum() / n).sqrt()
    return (returns - mu) / (sigma + eps) * mask


def n_step_returns(
    rewards: Any, next_values: Any, terminated: Any, truncated: Any, gamma: float, n: int
) -> torch.Tensor:
    """G_t^(n) = r_t + γ r_{t+1} + … + γ^{n−1} r_{t+n−1} + γ^n V(s_{t+n}) (the notes' "n-step return",
    A3C's target), cut short where the episode ends (termination: no bootstrap; truncation:
    γ^k V of the final observation) and at the end of the batch (bootstrap from next_values).
    n ≥ T gives A3C/A2C's "forward view": every step bootstraps from the batch's last state."""
    import torch

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rewards, next_values = _as_float(rewards), _as_float(next_values)
    term, trunc, done = _ends(terminated, truncated, rewards)
    T = len(rewards)
    out = torch.empty_like(rewards)
    for t in range(T):
        g = torch.zeros_like(rewards[t])
        alive = torch.ones_like(rewards[t])  # 1 while t's episode goes on
        discount = 1.0
        horizon = min(n, T - t)
        for k in range(horizon):
            i = t + k
            g = g + alive * discount * rewards[i]
            discount *= gamma
            # bootstrap where the sum stops: at a truncation, or after the last reward taken
            boot = trunc[i] + ((1.0 - done[i]) if k == horizon - 1 else 0.0)
            g = g + alive * boot * discount * next_values[i]
            alive = alive * (1.0 - done[i])
        out[t] = g
    return out


def gae(
    rewards: Any, values: Any, next_values: Any, terminated: Any, truncated: Any, gamma: float, lam: float
) -> torch.Tensor:
    """Generalized advantage estimation (Schulman et al. 2016): A_t = Σ_k (γλ)^k δ_{t+k} with the TD
    error δ_t = r_t + γ V(s_{t+1})(1 − terminated_t) − V(s_t). The sum stops at an episode's end
    (terminated or truncated; a truncated step's δ still bootstraps from V of its final
    observation). λ = 0 gives the one-step TD advantage, λ = 1 the Monte Carlo one, R_t − V(s_t).
    Returns the advantages; the critic's target is advantages + values."""
    import torch

    rewards, values, next_values = _as_float(rewards), _as_float(values), _as_float(next_values)
    term, _, done = _ends(terminated, truncated, rewards)
    delta = rewards + gamma * next_values * (1.0 - term) - values
    carry = gamma * lam * (1.0 - done)  # how much of A_{t+1} flows into A_t
    advantages = torch.empty_like(rewards)
    running = delta[-1]
    advantages[-1] = running
    for t in range(len(rewards) - 2, -1, -1):
        running = delta[t] + carry[t] * running
        advantages[t] = running
    return advantages


def q_lambda_returns(
    rewards: Any, next_max_q: Any, terminated: Any, truncated: Any, gamma: float, lam: float
) -> torch.Tensor:
    """Q(λ) returns, computed backwards over a rollout as PQN does (Gallici et al. 2024, "Simplifying Deep
    Temporal Difference Learning"; Peng & Williams 1996): with q'_t = max_a Q(s_{t+1}, a),

        R_t^λ = r_t + γ (1 − terminated_t) [(1 − λ) q'_t + λ R_{t+1}^λ]

    The λ-sum stops at an episode's end: a terminated step's return is r_t (no bootstrap), a truncated
    step's is r_t + γ q'_t (q' of its true final observation), and the batch's last row bootstraps like a
    truncation, r_t + γ q'_t. λ = 0 gives the one-step Q-learning target, λ = 1 the discounted return to
    the episode's (or the batch's) end. Written like `gae`: R_t = r_t + γ(1 − term_t) q'_t + γλ(1 − done_t)
    (R_{t+1} − q'_t). Returns the [T, ...] targets of Q(s_t, a_t)."""
    import torch

    rewards, next_max_q = _as_float(rewards), _as_float(next_max_q)
    term, _, done = _ends(terminated, truncated, rewards)
    one_step = rewards + gamma * (1.0 - term) * next_max_q  # the Q-learning target of each step
    carry = gamma * lam * (1.0 - done)  # how much of R_{t+1} − q'_t flows into R_t
    returns = torch.empty_like(rewards)
    running = one_step[-1]
    returns[-1] = running
    for t in range(len(rewards) - 2, -1, -1):
        running = one_step[t] + carry[t] * (running - next_max_q[t])
        returns[t] = running
    return returns
