"""deeprl.math against values worked out by hand (DESIGN.md, conventions 1 and 2).

Every expected number is computed in a comment next to it, so a reader can check the arithmetic
without running anything.
"""

from __future__ import annotations

import numpy as np
import pytest

from deeprl.math import (
    discounted_returns,
    epsilon_at,
    epsilon_greedy_expectation,
    epsilon_greedy_probs,
    expected_sarsa_target,
    glie_epsilon,
    linear_schedule,
    sarsa_target,
    sarsamax_target,
    td_update,
)

GAMMA = 0.9


# --- TD targets --------------------------------------------------------------------------------


def test_sarsa_target_bootstraps_when_not_terminated():
    # 1 + 0.9 * 2 = 2.8
    assert sarsa_target(1.0, 2.0, GAMMA, terminated=False) == pytest.approx(2.8)


def test_sarsa_target_terminated_is_reward_only():
    # terminal: no future value, target = R = 1
    assert sarsa_target(1.0, 2.0, GAMMA, terminated=True) == pytest.approx(1.0)


def test_sarsamax_target_uses_max_of_next_row():
    q_next = np.array([0.5, 2.0, -1.0])
    # 1 + 0.9 * max(0.5, 2, -1) = 1 + 0.9 * 2 = 2.8
    assert sarsamax_target(1.0, q_next, GAMMA, terminated=False) == pytest.approx(2.8)
    # terminal: target = R = 1
    assert sarsamax_target(1.0, q_next, GAMMA, terminated=True) == pytest.approx(1.0)


def test_sarsamax_target_all_negative_row():
    # The max of an all-negative row is negative, not 0: 1 + 0.9 * (-1) = 0.1
    q_next = np.array([-3.0, -1.0, -2.0])
    assert sarsamax_target(1.0, q_next, GAMMA, terminated=False) == pytest.approx(0.1)


def test_expected_sarsa_target_averages_over_policy():
    q_next = np.array([0.5, 2.0, -1.0])
    probs = np.array([0.2, 0.5, 0.3])
    # E[Q] = 0.2*0.5 + 0.5*2 + 0.3*(-1) = 0.1 + 1.0 - 0.3 = 0.8; 1 + 0.9 * 0.8 = 1.72
    assert expected_sarsa_target(1.0, probs @ q_next, GAMMA, terminated=False) == pytest.approx(1.72)
    # terminal: target = R = 1
    assert expected_sarsa_target(1.0, probs @ q_next, GAMMA, terminated=True) == pytest.approx(1.0)


def test_truncated_transition_bootstraps_for_every_target():
    """Truncation (time limit) is not termination: it is passed as terminated=False and bootstraps."""
    reward = -1.0
    terminated = False  # the time limit hit (truncated=True), but the task did not end
    q_next = np.array([3.0, 5.0])
    probs = np.array([0.5, 0.5])
    # Sarsa with Q(S', A') = 5: -1 + 0.9 * 5 = 3.5
    assert sarsa_target(reward, 5.0, GAMMA, terminated) == pytest.approx(3.5)
    # Sarsamax: -1 + 0.9 * max(3, 5) = -1 + 4.5 = 3.5
    assert sarsamax_target(reward, q_next, GAMMA, terminated) == pytest.approx(3.5)
    # Expected Sarsa: E[Q] = 0.5*3 + 0.5*5 = 4; -1 + 0.9 * 4 = 2.6
    assert expected_sarsa_target(reward, probs @ q_next, GAMMA, terminated) == pytest.approx(2.6)
    # and none of them equals the cut-off target -1 a terminated transition would give
    assert sarsa_target(reward, 5.0, GAMMA, True) == pytest.approx(-1.0)


def test_expected_sarsa_with_greedy_policy_equals_sarsamax():
    # With ε = 0 the ε-greedy policy is greedy, and the expectation of Q under it is max Q.
    q_next = np.array([0.3, -2.0, 1.7, 1.1])
    probs = epsilon_greedy_probs(q_next, 0.0)
    expected = expected_sarsa_target(0.5, probs @ q_next, GAMMA, terminated=False)
    # 0.5 + 0.9 * 1.7 = 0.5 + 1.53 = 2.03
    assert expected == pytest.approx(2.03)
    assert expected == pytest.approx(sarsamax_target(0.5, q_next, GAMMA, terminated=False))


