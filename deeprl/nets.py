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
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deeprl.spaces import (
    MASK_KEY,
    feature_keys,
    has_mask,
    image_layout,
    is_image_space,
    mask_of,
    mask_size,
    masked_logits,
    torch_dtype,
)

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def layer_init(layer: nn.Linear | nn.Conv2d, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights with `gain`, constant bias; returns the layer for inline use."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def adam(params: Any, lr: float, device: torch.device | str, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel where PyTorch has one (CPU, CUDA): one kernel updates every parameter,
    0.26 ms a step for PPO's CartPole networks against 0.42 ms for foreach and 0.95 ms for the loop."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=torch.device(device).type in ("cpu", "cuda"))


def mlp(
    sizes: Sequence[int], activation: str = "relu", output_gain: float | None = 1.0, output_activation: bool = False
) -> nn.Sequential:
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
    layers and a 512-unit dense layer over a stack of 84x84 frames. Takes uint8 frames (N, C, H, W)
    and scales them to [0, 1] itself, so buffers can store bytes."""

    def __init__(self, in_channels: int, features: int = 512, height: int = 84, width: int = 84):
        super().__init__()
        self.convs = nn.Sequential(
            layer_init(nn.Conv2d(in_channels, 32, 8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, in_channels, height, width)).shape[1]
        self.dense = nn.Sequential(layer_init(nn.Linear(n_flat, features)), nn.ReLU())
        self.out_features = features

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.dense(self.convs(frames.float() / 255.0))


class MinAtarCNN(nn.Module):
    """The network of the MinAtar paper (Young & Tian 2019, "MinAtar: An Atari-Inspired Testbed"): one
    3x3 convolution with 16 filters, stride 1, and a 128-unit dense layer. For small images (MinAtar's
    10x10 object planes), where the Nature CNN's 8x8 stride-4 kernel would not fit. Takes (N, C, H, W)
    bool or uint8 planes; uint8 pixels are scaled to [0, 1]."""

    def __init__(self, in_channels: int, height: int, width: int, features: int = 128, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.convs = nn.Sequential(layer_init(nn.Conv2d(in_channels, 16, 3, stride=1)), nn.ReLU(), nn.Flatten())
        n_flat = 16 * (height - 2) * (width - 2)
        self.dense = nn.Sequential(layer_init(nn.Linear(n_flat, features)), nn.ReLU())
        self.out_features = features

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        return self.dense(self.convs(planes.float() * self.scale))


SMALL_IMAGE = 36  # below this height or width the Nature CNN's three strided convolutions do not fit


class ImageEncoder(nn.Module):
    """Images in either layout (deeprl.spaces.image_layout): channels-last (H, W, C) frames, as CarRacing and
    MinAtar give them, are permuted once here, so envs and buffers keep the env's own layout and a CNN
    never reads the width as channels. The Nature CNN for frames of 36 pixels and more, the MinAtar
    network below."""

    def __init__(self, space: gym.spaces.Box):
        super().__init__()
        c, h, w, self.channels_last = image_layout(space)
        scale = 1.0 / 255.0 if space.dtype == np.uint8 else 1.0
        self.cnn = NatureCNN(c, height=h, width=w) if min(h, w) >= SMALL_IMAGE else MinAtarCNN(c, h, w, scale=scale)
        self.out_features = self.cnn.out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.permute(0, 3, 1, 2)
        return self.cnn(images)


class FlatEncoder(nn.Module):
    """Vector observations through an MLP; `out_features` is the last hidden size."""

    def __init__(self, n_inputs: int, hidden: Sequence[int], activation: str = "relu", obs_ndim: int = 1):
        super().__init__()
        self.net = (
            mlp([n_inputs, *hidden], activation, output_gain=math.sqrt(2), output_activation=True)
            if hidden
            else nn.Identity()
        )
        self.out_features = hidden[-1] if hidden else n_inputs
        self.obs_ndim = obs_ndim  # the observation's own dimensions, flattened; any leading ones are batch dims

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # (B, *obs_shape) -> (B, n_inputs); a seed ensemble's (K, B, *obs_shape) -> (K, B, n_inputs) (deeprl.ensemble)
        return self.net(obs.flatten(-self.obs_ndim).float())


def flat_size(space: gym.Space) -> int | None:
    """How many numbers `flatten_obs` makes of one observation of a non-image space, None if it cannot."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)  # one-hot
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))  # one-hot per component
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)):
        return int(np.prod(space.shape))
    return None


