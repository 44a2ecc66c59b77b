"""Atari preprocessing (Mnih et al. 2015; Machado et al. 2018) from Gymnasium's own wrappers.

`deeprl.envs.make_env` / `make_vec_env` apply `wrap_atari` to every `ALE/...` id, for training and
evaluation alike:

- the ALE env is made with frameskip=1 (AtariPreprocessing skips frames itself) and keeps v5's
  sticky actions (repeat_action_probability 0.25, Machado et al.'s recommended protocol);
- `gymnasium.wrappers.AtariPreprocessing`: up to 30 no-op actions at reset, frame skip 4 with a
  max-pool over the last two frames, 84x84 grayscale uint8;
- `FireReset` (here: Gymnasium has none): games that wait for FIRE (Breakout) get it after reset
  and after each lost life, so a greedy policy that never learned to press it cannot stall;
- `gymnasium.wrappers.FrameStackObservation(4)`: observations (4, 84, 84) uint8, channels first.

What only TRAINING should see lives in the learner, not in a wrapper, so that the training env and
the driver's evaluation env are the same env and every score in metrics.csv is the real game score:
DQN's `--clip-rewards` learns from sign(r), and `--life-loss-terminal` (episodic life) cuts the TD
target when `info["lives"]` drops while the game plays on. The Atari presets turn both on.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class FireReset(gym.Wrapper):
    """Press FIRE after reset and after a lost life, in games whose action 1 is FIRE."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:  # a game over during the press: start again without it
            obs, info = self.env.reset(**kwargs)
        self.lives = info.get("lives", 0)
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = info.get("lives", 0)
        if lives < self.lives and not (terminated or truncated):
            obs, fire_reward, terminated, truncated, info = self.env.step(1)
            reward += fire_reward
        self.lives = info.get("lives", 0)
        return obs, reward, terminated, truncated, info


def wrap_atari(env: gym.Env, frame_stack: int = 4) -> gym.Env:
    """The standard preprocessing around an ALE env made with frameskip=1."""
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
    meanings = env.unwrapped.get_action_meanings()
    if len(meanings) > 1 and meanings[1] == "FIRE":
        env = FireReset(env)
    return gym.wrappers.FrameStackObservation(env, frame_stack)


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")
