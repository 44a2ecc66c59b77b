"""An env made slow on purpose, for benchmarks/ray_scaling.py: CartPole whose every step also waits 2 ms, as a
simulator might (time.sleep leaves the CPU free, so it stands for an env that waits on something else, not one
that computes). `deeprl train ppo benchmarks.slow_env:SlowCartPole-v0` from the repository root."""

from __future__ import annotations

import time

import gymnasium as gym

STEP_SECONDS = 0.002


class SlowStep(gym.Wrapper):
    def step(self, action):
        time.sleep(STEP_SECONDS)
        return super().step(action)


def _slow_cartpole(**kwargs):
    return SlowStep(gym.make("CartPole-v1", **kwargs))


gym.register(
    "SlowCartPole-v0", entry_point=_slow_cartpole, reward_threshold=475.0
)  # CartPole-v1 keeps its 500-step limit
