"""Exact dynamic programming on envs that publish their model (`env.unwrapped.P`).

The notes' Bellman equations, solved exactly, give the ground truth the tabular learners are
tested against (Sutton & Barto, ch. 4):

    Q*(s, a) = Σ_s' p(s'|s,a) [r + γ max_a' Q*(s', a')]      (Bellman optimality)
    V^π(s)   = Σ_a π(a|s) Σ_s' p(s'|s,a) [r + γ V^π(s')]     (policy evaluation)

Erratum: the notes write V^π and Q^π inside the max of the optimality equations; the fixed point
of the max is V* and Q*, as here.

The model is turned into dense arrays once: R[s, a] = E[r | s, a] and C[s, a, s'] = p(s', not
terminated | s, a), so that one Bellman backup is Q = R + γ C @ V (transitions that terminate
contribute their reward and no future value).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from deeprl.errors import UsageError


@dataclass(frozen=True)
class TabularModel:
    reward: np.ndarray  # R[s, a]: expected immediate reward
    continue_: np.ndarray  # C[s, a, s']: probability of reaching s' without terminating

    @property
    def n_states(self) -> int:
        return self.reward.shape[0]

    @property
    def n_actions(self) -> int:
        return self.reward.shape[1]

    def backup(self, v: np.ndarray, gamma: float) -> np.ndarray:
        """Q(s, a) = R(s, a) + γ Σ_s' C(s, a, s') V(s')."""
        return self.reward + gamma * self.continue_ @ v


def tabular_model(env: gym.Env) -> TabularModel:
    """Dense R and C arrays from a toy-text env's `P[s][a] = [(prob, s', r, terminated), ...]`."""
    base = env.unwrapped
    transitions = getattr(base, "P", None)
    if not isinstance(transitions, dict) or not isinstance(env.observation_space, gym.spaces.Discrete):
        raise UsageError(
            f"{env.spec.id if env.spec else type(base).__name__} does not publish a transition model "
            "(env.unwrapped.P with Discrete observations), so it cannot be solved exactly. Envs that "
            "do: FrozenLake-v1, FrozenLake8x8-v1, CliffWalking-v1, Taxi-v4."
        )
    n_s, n_a = int(env.observation_space.n), int(env.action_space.n)
    reward = np.zeros((n_s, n_a))
    cont = np.zeros((n_s, n_a, n_s))
    for s in range(n_s):
        for a in range(n_a):
            for prob, s_next, r, terminated in transitions[s][a]:
                reward[s, a] += prob * r
                if not terminated:
                    cont[s, a, s_next] += prob
    return TabularModel(reward, cont)


def value_iteration(
    model: TabularModel, gamma: float, tol: float = 1e-10, max_iterations: int = 100_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V*, Q* and a greedy optimal policy by repeated Bellman optimality backups.

    With γ = 1 this converges when every policy that does not end the episode accumulates -inf or
    the rewards are non-negative (CliffWalking, FrozenLake); `max_iterations` bounds it otherwise.
    """
    v = np.zeros(model.n_states)
    for _ in range(max_iterations):
        q = model.backup(v, gamma)
        v_new = q.max(axis=1)
        if np.max(np.abs(v_new - v)) < tol:
            v = v_new
            break
        v = v_new
    q = model.backup(v, gamma)
    return v, q, q.argmax(axis=1)


def policy_evaluation(model: TabularModel, policy: np.ndarray, gamma: float) -> np.ndarray:
    """V^π for a deterministic policy (an action per state) or a stochastic one (probs [S, A]).

    Solves the linear system (I - γ P_π) V = R_π exactly, so the answer has no iteration error.
    States from which π never ends the episode under γ = 1 make the system singular; then a
    least-squares solution is returned.
    """
    n = model.n_states
    probs = np.asarray(policy)
    if probs.ndim == 1:
        probs = np.eye(model.n_actions)[probs.astype(int)]
    r_pi = (probs * model.reward).sum(axis=1)
    p_pi = np.einsum("sa,sat->st", probs, model.continue_)
    system = np.eye(n) - gamma * p_pi
    try:
        return np.linalg.solve(system, r_pi)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(system, r_pi, rcond=None)[0]


def bellman_optimality_residual(model: TabularModel, q: np.ndarray, gamma: float) -> float:
    """max |Q - (R + γ C max_a' Q)|: zero exactly at Q*."""
    return float(np.max(np.abs(q - model.backup(q.max(axis=1), gamma))))