def flatten_obs(space: gym.Space, obs: torch.Tensor) -> torch.Tensor:
    """A batch of observations of a non-image space as float vectors (N, flat_size): Discrete and
    MultiDiscrete values one-hot (SB3's preprocessing), Box and MultiBinary values as they are."""
    if isinstance(space, gym.spaces.Discrete):
        return F.one_hot((obs.long() - int(space.start)).reshape(-1), int(space.n)).float()
    if isinstance(space, gym.spaces.MultiDiscrete):
        values = (obs.long() - torch.as_tensor(space.start, device=obs.device)).flatten(1)
        nvec = space.nvec.reshape(-1).tolist()
        return torch.cat([F.one_hot(values[:, i], n) for i, n in enumerate(nvec)], dim=-1).float()
    return obs.flatten(1).float()


class SpaceEncoder(nn.Module):
    """A non-image space other than a float Box (Discrete, MultiDiscrete, MultiBinary) through an MLP."""

    def __init__(self, space: gym.Space, hidden: Sequence[int], activation: str = "relu"):
        super().__init__()
        self.space = space
        self.mlp = FlatEncoder(flat_size(space), hidden, activation)
        self.out_features = self.mlp.out_features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mlp(flatten_obs(self.space, obs))


class DictEncoder(nn.Module):
    """Dict observations as SB3's MultiInputPolicy reads them (its CombinedExtractor, then the MLP): every
    image key through its own CNN, every other key flattened (one-hot for discrete ones), everything
    concatenated and through one MLP of `hidden`. The MLP sees the keys together, so the policy can act
    on a combination of them ("left if the frame shows X and the vector says Y"), which heads over
    separately encoded keys, only summing their contributions, could not. The action mask
    (deeprl.spaces.MASK_KEY) is not an input."""

    def __init__(self, space: gym.spaces.Dict, hidden: Sequence[int], activation: str = "relu"):
        super().__init__()
        keys = feature_keys(space)
        self.image_keys = [k for k in keys if is_image_space(space[k])]
        self.flat_keys = [k for k in keys if k not in self.image_keys]
        for key in keys:
            if not is_image_space(space[key]) and flat_size(space[key]) is None:
                raise ValueError(f"Dict key {key!r} holds {space[key]}, which deeprl cannot encode")
        self.spaces = {k: space[k] for k in self.flat_keys}
        self.cnns = nn.ModuleDict({k: ImageEncoder(space[k]) for k in self.image_keys})
        n_in = sum(cnn.out_features for cnn in self.cnns.values()) + sum(flat_size(space[k]) for k in self.flat_keys)
        self.mlp = FlatEncoder(n_in, hidden, activation)
        self.out_features = self.mlp.out_features

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        features = [self.cnns[k](obs[k]) for k in self.image_keys]
        features += [flatten_obs(self.spaces[k], obs[k]) for k in self.flat_keys]
        return self.mlp(torch.cat(features, dim=-1) if len(features) > 1 else features[0])


def make_encoder(obs_space: gym.Space, hidden: Sequence[int] = (64, 64), activation: str = "relu") -> nn.Module:
    """The torso for `obs_space`: a CNN for images (either layout; Nature CNN, or MinAtar's for small ones),
    an MLP for vectors (Discrete and MultiDiscrete one-hot), a DictEncoder for Dict observations.
    Every returned module has `out_features` and takes a batch as `deeprl.spaces.to_tensor` makes it."""
    if is_image_space(obs_space):
        return ImageEncoder(obs_space)
    if isinstance(obs_space, gym.spaces.Dict):
        return DictEncoder(obs_space, hidden, activation)
    if isinstance(obs_space, gym.spaces.Box):
        return FlatEncoder(int(np.prod(obs_space.shape)), hidden, activation, max(len(obs_space.shape), 1))
    if flat_size(obs_space) is not None:
        return SpaceEncoder(obs_space, hidden, activation)
    raise ValueError(
        f"make_encoder takes Box, Discrete, MultiDiscrete, MultiBinary or Dict observations, got {obs_space}"
    )


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


