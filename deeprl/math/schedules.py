"""Exploration schedules for ε-greedy policies.

GLIE (Greedy in the Limit with Infinite Exploration) is the condition the notes give for Sarsa's
convergence: every state-action pair is visited infinitely often and the policy becomes greedy.
ε_k = 1/k over episodes k = 1, 2, … satisfies it (Sutton & Barto, §5.4; Singh et al. 2000).
"""

from __future__ import annotations

from typing import Literal

Schedule = Literal["constant", "glie", "linear"]


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """Linear interpolation from `start` at t=0 to `end` at t=duration, then flat."""
    if duration <= 0 or t >= duration:
        return end
    return start + (end - start) * (t / duration)


def glie_epsilon(k: int, start: float = 1.0, floor: float = 0.0) -> float:
    """ε_k = start / k for the k-th episode (k ≥ 1); with start=1 this is the textbook 1/k."""
    return max(floor, start / max(k, 1))


def epsilon_at(schedule: Schedule, start: float, final: float, decay: int, k: int) -> float:
    """ε for the k-th episode (k ≥ 1) under the named schedule.

    constant: `start` always. glie: start/k, never below `final`. linear: `start` to `final` over
    `decay` episodes.
    """
    if schedule == "constant":
        return start
    if schedule == "glie":
        return glie_epsilon(k, start, final)
    if schedule == "linear":
        return linear_schedule(start, final, decay, k - 1)
    raise ValueError(f"unknown epsilon schedule {schedule!r}; use constant, glie or linear")
