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
from dataclasses import dataclass
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
    """What collection needs from a policy (nets.ActorCritic is one). A policy with `noise_layout()` is given
    its sampling noise from each env's own stream (EnvSlice); one without it samples as it likes."""

    def act(
        self, obs: torch.Tensor, *noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...
    def env_action(self, raw_action: torch.Tensor) -> np.ndarray: ...


@dataclass
class Piece:
    """`steps` vector steps of the envs [start, start + n) of a rollout, as one EnvSlice collected them: the
    rows the learner writes into its Rollout. Tensors and arrays are [steps, n, ...]."""

    steps: int
    obs: Any  # what the policy saw (normalised, in the storage dtype): a tensor or a dict of tensors
    raw_obs: list[Any] | None  # the same observations raw, one batch per row, for the normaliser's statistics
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: np.ndarray  # raw rewards (float64): scaling needs every env's row in order (the learner's job)
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray  # False on an autoreset step (not a transition)
    next_obs: Any  # the envs' current (raw) observation after the last step
    episodes: list[tuple[int, int, float, int, float]]  # (row, env index in the rollout, return, length, time)
    in_place: bool = False  # the tensors are views of the Rollout's own storage (the local backend)


class EnvSlice:
    """The envs [start, start + n) of a rollout `width` envs wide, stepped with the policy: the whole rollout
    on the local backend, one Ray worker's share on the Ray backend (deeprl.backends.ray_onpolicy).

    Whatever the split, env j of the rollout behaves the same: it resets from the seed `base + j`
    (Gymnasium's vector-env convention for `reset(seed=base)`), and its actions are sampled with noise from
    its own stream (Seeds "action_noise", j, batch index), drawn a batch at a time. The policy computes on a
    batch `width` rows wide with this slice's observations in their own rows: a matrix product's row is
    computed the same way in a batch of the same shape, so the actions, log-probabilities and values are
    bit for bit those of the whole rollout computed in one process (tests/test_ray.py)."""

    def __init__(
        self,
        env: Any,
        n_steps: int,
        *,
        start: int = 0,
        width: int | None = None,
        seeds: Seeds | None = None,
        device: torch.device | str = "cpu",
        normalized: Any = False,
    ):
        self.env, self.n_steps, self.start = env, n_steps, start
        self.normalized = normalized  # what a normaliser rewrites as float32 (obs_storage's `normalized`)
        self.n = getattr(env, "num_envs", 1)
        self.width = self.n if width is None else width
        self.rows = slice(None) if self.n == self.width else slice(start, start + self.n)
        self.seeds = Seeds(0) if seeds is None else seeds
        self.device = torch.device(device)
        self.obs_space = getattr(env, "single_observation_space", env.observation_space)
        self.action_space = getattr(env, "single_action_space", env.action_space)
        self.next_obs: Any = None  # the envs' current raw observation (None until the first reset)
        self.prev_done = np.zeros(self.n, dtype=bool)  # did env i's episode end on the last step?
        self.ep_return = np.zeros(self.n, np.float64)
        self.ep_length = np.zeros(self.n, np.int64)
        self.reset_stream: tuple = ("env_reset",)  # a restarted Ray worker's envs reset from their own stream
        self._noise_key: tuple | None = None
        self._noise: torch.Tensor | None = None
        self._wide: dict[str, Any] = {}

    def reset(self, env_steps: int, seed: int | None = None) -> None:
        if autoreset_mode(self.env) != gym.vector.AutoresetMode.NEXT_STEP:
            raise ValueError(f"Rollout needs a vector env in NEXT_STEP autoreset mode, got {autoreset_mode(self.env)}")
        base = self.seeds.integer(*self.reset_stream, env_steps) if seed is None else seed
        # env j of the rollout gets base + j, as `reset(seed=base)` of the whole vector env gives it
        seeds = base if self.start == 0 else [base + self.start + j for j in range(self.n)]
        self.next_obs, _ = self.env.reset(seed=seeds)
        self.prev_done[:] = False
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0

    def _noise_rows(self, layout: tuple[str, tuple[int, ...]], batch: int, t: int) -> torch.Tensor:
        """Row t of each env's noise for batch `batch` (drawn for the whole batch at its first row)."""
        if self._noise_key != (batch, layout):
            kind, shape = layout
            blocks = []
            for j in range(self.n):
                rng = self.seeds.generator("action_noise", self.start + j, batch)
                draw = rng.standard_exponential if kind == "exponential" else rng.standard_normal
                blocks.append(draw((self.n_steps, *shape), dtype=np.float32))
            self._noise = torch.from_numpy(np.stack(blocks, axis=1)).to(self.device)
            self._noise_key = (batch, layout)
        return self._noise[t]

    def _widened(self, name: str, rows: Any, fill: float = 0.0) -> Any:
        """`rows` (n rows; a tensor or a dict of tensors) inside a `width`-row batch at this slice's rows."""
        return rows if self.n == self.width else widen(rows, self.rows, self.width, fill, self._wide, name)

    def empty_piece(self, k: int) -> Piece:
        """Fresh [k, n] buffers for `collect` (the local backend writes into its Rollout's storage instead)."""
        action_shape, action_dtype = raw_action_layout(self.action_space)
        zeros = lambda *shape, dtype=torch.float32: torch.zeros(shape, dtype=dtype, device=self.device)  # noqa: E731
        return self._arrays(
            k,
            obs_storage(self.obs_space, (k, self.n), self.device, normalized=self.normalized),
            zeros(k, self.n, *action_shape, dtype=action_dtype),
            zeros(k, self.n),
            zeros(k, self.n),
        )

    def _arrays(self, k: int, obs: Any, actions: Any, log_probs: Any, values: Any) -> Piece:
        return Piece(
            k,
            obs,
            None,
            actions,
            log_probs,
            values,
            np.zeros((k, self.n), np.float64),
            np.zeros((k, self.n), bool),
            np.zeros((k, self.n), bool),
            np.zeros((k, self.n), bool),
            None,
            [],
        )

    @torch.inference_mode()
    def collect(
        self,
        policy: Policy,
        steps: int,
        *,
        piece: Piece | None = None,
        batch: int,
        t: int,
        env_steps: int,
        normalize: Callable[[Any], Any] | None = None,
        max_episodes: int | None = None,
    ) -> Piece:
        """Step the envs `steps` times (stopping once `max_episodes` episodes have ended) into `piece` (default:
        fresh buffers), rows t, t + 1, ... of batch number `batch`; `env_steps` is the rollout's count before the
        first step. Observations are normalised with `normalize` as it is (the statistics move between batches)."""
        if self.next_obs is None:
            self.reset(env_steps)
        piece = self.empty_piece(steps) if piece is None else piece
        layout = policy.noise_layout() if hasattr(policy, "noise_layout") else None
        piece.raw_obs = [] if normalize is not None else None
        for step in range(piece.steps):
            raw = self.next_obs
            if piece.raw_obs is not None:
                piece.raw_obs.append(raw)
            obs_t = take(piece.obs, step)
            copy_obs(obs_t, raw if normalize is None else normalize(raw))
            if layout is None:
                action, log_prob, value = policy.act(self._widened("obs", obs_t))
            else:
                noise = self._widened("noise", self._noise_rows(layout, batch, t + step), 1.0)
                action, log_prob, value = policy.act(self._widened("obs", obs_t), noise)
            action, log_prob = action[self.rows], log_prob[self.rows]
            piece.actions[step].copy_(action)
            piece.log_probs[step].copy_(log_prob)
            if value is not None:
                piece.values[step].copy_(value[self.rows])
            obs, reward, terminated, truncated, _ = self.env.step(policy.env_action(action))
            valid = ~self.prev_done  # an autoreset step is not a transition
            done = terminated | truncated
            self.ep_return += reward * valid
            self.ep_length += valid
            piece.rewards[step], piece.terminated[step], piece.truncated[step] = reward, terminated, truncated
            piece.valid[step] = valid
            self.next_obs, self.prev_done = obs, done
            if done.any():
                now = time.perf_counter()
                for i in np.flatnonzero(done):
                    piece.episodes.append(
                        (step, self.start + int(i), float(self.ep_return[i]), int(self.ep_length[i]), now)
                    )
                self.ep_return[done] = 0.0
                self.ep_length[done] = 0
                if max_episodes is not None and len(piece.episodes) >= max_episodes:
                    piece.steps = step + 1
                    break
        piece.next_obs = self.next_obs
        return piece

    def state_dict(self) -> dict[str, Any]:
        return {
            "next_obs": _copy(self.next_obs),
            "prev_done": self.prev_done.copy(),
            "ep_return": self.ep_return.copy(),
            "ep_length": self.ep_length.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_obs = _copy(state["next_obs"])
        self.prev_done, self.ep_return = state["prev_done"].copy(), state["ep_return"].copy()
        self.ep_length = state["ep_length"].copy()

    def forget(self) -> None:
        """The envs start fresh episodes at the next collect (after a resume whose env could not be saved)."""
        self.next_obs = None


def widen(
    rows: Any, at: slice, width: int, fill: float = 0.0, cache: dict[str, Any] | None = None, name: str = ""
) -> Any:
    """`rows` (a tensor, or a dict of tensors) placed at rows `at` of a `width`-row batch, `fill` elsewhere: what a
    Ray worker computes its envs' rows in, so that a kernel rounds them as in the whole rollout's batch (EnvSlice).
    With a `cache`, the batch is kept under `name` and reused (its other rows keep `fill`)."""
    if isinstance(rows, dict):
        return {key: widen(value, at, width, fill, cache, f"{name}.{key}") for key, value in rows.items()}
    wide = None if cache is None else cache.get(name)
    if wide is None or wide.dtype != rows.dtype or wide.device != rows.device:
        wide = torch.full((width, *rows.shape[1:]), fill, dtype=rows.dtype, device=rows.device)
        if cache is not None:
            cache[name] = wide
    wide[at] = rows
    return wide


class Rollout:
    """A batch of n_steps x n_envs on-policy transitions, collected in pieces of any size by a `source`: an
    EnvSlice over the whole env (the local backend) or Ray workers each stepping a slice of it
    (deeprl.backends.ray_onpolicy). The env resets from `seeds` ("env_reset", by env steps taken): at the
    start, and after a resume whose env could not be saved (new episodes, not a replay of the first ones).

    The observation normaliser's statistics stay fixed within a batch and take in the batch's observations
    when it is complete (`finish`): every row of a batch is normalised alike, and each Ray worker normalises
    with the statistics the learner sent at the batch's start, as the local backend does. Reward scaling runs
    on the learner, row by row in order, as the rows arrive."""

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
        self.normalized = (
            set(obs_normalizer.normalizers)
            if isinstance(obs_normalizer, DictObsNormalizer)
            else obs_normalizer is not None
        )
        self.obs = obs_storage(obs_space, (T, N), self.device, normalized=self.normalized)
        self.actions = zeros(T, N, *action_shape, dtype=action_dtype)  # raw samples u (see nets.ActorCritic)
        self.log_probs, self.values, self.rewards = zeros(T, N), zeros(T, N), zeros(T, N)
        self.terminated, self.truncated, self.mask = zeros(T, N), zeros(T, N), zeros(T, N)
        self.next_values = zeros(T, N)
        self.t = 0  # rows filled
        self.batches = 0  # batches started before this one: the index of the action noise's draw
        self.raw_obs: list[Any] = []  # this batch's raw observations, for the normaliser at its end
        self.bootstrap_fixes: list[tuple[int, slice, Any]] = []  # (row, env columns, final obs): Ray restarts
        self.source: Any = EnvSlice(env, n_steps, seeds=self.seeds, device=self.device, normalized=self.normalized)
        self.next_obs: Any = None  # the envs' current raw observation, after the last row
        self.env_steps = 0

    @property
    def full(self) -> bool:
        return self.t == self.n_steps

    @property
    def prev_done(self) -> np.ndarray:
        return self.source.prev_done

    def normalize(self, obs: Any) -> Any:
        return obs if self.obs_normalizer is None else self.obs_normalizer(obs)

    def reset(self, seed: int | None = None) -> None:
        self.source.reset(self.env_steps, seed)
        self.next_obs = self.source.next_obs

    def collect(
        self, policy: Policy, n: int, max_episodes: int | None = None, extras: tuple = ()
    ) -> tuple[int, list[Episode]]:
        """Step all envs up to `n` times (never past a full batch, and stopping once `max_episodes`
        episodes have finished); returns (vector steps taken, finished episodes)."""
        n = min(n, self.n_steps - self.t)
        rows = slice(self.t, self.t + n)
        piece = None
        if isinstance(self.source, EnvSlice):  # in-process: write straight into this batch's storage
            piece = self.source._arrays(
                n, take(self.obs, rows), self.actions[rows], self.log_probs[rows], self.values[rows]
            )
            piece.in_place = True
        piece = self.source.collect(
            policy,
            n,
            piece=piece,
            batch=self.batches,
            t=self.t,
            env_steps=self.env_steps,
            normalize=None if self.obs_normalizer is None else self.normalize,
            max_episodes=max_episodes,
        )
        return piece.steps, self.write(piece, extras)

    def write(self, piece: Piece, extras: tuple = ()) -> list[Episode]:
        """Rows t, t + 1, ... from `piece` (the whole width of the rollout); returns the episodes it ended."""
        t, k = self.t, piece.steps
        rows = slice(t, t + k)
        if not piece.in_place:
            copy_obs(take(self.obs, rows), take(piece.obs, slice(0, k)))
            self.actions[rows].copy_(piece.actions[:k])
            self.log_probs[rows].copy_(piece.log_probs[:k])
            self.values[rows].copy_(piece.values[:k])
        for j in range(k):
            reward = piece.rewards[j]
            if self.reward_scaler is not None:
                reward = self.reward_scaler(reward, piece.terminated[j] | piece.truncated[j])
            self.rewards[t + j].copy_(torch.from_numpy(np.asarray(reward, np.float32)))
        self.terminated[rows].copy_(torch.from_numpy(piece.terminated[:k]))
        self.truncated[rows].copy_(torch.from_numpy(piece.truncated[:k]))
        self.mask[rows].copy_(torch.from_numpy(piece.valid[:k]))
        if piece.raw_obs is not None:
            self.raw_obs += piece.raw_obs[:k]
        self.next_obs = piece.next_obs
        finished = [
            Episode(self.env_steps + (row + 1) * self.n_envs, ret, length, when, extras)
            for row, _, ret, length, when in sorted(piece.episodes, key=lambda e: (e[0], e[1]))
        ]
        self.t += k
        self.env_steps += k * self.n_envs
        return finished

    def _cut_episodes(self, cols: slice, final_obs: Any) -> None:
        """The envs `cols` were lost with their worker: the episodes they were in end as truncated at the last
        row written (bootstrapping from V of the last observation the worker sent), and the restarted worker's
        envs start new ones. Envs whose episode had just ended need nothing."""
        if self.t == 0:  # the last row is in a batch already learnt from, which bootstrapped from next_obs
            return
        last = self.t - 1
        ended = (self.terminated[last, cols] + self.truncated[last, cols]) > 0
        self.truncated[last, cols] = torch.where(
            ended, self.truncated[last, cols], torch.ones_like(ended, dtype=torch.float32)
        )
        self.bootstrap_fixes.append((last, cols, _copy(final_obs)))

    @torch.inference_mode()
    def finish(self, value_fn: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """next_values[t] = V(s_{t+1}): the next row's value (for an ended episode, V of its true
        final observation), and for the last row V of the env's current observation. Then the observation
        statistics take in the batch (they were fixed while it was collected)."""
        self.next_values[:-1].copy_(self.values[1:])
        if value_fn is None:
            self.next_values.zero_()
        else:
            self.next_values[-1].copy_(value_fn(to_tensor(self.normalize(self.next_obs), self.device)))
            for row, cols, final_obs in self.bootstrap_fixes:
                cut = ~((self.terminated[row, cols] > 0) & (self.truncated[row, cols] == 0))
                values = value_fn(to_tensor(self.normalize(final_obs), self.device))
                self.next_values[row, cols] = torch.where(cut, values, self.next_values[row, cols])
        self.bootstrap_fixes = []
        if self.obs_normalizer is not None:
            for raw in self.raw_obs:
                self.obs_normalizer.update(raw)
        self.raw_obs = []

    def clear(self) -> None:
        self.t = 0
        self.batches += 1

    def forget_env(self) -> None:
        """The envs start fresh episodes at the next collect(): the partial batch is dropped (its episodes cannot be
        continued), and the next batch draws fresh noise."""
        self.t, self.next_obs, self.raw_obs, self.bootstrap_fixes = 0, None, [], []
        self.batches += 1
        self.source.forget()

    _TENSORS = ("obs", "actions", "log_probs", "values", "rewards", "terminated", "truncated", "mask")

    def state_dict(self) -> dict[str, Any]:
        source = self.source.state_dict()  # first: a Ray worker lost meanwhile cuts episodes in the rows below
        return {
            **{name: _copy(take(getattr(self, name), slice(0, self.t)), "cpu") for name in self._TENSORS},
            "t": self.t,
            "batches": self.batches,
            "raw_obs": [_copy(raw) for raw in self.raw_obs],
            "bootstrap_fixes": [(row, cols.start, cols.stop, _copy(obs)) for row, cols, obs in self.bootstrap_fixes],
            **source,
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
        self.batches = int(state["batches"])
        if not env_restored:  # the next collect() resets the env with this env_steps' seed
            self.forget_env()
            return
        self.t = state["t"]
        for name in self._TENSORS:
            copy_obs(take(getattr(self, name), slice(0, self.t)), state[name])
        self.raw_obs = [_copy(raw) for raw in state["raw_obs"]]
        fixes = state["bootstrap_fixes"]
        self.bootstrap_fixes = [(int(row), slice(int(a), int(b)), _copy(obs)) for row, a, b, obs in fixes]
        self.source.load_state_dict(state)
        self.next_obs = self.source.next_obs


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