# ---------------------------------------------------------------- policies for policy-gradient methods
def _action_kind(action_space: gym.Space) -> str:
    if isinstance(action_space, gym.spaces.Discrete):
        return "categorical"
    if isinstance(action_space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return "factorised"
    if isinstance(action_space, gym.spaces.Box):
        return "gaussian"
    raise ValueError(f"ActorCritic takes Discrete, MultiDiscrete, MultiBinary or Box actions, got {action_space}")


class ActorCritic(nn.Module):
    """A stochastic policy π_θ(a|s) and a state-value critic V(s) over `make_encoder` torsos.

    Discrete actions: a Categorical over logits. MultiDiscrete and MultiBinary actions: a factorised
    categorical, one independent Categorical per component (a MultiBinary component has the two values
    0 and 1) from one head of sum(nvec) logits; log π(a|s) and the entropy are sums over the components,
    as SB3's MultiCategoricalDistribution has them. Box actions: a diagonal Gaussian N(μ(s), σ²) whose
    log σ is a free parameter (`log_std="state-independent"`, PPO's default) or a second output of
    the policy head (`"state-dependent"`, clamped to [-20, 2]). The Gaussian is unbounded, so
    `bound` says how a sample u reaches the env's [low, high]:
      clip: the env gets clip(u, low, high) and the log-probability is that of u (SB3/CleanRL's way;
            the gradient does not see the clipping, which is harmless while μ stays inside).
      tanh: the env gets low + (tanh(u) + 1)(high − low)/2 and the log-probability includes the change
            of variables, log π(a) = log N(u) − Σ log(1 − tanh(u)²) − Σ log((high − low)/2) (SAC's
            squashing). The entropy reported is the Gaussian's, an upper bound used as the bonus.
    Either way the rollout stores u ("raw" actions) and `env_action(u)` maps it for the env.

    Action masks (the Dict observation key deeprl.spaces.MASK_KEY, 1 = allowed; for MultiDiscrete the
    per-component masks concatenated) apply to the categorical kinds: a disallowed action's logit becomes
    the dtype's lowest value before the softmax (invalid action masking, Huang & Ontañón 2022, "A Closer
    Look at Invalid Action Masking in Policy Gradient Algorithms"). Sampling, log π, the entropy and the
    greedy action all see π renormalised over the allowed actions, and a disallowed logit gets no gradient.

    `shared=True` puts the policy and value heads on one torso (as the Nature CNN on Atari);
    False gives each its own, which CartPole-style tasks learn faster with. `critic=False` leaves
    the critic out (REINFORCE without a baseline).
    """

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        *,
        shared: bool = False,
        critic: bool = True,
        log_std: str = "state-independent",
        log_std_init: float = 0.0,
        bound: str = "clip",
    ):
        super().__init__()
        self.kind = _action_kind(action_space)
        self.discrete = self.kind != "gaussian"
        if has_mask(obs_space):
            size = mask_size(action_space)
            if size is None:
                raise ValueError(f"an action mask needs discrete actions; this env has {action_space}")
            if tuple(obs_space[MASK_KEY].shape) != (size,):
                raise ValueError(
                    f"the action mask has shape {obs_space[MASK_KEY].shape}; {action_space} needs ({size},)"
                )
        self.state_dependent_std = log_std == "state-dependent"
        self.bound = bound
        self.actor_torso = make_encoder(obs_space, hidden, activation)
        self.critic_torso = None if shared or not critic else make_encoder(obs_space, hidden, activation)
        n_features = self.actor_torso.out_features
        if self.kind == "categorical":
            self.n_out = int(action_space.n)
            self.policy_head = layer_init(nn.Linear(n_features, self.n_out), gain=0.01)
        elif self.kind == "factorised":
            self._init_components(action_space)
            self.policy_head = layer_init(nn.Linear(n_features, self.n_out), gain=0.01)
        else:
            self.action_shape = action_space.shape
            n_act = int(np.prod(action_space.shape))
            self.policy_head = layer_init(
                nn.Linear(n_features, 2 * n_act if self.state_dependent_std else n_act), gain=0.01
            )
            self.log_std = None if self.state_dependent_std else nn.Parameter(torch.full((n_act,), float(log_std_init)))
            if self.state_dependent_std:
                nn.init.constant_(self.policy_head.bias[n_act:], float(log_std_init))
            low = np.asarray(action_space.low, dtype=np.float32).reshape(-1)
            high = np.asarray(action_space.high, dtype=np.float32).reshape(-1)
            if bound == "tanh" and not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ValueError(f"bound='tanh' needs finite action bounds, got low={low}, high={high}")
            self.register_buffer("low", torch.as_tensor(low), persistent=False)
            self.register_buffer("high", torch.as_tensor(high), persistent=False)
        self.value_head = (
            layer_init(
                nn.Linear(n_features if self.critic_torso is None else self.critic_torso.out_features, 1), gain=1.0
            )
            if critic
            else None
        )

    def _init_components(self, action_space: gym.Space) -> None:
        """The factorised categorical's layout: k components of nvec[i] values each, from sum(nvec) logits.
        Components of one size are a view (k, n) of the logits; mixed sizes are gathered into (k, max n)
        with the padding at the dtype's lowest logit, so one log_softmax and one argmax serve every component."""
        multi_binary = isinstance(action_space, gym.spaces.MultiBinary)
        k = int(np.prod(action_space.shape))
        nvec = np.full(k, 2) if multi_binary else np.asarray(action_space.nvec).reshape(-1)
        start = np.zeros(k, np.int64) if multi_binary else np.asarray(action_space.start).reshape(-1)
        self.action_shape, self.action_dtype = action_space.shape, action_space.dtype
        self.shifted = bool(np.any(start))  # MultiDiscrete(start=...): the env's values are start + index
        self.register_buffer("action_start", torch.as_tensor(start, dtype=torch.int64), persistent=False)
        self.n_out, n_max = int(nvec.sum()), int(nvec.max())
        self.components = (k, n_max)
        index = None
        if not (nvec == n_max).all():
            offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
            index = np.full((k, n_max), self.n_out)  # n_out: the padding column appended before gathering
            for i, (offset, n) in enumerate(zip(offsets, nvec)):
                index[i, :n] = offset + np.arange(n)
            index = torch.as_tensor(index, dtype=torch.int64)
        self.register_buffer("component_index", index, persistent=False)
        self.register_buffer("component_valid", None if index is None else index < self.n_out, persistent=False)

    def _per_component(self, flat: torch.Tensor, fill: Any) -> torch.Tensor:
        """(B, sum nvec) logits or mask entries -> (B, k, max n), the padding (mixed sizes) at `fill`."""
        if self.component_index is None:
            return flat.unflatten(-1, self.components)
        padded = torch.cat([flat, flat.new_full((*flat.shape[:-1], 1), fill)], dim=-1)
        return padded[..., self.component_index]

    def _categorical(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(log π(·|s), the allowed actions, V(s)): log π over the n actions (B, n), or per component
        (B, k, max n); `allowed` is None when every action is (no mask, no padding). The Categorical's numbers
        without building a torch.distributions object (half the cost of a small network's forward pass on a CPU)."""
        features = self.actor_torso(obs)
        logits = self.policy_head(features)
        allowed = mask_of(obs)
        if allowed is not None:
            logits = masked_logits(logits, allowed)
        if self.kind == "factorised":
            logits = self._per_component(logits, torch.finfo(logits.dtype).min)
            allowed = self.component_valid if allowed is None else self._per_component(allowed, False)
        log_pi = torch.log_softmax(logits, dim=-1)
        if self.value_head is None:
            return log_pi, allowed, None
        value_features = features if self.critic_torso is None else self.critic_torso(obs)
        return log_pi, allowed, self.value_head(value_features).squeeze(-1)

    def _total(self, per_component: torch.Tensor) -> torch.Tensor:
        """A factorised categorical's log-probability or entropy: the sum over its independent components."""
        return per_component.sum(-1) if self.kind == "factorised" else per_component

    def forward(self, obs: Any) -> tuple[torch.distributions.Distribution, torch.Tensor | None]:
        """(π(·|s), V(s)) for a batch of observations; V is None without a critic. For factorised actions
        the Categorical has batch shape (B, k): `log_prob` and `entropy` below sum its components."""
        if self.discrete:
            log_pi, _, value = self._categorical(obs)
            return torch.distributions.Categorical(logits=log_pi, validate_args=False), value
        features = self.actor_torso(obs)
        out = self.policy_head(features)
        if self.state_dependent_std:
            mean, log_std = out.chunk(2, dim=-1)
            log_std = log_std.clamp(-20.0, 2.0)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        dist = torch.distributions.Normal(mean, log_std.exp(), validate_args=False)
        if self.value_head is None:
            return dist, None
        value_features = features if self.critic_torso is None else self.critic_torso(obs)
        return dist, self.value_head(value_features).squeeze(-1)

    def log_prob(self, dist: torch.distributions.Distribution, raw_action: torch.Tensor) -> torch.Tensor:
        """log π(a|s) of stored raw actions (one number per sample)."""
        if self.discrete:
            return self._total(dist.log_prob(raw_action))
        log_prob = dist.log_prob(raw_action).sum(-1)
        if self.bound == "tanh":  # change of variables a = tanh(u), then the affine map to [low, high]
            log_prob = (
                log_prob
                - (torch.log1p(-(torch.tanh(raw_action) ** 2) + 1e-6)).sum(-1)
                - torch.log((self.high - self.low) / 2).sum()
            )
        return log_prob

    def entropy(self, dist: torch.distributions.Distribution) -> torch.Tensor:
        return self._total(dist.entropy()) if self.discrete else dist.entropy().sum(-1)

    def noise_layout(self) -> tuple[str, tuple[int, ...]]:
        """(distribution, shape) of the noise one sample of `act` consumes per observation: Exp(1) draws, one
        per logit (Gumbel-max), or standard normal draws, one per action dimension. A rollout draws it from
        each env's own stream (deeprl.rollout.EnvSlice), so a sample depends on its env alone, not on which
        envs share the batch: what makes a run split over Ray workers equal the local run."""
        if self.kind == "categorical":
            return "exponential", (self.n_out,)
        if self.kind == "factorised":
            return "exponential", self.components
        return "normal", (int(np.prod(self.action_shape)),)

    def act(
        self, obs: Any, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Sample: (raw action, log π(a|s), V(s)). `noise` (B, *noise_layout()[1]) is the randomness to use
        (Exp(1) or N(0, 1) draws); None draws it from torch's global generator."""
        if self.discrete:
            log_pi, allowed, value = self._categorical(obs)
            exp = torch.empty_like(log_pi).exponential_() if noise is None else noise.reshape(log_pi.shape)
            # Gumbel-max: argmax(log π + G), G = −log E with E ~ Exp(1) a Gumbel draw, is a sample of π
            scores = log_pi - exp.log()
            if allowed is not None:  # a disallowed action stays out even where the noise is +inf (Exp sample 0)
                scores = scores.masked_fill(~allowed, -math.inf)
            raw_action = scores.argmax(-1)
            return raw_action, self._total(log_pi.gather(-1, raw_action.unsqueeze(-1)).squeeze(-1)), value
        dist, value = self(obs)
        if noise is None:
            raw_action = dist.sample()
        else:  # the reparameterised sample μ + σ·ε (what Normal.sample computes from its own draw)
            raw_action = dist.loc + dist.scale * noise.reshape(dist.loc.shape)
        return raw_action, self.log_prob(dist, raw_action), value

    def evaluate(self, obs: Any, raw_action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(log π(a|s), entropy of π(·|s), V(s)) for the update."""
        if self.discrete:
            log_pi, allowed, value = self._categorical(obs)
            p_log_p = log_pi.exp() * log_pi
            if allowed is not None:  # 0 · log 0 = 0: a disallowed action adds nothing to H (and never NaN)
                p_log_p = p_log_p.masked_fill(~allowed, 0.0)
            log_prob = log_pi.gather(-1, raw_action.long().unsqueeze(-1)).squeeze(-1)
            return self._total(log_prob), self._total(-p_log_p.sum(-1)), value
        dist, value = self(obs)
        return self.log_prob(dist, raw_action), self.entropy(dist), value

    def mode(self, obs: Any) -> torch.Tensor:
        """The deterministic action as a raw action: the most probable allowed action (of each component),
        or the Gaussian's mean."""
        features = self.actor_torso(obs)
        out = self.policy_head(features)
        if not self.discrete:
            return out.chunk(2, dim=-1)[0] if self.state_dependent_std else out
        out = masked_logits(out, mask_of(obs))
        if self.kind == "factorised":
            out = self._per_component(out, torch.finfo(out.dtype).min)
        return out.argmax(-1)

    def env_action(self, raw_action: torch.Tensor) -> np.ndarray:
        """Raw actions -> what the env accepts (numpy): indices, components (plus a MultiDiscrete's start)
        in the space's shape and dtype, or clipped / squashed vectors."""
        return self.env_action_tensor(raw_action).cpu().numpy()

    def env_action_tensor(self, raw_action: torch.Tensor) -> torch.Tensor:
        """`env_action` before it leaves torch: the same numbers as a tensor (an exported policy computes
        them inside its graph, deeprl.export)."""
        if self.kind == "categorical":
            return raw_action
        if self.kind == "factorised":
            if self.shifted:
                raw_action = raw_action + self.action_start
            return raw_action.to(torch_dtype(self.action_dtype)).reshape(-1, *self.action_shape)
        if self.bound == "tanh":
            a = self.low + (torch.tanh(raw_action) + 1.0) * (self.high - self.low) / 2
        else:
            a = torch.maximum(torch.minimum(raw_action, self.high), self.low)
        return a.reshape(-1, *self.action_shape)

    def value(self, obs: Any) -> torch.Tensor:
        """V(s) alone."""
        features = self.actor_torso(obs) if self.critic_torso is None else self.critic_torso(obs)
        return self.value_head(features).squeeze(-1)
