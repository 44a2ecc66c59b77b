"""Wrappers that presets and `--wrapper deeprl.wrappers:NAME` name, and the one the env factory adds itself.

- `car_racing`: CarRacing-v3 as images a CNN trains on (the rl-baselines3-zoo's preprocessing).
- `InfoActionMask`: an env that reports its legal actions in `info["action_mask"]` (Gymnasium's
  Taxi convention) gets them as a key of a Dict observation, `deeprl.spaces.MASK_KEY`, the one place
  every consumer (rollouts, replay, evaluation, `Agent.act`, render) reads a mask from. The env
  factory (`deeprl.envs`) adds it by itself; nobody needs to name it.

Both take and return a single (not vector) env, as every `--wrapper` callable does.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from deeprl.spaces import MASK_KEY

OBS_KEY = "obs"  # InfoActionMask's key for the env's own observation


def car_racing(env: gym.Env) -> gym.Env:
    """CarRacing-v3 for image training: frame skip 2 (rewards summed, the max of the last two frames),
    64x64, grayscale, then the last 4 frames stacked: observations (4, 64, 64) uint8, channels first.

    The rl-baselines3-zoo's CarRacing preprocessing (hyperparams/ppo.yml: FrameSkip 2, 64x64,
    grayscale) from Gymnasium's own wrappers. The zoo's FrameSkip keeps the last frame, Gymnasium's
    MaxAndSkipObservation the max of the last two (Mnih et al. 2015's de-flicker; CarRacing does not
    flicker, so the two agree up to the car's motion within one skip).
    """
    env = gym.wrappers.MaxAndSkipObservation(env, skip=2)
    env = gym.wrappers.ResizeObservation(env, (64, 64))
    env = gym.wrappers.GrayscaleObservation(env, keep_dim=False)
    return gym.wrappers.FrameStackObservation(env, 4)


class InfoActionMask(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observations `{"obs": <the env's own>, "action_mask": MultiBinary(n)}` for an env with Discrete
    actions that puts its mask (1 = allowed) in `info["action_mask"]` at reset and at every step.

    A step whose info has no mask allows every action (an env that masks only some states).
    """

    def __init__(self, env: gym.Env):
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise TypeError(f"InfoActionMask needs Discrete actions, got {env.action_space}")
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.n = int(env.action_space.n)
        self.observation_space = gym.spaces.Dict(
            {OBS_KEY: env.observation_space, MASK_KEY: gym.spaces.MultiBinary(self.n)}
        )
        self._allow_all = np.ones(self.n, dtype=np.int8)

    def _joined(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
        mask = info.get(MASK_KEY)
        mask = self._allow_all.copy() if mask is None else np.asarray(mask, dtype=np.int8).reshape(self.n)
        return {OBS_KEY: obs, MASK_KEY: mask}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self._joined(obs, info), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._joined(obs, info), reward, terminated, truncated, info


def join_info_mask(env: gym.Env) -> gym.Env:
    """`env` under InfoActionMask when it has Discrete actions and reports `info["action_mask"]`.

    Whether an env reports a mask shows only in what `reset` returns, so this resets the env once, a
    probe at construction (its info is all we read; every user of the env resets it again, with its
    seed, before the first step).
    """
    if not isinstance(env.action_space, gym.spaces.Discrete) or isinstance(env.observation_space, gym.spaces.Dict):
        return env
    _, info = env.reset()
    return InfoActionMask(env) if MASK_KEY in info else env
