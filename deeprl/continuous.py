"""Pieces DDPG, TD3 and SAC share: action scaling, the actor and critic networks (and DDPG's and TD3's
construction of them), the squashed-Gaussian log-probability, the off-policy collector that feeds the
replay buffer, and divergence checks. Each algorithm composes these; none inherits another.

Actors act in the unit box [-1, 1]^d (a tanh output); `scale_action` maps that box onto the env's
bounds [low, high] at the env boundary, and the replay buffer stores unit actions, so critics,
noise scales and TD3's smoothing noise mean the same thing on every env.

Observations: a flat float vector goes straight into the MLPs (the fast path: QEnsemble's batched matmuls
read it as it is). Anything else (images in either layout, as CarRacing's (96, 96, 3) frames; Discrete,
MultiBinary; Dict observations) goes through a `deeprl.nets.make_encoder` torso first, following
Stable-Baselines3's off-policy recipe (`torso`): every network has its own encoder, trained by its own loss.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from deeprl.buffers import ReplayBuffer, storage_dtype, tree_map
from deeprl.envs import autoreset_mode
from deeprl.errors import DivergenceError, UsageError
from deeprl.nets import adam, make_encoder, mlp
from deeprl.noise import make_noise
from deeprl.protocol import Episode
from deeprl.seeding import Seeds
from deeprl.spaces import to_tensor


# ---------------------------------------------------------------- action scaling (pure functions)
def scale_action(unit_action, low, high):
    """[-1, 1] → [low, high]: low + (a + 1)(high − low)/2. Works on numpy arrays and torch tensors."""
    return low + (unit_action + 1.0) * (0.5 * (high - low))


def unscale_action(action, low, high):
    """[low, high] → [-1, 1], the inverse of `scale_action`: 2(a − low)/(high − low) − 1."""
    return 2.0 * (action - low) / (high - low) - 1.0


# ---------------------------------------------------------------- networks
def is_flat(obs_space: gym.Space) -> bool:
    """A vector of floats (rank-1 Box stored as float32): the MLPs read it as it is, with no encoder."""
    return (
        isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1 and storage_dtype(obs_space) == np.float32
    )


def torso(obs_space: gym.Space) -> tuple[nn.Module | None, int]:
    """(encoder, n_features): what an actor or critic puts in front of its MLP, and the size the MLP reads.

    A flat float vector: no encoder (None) and the vector's size, the fast path. Anything else:
    `make_encoder(obs_space, hidden=())`, which is Stable-Baselines3's feature extractor for off-policy
    methods (NatureCNN for images, CombinedExtractor for Dict observations: a CNN per image key and the
    other keys flattened, discrete ones one-hot, all concatenated); the MLP of `hidden` sizes after it
    is SB3's net_arch. Each network calls this for an encoder of its own, as SB3's SAC/TD3/DDPG do by
    default (share_features_extractor=False): the critic's encoder is trained by the critic loss, the
    actor's by the actor loss (whose gradient reaches it through the frozen critic and the action), the
    twin critics of one QEnsemble share their critic's encoder, and target networks copy theirs.
    """
    if is_flat(obs_space):
        return None, int(obs_space.shape[0])
    encoder = make_encoder(obs_space, hidden=())
    return encoder, encoder.out_features


def obs_tensor(obs: Any, device: torch.device, encoder: nn.Module | None) -> Any:
    """A batch of observations for a network whose torso is `encoder`: float32 on the fast path (no encoder),
    else as the replay buffer stores them (uint8 frames, a dict of tensors...; the encoder converts)."""
    if encoder is None:
        return torch.as_tensor(obs, dtype=torch.float32, device=device)
    return to_tensor(obs, device)


class DeterministicActor(nn.Module):
    """μ(s | θ^μ) ∈ [-1, 1]^d: an MLP with tanh on the output (notes, "DDPG": the actor network), over
    `n_in` numbers: the observation vector itself, or the features of `encoder` (see `torso`)."""

    def __init__(self, n_in: int, act_dim: int, hidden: Sequence[int], encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.net = mlp([n_in, *hidden, act_dim], "relu", output_gain=None)

    def forward(self, obs: Any) -> torch.Tensor:
        return torch.tanh(self.net(obs if self.encoder is None else self.encoder(obs)))


class QEnsemble(nn.Module):
    """n independent critics Q_k(s, a | θ^Q_k) evaluated together: each layer is one batched matmul
    over the n members (torch.baddbmm), so TD3's and SAC's twin critics cost the Python and kernel
    launches of one. forward(obs, actions) -> (n, batch). DDPG uses n = 1 (notes, "DDPG": the critic).

    Each member is initialised like PyTorch's nn.Linear (U(±1/√fan_in)), as in SB3 and CleanRL's
    DDPG/TD3/SAC.
    """

    def __init__(self, n_in: int, act_dim: int, hidden: Sequence[int], n: int = 2, encoder: nn.Module | None = None):
        super().__init__()
        sizes = [n_in + act_dim, *hidden, 1]
        self.n = n
        self.encoder = encoder  # one torso for the n members (see `torso`), None for flat vectors
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, obs: Any, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs if self.encoder is None else self.encoder(obs), actions], dim=-1)
        if x.dim() == 2:
            h = x.unsqueeze(0).expand(self.n, *x.shape)
        else:  # a seed ensemble's (K, batch, in) (deeprl.ensemble): members [k m, (k + 1) m) are seed k's critics
            seeds, per_seed = x.shape[0], self.n // x.shape[0]
            h = x.unsqueeze(1).expand(seeds, per_seed, *x.shape[1:]).reshape(self.n, *x.shape[1:])
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.relu(h)
        q = h.squeeze(-1)
        return q if x.dim() == 2 else q.unflatten(0, (seeds, per_seed)).transpose(0, 1)  # (members, K, batch)


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def squashed_gaussian_log_prob(eps: torch.Tensor, log_std: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """log π(a|s) of a = tanh(u), u = mean + std·eps, summed over action dimensions (SAC, Haarnoja
    et al. 2018, appendix C): log N(u; mean, std) − Σ log(1 − tanh(u)²).

    log N(u; mean, std) = −eps²/2 − log std − log(2π)/2 per dimension, and the change of variables
    uses log(1 − tanh(u)²) = 2(log 2 − u − softplus(−2u)), which stays finite where tanh(u) rounds to ±1.
    """
    gaussian = -0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    log_det = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return (gaussian - log_det).sum(-1)


class SquashedGaussianActor(nn.Module):
    """SAC's policy: a ~ tanh(N(mean(s), std(s)²)) in [-1, 1]^d; log std bounded to [-5, 2] through a tanh
    (as in SpinningUp/CleanRL) so the policy can neither collapse nor explode early on."""

    def __init__(self, n_in: int, act_dim: int, hidden: Sequence[int], encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder  # see `torso`; None for flat vectors
        self.trunk = mlp([n_in, *hidden], "relu", output_gain=math.sqrt(2), output_activation=True)
        self.head = nn.Linear(hidden[-1], 2 * act_dim)  # mean and log std in one matmul

    def forward(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        features = obs if self.encoder is None else self.encoder(obs)
        mean, log_std = self.head(self.trunk(features)).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1.0)
        return mean, log_std

    def sample(
        self, obs: Any, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample a = tanh(mean + std·eps) and its log π(a|s); eps ~ N(0, 1) drawn from
        `generator` unless given (a Ray actor draws each env's from the env's own stream)."""
        mean, log_std = self(obs)
        if eps is None:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * eps
        return torch.tanh(u), squashed_gaussian_log_prob(eps, log_std, u)

    def deterministic(self, obs: Any) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


