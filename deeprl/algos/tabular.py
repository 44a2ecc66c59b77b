"""Tabular control: Sarsa, Expected Sarsa, Sarsamax (Q-learning) and first-visit Monte Carlo.

Notes: "Temporal Difference Methods" (Sarsa, Expected Sarsa, Sarsamax); Sutton & Barto ch. 5-6.
TD methods update Q after every step towards a one-step target; Monte Carlo waits for the end of
the episode and moves Q(s, a) towards the return that followed the first visit of (s, a).

One env, one ε-greedy behaviour policy, one Q-table (float64, shape [states, actions]). The targets
are the pure functions of deeprl.math.targets; terminated ends the bootstrap, truncated does not.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from deeprl.config import TabularConfig
from deeprl.envs import ObservationIndex
from deeprl.math import (
    discounted_returns,
    epsilon_at,
    epsilon_greedy_expectation,
    expected_sarsa_target,
    sarsa_target,
    sarsamax_target,
    td_update,
)
from deeprl.protocol import Episode
from deeprl.seeding import Seeds

Method = Literal["sarsa", "expected-sarsa", "q-learning", "mc"]


class TabularAgent:
    """The four tabular methods share the table, the ε-greedy policy and the loop; `method` picks the target."""

    metric_names = ("epsilon",)

    def __init__(self, method: Method, config: TabularConfig, env: gym.Env, *, seed: int, device: Any = None):
        self.method, self.cfg, self.env, self.seed, self.seeds = method, config, env, seed, Seeds(seed)
        self.index = ObservationIndex(env.observation_space)
        self.n_actions = int(env.action_space.n)
        self.q = np.full((self.index.n, self.n_actions), config.q_init, dtype=np.float64)
        self.rng = self.seeds.generator("exploration")  # the ε-greedy behaviour policy
        self.env_steps = 0
        self.episodes = 0
        self.epsilon = epsilon_at(
            config.epsilon_schedule, config.epsilon, config.epsilon_final, config.epsilon_decay_episodes, 1
        )
        # The episode in progress: current state, the action Sarsa has already chosen, running sums,
        # and (Monte Carlo only) the visited (s, a) and rewards. None until the first reset.
        self.state: int | None = None
        self.next_action = 0
        self.ep_return, self.ep_length = 0.0, 0
        self.trajectory: list[tuple[int, int, float]] = []

    def behaviour(self, s: int) -> int:
        """ε-greedy: a uniform action with probability ε, else a greedy one, ties broken at random.

        Random tie-breaking matters while rows are still equal (all q_init, or all 0 in a sparse-reward
        env): always taking the first action would make the "greedy" part a fixed walk into a wall.
        A Python list beats numpy here: tolist + max + count cost about what one argmax does.
        """
        random = self.rng.random  # int(u * n) for a uniform index: a third of rng.integers' cost
        if random() < self.epsilon:
            return int(random() * self.n_actions)
        row = self.q[s].tolist()
        best = max(row)
        if row.count(best) == 1:
            return row.index(best)
        ties = [a for a, value in enumerate(row) if value == best]
        return ties[int(random() * len(ties))]

    def policy(self, obs: Any) -> np.ndarray:
        """Greedy actions for a batch of observations (deterministic evaluation: ties go to the first)."""
        return self.q[self.index.batch(obs)].argmax(axis=1)

    def _start_episode(self, seed: int | None = None) -> None:
        obs, _ = self.env.reset(seed=seed)
        self.state = self.index(obs)
        self.ep_return, self.ep_length = 0.0, 0
        self.trajectory = []
        if self.method == "sarsa":
            self.next_action = self.behaviour(self.state)

    def learn(self, max_steps: int, max_episodes: int | None = None) -> tuple[int, list[Episode]]:
        cfg, q, env, index, method = self.cfg, self.q, self.env, self.index, self.method
        gamma, alpha = cfg.gamma, cfg.alpha
        finished: list[Episode] = []
        if self.state is None:
            self._start_episode(seed=self.seeds.integer("env_reset", self.env_steps))
        for step in range(max_steps):
            s = self.state
            a = self.next_action if method == "sarsa" else self.behaviour(s)
            obs, reward, terminated, truncated, _ = env.step(a)
            s_next = index(obs)
            reward = float(reward)

            if method == "sarsa":  # A' is chosen now, from S', and is the action taken next
                a_next = self.behaviour(s_next)
                target = sarsa_target(reward, q[s_next, a_next], gamma, terminated)
                self.next_action = a_next
            elif method == "expected-sarsa":
                expected_q_next = epsilon_greedy_expectation(q[s_next], self.epsilon)
                target = expected_sarsa_target(reward, expected_q_next, gamma, terminated)
            elif method == "q-learning":
                target = sarsamax_target(reward, q[s_next], gamma, terminated)
            else:  # Monte Carlo: remember the step, update when the episode ends
                self.trajectory.append((s, a, reward))
            if method != "mc":
                q[s, a] = td_update(q[s, a], target, alpha)

            self.ep_return += reward
            self.ep_length += 1
            self.state = s_next
            if terminated or truncated:
                if method == "mc":
                    # A truncated episode's return is incomplete: bootstrap it with the value of S_T
                    # under the policy MC evaluates, the ε-greedy one: Σ_a π(a|S_T) Q(S_T, a).
                    bootstrap = 0.0 if terminated else epsilon_greedy_expectation(q[s_next], self.epsilon)
                    self._monte_carlo_update(bootstrap)
                self.episodes += 1
                finished.append(
                    Episode(
                        self.env_steps + step + 1, self.ep_return, self.ep_length, time.perf_counter(), (self.epsilon,)
                    )
                )
                self.epsilon = epsilon_at(
                    cfg.epsilon_schedule, cfg.epsilon, cfg.epsilon_final, cfg.epsilon_decay_episodes, self.episodes + 1
                )
                self._start_episode()
                if max_episodes is not None and len(finished) >= max_episodes:
                    self.env_steps += step + 1
                    return step + 1, finished
        self.env_steps += max_steps
        return max_steps, finished

    def _monte_carlo_update(self, bootstrap: float) -> None:
        """First-visit MC: Q(s,a) += α (G_t - Q(s,a)) at the first visit t of each (s, a)."""
        states, actions, rewards = zip(*self.trajectory)
        returns = discounted_returns(np.array(rewards), self.cfg.gamma, bootstrap)
        seen: set[tuple[int, int]] = set()
        for t, pair in enumerate(zip(states, actions)):
            if pair not in seen:
                seen.add(pair)
                self.q[pair] = td_update(self.q[pair], returns[t], self.cfg.alpha)

    def policy_state(self) -> dict[str, Any]:
        return {"q": self.q}

    def load_policy_state(self, state: dict[str, Any]) -> None:
        if state["q"].shape != self.q.shape:
            raise ValueError(f"the Q-table has shape {state['q'].shape}, this env needs {self.q.shape}")
        self.q[...] = state["q"]

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": self.q.copy(),
            "rng": self.rng.bit_generator.state,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "epsilon": self.epsilon,
            "state": self.state,
            "next_action": self.next_action,
            "ep_return": self.ep_return,
            "ep_length": self.ep_length,
            "trajectory": list(self.trajectory),
        }

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        self.q[...] = state["q"]
        self.rng.bit_generator.state = state["rng"]
        for key in ("env_steps", "episodes", "epsilon", "state", "next_action", "ep_return", "ep_length", "trajectory"):
            setattr(self, key, state[key])
        if not env_restored:  # the env could not be saved: drop the episode in progress
            self._start_episode(seed=self.seeds.integer("env_reset", self.env_steps))


def Sarsa(config: TabularConfig, env: gym.Env, **kw: Any) -> TabularAgent:
    return TabularAgent("sarsa", config, env, **kw)


def ExpectedSarsa(config: TabularConfig, env: gym.Env, **kw: Any) -> TabularAgent:
    return TabularAgent("expected-sarsa", config, env, **kw)


def QLearning(config: TabularConfig, env: gym.Env, **kw: Any) -> TabularAgent:
    return TabularAgent("q-learning", config, env, **kw)


def MonteCarlo(config: TabularConfig, env: gym.Env, **kw: Any) -> TabularAgent:
    return TabularAgent("mc", config, env, **kw)
