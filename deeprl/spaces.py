"""Observation and action spaces as the networks and buffers see them: one place that says what an
image is (and in which layout), how a batch of observations (an array, or a dict of arrays for a
Dict space) becomes tensors, and where an action mask comes from.

Action masks, one convention inside deeprl: a Dict observation with the key `action_mask`
(PettingZoo's convention; 1 = allowed). Envs that put their mask in `info["action_mask"]`
(Gymnasium's Taxi convention) are wrapped by the env factory so that the mask joins the observation
(`deeprl.envs`), which lets every consumer (rollouts, replay, evaluation, `Agent.act`, render,
exports) read it from the one place. The mask is never a network input.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import gymnasium as gym
import numpy as np
import torch

MASK_KEY = "action_mask"


def image_layout(space: gym.Space) -> tuple[int, int, int, bool] | None:
    """(channels, height, width, channels_last) for image observations, None for anything else.

    Images are rank-3 Boxes of uint8 (pixels: Atari, CarRacing) or bool (MinAtar's object planes).
    The channel axis is the smaller of the first and the last axis: (4, 84, 84) frame stacks are
    channels-first, (210, 160, 3) RGB frames and MinAtar's (10, 10, 4) planes channels-last; a tie
    counts as channels-first (PyTorch's layout).
    """
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3 or space.dtype not in (np.uint8, np.bool_):
        return None
    first, h_last, last = space.shape
    if last < first:
        return last, first, h_last, True
    return first, h_last, last, False


def is_image_space(space: gym.Space) -> bool:
    """A rank-3 uint8 or bool Box: frames (or object planes) for a CNN, in either layout."""
    return image_layout(space) is not None


def has_image(space: gym.Space) -> bool:
    """An image observation, or a Dict observation with an image key: a CNN will run on it."""
    if isinstance(space, gym.spaces.Dict):
        return any(is_image_space(sub) for sub in space.spaces.values())
    return is_image_space(space)


def has_mask(space: gym.Space) -> bool:
    """Does the observation carry an action mask (a Dict with the key `action_mask`)?"""
    return isinstance(space, gym.spaces.Dict) and MASK_KEY in space.spaces


def feature_keys(space: gym.spaces.Dict) -> list[str]:
    """The keys of a Dict observation the networks read: every key but the action mask, in order."""
    return [key for key in space.spaces if key != MASK_KEY]


def to_tensor(obs: Any, device: torch.device | str = "cpu") -> torch.Tensor | dict[str, torch.Tensor]:
    """A batch of observations (an array, or a dict of arrays for a Dict space) as tensors on `device`,
    in their stored dtype (networks convert: uint8 frames are scaled by the CNN itself)."""
    if isinstance(obs, dict):
        return {key: torch.as_tensor(np.asarray(value), device=device) for key, value in obs.items()}
    return torch.as_tensor(np.asarray(obs), device=device)


def mask_of(obs: Any) -> torch.Tensor | None:
    """The boolean action mask of a batch of observations (tensors), or None when there is none."""
    if isinstance(obs, dict) and MASK_KEY in obs:
        return obs[MASK_KEY].bool()
    return None


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with the disallowed actions set to the dtype's lowest value (Huang & Ontañón 2022, "A
    Closer Look at Invalid Action Masking in Policy Gradient Algorithms"): their probability is
    exactly 0, their gradient is 0, and a row that allows nothing stays finite (uniform) instead of NaN."""
    if mask is None:
        return logits
    return logits.masked_fill(~mask, torch.finfo(logits.dtype).min)


def mask_size(action_space: gym.Space) -> int | None:
    """How many entries an action mask has for `action_space`, None where masks do not apply (Box).

    Discrete(n): n. MultiDiscrete: sum(nvec), the per-component masks concatenated (sb3-contrib's
    MaskablePPO convention). MultiBinary(k): 2k, each component a choice of {0, 1} with its own two
    entries."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return int(np.sum(action_space.nvec))
    if isinstance(action_space, gym.spaces.MultiBinary):
        return 2 * int(np.prod(action_space.shape))
    return None


def storage_dtype(space: gym.Space) -> np.dtype:
    """The dtype observations of `space` (not a Dict) are stored in, by rollouts and replay alike: uint8 and
    bool Boxes of any rank as they are (pixels, object planes, RAM bytes: a quarter or less of float32's
    bytes; the encoders cast them), Discrete / MultiDiscrete values as int64, MultiBinary as int8, any other
    Box as float32 (what the running normaliser writes). A Dict stores each key by this rule, its action mask
    as bool (`key_storage_dtype`)."""
    if isinstance(space, gym.spaces.Box):
        return np.dtype(space.dtype) if space.dtype in (np.uint8, np.bool_) else np.dtype(np.float32)
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        return np.dtype(np.int64)
    if isinstance(space, gym.spaces.MultiBinary):
        return np.dtype(np.int8)
    raise TypeError(f"deeprl stores Box, Discrete, MultiDiscrete, MultiBinary or Dict observations, got {space}")


def key_storage_dtype(key: str, space: gym.Space) -> np.dtype:
    """The storage dtype of one key of a Dict observation: the action mask as bool, the rest by `storage_dtype`."""
    return np.dtype(bool) if key == MASK_KEY else storage_dtype(space)


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype of a numpy dtype (np.uint8 -> torch.uint8)."""
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def obs_storage(
    space: gym.Space,
    batch_shape: tuple[int, ...],
    device: torch.device | str = "cpu",
    *,
    normalized: bool | Collection[str] = False,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Zeroed storage for a [*batch_shape] batch of observations: one tensor, or for a Dict space one
    tensor per key, each in its `storage_dtype` (the action mask as bool). `normalized` names what a
    running normaliser rewrites as float32 and so is stored as float32: True for the whole observation,
    or the Dict keys it covers."""
    if isinstance(space, gym.spaces.Dict):
        keys = () if isinstance(normalized, bool) else normalized
        return {
            key: torch.zeros(
                (*batch_shape, *sub.shape),
                dtype=torch.float32 if key in keys else torch_dtype(key_storage_dtype(key, sub)),
                device=device,
            )
            for key, sub in space.spaces.items()
        }
    dtype = torch.float32 if normalized is True else torch_dtype(storage_dtype(space))
    return torch.zeros((*batch_shape, *space.shape), dtype=dtype, device=device)


def map_obs(fn: Callable[[torch.Tensor], torch.Tensor], obs: Any) -> Any:
    """`fn` applied to a batch of observations: the tensor, or each tensor of a Dict observation. Keeps the
    update code the same for both (`map_obs(lambda x: x.flatten(0, 1), rollout.obs)`)."""
    if isinstance(obs, dict):
        return {key: fn(value) for key, value in obs.items()}
    return fn(obs)


def take(obs: Any, index: Any) -> Any:
    """obs[index] for a tensor or a dict of tensors (a row of the rollout, a minibatch)."""
    if isinstance(obs, dict):
        return {key: value[index] for key, value in obs.items()}
    return obs[index]


def copy_obs(dst: Any, src: Any) -> None:
    """Write a batch of observations (a numpy array or a tensor, or a dict of them) into preallocated
    tensors, converting to their dtype."""
    if isinstance(dst, dict):
        for key, value in dst.items():
            copy_obs(value, src[key])
    else:
        dst.copy_(src if isinstance(src, torch.Tensor) else torch.from_numpy(np.asarray(src)))
