"""Experience replay (the notes' "Experience Replay"; Lin 1992, Mnih et al. 2015) shared by the
off-policy algorithms: DQN and its extensions, DDPG, TD3, SAC.

One `ReplayBuffer` class, preallocated numpy ring storage, with
- vector envs: each env writes its own stream (`capacity / n_envs` slots per env), so n-step
  returns and frame stacks never mix two envs;
- `terminated` and `truncated` kept apart: a sampled transition has `terminated` = 1 only if the
  episode TERMINATED within the steps summed; a truncated episode is cut but still bootstraps;
- n-step returns (`n_step`, Sutton & Barto ch. 7; Rainbow, Hessel et al. 2018): computed as the
  transitions arrive, `rewards` = sum_{j<k} gamma^j r_{t+j}, `next_obs` = s_{t+k}, and `steps` = k,
  with k = n, or fewer when the episode ended first. The buffer needs gamma for that sum only: the
  sum is kept as the rewards arrive so that sampling costs one gather, not n. It hands out k, not
  gamma^k: the update that bootstraps writes its own gamma ** steps (docs/design.md, convention 5: γ flows config →
  algorithm → math, visibly in every update, never through a buffer);
- proportional prioritized replay (`prioritized`, Schaul et al. 2016) on a sum-tree:
  P(i) = p_i^alpha / sum_k p_k^alpha, new transitions get the largest priority seen so far, the
  importance-sampling weights w_i = (N P(i))^-beta are divided by the batch's largest weight.
  Beta annealing is the CALLER's job: pass `beta=` to `sample` (DQN anneals it to 1 over its budget);
  without it the buffer uses `self.beta` (0.4 unless changed).

Storage: one observation "frame" per env step, not obs and next_obs separately. Each transition's
next observation is the frame written right after its observation, so nothing is stored twice. For
uint8 frame stacks (Atari: (4, 84, 84) from FrameStackObservation) only the newest 84x84 frame of
each step is stored and the stack is rebuilt at sampling time from the previous frames of the same
env; an episode's first observation writes its whole stack. A stack is recognised by its shape
(channels-first uint8, K <= 16 frames smaller than each side; `frame_stack=None`) and confirmed by
every transition: next_obs[:-1] must equal obs[1:], which is exactly what makes storing the newest frame
lossless. The first transition that breaks it (a channels-first RGB image such as (3, 64, 64) is no
stack) switches the buffer to whole observations, rebuilding what it holds, so no transition is ever
stored wrong and no user input is needed; `frame_stack=K` insists on a stack (and raises instead),
`frame_stack=1` stores whole observations from the start. 1M Atari transitions take about
1M x 84 x 84 bytes = 7.1 GB (`ReplayBuffer.nbytes`), a quarter of storing stacks and an eighth of
storing obs and next_obs stacks. Vector observations are stored as float32. The cost of this layout:
each episode also spends one slot on its final observation (and K-1 more on its first stack), so
`len(buf)` can be a little below `capacity` when the ring is full.

Every observation space the networks take (deeprl.nets.make_encoder) is stored in a compact dtype
(deeprl.spaces.storage_dtype, the rule rollouts use too): uint8 and bool Boxes (frames, MinAtar's
planes, RAM bytes) as they are, Discrete and MultiDiscrete values as int64, MultiBinary as int8, other
Boxes as float32. A Dict observation gets one ring per key, each in its own dtype (the action mask,
deeprl.spaces.MASK_KEY, as bool); `sample` then returns obs and next_obs as dicts of tensors, as
deeprl.spaces.to_tensor makes them for acting. Dict keys are stored whole (no frame-stack trick inside
a Dict).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from deeprl.errors import UsageError
from deeprl.rundir import copy_released
from deeprl.spaces import key_storage_dtype, storage_dtype

Obs = Any  # an array (tensor), or a dict of them for a Dict observation space


class ReplayBatch(NamedTuple):
    obs: Obs  # (B, *obs_shape), or {key: (B, *shape)} for Dict observations
    actions: torch.Tensor  # (B,) int64 for Discrete, (B, *shape) float32 for Box
    rewards: torch.Tensor  # (B,) n-step discounted reward sum
    next_obs: Obs  # (B, *obs_shape): the observation k steps later (a dict for Dict observations)
    terminated: torch.Tensor  # (B,) 1.0 if the episode terminated within the k steps
    steps: torch.Tensor  # (B,) k, the number of rewards summed (float32): the update bootstraps with γ**k
    weights: torch.Tensor  # (B,) importance-sampling weights (ones when not prioritized)
    indices: np.ndarray  # (B,) slots, for update_priorities


def available_memory() -> int:
    """Bytes of memory this process could use: psutil's 'available' if installed, else physical RAM."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _dict_layout(obs_space: gym.spaces.Dict) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, storage dtype)} of a Dict observation: the action mask as bool, the rest by storage_dtype."""
    layout = {}
    for key, space in obs_space.spaces.items():
        if isinstance(space, gym.spaces.Dict):
            raise TypeError(f"ReplayBuffer stores one level of Dict observations; key {key!r} holds {space}")
        layout[key] = (tuple(space.shape), key_storage_dtype(key, space))
    return layout


