"""On-policy rollout collection shared by REINFORCE, PPO and A2C (and what A3C's workers reuse).

`Rollout.collect(policy, n)` runs the current policy π_θ in a Gymnasium vector env and writes each
step into preallocated [n_steps, n_envs] tensors: observations (in their own dtype, so frames stay
bytes; a dict of tensors, one per key, for Dict observations, deeprl.spaces), raw actions, log π_θ(a|s),
V(s), rewards, terminated, truncated, and a mask. The batch is complete after `n_steps` vector steps
(`full`); `finish(policy)` then fills `next_values`, the V(s_{t+1}) every return needs, and the
algorithm updates and calls `clear()`. Collection may stop anywhere inside a batch and go on in the
next `learn()` call (the driver's chunks), and `state_dict()` holds the partial batch, which keeps
learning chunk-invariant and resumable.

Vector envs in NEXT_STEP autoreset mode (docs/design.md, convention 3): the step after an episode ends
ignores the action and returns the first observation of the next episode; its row gets mask 0 and
must not be learnt from. It is also where the true final observation is: the observation returned
at the ending step is stored as the next row's obs, so V of the final observation of a truncated
episode is computed for free when acting on it, and `next_values[t] = values[t + 1]`.

`ObsNormalizer` and `RewardScaler` are the running statistics PPO's presets use (the algorithm
owns them, so `policy()` at evaluation normalises with the training statistics and they are saved
in the checkpoint).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from deeprl.envs import autoreset_mode
from deeprl.protocol import Episode
from deeprl.seeding import Seeds
from deeprl.spaces import MASK_KEY, copy_obs, is_image_space, obs_storage, take, to_tensor


class RunningMeanStd:
    """Running mean and variance of a stream of batches (parallel algorithm of Chan et al. 1979)."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        batch_mean, batch_var, n = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mean, var = np.asarray(state["mean"], np.float64), np.asarray(state["var"], np.float64)
        if mean.shape != self.mean.shape or var.shape != self.var.shape:
            raise ValueError(f"running statistics of shape {mean.shape}, expected {self.mean.shape}")
        self.mean, self.var, self.count = mean.copy(), var.copy(), float(state["count"])