def normal(shape: Sequence[int], generator: Any, device: torch.device) -> torch.Tensor:
    """N(0, 1) draws of `shape` from `generator`; from a seed ensemble's list of generators (deeprl.ensemble), seed
    k's (shape[1:]) from generator k, as the seed alone draws them."""
    if isinstance(generator, list):
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device) for g in generator])
    return torch.randn(tuple(shape), generator=generator, device=device)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Inside, `module`'s parameters take no gradient: the actor's loss backpropagates through the critic to
    the action without also computing (and then discarding) the critic's weight gradients, a third of
    that backward pass on small networks."""
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)


def flat_dims(env: Any) -> tuple[gym.Space, gym.spaces.Box, int | None, int]:
    """(observation space, action space, obs_dim, act_dim) of a single env or a vector env; obs_dim is None
    where the observation is not a flat vector (an encoder reads it: `torso`)."""
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    act_space = getattr(env, "single_action_space", env.action_space)
    obs_dim = int(obs_space.shape[0]) if is_flat(obs_space) else None
    return obs_space, act_space, obs_dim, int(np.prod(act_space.shape))


def check_losses(losses: torch.Tensor, names: Sequence[str], updates: int, env_steps: int) -> list[Any]:
    """The losses as floats (one device sync per round); DivergenceError naming the first non-finite one. A seed
    ensemble's (n_losses, K) losses come back as lists, unchecked: it checks each seed's (deeprl.ensemble)."""
    values = losses.tolist()
    if losses.dim() == 2:
        return values
    for name, value in zip(names, values):
        if not math.isfinite(value):
            raise DivergenceError(
                f"the {name} became {value} by gradient step {updates} (env step {env_steps}); "
                "try a smaller learning rate"
            )
    return values


# ---------------------------------------------------------------- DDPG's and TD3's construction
class DeterministicNets(NamedTuple):
    """μ and its critics, their target copies μ' and Q' (frozen: they move by Polyak averaging only), and
    one Adam optimizer for the actor and one for the critics."""

    actor: DeterministicActor
    critic: QEnsemble
    actor_target: DeterministicActor
    critic_target: QEnsemble
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer


def deterministic_nets(config: Any, env: Any, n_critics: int, device: torch.device) -> DeterministicNets:
    """DDPG's (n_critics = 1) and TD3's (n_critics = 2) networks and optimizers for `env`'s spaces."""
    obs_space, _, _, act_dim = flat_dims(env)
    hidden = tuple(config.hidden)
    actor_encoder, n_actor_in = torso(obs_space)  # each network its own encoder (None for flat vectors)
    critic_encoder, n_critic_in = torso(obs_space)
    actor = DeterministicActor(n_actor_in, act_dim, hidden, actor_encoder).to(device)
    critic = QEnsemble(n_critic_in, act_dim, hidden, n=n_critics, encoder=critic_encoder).to(device)
    return DeterministicNets(
        actor,
        critic,
        copy.deepcopy(actor).requires_grad_(False),
        copy.deepcopy(critic).requires_grad_(False),
        adam(actor.parameters(), config.actor_lr, device),
        adam(critic.parameters(), config.critic_lr, device),
    )


