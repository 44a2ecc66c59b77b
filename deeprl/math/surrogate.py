"""The policy-gradient losses of the notes, as losses to minimise (the negative of the objective).

- "REINFORCE": ĝ = 1/m Σ_i Σ_t ∇_θ log π_θ(a_t|s_t) R — the loss −mean(log π · R) has that gradient.
- "The surrogate function": L_sur(θ', θ) = Σ_t π_θ'(a_t|s_t)/π_θ(a_t|s_t) R_t^future, whose
  gradient at θ' = θ is the REINFORCE gradient, and which lets a batch from π_θ be reused.
- "How do we fix this?" / PPO: L_sur^clip = Σ_t min(ratio·R, clip(ratio, 1−ε, 1+ε)·R) ≤ L_sur.
- the critic's losses: ½(V − target)², optionally clipped around the old values (PPO2's trick).

Every function takes an optional `mask` (1 = a real transition, 0 = a vector-env autoreset row)
and averages over the real transitions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of `x` over the entries where mask is 1 (all entries without a mask)."""
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_normalize(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(x − mean) / (std + 1e-8) over the entries where mask is 1, with the unbiased std (torch's `std()` of
    those entries), and x unchanged when fewer than two are real: advantage normalisation over a minibatch's real
    transitions (a seed ensemble's padded minibatches; deeprl.ensemble). It works under torch.vmap."""
    import torch

    n = mask.sum()
    mean = masked_mean(x, mask)
    std = (((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1.0)).sqrt()
    return torch.where(n > 1, (x - mean) / (std + 1e-8), x)


def reinforce_loss(log_prob: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """−mean_t log π_θ(a_t|s_t) · R_t: its gradient is −ĝ, the notes' REINFORCE estimator (with R_t
    = R(τ), R_t^future, normalized, or minus a baseline). `returns` carries no gradient."""
    return -masked_mean(log_prob * returns.detach(), mask)


def importance_ratio(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> torch.Tensor:
    """π_θ'(a_t|s_t) / π_θ(a_t|s_t), computed as exp(log π_θ' − log π_θ) for numerical safety.

    Per step, as in the notes' "Re-weighting the Policy Gradient" once the factors of the other
    steps are taken as ≈ 1. (Erratum: the notes' full trajectory factor repeats π_θ(a₂|s₂) in its
    denominator; the third factor is π_θ(a₃|s₃).)"""
    return (log_prob - old_log_prob.detach()).exp()


def is_surrogate(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """−L_sur(θ', θ) = −mean_t ratio_t · R_t^future (the notes' surrogate function, averaged)."""
    ratio = importance_ratio(log_prob, old_log_prob)
    return -masked_mean(ratio * returns.detach(), mask)


def clipped_surrogate(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """−L_sur^clip = −mean_t min(ratio_t A_t, clip(ratio_t, 1−ε, 1+ε) A_t) (PPO, Schulman et al. 2017;
    the notes' "How do we fix this?"). The min makes it a pessimistic bound: L^clip ≤ L_sur."""
    import torch

    ratio = importance_ratio(log_prob, old_log_prob)
    advantages = advantages.detach()
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -masked_mean(torch.minimum(unclipped, clipped), mask)


def value_loss(values: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """½ mean (V(s_t) − target_t)²: the critic's regression onto returns (targets carry no gradient)."""
    return 0.5 * masked_mean((values - targets.detach()) ** 2, mask)


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    targets: torch.Tensor,
    clip_eps: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """½ mean max((V − target)², (V_old + clip(V − V_old, −ε, ε) − target)²): PPO2's value clipping
    (OpenAI baselines), which keeps the critic near the values the advantages were computed with."""
    import torch

    targets, old_values = targets.detach(), old_values.detach()
    clipped = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    return 0.5 * masked_mean(torch.maximum((values - targets) ** 2, (clipped - targets) ** 2), mask)