class ObsNormalizer(RunningMeanStd):
    """(obs − μ) / σ, clipped to ±clip, with μ, σ running over every observation seen in training."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0):
        super().__init__(shape)
        self.clip = clip

    @property
    def std(self) -> np.ndarray:
        """σ = sqrt(var + 1e-8), the divisor (float64; an exported policy holds it as a constant, deeprl.export)."""
        return np.sqrt(self.var + 1e-8)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs - self.mean) / self.std, -self.clip, self.clip).astype(np.float32)


class DictObsNormalizer:
    """An ObsNormalizer per vector Box key of a Dict observation, each with its own running statistics
    (SB3's VecNormalize does the same with `norm_obs_keys`). Images, discrete keys and the action mask
    pass through unchanged: a one-hot or a byte frame has no scale to learn, and a mask is not a number."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], clip: float = 10.0):
        self.normalizers = {key: ObsNormalizer(shape, clip) for key, shape in shapes.items()}

    def update(self, obs: dict[str, np.ndarray]) -> None:
        for key, normalizer in self.normalizers.items():
            normalizer.update(obs[key])

    def __call__(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**obs, **{key: normalizer(obs[key]) for key, normalizer in self.normalizers.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {key: normalizer.state_dict() for key, normalizer in self.normalizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != set(self.normalizers):
            raise ValueError(f"running statistics for the keys {sorted(state)}, expected {sorted(self.normalizers)}")
        for key, normalizer in self.normalizers.items():
            normalizer.load_state_dict(state[key])


def _normalizable(space: gym.Space) -> bool:
    """Vector Boxes: what running mean/std normalisation is for (not images, not discrete values)."""
    return isinstance(space, gym.spaces.Box) and not is_image_space(space)


def make_obs_normalizer(space: gym.Space) -> ObsNormalizer | DictObsNormalizer | None:
    """The running observation normaliser for `space`: one for a vector Box, one per vector Box key of a
    Dict (the action mask excluded), None when there is nothing to normalise (images, Discrete, MultiBinary)."""
    if _normalizable(space):
        return ObsNormalizer(space.shape)
    if isinstance(space, gym.spaces.Dict):
        shapes = {key: sub.shape for key, sub in space.spaces.items() if key != MASK_KEY and _normalizable(sub)}
        return DictObsNormalizer(shapes) if shapes else None
    return None


class RewardScaler(RunningMeanStd):
    """r / σ(discounted return): rewards scaled by the running std of each env's discounted return
    (the "reward scaling" of Engstrom et al. 2020, SB3's VecNormalize). The mean is not subtracted,
    so the sign of every reward, and the point of terminating, stay the same."""

    def __init__(self, n_envs: int, gamma: float, clip: float = 10.0):
        super().__init__(())
        self.gamma, self.clip = gamma, clip
        self.returns = np.zeros(n_envs, np.float64)

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + reward
        self.update(self.returns)
        self.returns[done] = 0.0
        return np.clip(reward / np.sqrt(self.var + 1e-8), -self.clip, self.clip)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "returns": self.returns.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.returns = state["returns"].copy()


class Policy(Protocol):
    """What collection needs from a policy (nets.ActorCritic is one)."""

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...
    def env_action(self, raw_action: torch.Tensor) -> np.ndarray: ...


class Rollout:
    """A batch of n_steps x n_envs on-policy transitions, collected in pieces of any size. The env resets
    from `seeds` ("env_reset", by env steps taken): at the start, and after a resume whose env could not
    be saved (new episodes, not a replay of the first ones)."""

    def __init__(
        self,
        env: Any,
        n_steps: int,
        device: torch.device | str = "cpu",
        *,
        seeds: Seeds | None = None,
        obs_normalizer: ObsNormalizer | DictObsNormalizer | None = None,
        reward_scaler: RewardScaler | None = None,
    ):
        self.env, self.n_steps, self.device = env, n_steps, torch.device(device)
        self.seeds = Seeds(0) if seeds is None else seeds
        self.n_envs = getattr(env, "num_envs", 1)
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        T, N = n_steps, self.n_envs
        action_shape, action_dtype = raw_action_layout(act_space)
        zeros = lambda *shape, dtype=torch.float32: torch.zeros(shape, dtype=dtype, device=self.device)  # noqa: E731
        # a tensor, or a dict of tensors for Dict observations; images stay uint8 / bool (deeprl.spaces),
        # what the normaliser rewrites is float32
        normalized = (
            set(obs_normalizer.normalizers)
            if isinstance(obs_normalizer, DictObsNormalizer)
            else obs_normalizer is not None
        )
        self.obs = obs_storage(obs_space, (T, N), self.device, normalized=normalized)
        self.actions = zeros(T, N, *action_shape, dtype=action_dtype)  # raw samples u (see nets.ActorCritic)
        self.log_probs, self.values, self.rewards = zeros(T, N), zeros(T, N), zeros(T, N)
        self.terminated, self.truncated, self.mask = zeros(T, N), zeros(T, N), zeros(T, N)
        self.next_values = zeros(T, N)
        self.t = 0  # rows filled
        # The env's current position, kept between learn() calls (None until the first reset).
        self.next_obs: np.ndarray | dict[str, np.ndarray] | None = None
        self.prev_done = np.zeros(N, dtype=bool)  # did env i's episode end on the last step?
        self.ep_return = np.zeros(N, np.float64)
        self.ep_length = np.zeros(N, np.int64)
        self.env_steps = 0

    @property
    def full(self) -> bool:
        return self.t == self.n_steps

    def _observe(self, obs: Any) -> Any:
        if self.obs_normalizer is None:
            return obs
        self.obs_normalizer.update(obs)
        return self.obs_normalizer(obs)

    def reset(self, seed: int | None = None) -> None:
        if autoreset_mode(self.env) != gym.vector.AutoresetMode.NEXT_STEP:
            raise ValueError(f"Rollout needs a vector env in NEXT_STEP autoreset mode, got {autoreset_mode(self.env)}")
        obs, _ = self.env.reset(seed=self.seeds.integer("env_reset", self.env_steps) if seed is None else seed)
        self.next_obs = self._observe(obs)
        self.prev_done[:] = False
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0

    @torch.inference_mode()
    def collect(
        self, policy: Policy, n: int, max_episodes: int | None = None, extras: tuple = ()
    ) -> tuple[int, list[Episode]]:
        """Step all envs up to `n` times (never past a full batch, and stopping once `max_episodes`
        episodes have finished); returns (vector steps taken, finished episodes)."""
        if self.next_obs is None:
            self.reset()
        finished: list[Episode] = []
        n = min(n, self.n_steps - self.t)
        for step in range(n):
            t = self.t
            obs_t = take(self.obs, t)
            copy_obs(obs_t, self.next_obs)
            action, log_prob, value = policy.act(obs_t)
            self.actions[t].copy_(action)
            self.log_probs[t].copy_(log_prob)
            if value is not None:
                self.values[t].copy_(value)
            obs, reward, terminated, truncated, _ = self.env.step(policy.env_action(action))
            valid = ~self.prev_done  # an autoreset step is not a transition
            done = terminated | truncated
            self.ep_return += reward * valid
            self.ep_length += valid
            if self.reward_scaler is not None:
                reward = self.reward_scaler(reward, done)
            self.rewards[t].copy_(torch.from_numpy(np.asarray(reward, np.float32)))
            self.terminated[t].copy_(torch.from_numpy(terminated))
            self.truncated[t].copy_(torch.from_numpy(truncated))
            self.mask[t].copy_(torch.from_numpy(valid))
            self.next_obs = self._observe(obs)
            self.prev_done = done
            self.t += 1
            self.env_steps += self.n_envs
            if done.any():
                now = time.perf_counter()
                for i in np.flatnonzero(done):
                    finished.append(
                        Episode(self.env_steps, float(self.ep_return[i]), int(self.ep_length[i]), now, extras)
                    )
                self.ep_return[done] = 0.0
                self.ep_length[done] = 0
                if max_episodes is not None and len(finished) >= max_episodes:
                    return step + 1, finished
        return n, finished

    @torch.inference_mode()
    def finish(self, value_fn: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """next_values[t] = V(s_{t+1}): the next row's value (for an ended episode, V of its true
        final observation), and for the last row V of the env's current observation."""
        self.next_values[:-1].copy_(self.values[1:])
        if value_fn is None:
            self.next_values.zero_()
        else:
            self.next_values[-1].copy_(value_fn(to_tensor(self.next_obs, self.device)))

    def clear(self) -> None:
        self.t = 0

    _TENSORS = ("obs", "actions", "log_probs", "values", "rewards", "terminated", "truncated", "mask")

    def state_dict(self) -> dict[str, Any]:
        return {
            **{name: _copy(take(getattr(self, name), slice(0, self.t)), "cpu") for name in self._TENSORS},
            "t": self.t,
            "next_obs": _copy(self.next_obs),
            "prev_done": self.prev_done.copy(),
            "ep_return": self.ep_return.copy(),
            "ep_length": self.ep_length.copy(),
            "env_steps": self.env_steps,
            "obs_normalizer": None if self.obs_normalizer is None else self.obs_normalizer.state_dict(),
            "reward_scaler": None if self.reward_scaler is None else self.reward_scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        """With env_restored=False the env starts fresh episodes and the partial batch is dropped
        (its episodes cannot be continued)."""
        self.env_steps = state["env_steps"]
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        if len(state["prev_done"]) != self.n_envs:  # loaded beside another env (deeprl.load, for acting only)
            return
        if not env_restored:  # the next collect() resets the env with this env_steps' seed
            self.t, self.next_obs = 0, None
            return
        self.t = state["t"]
        for name in self._TENSORS:
            copy_obs(take(getattr(self, name), slice(0, self.t)), state[name])
        self.next_obs = _copy(state["next_obs"])
        self.prev_done, self.ep_return = state["prev_done"].copy(), state["ep_return"].copy()
        self.ep_length = state["ep_length"].copy()


def raw_action_layout(action_space: gym.Space) -> tuple[tuple[int, ...], torch.dtype]:
    """(shape, dtype) of one raw action as the rollout stores it: a Discrete index (), the components of
    a MultiDiscrete or MultiBinary action as (k,) int64 (one Categorical each, nets.ActorCritic), a Box
    action's Gaussian sample u in float32."""
    if isinstance(action_space, gym.spaces.Discrete):
        return (), torch.int64
    if isinstance(action_space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return (int(np.prod(action_space.shape)),), torch.int64
    return tuple(action_space.shape), torch.float32


def _copy(x: Any, device: str | None = None) -> Any:
    """A copy of an array, a tensor (moved to `device`), or a dict of them; None stays None."""
    if isinstance(x, dict):
        return {key: _copy(value, device) for key, value in x.items()}
    if isinstance(x, torch.Tensor):
        return x.to(device).clone() if device is not None else x.clone()
    return None if x is None else np.array(x)