def exploration_noise(config: Any, env: Any, seeds: Seeds) -> Any:
    """The `--noise` process DDPG and TD3 add to μ(s): one row per env of the vector env."""
    shape = (env.num_envs, flat_dims(env)[3])
    return make_noise(config.noise, config.noise_sigma, shape, theta=config.noise_theta, seed=seeds.sequence("noise"))


def replay_collector(
    config: Any, env: Any, seeds: Seeds, device: torch.device, noise: Any = None
) -> tuple[ReplayBuffer, Collector]:
    """The replay buffer (of unit-box actions; γ only sums n-step rewards there) and the Collector
    that fills it from the vector env `env`."""
    obs_space, act_space, _, _ = flat_dims(env)
    unit_box = gym.spaces.Box(-1.0, 1.0, act_space.shape, np.float32)
    buffer = ReplayBuffer(
        config.buffer_size,
        obs_space,
        unit_box,
        n_envs=env.num_envs,
        device=device,
        gamma=config.gamma,
        seed=seeds.sequence("replay"),
    )
    return buffer, Collector(env, buffer, noise, seeds=seeds)


def noisy_actions(actor: nn.Module, obs: Any, noise: Any, device: torch.device, env_steps: int) -> np.ndarray:
    """μ(s) plus exploration noise, clipped to the unit box (DDPG's and TD3's behaviour policy)."""
    with torch.inference_mode():
        mu = actor(obs_tensor(obs, device, actor.encoder)).cpu().numpy()
    if not np.isfinite(mu).all():
        raise DivergenceError(f"the actor produced non-finite actions at env step {env_steps}")
    return np.clip(mu + noise(), -1.0, 1.0)


