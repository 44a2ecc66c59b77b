"""The deterministic evaluation every command shares (driver, `deeprl eval`, bench, benchmarks/).

Evaluation episode i of a run with seed s starts from reset seed s + EVAL_SEED_OFFSET + i, so every
evaluation of a run sees the same starting states, and a policy's score does not depend on when it
was evaluated (DESIGN.md, benchmark protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from deeprl.envs import env_spec, make_vec_env

EVAL_SEED_OFFSET = 10_000  # evaluation episode i of a run with seed s starts from reset seed s + 10_000 + i
EVAL_STEP_CAP = 1_000  # evaluation episodes of envs without a time limit stop here (--max-episode-steps)


class Evaluator:
    """Deterministic evaluation on a vector env of its own: episode i starts from reset seed
    `seed + i`, so every evaluation of a run sees the same starting states and a policy's score
    does not depend on when it was evaluated."""

    def __init__(
        self,
        env_id: str,
        episodes: int,
        seed: int,
        max_episode_steps: int | None = None,
        batch: int = 32,
        env_kwargs: dict[str, Any] | None = None,
    ):
        self.episodes, self.seed = episodes, seed
        if max_episode_steps is None and env_spec(env_id).max_episode_steps is None:
            max_episode_steps = EVAL_STEP_CAP  # a greedy policy can walk in circles forever
        self.n = min(episodes, batch)
        self.venv = make_vec_env(
            env_id, self.n, vectorization="auto", max_episode_steps=max_episode_steps, **(env_kwargs or {})
        )

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
