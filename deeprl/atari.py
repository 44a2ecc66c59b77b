"""Atari preprocessing (Mnih et al. 2015; Machado et al. 2018) from Gymnasium's own wrappers.

Every ALE env, whatever its id (`ALE/Pong-v5`, `PongNoFrameskip-v4` as the SB3 zoo and CleanRL
name it, `Breakout-v4`...), is recognised by its spec's entry point (`ale_py.env:AtariEnv`), and
`deeprl.envs` gives it this preprocessing, for training and evaluation alike:

- the ALE env is made with frameskip=1 (AtariPreprocessing skips frames itself) and keeps its spec's
  repeat_action_probability: v5's sticky actions (0.25, Machado et al. 2018's recommended protocol),
  v4's 0.0 (the DQN-era protocol the NoFrameskip-v4 results use);
- `gymnasium.wrappers.AtariPreprocessing`: up to 30 no-op actions at reset, frame skip 4 with a
  max-pool over the last two frames, 84x84 grayscale uint8;
- `FireReset` (here: Gymnasium has none): games that wait for FIRE (Breakout) get it after reset
  and after each lost life, so a greedy policy that never learned to press it cannot stall;
- `gymnasium.wrappers.FrameStackObservation(4)`: observations (4, 84, 84) uint8, channels first.

A game's length is the ALE's own limit, `max_num_frames_per_episode` (108,000 frames: 30 minutes
at 60 Hz, Machado et al. 2018), so an ALE env counts as having a time limit of its own. A limit
deeprl adds (`--max-episode-steps`, the evaluator's cap for envs without one) is a TimeLimit put
outside all this, counting agent steps: inside, on the frame-skip-1 ALE env, 1,000 steps would be
1,000 emulator frames, 250 agent steps, a sixth of a game of Pong.

What only TRAINING should see lives in the learner, not in a wrapper, so that the training env and
the driver's evaluation env are the same env and every score in metrics.csv is the real game score:
DQN's `--clip-rewards` learns from sign(r), and `--life-loss-terminal` (episodic life) cuts the TD
target when `info["lives"]` drops while the game plays on. The Atari presets turn both on.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

ATARI_ENTRY_POINT = "ale_py.env:AtariEnv"


class FireReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Press FIRE after reset and after a lost life, in games whose action 1 is FIRE.

    RecordConstructorArgs puts it in the env's spec, so `gymnasium.make(env.spec)` can make the
    wrapped env again (without it, Gymnasium refuses to re-make a spec with this wrapper).
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
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


def is_atari_spec(spec: gym.envs.registration.EnvSpec | None) -> bool:
    """Is this the spec of an ALE env (any id: `ALE/...-v5`, `...NoFrameskip-v4`, `...-v4`)?"""
    if spec is None:
        return False
    entry = spec.entry_point
    if not isinstance(entry, str):
        entry = f"{getattr(entry, '__module__', '')}:{getattr(entry, '__qualname__', '')}"
    return entry == ATARI_ENTRY_POINT