def _frame_layout(obs_space: gym.Space, frame_stack: int | None) -> tuple[int, tuple[int, ...], Any]:
    """(K, frame shape, storage dtype): observations are the last K frames written. Dict observations:
    (1, None, {key: dtype}), each key stored whole."""
    if isinstance(obs_space, gym.spaces.Dict):
        if frame_stack not in (None, 1):
            raise ValueError(f"frame_stack={frame_stack}: Dict observations are stored one whole key per slot")
        return 1, None, {key: dtype for key, (_, dtype) in _dict_layout(obs_space).items()}
    dtype = storage_dtype(obs_space)
    shape = tuple(obs_space.shape)
    if frame_stack is None:  # auto: channels-first uint8 frame stacks, like (4, 84, 84)
        is_stack = dtype == np.uint8 and len(shape) == 3 and shape[0] <= 16 and min(shape[1:]) > shape[0]
        frame_stack = shape[0] if is_stack else 1
    if frame_stack == 1:
        return 1, shape, dtype
    if not isinstance(obs_space, gym.spaces.Box) or shape[0] != frame_stack:
        raise ValueError(f"frame_stack={frame_stack} but observations have shape {shape}")
    return frame_stack, shape[1:], dtype


def _obs_bytes(obs_space: gym.Space, frame_stack: int | None) -> int:
    """Bytes one slot's observation takes (one frame of a stack; every key of a Dict)."""
    if isinstance(obs_space, gym.spaces.Dict):
        return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in _dict_layout(obs_space).values())
    _, frame_shape, dtype = _frame_layout(obs_space, frame_stack)
    return int(np.prod(frame_shape)) * dtype.itemsize


def _leaves(obs: Obs) -> list[Any]:
    """The arrays of an observation batch: itself, or a Dict observation's values in key order."""
    return list(obs.values()) if isinstance(obs, dict) else [obs]


def _names(name: str, tree: Obs) -> list[str]:
    """Labels for error messages, in `_leaves` order: 'frames', or 'frames[key]' for each Dict key."""
    return [f"{name}[{key!r}]" for key in tree] if isinstance(tree, dict) else [name]


def tree_map(fn: Any, obs: Obs, *rest: Any) -> Obs:
    """fn(array, *rest) for an observation batch, or for each key of a Dict observation's batch (the
    dict's keys lead; `rest` holds dicts with the same keys)."""
    if isinstance(obs, dict):
        return {key: fn(value, *(r[key] for r in rest)) for key, value in obs.items()}
    return fn(obs, *rest)


def _action_layout(action_space: gym.Space) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(action_space, gym.spaces.Discrete):
        return (), np.dtype(np.int64)
    if isinstance(action_space, gym.spaces.Box):
        return tuple(action_space.shape), np.dtype(np.float32)
    raise TypeError(f"ReplayBuffer stores Discrete or Box actions, got {action_space}")


class SumTree:
    """Binary tree whose leaves hold priorities and whose inner nodes hold the sums of their
    children: setting a leaf and finding the leaf where a prefix sum lands are O(log N)."""

    def __init__(self, capacity: int):
        self.size = 1 << max(1, math.ceil(math.log2(capacity)))
        self.tree = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def __getitem__(self, leaves: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(leaves) + self.size]

    def set(self, leaves: np.ndarray, values: np.ndarray | float) -> None:
        nodes = np.asarray(leaves, dtype=np.int64) + self.size
        self.tree[nodes] = values
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, prefix: np.ndarray) -> np.ndarray:
        """For each value in [0, total): the leaf i with sum(p[:i]) <= value < sum(p[:i+1])."""
        nodes = np.ones(len(prefix), dtype=np.int64)
        prefix = prefix.astype(np.float64).copy()
        while nodes[0] < self.size:
            left = self.tree[2 * nodes]
            right = prefix >= left
            prefix -= left * right
            nodes = 2 * nodes + right
        return nodes - self.size