# --- ε-greedy ----------------------------------------------------------------------------------


def test_epsilon_greedy_expectation_closed_form_matches_probabilities():
    q = np.array([1.0, 3.0, 0.0, 2.0])
    # (0.2 / 4) * (1 + 3 + 0 + 2) + 0.8 * 3 = 0.05 * 6 + 2.4 = 2.7
    assert epsilon_greedy_expectation(q, 0.2) == pytest.approx(2.7)
    # the same number as the spelled-out Σ_a π(a|s) q(a): 0.05*1 + 0.85*3 + 0.05*0 + 0.05*2 = 2.7
    assert epsilon_greedy_expectation(q, 0.2) == pytest.approx(epsilon_greedy_probs(q, 0.2) @ q)
    rng = np.random.default_rng(0)
    for _ in range(20):
        row, eps = rng.normal(size=5), float(rng.random())
        assert epsilon_greedy_expectation(row, eps) == pytest.approx(epsilon_greedy_probs(row, eps) @ row)


def test_epsilon_greedy_probs_values_and_sum():
    q = np.array([1.0, 3.0, 0.0, 2.0])
    probs = epsilon_greedy_probs(q, 0.2)
    # ε/n = 0.2 / 4 = 0.05 everywhere; greedy (index 1) gets 1 - 0.2 + 0.05 = 0.85
    np.testing.assert_allclose(probs, [0.05, 0.85, 0.05, 0.05])
    # 0.85 + 3 * 0.05 = 1
    assert probs.sum() == pytest.approx(1.0)


def test_epsilon_greedy_probs_ties_go_to_first_argmax():
    q = np.array([0.0, 3.0, 3.0, 3.0])
    probs = epsilon_greedy_probs(q, 0.4)
    # ε/n = 0.4 / 4 = 0.1; first maximiser is index 1: 1 - 0.4 + 0.1 = 0.7
    np.testing.assert_allclose(probs, [0.1, 0.7, 0.1, 0.1])
    assert probs.sum() == pytest.approx(1.0)


def test_epsilon_greedy_probs_extremes():
    q = np.array([2.0, 5.0, 1.0])
    # ε = 0: all mass on the greedy action
    np.testing.assert_allclose(epsilon_greedy_probs(q, 0.0), [0.0, 1.0, 0.0])
    # ε = 1: uniform, 1/3 each (1 - 1 + 1/3 on the greedy one)
    np.testing.assert_allclose(epsilon_greedy_probs(q, 1.0), [1 / 3, 1 / 3, 1 / 3])


# --- TD update ---------------------------------------------------------------------------------


def test_td_update():
    # 2 + 0.1 * (5 - 2) = 2 + 0.3 = 2.3
    assert td_update(2.0, 5.0, 0.1) == pytest.approx(2.3)
    # 2 + 0.5 * (-4 - 2) = 2 - 3 = -1
    assert td_update(2.0, -4.0, 0.5) == pytest.approx(-1.0)
    # α = 1 jumps to the target, α = 0 keeps the old value
    assert td_update(2.0, 5.0, 1.0) == pytest.approx(5.0)
    assert td_update(2.0, 5.0, 0.0) == pytest.approx(2.0)


# --- Returns -----------------------------------------------------------------------------------


def test_discounted_returns_terminated():
    # G_2 = 3; G_1 = 2 + 0.9*3 = 4.7; G_0 = 1 + 0.9*4.7 = 1 + 4.23 = 5.23
    returns = discounted_returns(np.array([1.0, 2.0, 3.0]), GAMMA)
    np.testing.assert_allclose(returns, [5.23, 4.7, 3.0])
    assert returns.dtype == np.float64


def test_discounted_returns_with_bootstrap():
    # Truncated after 3 rewards, V(s_T) = 10:
    # G_2 = 3 + 0.9*10 = 12; G_1 = 2 + 0.9*12 = 12.8; G_0 = 1 + 0.9*12.8 = 1 + 11.52 = 12.52
    returns = discounted_returns(np.array([1.0, 2.0, 3.0]), GAMMA, bootstrap=10.0)
    np.testing.assert_allclose(returns, [12.52, 12.8, 12.0])


