"""Tabular control learns what the literature says it learns, checked against the exact oracle."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import read_metrics

import deeprl
from deeprl.envs import make_env
from deeprl.evaluation import Evaluator
from deeprl.oracle import policy_evaluation, tabular_model, value_iteration

CLIFF_START, CLIFF_COLS = 36, 12


def greedy_path(q: np.ndarray, steps: int = 30) -> list[int]:
    env = make_env("CliffWalking-v1")
    s, _ = env.reset(seed=0)
    path = [s]
    for _ in range(steps):
        s, _, terminated, _, _ = env.step(int(q[s].argmax()))
        path.append(s)
        if terminated:
            break
    return path


@pytest.mark.parametrize("seed", [0, 1])
def test_q_learning_finds_the_optimal_cliff_path(tmp_path, seed):
    """Sarsamax learns Q* whatever ε-greedy does, so its greedy path is the 13-step cliff edge."""
    result = deeprl.train("q-learning", "CliffWalking-v1", seed=seed, run_dir=tmp_path / "r", progress="off")
    assert result.summary["eval_mean_return"] == -13.0
    path = greedy_path(deeprl.load(tmp_path / "r").algo.q)
    assert len(path) == 14 and path[-1] == 47
    # the optimal path runs along row 2, right above the cliff
    assert all(24 <= s <= 35 for s in path[1:-1])


def test_sarsa_learns_the_safe_path_and_better_online_returns_than_q_learning(tmp_path):
    """Sutton & Barto, Example 6.6 (ε = 0.1, α = 0.5): Sarsa, on-policy, accounts for its own ε-greedy
    slips and walks far from the cliff; Q-learning walks the edge and falls more often while
    exploring, so Sarsa's online returns are higher although its greedy path is longer."""
    sarsa_online, q_online = [], []
    for seed in range(3):
        deeprl.train("sarsa", "CliffWalking-v1", seed=seed, run_dir=tmp_path / f"s{seed}", progress="off")
        deeprl.train("q-learning", "CliffWalking-v1", seed=seed, run_dir=tmp_path / f"q{seed}", progress="off")
        for name, store in ((f"s{seed}", sarsa_online), (f"q{seed}", q_online)):
            returns = [float(r["episode_return"]) for r in read_metrics(tmp_path / name) if r["kind"] == "train"]
            assert len(returns) == 500
            store.append(np.mean(returns[100:]))  # after the first 100 episodes, as in the book's figure
        path = greedy_path(deeprl.load(tmp_path / f"s{seed}").algo.q)
        # safe: at least one row between itself and the cliff over columns 1-8 (it may come down
        # to the edge in the last columns, next to the goal, as in the book's figure)
        assert not any(25 <= s <= 32 for s in path), path
        assert path[-1] == 47 and len(path) > 14  # reaches the goal, by a longer path than the optimal 13 steps
    assert np.mean(sarsa_online) > np.mean(q_online) + 5, (sarsa_online, q_online)


@pytest.fixture(scope="module")
def frozen_lake_optimum():
    env = make_env("FrozenLake-v1")
    model = tabular_model(env)
    _, _, optimal = value_iteration(model, gamma=0.99)
    return model, optimal


@pytest.mark.slow
@pytest.mark.parametrize("algo, tolerance", [("q-learning", 0.03), ("expected-sarsa", 0.06)])
def test_frozen_lake_success_rate_close_to_the_optimal_policy(tmp_path, frozen_lake_optimum, algo, tolerance):
    """Slippery FrozenLake: the learned greedy policy succeeds about as often as the exact optimum,
    both evaluated on the same 1000 episodes (and exactly, by policy evaluation with γ = 1)."""
    model, optimal = frozen_lake_optimum
    deeprl.train(algo, "FrozenLake-v1", seed=0, run_dir=tmp_path / "r", progress="off")
    learned = deeprl.load(tmp_path / "r").algo.q.argmax(axis=1)

    evaluator = Evaluator("FrozenLake-v1", episodes=1000, seed=123)
    optimal_rate = evaluator(lambda obs: optimal[obs]).mean()
    learned_rate = evaluator(lambda obs: learned[obs]).mean()
    evaluator.close()
    assert optimal_rate > 0.7  # the optimum itself is good: sanity of the comparison
    assert learned_rate >= optimal_rate - tolerance, (learned_rate, optimal_rate)

    exact_optimal = policy_evaluation(model, optimal, 1.0)[0]
    exact_learned = policy_evaluation(model, learned, 1.0)[0]
    assert exact_learned >= exact_optimal - tolerance


def test_monte_carlo_control_learns_a_safe_cliff_path(tmp_path):
    """First-visit MC with ε = 0.1 evaluates the ε-greedy policy like Sarsa does: the safe path."""
    result = deeprl.train("mc", "CliffWalking-v1", seed=0, run_dir=tmp_path / "r", progress="off")
    assert -19.0 <= result.summary["eval_mean_return"] <= -15.0


@pytest.mark.parametrize("algo", ["sarsa", "expected-sarsa", "q-learning"])
def test_taxi_is_solved(tmp_path, algo):
    result = deeprl.train(algo, "Taxi-v4", seed=0, run_dir=tmp_path / "r", progress="off")
    assert result.summary["solved"], result.summary
    assert result.summary["eval_mean_return"] >= 8.0  # Taxi-v4's reward_threshold


