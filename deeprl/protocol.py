"""What every algorithm implements, and what it hands the driver.

An algorithm is a plain class (no base class) that the driver (`deeprl.driver`) calls:

    algo = Cls(config, env, seed=seed, device=device)
    steps, episodes = algo.learn(max_steps, max_episodes)   # collect + update, return finished episodes
    actions = algo.policy(obs_batch)                        # deterministic, batched, for eval/render
    algo.policy_state() / algo.load_policy_state(d)         # the policy artefact: what policy() needs
                                                            # (weights, normalisation statistics)
    algo.state_dict() / algo.load_state_dict(d, env_restored)  # everything an exact resume needs
                                                            # (env_restored=False: start fresh episodes)

`learn` may be called with any chunk sizes: learn(a) then learn(b) must do what learn(a + b)
does, which is what makes evaluation, checkpoints and resume land on exact env steps.

State dicts hold tensors, numpy arrays, numbers, strings, lists, tuples and dicts only: the run
directory (`deeprl.rundir`) stores them without pickle, so loading one never runs code.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np


class Episode(NamedTuple):
    """A finished training episode, as the driver writes it to metrics.csv."""

    env_steps: int  # total env steps when it ended
    episode_return: float
    episode_length: int
    time: float  # time.perf_counter() when it ended
    extras: tuple = ()  # values of the algorithm's `metric_names`, in order


class Algorithm(Protocol):
    metric_names: tuple[str, ...]

    def learn(self, max_steps: int, max_episodes: int | None) -> tuple[int, list[Episode]]: ...
    def policy(self, obs: Any) -> np.ndarray: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None: ...
    def policy_state(self) -> dict[str, Any]: ...
    def load_policy_state(self, state: dict[str, Any]) -> None: ...
