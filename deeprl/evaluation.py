"""The deterministic evaluation every command shares (driver, `deeprl eval`, bench, benchmarks/).

Evaluation episode i of a run with seed s starts from reset seed s + EVAL_SEED_OFFSET + i, so every
evaluation of a run sees the same starting states, and a policy's score does not depend on when it
was evaluated (docs/benchmarks.md, "Protocol").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from deeprl.envs import EnvMaker

EVAL_SEED_OFFSET = 10_000  # evaluation episode i of a run with seed s starts from reset seed s + 10_000 + i
# Evaluation episodes of envs without a time limit of their own stop after this many AGENT steps (a
# TimeLimit outside frame skipping and every wrapper, deeprl.envs); --max-episode-steps replaces it. An
# ALE env has its own limit (108,000 frames per game, deeprl/atari.py), so an Atari evaluation plays
# whole games.
EVAL_STEP_CAP = 1_000


class Evaluator:
    """Deterministic evaluation on a vector env of its own: episode i starts from reset seed
    `seed + i`, so every evaluation of a run sees the same starting states and a policy's score
    does not depend on when it was evaluated."""

    def __init__(
        self,
        env: str | EnvMaker,
        episodes: int,
        seed: int,
        max_episode_steps: int | None = None,
        batch: int = 32,
        env_kwargs: dict[str, Any] | None = None,
    ):
        """`env`: a run's recipe (`deeprl.envs.env_maker(run_options)`: its kwargs, wrappers, time limit
        and masks), or an env id with `max_episode_steps` and `env_kwargs`."""
        self.episodes, self.seed = episodes, seed
        if isinstance(env, EnvMaker):
            maker = env if max_episode_steps is None else dataclasses.replace(env, max_episode_steps=max_episode_steps)
            if env_kwargs:
                maker = dataclasses.replace(maker, kwargs={**maker.kwargs, **env_kwargs})
        else:
            maker = EnvMaker(env, env_kwargs or {}, (), max_episode_steps)
        if not maker.has_time_limit:
            maker = dataclasses.replace(
                maker, max_episode_steps=EVAL_STEP_CAP
            )  # a greedy policy can walk in circles forever
        self.maker = maker
        self.n = min(episodes, batch)
        self.venv = maker.make_vec(self.n, vectorization="auto")

    def __call__(self, policy: Callable[[Any], np.ndarray]) -> np.ndarray:
        returns: list[float] = []
        for start in range(0, self.episodes, self.n):
            wanted = min(self.n, self.episodes - start)
            obs, _ = self.venv.reset(seed=self.seed + start)
            total = np.zeros(self.n)
            done = np.zeros(self.n, dtype=bool)
            while not done[:wanted].all():
                obs, reward, terminated, truncated, _ = self.venv.step(policy(obs))
                total += np.where(done, 0.0, reward)  # after its episode ends a copy autoresets: ignore it
                done |= terminated | truncated
            returns.extend(total[:wanted].tolist())
        return np.asarray(returns)

    def close(self) -> None:
        self.venv.close()


def evaluate_together(evaluators: list[Evaluator], policy: Callable[[Any], np.ndarray]) -> list[np.ndarray]:
    """Each evaluator's evaluation, run side by side with one call of `policy` per step for all of them: `policy`
    maps the stacked observations (K, n, ...) of the K evaluators' envs to their actions (K, n, ...), as a seed
    ensemble's stacked policy does (deeprl.ensemble). Evaluator k's envs reset and step exactly as when it
    evaluates alone, so its returns are the ones it would give (to the float rounding of the batched policy)."""
    first = evaluators[0]
    if any(e.n != first.n or e.episodes != first.episodes for e in evaluators):
        raise ValueError("evaluate_together needs evaluators of the same number of episodes")
    returns: list[list[float]] = [[] for _ in evaluators]
    for start in range(0, first.episodes, first.n):
        wanted = min(first.n, first.episodes - start)
        obs = [e.venv.reset(seed=e.seed + start)[0] for e in evaluators]
        total = np.zeros((len(evaluators), first.n))
        done = np.zeros((len(evaluators), first.n), dtype=bool)
        while not done[:, :wanted].all():
            actions = policy(np.stack(obs))
            for k, e in enumerate(evaluators):
                obs[k], reward, terminated, truncated, _ = e.venv.step(actions[k])
                total[k] += np.where(done[k], 0.0, reward)
                done[k] |= terminated | truncated
        for k in range(len(evaluators)):
            returns[k].extend(total[k, :wanted].tolist())
    return [np.asarray(r) for r in returns]