def test_glie_schedule_is_one_over_k(tmp_path):
    deeprl.train(
        "sarsa",
        "FrozenLake-v1",
        episodes=40,
        epsilon=1.0,
        epsilon_schedule="glie",
        run_dir=tmp_path / "r",
        progress="off",
    )
    rows = [r for r in read_metrics(tmp_path / "r") if r["kind"] == "train"]
    assert [float(r["epsilon"]) for r in rows] == pytest.approx([1 / k for k in range(1, 41)])


def test_linear_schedule_reaches_its_final_value(tmp_path):
    deeprl.train(
        "q-learning",
        "FrozenLake-v1",
        episodes=30,
        epsilon=1.0,
        epsilon_schedule="linear",
        epsilon_final=0.1,
        epsilon_decay_episodes=10,
        run_dir=tmp_path / "r",
        progress="off",
    )
    eps = [float(r["epsilon"]) for r in read_metrics(tmp_path / "r") if r["kind"] == "train"]
    assert eps[0] == 1.0 and eps[5] == pytest.approx(1.0 - 0.9 * 5 / 10) and eps[10:] == [0.1] * 20


def test_constant_epsilon_is_constant_by_default(tmp_path):
    """`--epsilon 0.1` on its own means a constant 0.1 (no hidden schedule)."""
    deeprl.train(
        "q-learning",
        "FrozenLake-v1",
        episodes=20,
        epsilon=0.25,
        epsilon_schedule="constant",
        run_dir=tmp_path / "r",
        progress="off",
    )
    eps = {float(r["epsilon"]) for r in read_metrics(tmp_path / "r") if r["kind"] == "train"}
    assert eps == {0.25}


def test_truncation_bootstraps_and_termination_does_not(tmp_path):
    """On a 1-step time limit every episode is truncated, never terminated: Q-learning must still
    propagate values backwards through the bootstrap. With the cut at termination only, Q(s, a)
    after one truncated step from the start is -1 + γ max Q(s') (nonzero once s' has values)."""
    env = make_env("CliffWalking-v1", max_episode_steps=1)
    from deeprl.algos.tabular import QLearning
    from deeprl.config import TabularConfig

    agent = QLearning(TabularConfig(alpha=1.0, gamma=1.0, epsilon=0.0, q_init=0.0), env, seed=0)
    agent.q[24] = -5.0  # pretend the state above the start is known to be worth -5
    agent.q[36] = [0.0, -1.0, -1.0, -1.0]  # make "up" the one greedy action at the start
    agent.learn(1)  # greedy from the start (36): action 0 = up, to 24, truncated
    assert agent.q[36, 0] == pytest.approx(-1.0 + 1.0 * -5.0)  # bootstrapped although the episode ended

    env = make_env("CliffWalking-v1")
    agent = QLearning(TabularConfig(alpha=1.0, gamma=1.0, epsilon=0.0), env, seed=0)
    agent.q[:, :] = -3.0
    agent.q[35, 2] = 0.0  # force the greedy step 35 -> down -> 47 (the goal, terminated)
    agent.learn(0)  # resets the env
    env.unwrapped.s = agent.state = 35
    agent.learn(1)
    assert agent.q[35, 2] == pytest.approx(-1.0)  # reward only: no bootstrap past termination


def test_greedy_ties_are_broken_at_random_but_a_unique_best_always_wins():
    from deeprl.algos.tabular import QLearning
    from deeprl.config import TabularConfig

    agent = QLearning(TabularConfig(epsilon=0.0), make_env("FrozenLake-v1"), seed=0)
    counts = np.bincount([agent.behaviour(0) for _ in range(4000)], minlength=4)
    assert counts.min() > 800  # all-zero row: each of the 4 actions about 1000 times
    agent.q[0] = [0.0, 0.5, 0.5, -1.0]
    picks = {agent.behaviour(0) for _ in range(200)}
    assert picks == {1, 2}  # only the tied best ones
    agent.q[0] = [0.0, 0.5, 0.7, -1.0]
    assert {agent.behaviour(0) for _ in range(200)} == {2}
    # evaluation stays deterministic: the first greedy action
    assert agent.policy(np.array([0]))[0] == 2


def test_monte_carlo_updates_first_visits_only_with_the_return_that_followed():
    from deeprl.algos.tabular import MonteCarlo
    from deeprl.config import TabularConfig

    agent = MonteCarlo(TabularConfig(alpha=0.5, gamma=0.5), make_env("FrozenLake-v1"), seed=0)
    # (s, a, r): (3, 1) is visited at t=0 and again at t=2
    agent.trajectory = [(3, 1, 0.0), (7, 2, 1.0), (3, 1, 2.0)]
    agent._monte_carlo_update(bootstrap=4.0)  # a truncated episode: V(S_T) = 4
    # G_2 = 2 + 0.5*4 = 4;  G_1 = 1 + 0.5*4 = 3;  G_0 = 0 + 0.5*3 = 1.5
    # first visit of (3,1) is t=0: Q = 0 + 0.5*(1.5 - 0) = 0.75 (the t=2 visit is ignored)
    assert agent.q[3, 1] == pytest.approx(0.75)
    assert agent.q[7, 2] == pytest.approx(0.5 * 3.0)
    assert np.count_nonzero(agent.q) == 2