class ReplayBuffer:
    """Ring buffer of transitions from `n_envs` parallel envs; see the module docstring. `gamma` sums the
    n-step rewards and nothing else; `seed` (an int, or a SeedSequence such as
    `Seeds(seed).sequence("replay")`) seeds the sampling."""

    # Per-slot bookkeeping beside the frame and the action: 1-step reward, n-step return (float32),
    # k (uint8), terminated, truncated, n-step terminated, has-transition, ready (bool).
    _SLOT_EXTRA_BYTES = 4 + 4 + 1 + 1 + 1 + 1 + 1 + 1

    def __init__(
        self,
        capacity: int,
        obs_space: gym.Space,
        action_space: gym.Space,
        *,
        n_envs: int = 1,
        device: str | torch.device = "cpu",
        n_step: int = 1,
        gamma: float = 0.99,
        prioritized: bool = False,
        alpha: float = 0.6,
        seed: int | np.random.SeedSequence = 0,
        frame_stack: int | None = None,
        beta: float = 0.4,
        priority_eps: float = 1e-6,
    ):
        self.K, self.frame_shape, self.obs_dtype = _frame_layout(obs_space, frame_stack)
        self.action_shape, self.action_dtype = _action_layout(action_space)
        self.dict_obs = isinstance(obs_space, gym.spaces.Dict)
        self.obs_shape = None if self.dict_obs else tuple(obs_space.shape)
        self.n_envs, self.n_step, self.gamma = int(n_envs), int(n_step), float(gamma)
        self.prioritized, self.alpha, self.beta, self.priority_eps = prioritized, alpha, beta, priority_eps
        self.device = torch.device(device)
        self.slots = math.ceil(capacity / self.n_envs)  # per env
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if self.slots < self.n_step + self.K + 2:
            raise UsageError(
                f"buffer_size {capacity} is too small for {n_envs} envs with n_step {n_step}: "
                f"need at least {(self.n_step + self.K + 2) * self.n_envs}. Raise --buffer-size."
            )
        self.capacity, self.obs_space, self.action_space = int(capacity), obs_space, action_space
        # An auto-detected stack is a guess from the shape: the first transition that is not one frame on
        # from its observation (a channels-first RGB image, say) switches to whole observations.
        self.auto_stack = frame_stack is None and self.K > 1
        self._check_memory(self._nbytes(frame_stack))
        E, S = self.n_envs, self.slots
        if self.dict_obs:  # one ring per key, in the key's own dtype
            self.frames = {k: np.zeros((E, S, *shape), dtype) for k, (shape, dtype) in _dict_layout(obs_space).items()}
        else:
            self.frames = np.zeros((E, S, *self.frame_shape), dtype=self.obs_dtype)
        self.actions = np.zeros((E, S, *self.action_shape), dtype=self.action_dtype)
        self.rewards = np.zeros((E, S), dtype=np.float32)  # r_{t+1} of the step from this slot
        self.terminated = np.zeros((E, S), dtype=bool)  # 1-step flags, kept apart
        self.truncated = np.zeros((E, S), dtype=bool)
        self.n_return = np.zeros((E, S), dtype=np.float32)  # sum_{j<k} gamma^j r_{t+j}
        self.n_k = np.zeros((E, S), dtype=np.uint8)  # k: steps summed
        self.n_terminated = np.zeros((E, S), dtype=bool)  # terminated within those k steps
        self.has_transition = np.zeros((E, S), dtype=bool)  # slot is an observation that was acted on
        self.ready = np.zeros((E, S), dtype=bool)  # complete and intact: may be sampled
        self.head = np.zeros(E, dtype=np.int64)  # frames written per env (absolute)
        self.chain = np.zeros(E, dtype=np.int64)  # transitions since the episode began
        self.new_episode = np.ones(E, dtype=bool)
        self.n_ready = 0
        self.max_priority = 1.0
        self.tree = SumTree(E * S) if prioritized else None
        self.rng = np.random.default_rng(seed)
        self._gamma_pows = self.gamma ** np.arange(self.n_step)  # γ^j of the n-step sums (their only use of γ)
        self._stack_offsets = np.arange(self.K - 1, -1, -1)  # K-1, ..., 0 frames back

    @staticmethod
    def nbytes(
        capacity: int,
        obs_space: gym.Space,
        action_space: gym.Space,
        n_envs: int = 1,
        prioritized: bool = False,
        frame_stack: int | None = None,
        **_: Any,
    ) -> int:
        """Bytes the buffer's storage takes (what the constructor checks against free memory)."""
        action_shape, action_dtype = _action_layout(action_space)
        slots = math.ceil(capacity / n_envs) * n_envs
        per_slot = (
            _obs_bytes(obs_space, frame_stack)
            + int(np.prod(action_shape)) * action_dtype.itemsize
            + ReplayBuffer._SLOT_EXTRA_BYTES
        )
        tree = 2 * (1 << max(1, math.ceil(math.log2(slots)))) * 8 if prioritized else 0
        return slots * per_slot + tree

    def _nbytes(self, frame_stack: int | None) -> int:
        return self.nbytes(
            self.capacity,
            self.obs_space,
            self.action_space,
            n_envs=self.n_envs,
            prioritized=self.prioritized,
            frame_stack=frame_stack,
        )

    def _check_memory(self, need: int, held: int = 0) -> None:
        """A clear error before allocating `need` bytes in all, of which the buffer already holds `held`."""
        have = available_memory() + held
        if need > have:
            raise UsageError(
                f"A replay buffer of {self.capacity:,} transitions of {self.obs_space} needs {need / 2**30:.2f} "
                f"GiB, but only {have / 2**30:.2f} GiB of memory is available. Lower --buffer-size "
                f"(about {int(self.capacity * have / need * 0.8):,} would fit)."
            )

    def _store_whole_observations(self) -> None:
        """Switch from one frame per slot to one whole observation per slot. Each slot's observation is
        rebuilt from the frames stored so far, so the slots, flags and positions all stay as they are: every
        stack is exact, as each transition stored so far was one frame on from its observation."""
        self._check_memory(self._nbytes(1), held=self._nbytes(None))
        frames = np.zeros((self.n_envs, self.slots, *self.obs_shape), self.obs_dtype)
        chunk = max(1, 2**26 // max(1, frames[0, 0].nbytes))  # rebuild ~64 MB at a time
        for e in range(self.n_envs):
            for start in range(0, int(min(self.head[e], self.slots)), chunk):
                pos = np.arange(start, min(start + chunk, self.head[e], self.slots))
                frames[e, pos] = self._stack(np.full(len(pos), e), pos)
        self.frames, self.K, self.frame_shape = frames, 1, self.obs_shape
        self._stack_offsets = np.arange(0, -1, -1)
        self.auto_stack = False

    def __len__(self) -> int:
        return self.n_ready

    # ---- writing -------------------------------------------------------------------------------

    def _stack(self, envs: np.ndarray, abs_pos: np.ndarray) -> Obs:
        """Observations whose newest frame is at absolute position `abs_pos` of each env."""
        if self.dict_obs:
            pos = abs_pos % self.slots
            return {key: frames[envs, pos] for key, frames in self.frames.items()}
        pos = (abs_pos[:, None] - self._stack_offsets) % self.slots
        frames = self.frames[envs[:, None], pos]  # (B, K, *frame_shape)
        return frames[:, 0] if self.K == 1 else frames

    def _set_ready(self, envs: np.ndarray, pos: np.ndarray, value: bool) -> None:
        changed = self.ready[envs, pos] != value
        envs, pos = envs[changed], pos[changed]
        if len(envs) == 0:
            return
        self.ready[envs, pos] = value
        self.n_ready += len(envs) if value else -len(envs)
        if self.tree is not None:
            self.tree.set(envs * self.slots + pos, self.max_priority**self.alpha if value else 0.0)

    def _push(self, envs: np.ndarray, frames: Obs) -> None:
        """Write one frame per env; the slots whose observation used the overwritten frame go."""
        pos = self.head[envs] % self.slots
        hit = (pos[:, None] + np.arange(self.K)) % self.slots  # this slot and K-1 stacks above it
        self._set_ready(np.repeat(envs, self.K), hit.ravel(), False)
        self.has_transition[envs, pos] = False
        if self.dict_obs:
            for key, value in frames.items():
                self.frames[key][envs, pos] = value
        else:
            self.frames[envs, pos] = frames
        self.head[envs] += 1

    def _cut(self, envs: np.ndarray, terminated: np.ndarray) -> None:
        """End the n-step streams of `envs`: their pending transitions become ready as they are."""
        last = self.head[envs] - 2  # newest transition (its next obs is head-1)
        j = np.arange(self.n_step - 1)  # the newest n-1 may still be pending
        live = j[None, :] < np.minimum(self.chain[envs], self.n_step - 1)[:, None]
        e = np.repeat(envs, live.sum(1))
        p = ((last[:, None] - j) % self.slots)[live]
        self.n_terminated[e, p] = np.repeat(terminated, live.sum(1))
        self._set_ready(e, p, True)
        self.chain[envs] = 0

    def end_streams(self, envs: np.ndarray) -> None:
        """The episodes of `envs` stop at their last transition without terminating (their envs were lost, as
        with a Ray actor that died): pending n-step sums become ready as they are, and the next observation
        added for these envs starts a new stream."""
        envs = np.asarray(envs, dtype=np.int64)
        self._cut(envs, np.zeros(len(envs), dtype=bool))
        self.new_episode[envs] = True

    def add(
        self,
        obs: Obs,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: Obs,
        terminated: np.ndarray,
        truncated: np.ndarray,
        valid: np.ndarray | None = None,
    ) -> None:
        """Add one step of every env (leading dim n_envs); rows with valid=False are skipped (the
        NEXT_STEP autoreset step after an episode end is not a transition)."""
        envs = np.arange(self.n_envs) if valid is None else np.flatnonzero(valid)
        if len(envs) == 0:
            return
        rows = envs if valid is not None else slice(None)
        if self.dict_obs:  # the buffer's keys lead (an env may add keys the buffer does not store)
            obs = {k: np.asarray(obs[k])[rows].astype(d, copy=False) for k, d in self.obs_dtype.items()}
            next_obs = {k: np.asarray(next_obs[k])[rows].astype(d, copy=False) for k, d in self.obs_dtype.items()}
        else:
            obs = np.asarray(obs)[rows].astype(self.obs_dtype, copy=False)
            next_obs = np.asarray(next_obs)[rows].astype(self.obs_dtype, copy=False)
        terminated = np.asarray(terminated, dtype=bool)[rows]
        truncated = np.asarray(truncated, dtype=bool)[rows]
        if self.K > 1 and not np.array_equal(next_obs[:, :-1], obs[:, 1:]):
            if not self.auto_stack:
                raise ValueError(
                    "next_obs is not obs shifted by one frame: this is not a frame stack; "
                    "create the ReplayBuffer with frame_stack=1"
                )
            self._store_whole_observations()  # channels-first images that are not a frame stack

        # An observation that is not the previous next_obs starts a new stream (an episode start,
        # or a caller that jumped): write its whole stack, and end any n-step sums still open.
        start = self.new_episode[envs].copy()
        cont = ~start
        if cont.any():
            stored = self._stack(envs[cont], self.head[envs[cont]] - 1)
            same = np.ones(cont.sum(), dtype=bool)
            for a, b in zip(_leaves(stored), _leaves(obs)):
                same &= (a == b[cont]).reshape(len(same), -1).all(1)
            jumped = envs[cont][~same]
            if len(jumped):
                self._cut(jumped, np.zeros(len(jumped), dtype=bool))
                start[np.isin(envs, jumped)] = True
        if start.any():
            s_envs, s_obs = envs[start], tree_map(lambda o: o[start], obs)
            for i in range(self.K):
                self._push(s_envs, s_obs[:, i] if self.K > 1 else s_obs)
            self.chain[s_envs] = 0

        # The transition lives at its observation's slot; its next observation is the next frame.
        pos = (self.head[envs] - 1) % self.slots
        self.actions[envs, pos] = np.asarray(actions)[rows]
        r = np.asarray(rewards, dtype=np.float32)[rows]
        self.rewards[envs, pos] = r
        self.terminated[envs, pos] = terminated
        self.truncated[envs, pos] = truncated
        self.n_return[envs, pos] = 0.0
        self.n_terminated[envs, pos] = False
        self._push(envs, next_obs[:, -1] if self.K > 1 else next_obs)
        self.has_transition[envs, pos] = True

        self._accumulate_n_step(envs, pos, r, terminated, truncated)

    def _accumulate_n_step(
        self, envs: np.ndarray, pos: np.ndarray, r: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
    ) -> None:
        """The n-step bookkeeping of one added step (Sutton & Barto ch. 7): its reward joins the open sums of
        its episode, the transition n-1 steps back becomes ready, and an episode end closes every open sum."""
        # n-step: this reward joins the sums of the last n transitions of the same episode.
        j = np.arange(self.n_step)
        live = j[None, :] <= np.minimum(self.chain[envs], self.n_step - 1)[:, None]
        back = (pos[:, None] - j) % self.slots
        e_idx = np.broadcast_to(envs[:, None], back.shape)[live]
        p_idx = back[live]
        self.n_return[e_idx, p_idx] += np.broadcast_to(self._gamma_pows * r[:, None], back.shape)[live]
        self.n_k[e_idx, p_idx] = np.broadcast_to(j + 1, back.shape)[live]
        self.chain[envs] += 1
        # The transition n-1 steps back now has its n rewards.
        full = self.chain[envs] >= self.n_step
        self._set_ready(envs[full], (pos[full] - (self.n_step - 1)) % self.slots, True)
        done = terminated | truncated
        if done.any():  # the episode's open sums end here; only termination stops the bootstrap
            d_envs = envs[done]
            newest = pos[done]
            count = np.minimum(self.chain[d_envs], self.n_step)  # every transition whose k steps reach the end
            live = j[None, :] < count[:, None]
            e = np.broadcast_to(d_envs[:, None], live.shape)[live]
            p = ((newest[:, None] - j) % self.slots)[live]
            self.n_terminated[e, p] = np.broadcast_to(terminated[done][:, None], live.shape)[live]
            self._set_ready(e, p, True)
            self.chain[d_envs] = 0
        self.new_episode[envs] = done

    # ---- sampling ------------------------------------------------------------------------------

    def _uniform_indices(self, batch_size: int) -> np.ndarray:
        filled = np.minimum(self.head, self.slots)
        cum = np.cumsum(filled)
        out = np.empty(0, dtype=np.int64)
        while len(out) < batch_size:  # rejection: the few slots that are not transitions are skipped
            u = self.rng.integers(0, cum[-1], size=2 * (batch_size - len(out)) + 8)
            e = np.searchsorted(cum, u, side="right")
            p = u - (cum[e] - filled[e])
            ok = self.ready[e, p]
            out = np.concatenate([out, (e * self.slots + p)[ok]])
        return out[:batch_size]

    def _prioritized_indices(self, batch_size: int) -> np.ndarray:
        total = self.tree.total
        # stratified: one draw from each of batch_size equal slices of the priority mass
        prefix = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        idx = self.tree.find(np.minimum(prefix, np.nextafter(total, 0)))
        bad = self.tree[idx] <= 0  # float rounding at a slice edge can land on an empty leaf
        while bad.any():
            idx[bad] = self.tree.find(self.rng.random(bad.sum()) * total)
            bad = self.tree[idx] <= 0
        return idx

    def sample(self, batch_size: int, beta: float | None = None) -> ReplayBatch:
        if self.n_ready == 0:
            raise RuntimeError("sample() from an empty ReplayBuffer")
        idx = self._prioritized_indices(batch_size) if self.prioritized else self._uniform_indices(batch_size)
        e, p = idx // self.slots, idx % self.slots
        k = self.n_k[e, p].astype(np.int64)
        if self.prioritized:
            probs = self.tree[idx] / self.tree.total
            weights = (self.n_ready * probs) ** -(self.beta if beta is None else beta)
            weights = (weights / weights.max()).astype(np.float32)
        else:
            weights = np.ones(batch_size, dtype=np.float32)
        to = lambda a: torch.as_tensor(a, device=self.device)
        return ReplayBatch(
            obs=tree_map(to, self._stack(e, p)),
            actions=to(self.actions[e, p]),
            rewards=to(self.n_return[e, p]),
            next_obs=tree_map(to, self._stack(e, p + k)),  # s_{t+k} is k frames on
            terminated=to(self.n_terminated[e, p].astype(np.float32)),
            steps=to(k.astype(np.float32)),
            weights=to(weights),
            indices=idx,
        )

    def minibatches(self, n: int, batch_size: int) -> Iterator[ReplayBatch]:
        """n independent uniform minibatches from one draw (one index sample and one host-to-device copy
        for a whole round of gradient steps, as DDPG/TD3/SAC take). Uniform replay only: prioritized
        minibatches must be drawn one at a time, after the previous update's new priorities."""
        if self.prioritized:
            raise RuntimeError("minibatches() draws uniformly; sample() one minibatch at a time with priorities")
        batch = self.sample(n * batch_size)
        for k in range(n):
            rows = slice(k * batch_size, (k + 1) * batch_size)
            yield ReplayBatch(*(tree_map(lambda f, r=rows: f[r], field) for field in batch))

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray | torch.Tensor) -> None:
        """Set p_i = |delta_i| + eps for sampled slots still in the buffer (prioritized only)."""
        if self.tree is None:
            raise RuntimeError("update_priorities needs a ReplayBuffer(prioritized=True)")
        if isinstance(priorities, torch.Tensor):
            priorities = priorities.detach().cpu().numpy()
        priorities = np.abs(np.asarray(priorities, dtype=np.float64)) + self.priority_eps
        indices = np.asarray(indices)
        keep = self.ready[indices // self.slots, indices % self.slots]
        self.tree.set(indices[keep], priorities[keep] ** self.alpha)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    # ---- resume --------------------------------------------------------------------------------

    _ARRAYS = (
        "frames",
        "actions",
        "rewards",
        "terminated",
        "truncated",
        "n_return",
        "n_k",
        "n_terminated",
        "has_transition",
        "ready",
        "head",
        "chain",
        "new_episode",
    )

    _PER_ENV = ("head", "chain", "new_episode")  # shape (n_envs,): saved whole

    def state_dict(self) -> dict[str, Any]:
        """The buffer's arrays as views (no copy) of their filled slots only: the run directory streams
        each to its own file, so a checkpoint costs the filled part on disk and almost nothing in memory.
        Save it before the buffer changes again."""
        filled = int(min(self.head.max(initial=0), self.slots))
        state = {
            name: getattr(self, name)
            if name in self._PER_ENV
            else tree_map(lambda a: a[:, :filled], getattr(self, name))
            for name in self._ARRAYS
        }
        state.update(
            filled=filled,
            slots=self.slots,
            n_envs=self.n_envs,
            n_ready=self.n_ready,
            max_priority=self.max_priority,
            beta=self.beta,
            rng=self.rng.bit_generator.state,
            tree=None if self.tree is None else self.tree.tree,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        filled = int(state["filled"])
        if (state["slots"], state["n_envs"]) != (self.slots, self.n_envs):
            raise ValueError(
                f"the replay buffer was saved with {state['slots']} slots for each of {state['n_envs']} "
                f"envs, this one has {self.slots} for {self.n_envs}: was it saved with another "
                "--buffer-size/--n-envs?"
            )
        if isinstance(state["frames"], dict) != self.dict_obs or (
            self.dict_obs and list(state["frames"]) != list(self.frames)
        ):
            keys = lambda f: f"Dict keys {list(f)}" if isinstance(f, dict) else "one array"
            raise ValueError(
                f"the replay buffer was saved with observations stored as {keys(state['frames'])}, this one "
                f"stores {keys(self.frames)}: was it saved for another environment?"
            )
        if self.auto_stack and getattr(state["frames"], "shape", ())[2:] == self.obs_shape:
            self._store_whole_observations()  # it had switched to whole observations before it was saved
        for name in self._ARRAYS:
            saved_tree = state[name]
            for label, own, saved in zip(_names(name, saved_tree), _leaves(getattr(self, name)), _leaves(saved_tree)):
                target = own if name in self._PER_ENV else own[:, :filled]
                if saved.shape != target.shape or filled > self.slots:
                    raise ValueError(
                        f"replay buffer {label} has shape {saved.shape}, expected "
                        f"{target.shape}: was it saved with another --buffer-size/--n-envs?"
                    )
                copy_released(target, saved)  # large arrays arrive memory-mapped from their .npy files
                if name not in self._PER_ENV and name not in ("frames", "actions"):
                    own[:, filled:] = 0  # flags of slots past the saved ones (the frames are
                    # left alone: touching them would make a fresh 7 GB Atari buffer resident at once)
        self.n_ready, self.max_priority, self.beta = int(state["n_ready"]), float(state["max_priority"]), state["beta"]
        self.rng.bit_generator.state = state["rng"]
        if self.tree is not None:
            self.tree.tree[...] = state["tree"]
