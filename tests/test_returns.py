"""The policy-gradient returns of deeprl/math/returns.py against values worked out by hand.

Row t of every array is the step taken in s_t: its reward r_t and whether that step terminated or
truncated the episode; next_values[t] is V(s_{t+1}) (for an ended episode, V of its final obs).
"""

from __future__ import annotations

import math

import pytest
import torch

from deeprl.math import future_returns, gae, n_step_returns, normalize_rewards, trajectory_returns

R = [1.0, 2.0, 3.0, 4.0]
NEXT_V = [10.0, 20.0, 30.0, 40.0]
NONE = [0, 0, 0, 0]


def close(x, expected):
    torch.testing.assert_close(x, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-5)


def test_future_returns_undiscounted_sums_only_what_follows():
    # γ = 1, one trajectory cut at the horizon with no bootstrap: the notes' R_t^future
    close(future_returns(R, NONE, NONE, 1.0), [10.0, 9.0, 7.0, 4.0])


def test_future_returns_termination_stops_the_sum_and_the_batch_end_bootstraps():
    # episode ends (terminated) after row 1; rows 2-3 are a new episode cut at the batch end:
    # G3 = 4 + 0.5*40 = 24, G2 = 3 + 0.5*24 = 15, G1 = 2, G0 = 1 + 0.5*2 = 2
    close(future_returns(R, [0, 1, 0, 0], NONE, 0.5, NEXT_V), [2.0, 2.0, 15.0, 24.0])


def test_future_returns_truncation_bootstraps_from_the_final_observation():
    # truncated at row 1: G1 = 2 + 0.5*V(final obs) = 2 + 0.5*20 = 12, G0 = 1 + 0.5*12 = 7
    close(future_returns(R, [0, 0, 0, 1], [0, 1, 0, 0], 0.5, NEXT_V), [7.0, 12.0, 5.0, 4.0])


def test_terminated_and_truncated_on_the_same_step_counts_as_terminated():
    close(future_returns([1.0, 1.0], [1, 0], [1, 0], 1.0, [100.0, 0.0]), [1.0, 1.0])


def test_future_returns_runs_over_parallel_envs_independently():
    rewards = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    out = future_returns(rewards, torch.tensor([[0, 1], [0, 0]]), torch.zeros(2, 2), 1.0)
    close(out, [[2.0, 1.0], [1.0, 1.0]])


def test_trajectory_returns_give_every_step_its_whole_trajectorys_return():
    # trajectories: rows 0-1 (R(τ) = 1 + 2 = 3) and rows 2-3 (3 + 4 = 7), γ = 1
    close(trajectory_returns(R, [0, 1, 0, 0], NONE, 1.0), [3.0, 3.0, 7.0, 7.0])


def test_normalize_rewards_population_std_and_mask():
    # μ = 2, σ = sqrt(2/3) over the valid entries 1, 2, 3; the masked entry comes back 0
    s = math.sqrt(2 / 3)
    close(normalize_rewards([1.0, 2.0, 3.0, 100.0], [1, 1, 1, 0]), [-1 / s, 0.0, 1 / s, 0.0])


def test_n_step_returns_two_steps():
    # γ = 0.5, n = 2, no episode end: G0 = 1 + 0.5*2 + 0.25*V(s2) = 2 + 0.25*20 = 7
    # G1 = 2 + 0.5*3 + 0.25*30 = 11, G2 = 3 + 0.5*4 + 0.25*40 = 15, G3 = 4 + 0.5*40 = 24 (batch end)
    close(n_step_returns(R, NEXT_V, NONE, NONE, 0.5, 2), [7.0, 11.0, 15.0, 24.0])


def test_n_step_returns_cut_at_termination_and_truncation():
    # terminated at row 0: G0 = 1. Truncated at row 2: G1 = 2 + 0.5*3 + 0.25*V(final) = 3.5 + 7.5 = 11
    close(n_step_returns(R, NEXT_V, [1, 0, 0, 0], [0, 0, 1, 0], 0.5, 3), [1.0, 11.0, 18.0, 24.0])


def test_n_step_returns_with_n_past_the_batch_is_the_bootstrapped_future_return():
    terminated, truncated = [0, 1, 0, 0], [0, 0, 0, 0]
    torch.testing.assert_close(
        n_step_returns(R, NEXT_V, terminated, truncated, 0.9, 10), future_returns(R, terminated, truncated, 0.9, NEXT_V)
    )
    with pytest.raises(ValueError):
        n_step_returns(R, NEXT_V, NONE, NONE, 0.9, 0)


def test_gae_lambda_zero_is_the_td_error():
    values = [5.0, 6.0, 7.0, 8.0]
    # δ_t = r_t + γ V(s_{t+1}) (1 − terminated) − V(s_t), γ = 0.5; row 1 terminated
    close(gae(R, values, NEXT_V, [0, 1, 0, 0], NONE, 0.5, 0.0), [1 + 5 - 5, 2 - 6, 3 + 15 - 7, 4 + 20 - 8])


def test_gae_lambda_one_is_the_return_minus_the_value():
    values = [10.0, 20.0, 30.0, 40.0]
    next_values = [20.0, 30.0, 40.0, 50.0]  # consistent: next_values[t] = values[t + 1] inside the episode
    terminated, truncated = NONE, [0, 1, 0, 0]
    returns = future_returns(R, terminated, truncated, 0.9, next_values)
    torch.testing.assert_close(
        gae(R, values, next_values, terminated, truncated, 0.9, 1.0), returns - torch.tensor(values)
    )


def test_gae_hand_computed_with_a_truncation():
    # γ = 0.5, λ = 0.5 (γλ = 0.25), values 0 so δ_t = r_t + 0.5 V(s_{t+1}) (truncation still bootstraps)
    # δ = [1+5, 2+10, 3+15, 4+20] = [6, 12, 18, 24]; row 1 truncated cuts the sum:
    # A3 = 24, A2 = 18 + 0.25*24 = 24, A1 = 12, A0 = 6 + 0.25*12 = 9
    close(gae(R, [0.0] * 4, NEXT_V, NONE, [0, 1, 0, 0], 0.5, 0.5), [9.0, 12.0, 24.0, 24.0])
