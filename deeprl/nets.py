"""Network building blocks shared by every deep algorithm: MLPs, the Nature CNN, and an encoder
chosen from the observation space. Algorithm-specific heads (Q, dueling, actor, critic, policy
distributions) live next to the algorithm that uses them, or here once two algorithms share them.

Initialisation follows common practice for on- and off-policy RL: orthogonal weights with gain
sqrt(2) for ReLU/tanh hidden layers and zero biases (Saxe et al. 2013; used by the PPO
implementation details study, Huang et al. 2022), and a small gain on policy output layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def layer_init(layer: nn.Linear | nn.Conv2d, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights with `gain`, constant bias; returns the layer for inline use."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: Sequence[int], activation: str = "relu", output_gain: float | None = 1.0,
        output_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes (input first, output last) with `activation` between them.

    `output_gain` initialises the last layer orthogonally with that gain (e.g. 0.01 for a policy's
    logits so the first policy is near uniform); None keeps PyTorch's default initialisation there.
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {list(sizes)}")
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        linear = nn.Linear(n_in, n_out)
        if not last:
            layers += [layer_init(linear), act()]
        else:
            layers.append(linear if output_gain is None else layer_init(linear, output_gain))
            if output_activation:
                layers.append(act())
    return nn.Sequential(*layers)


class NatureCNN(nn.Module):
    """The DQN network of Mnih et al. (2015, "Human-level control through deep RL"): three conv
    layers and a 512-unit dense layer over a stack of 84x84 frames. Takes uint8 frames (N, C, 84, 84)
    and scales them to [0, 1] itself, so buffers can store bytes."""

    def __init__(self, in_channels: int, features: int = 512, height: int = 84, width: int = 84):
        super().__init__()
        self.convs = nn.Sequential(
            layer_init(nn.Conv2d(in_channels, 32, 8, stride=4)), nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, in_channels, height, width)).shape[1]
        self.dense = nn.Sequential(layer_init(nn.Linear(n_flat, features)), nn.ReLU())
        self.out_features = features

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.dense(self.convs(frames.float() / 255.0))


class FlatEncoder(nn.Module):
    """Vector observations through an MLP; `out_features` is the last hidden size."""

    def __init__(self, n_inputs: int, hidden: Sequence[int], activation: str = "relu"):
        super().__init__()
        self.net = mlp([n_inputs, *hidden], activation, output_gain=math.sqrt(2), output_activation=True) \
            if hidden else nn.Identity()
        self.out_features = hidden[-1] if hidden else n_inputs

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.flatten(1).float())


def is_image_space(space: gym.Space) -> bool:
    """uint8 Box of rank 3 (C, H, W) or (H, W, C): frames for a CNN."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def make_encoder(obs_space: gym.Space, hidden: Sequence[int] = (64, 64), activation: str = "relu") -> nn.Module:
    """The torso for `obs_space`: Nature CNN for image frames (channels first), an MLP otherwise.
    Every returned module has `out_features`."""
    if is_image_space(obs_space):
        c, h, w = obs_space.shape
        return NatureCNN(c, height=h, width=w)
    if not isinstance(obs_space, gym.spaces.Box):
        raise ValueError(f"make_encoder takes Box observations, got {obs_space}")
    return FlatEncoder(int(np.prod(obs_space.shape)), hidden, activation)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging w⁻ ← τ w + (1 − τ) w⁻ (DDPG, Lillicrap et al. 2016; the notes' "DDPG"
    soft update). τ = 1 copies the weights (DQN's hard update every C steps)."""
    target_params = list(target.parameters())
    source_params = list(source.parameters())
    if tau >= 1.0:
        for t, s in zip(target_params, source_params):
            t.copy_(s)
    else:
        torch._foreach_lerp_(target_params, source_params, tau)
    for t, s in zip(target.buffers(), source.buffers()):
        t.copy_(s)