# ---------------------------------------------------------------- collection
class Collector:
    """Steps a vector env (autoreset NEXT_STEP) with unit actions, stores the real transitions in the
    replay buffer and tracks the episodes.

    With NEXT_STEP autoreset, the step after an episode ends only returns the reset observation: it is
    no transition, so it goes to the buffer with valid=False (docs/design.md, convention 3). The step
    that ends the episode returns the true final observation, stored as next_obs with `terminated`
    and `truncated` kept apart (a truncated Pendulum episode still bootstraps). Exploration noise is
    reset at the envs that have just been handed their reset observation, so every episode's first
    action starts from a fresh noise state. `seeds` gives the uniform warm-up actions their stream
    ("exploration") and the env its reset seeds ("env_reset", by env steps).
    """

    def __init__(self, env: Any, buffer: Any, noise: Any = None, *, seeds: Seeds | None = None):
        if not isinstance(env, gym.vector.VectorEnv):
            raise TypeError("Collector needs a Gymnasium vector env (the registry marks DDPG/TD3/SAC vectorized)")
        if autoreset_mode(env) != gym.vector.AutoresetMode.NEXT_STEP:
            raise UsageError(f"DDPG/TD3/SAC need a vector env with NEXT_STEP autoreset; got {autoreset_mode(env)}.")
        self.env, self.buffer, self.noise = env, buffer, noise
        self.seeds = Seeds(0) if seeds is None else seeds
        self.rng = self.seeds.generator("exploration")  # uniform actions before learning starts
        self.n_envs = env.num_envs
        space = env.single_action_space
        self.act_shape = (self.n_envs, *space.shape)
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        self.obs: Any = None  # an array, or a dict of arrays for Dict observations
        self.autoreset = np.zeros(self.n_envs, dtype=bool)  # env i's next step returns its reset observation
        self.ep_return = np.zeros(self.n_envs)
        self.ep_length = np.zeros(self.n_envs, dtype=np.int64)
        self.env_steps = 0
        self.episodes = 0

    def run(self, agent: Any, max_steps: int, max_episodes: int | None) -> tuple[int, list[Episode]]:
        """The collection loop DDPG, TD3 and SAC share (`learn` of each): uniform random unit actions
        until `learning_starts`, then `agent.explore(obs)`; every `train_freq` vector steps
        `agent.train(n)`, n = gradient_steps (-1: one per env step since the last round)."""
        cfg = agent.cfg
        if self.obs is None:  # the first call, or a resume whose env could not be saved: fresh episodes
            self.reset(seed=self.seeds.integer("env_reset", self.env_steps))
        finished: list[Episode] = []
        start = self.env_steps
        for _ in range(-(-max_steps // self.n_envs)):
            if self.env_steps < cfg.learning_starts:
                actions = self.rng.uniform(-1.0, 1.0, self.act_shape).astype(np.float32)
            else:
                actions = agent.explore(self.obs)
            finished += self.step(actions, agent.losses)
            self.train_if_due(agent)
            if max_episodes is not None and len(finished) >= max_episodes:
                break
        return self.env_steps - start, finished

    def train_if_due(self, agent: Any) -> None:
        """`agent.train(n)` every `train_freq` vector steps once learning has started."""
        cfg = agent.cfg
        if (
            self.env_steps >= cfg.learning_starts
            and len(self.buffer) >= cfg.batch_size
            and (self.env_steps // self.n_envs) % cfg.train_freq == 0
        ):
            agent.train(cfg.gradient_steps if cfg.gradient_steps > 0 else cfg.train_freq * self.n_envs)

    def reset(self, seed: int | None) -> None:
        self.obs, _ = self.env.reset(seed=seed)
        self.autoreset[:] = False
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0
        if self.noise is not None:
            self.noise.reset()

    def step(self, unit_actions: np.ndarray, extras: tuple = ()) -> list[Episode]:
        next_obs, rewards, terminated, truncated, _ = self.env.step(scale_action(unit_actions, self.low, self.high))
        return self.record(self.obs, unit_actions, rewards, next_obs, terminated, truncated, extras)

    def record(self, obs, unit_actions, rewards, next_obs, terminated, truncated, extras: tuple = ()) -> list[Episode]:
        """One vector step's transitions into the buffer and the episodes it ended (from this process's env, or
        from Ray actors: deeprl.backends.ray_offpolicy)."""
        valid = ~self.autoreset
        self.buffer.add(obs, unit_actions, rewards, next_obs, terminated, truncated, valid=valid)
        self.env_steps += self.n_envs
        self.ep_return += np.where(valid, rewards, 0.0)
        self.ep_length += valid
        done = (terminated | truncated) & valid
        finished = []
        if done.any():
            now = time.perf_counter()
            for i in np.flatnonzero(done):
                self.episodes += 1
                finished.append(Episode(self.env_steps, float(self.ep_return[i]), int(self.ep_length[i]), now, extras))
            self.ep_return[done] = 0.0
            self.ep_length[done] = 0
        if self.noise is not None and self.autoreset.any():
            self.noise.reset(self.autoreset)  # these envs now hold a new episode's first observation
        self.autoreset = done
        self.obs = next_obs
        return finished

    def state_dict(self) -> dict[str, Any]:
        return {
            "obs": None if self.obs is None else tree_map(np.array, self.obs),
            "autoreset": self.autoreset.copy(),
            "ep_return": self.ep_return.copy(),
            "ep_length": self.ep_length.copy(),
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        self.env_steps, self.episodes = state["env_steps"], state["episodes"]
        self.rng.bit_generator.state = state["rng"]
        if env_restored:
            self.obs = state["obs"]
            self.autoreset[:] = state["autoreset"]
            self.ep_return[:] = state["ep_return"]
            self.ep_length[:] = state["ep_length"]
        else:  # the env could not be saved: the next learn() starts fresh episodes
            self.obs = None

    def replay_state(self) -> dict[str, Any]:
        """Everything on the collection side of a resume state: the buffer, the noise and this collector."""
        state = {"buffer": self.buffer.state_dict(), "collector": self.state_dict()}
        if self.noise is not None:
            state["noise"] = self.noise.state_dict()
        return state

    def load_replay_state(self, state: dict[str, Any], env_restored: bool = True) -> None:
        self.buffer.load_state_dict(state["buffer"])
        if self.noise is not None:
            self.noise.load_state_dict(state["noise"])
        self.load_state_dict(state["collector"], env_restored)
