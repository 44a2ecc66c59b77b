"""deeprl.oracle: exact DP on a hand-made MDP whose values are worked out by hand, then on real envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from deeprl.errors import UsageError
from deeprl.oracle import bellman_optimality_residual, policy_evaluation, tabular_model, value_iteration

GAMMA = 0.9


class FakeTabularEnv:
    """Just what tabular_model reads: unwrapped.P, Discrete spaces and spec."""

    def __init__(self, transitions: dict, n_states: int, n_actions: int):
        self.P = transitions
        self.observation_space = gym.spaces.Discrete(n_states)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.spec = None

    @property
    def unwrapped(self):
        return self


def two_state_env() -> FakeTabularEnv:
    # P[s][a] = [(prob, s', r, terminated)]
    # state 0: a0 -> reward 1, terminates; a1 -> reward 0, goes to state 1
    # state 1: a0 -> reward 2, terminates; a1 -> reward 0, stays in state 1
    transitions = {
        0: {0: [(1.0, 0, 1.0, True)], 1: [(1.0, 1, 0.0, False)]},
        1: {0: [(1.0, 1, 2.0, True)], 1: [(1.0, 1, 0.0, False)]},
    }
    return FakeTabularEnv(transitions, 2, 2)


# Hand-computed solution of two_state_env with γ = 0.9:
#   V*(1) = max(2, 0.9 * V*(1)) = 2
#   V*(0) = max(1, 0 + 0.9 * V*(1)) = max(1, 1.8) = 1.8
#   Q*(0,0) = 1, Q*(0,1) = 0.9 * 2 = 1.8, Q*(1,0) = 2, Q*(1,1) = 0.9 * 2 = 1.8
V_STAR = np.array([1.8, 2.0])
Q_STAR = np.array([[1.0, 1.8], [2.0, 1.8]])


def test_tabular_model_arrays_of_two_state_mdp():
    model = tabular_model(two_state_env())
    assert (model.n_states, model.n_actions) == (2, 2)
    np.testing.assert_allclose(model.reward, [[1.0, 0.0], [2.0, 0.0]])
    # C[s, a, s']: terminating transitions contribute nothing
    expected_continue = np.zeros((2, 2, 2))
    expected_continue[0, 1, 1] = 1.0
    expected_continue[1, 1, 1] = 1.0
    np.testing.assert_allclose(model.continue_, expected_continue)


def test_tabular_model_stochastic_transitions():
    # state 0, a0: 0.25 -> reward 4, terminates; 0.75 -> reward 0, to state 1
    transitions = {0: {0: [(0.25, 1, 4.0, True), (0.75, 1, 0.0, False)]}, 1: {0: [(1.0, 1, 0.0, True)]}}
    model = tabular_model(FakeTabularEnv(transitions, 2, 1))
    # R(0,0) = 0.25 * 4 + 0.75 * 0 = 1
    assert model.reward[0, 0] == pytest.approx(1.0)
    # only the non-terminating 0.75 continues, to state 1
    np.testing.assert_allclose(model.continue_[0, 0], [0.0, 0.75])
    # V(1) = 0 (terminates with 0); V(0) = 1 + 0.9 * 0.75 * 0 = 1
    np.testing.assert_allclose(policy_evaluation(model, np.array([0, 0]), GAMMA), [1.0, 0.0])


def test_value_iteration_two_state_mdp():
    v, q, policy = value_iteration(tabular_model(two_state_env()), GAMMA)
    np.testing.assert_allclose(v, V_STAR, atol=1e-9)
    np.testing.assert_allclose(q, Q_STAR, atol=1e-9)
    # state 0: go to state 1 (1.8 > 1); state 1: take the 2 and end (2 > 1.8)
    np.testing.assert_array_equal(policy, [1, 0])


def test_policy_evaluation_deterministic_policies():
    model = tabular_model(two_state_env())
    # π = [0, 0]: V(0) = 1, V(1) = 2
    np.testing.assert_allclose(policy_evaluation(model, np.array([0, 0]), GAMMA), [1.0, 2.0])
    # π = [1, 0] (the optimal one): V(1) = 2, V(0) = 0.9 * 2 = 1.8
    np.testing.assert_allclose(policy_evaluation(model, np.array([1, 0]), GAMMA), [1.8, 2.0])
    # π = [1, 1]: never collects a reward, V(1) = 0.9 V(1) -> 0, V(0) = 0.9 * 0 = 0
    np.testing.assert_allclose(policy_evaluation(model, np.array([1, 1]), GAMMA), [0.0, 0.0], atol=1e-12)


def test_policy_evaluation_uniform_stochastic_policy():
    model = tabular_model(two_state_env())
    uniform = np.full((2, 2), 0.5)
    # V(1) = 0.5 * 2 + 0.5 * 0.9 V(1)  ->  0.55 V(1) = 1  ->  V(1) = 1/0.55 = 20/11
    # V(0) = 0.5 * 1 + 0.5 * 0.9 * 20/11 = 1/2 + 9/11 = 29/22
    np.testing.assert_allclose(policy_evaluation(model, uniform, GAMMA), [29 / 22, 20 / 11])


def test_bellman_residual_zero_at_q_star_and_positive_when_perturbed():
    model = tabular_model(two_state_env())
    assert bellman_optimality_residual(model, Q_STAR, GAMMA) < 1e-12
    perturbed = Q_STAR.copy()
    perturbed[0, 0] += 0.5
    # Q(0,0) = 1.5 still < max(Q(0,·)) = 1.8, so the backup is unchanged and the residual is 0.5
    assert bellman_optimality_residual(model, perturbed, GAMMA) == pytest.approx(0.5)
    perturbed = Q_STAR.copy()
    perturbed[1, 0] = 3.0
    # V = (1.8, 3): backup(0,1) = 0.9 * 3 = 2.7 vs 1.8 (off by 0.9); backup(1,0) = 2 vs 3 (1.0);
    # backup(1,1) = 2.7 vs 1.8 (0.9); backup(0,0) = 1 vs 1 (0); max = 1.0
    assert bellman_optimality_residual(model, perturbed, GAMMA) == pytest.approx(1.0)


# --- Real envs ---------------------------------------------------------------------------------


def test_cliff_walking_optimal_return_is_minus_13():
    env = gym.make("CliffWalking-v1")
    v, q, policy = value_iteration(tabular_model(env), 1.0)
    start = 36  # bottom-left corner of the 4 x 12 grid
    # up 1, right 11, down 1 = 13 steps at -1 each
    assert v[start] == pytest.approx(-13.0)
    obs, _ = env.reset(seed=0)
    assert obs == start
    total, steps, done = 0.0, 0, False
    while not done and steps < 100:
        obs, reward, terminated, truncated, _ = env.step(int(policy[obs]))
        total += reward
        steps += 1
        done = terminated or truncated
    assert terminated
    assert total == -13.0
    assert steps == 13
    env.close()


@pytest.fixture(scope="module")
def frozen_lake_solution():
    env = gym.make("FrozenLake-v1")  # slippery by default
    model = tabular_model(env)
    v, q, policy = value_iteration(model, 0.99)
    return model, v, q, policy


def test_frozen_lake_residual_is_tiny(frozen_lake_solution):
    model, _, q, _ = frozen_lake_solution
    assert bellman_optimality_residual(model, q, 0.99) < 1e-8


def test_frozen_lake_optimal_policy_evaluates_to_v_star(frozen_lake_solution):
    model, v, _, policy = frozen_lake_solution
    np.testing.assert_allclose(policy_evaluation(model, policy, 0.99), v, atol=1e-7)


def test_frozen_lake_v_star_of_start_matches_literature(frozen_lake_solution):
    _, v, _, _ = frozen_lake_solution
    # About 0.54 with γ = 0.99 (this oracle gives 0.5420...).
    assert 0.5 < v[0] < 0.6


def test_frozen_lake_uniform_policy_is_worse_than_optimal(frozen_lake_solution):
    model, v, _, _ = frozen_lake_solution
    uniform = np.full((model.n_states, model.n_actions), 1 / model.n_actions)
    v_uniform = policy_evaluation(model, uniform, 0.99)
    assert np.all(v_uniform <= v + 1e-9)
    assert v_uniform[0] < v[0] - 0.1


def test_tabular_model_without_transition_model_raises():
    env = gym.make("CartPole-v1")
    with pytest.raises(UsageError, match="transition model") as excinfo:
        tabular_model(env)
    assert "CartPole-v1" in str(excinfo.value)
    env.close()