def test_discounted_returns_gamma_one_and_list_input():
    # γ = 1: plain suffix sums of [1, 2, 3] -> [6, 5, 3]; integer list input is accepted
    np.testing.assert_allclose(discounted_returns([1, 2, 3], 1.0), [6.0, 5.0, 3.0])


def test_discounted_returns_does_not_modify_input_and_handles_empty():
    rewards = np.array([1.0, 2.0, 3.0])
    discounted_returns(rewards, GAMMA, bootstrap=1.0)
    np.testing.assert_array_equal(rewards, [1.0, 2.0, 3.0])
    assert discounted_returns(np.array([]), GAMMA).shape == (0,)


# --- Schedules ---------------------------------------------------------------------------------


def test_linear_schedule():
    # t=0: start = 1.0
    assert linear_schedule(1.0, 0.1, 10, 0) == pytest.approx(1.0)
    # t=5: 1 + (0.1 - 1) * 5/10 = 1 - 0.45 = 0.55
    assert linear_schedule(1.0, 0.1, 10, 5) == pytest.approx(0.55)
    # t=10 and beyond: flat at end = 0.1
    assert linear_schedule(1.0, 0.1, 10, 10) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 10, 25) == pytest.approx(0.1)
    # duration 0: end immediately
    assert linear_schedule(1.0, 0.1, 0, 0) == pytest.approx(0.1)


def test_glie_epsilon():
    # 1/k with start = 1: k=1 -> 1, k=4 -> 0.25, k=10 -> 0.1
    assert glie_epsilon(1) == pytest.approx(1.0)
    assert glie_epsilon(4) == pytest.approx(0.25)
    assert glie_epsilon(10) == pytest.approx(0.1)
    # start = 0.5, k = 2: 0.5 / 2 = 0.25
    assert glie_epsilon(2, start=0.5) == pytest.approx(0.25)
    # floor: 1/10 = 0.1 < 0.3, so 0.3
    assert glie_epsilon(10, floor=0.3) == pytest.approx(0.3)
    # floor below the value: 1/2 = 0.5 > 0.3, unchanged
    assert glie_epsilon(2, floor=0.3) == pytest.approx(0.5)


def test_epsilon_at_constant():
    assert epsilon_at("constant", 0.3, 0.01, 100, 1) == pytest.approx(0.3)
    assert epsilon_at("constant", 0.3, 0.01, 100, 1000) == pytest.approx(0.3)


def test_epsilon_at_glie():
    # start/k = 1/10 = 0.1 (above the floor 0.05)
    assert epsilon_at("glie", 1.0, 0.05, 0, 10) == pytest.approx(0.1)
    # 1/100 = 0.01 < floor 0.05 -> 0.05
    assert epsilon_at("glie", 1.0, 0.05, 0, 100) == pytest.approx(0.05)
    # k = 1: 1/1 = 1
    assert epsilon_at("glie", 1.0, 0.05, 0, 1) == pytest.approx(1.0)


def test_epsilon_at_linear():
    # episode k uses t = k - 1: k=1 -> t=0 -> 1.0
    assert epsilon_at("linear", 1.0, 0.0, 10, 1) == pytest.approx(1.0)
    # k=6 -> t=5 -> 1 + (0 - 1) * 5/10 = 0.5
    assert epsilon_at("linear", 1.0, 0.0, 10, 6) == pytest.approx(0.5)
    # k=11 -> t=10 = duration -> final 0.0, and it stays there
    assert epsilon_at("linear", 1.0, 0.0, 10, 11) == pytest.approx(0.0)
    assert epsilon_at("linear", 1.0, 0.0, 10, 500) == pytest.approx(0.0)


def test_epsilon_at_unknown_schedule_raises():
    with pytest.raises(ValueError, match="exponential"):
        epsilon_at("exponential", 1.0, 0.0, 10, 1)  # type: ignore[arg-type]
