"""PQN: Parallelised Q-Network (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning").

DQN without its replay buffer and target network (notes, "Deep QRLN"): many parallel envs decorrelate
the data instead of a buffer, and LayerNorm in the Q-network keeps the bootstrapped regression stable
without frozen weights w⁻. Each iteration:

1. Collect a rollout of n_steps x n_envs transitions acting ε-greedily on q(s, ·; w), ε drawn per env
   and per step, ε itself fixed for the rollout and decayed linearly (deeprl.rollout.Rollout stores it,
   with q'_t = max_a q(s_{t+1}, a; w) taken while acting).
2. Q(λ) returns backwards over the rollout (deeprl.math.q_lambda_returns):
       R_t = r_t + γ (1 − terminated_t) [(1 − λ) q'_t + λ R_{t+1}]
   cut at episode ends (a truncation bootstraps from q' of the true final observation, a termination
   does not) and at the rollout's end (bootstrap from q' of the env's current observation).
3. n_epochs passes of shuffled minibatches on ½ (q(s_t, a_t; w) − R_t)², the gradient's norm clipped;
   the learning rate decays linearly (--anneal-steps).

The q' are the network's values while collecting: the returns are the targets of the whole rollout's
epochs, as in the paper. Vector envs autoreset on the step after an episode ends (NEXT_STEP): that
step is no transition and the rollout masks it out (docs/design.md, convention 3). Action masks (a
Dict observation's `action_mask`): exploration, the greedy action and q' range over the allowed actions.
Networks: the deeprl.nets.make_encoder torso for the observation space (flattening, one-hot, the CNN
of images) and then the MLP of `hidden` with LayerNorm, as the paper's Q-network.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from deeprl.algos.onpolicy import flat_valid
from deeprl.config import PQNConfig
from deeprl.envs import autoreset_mode
from deeprl.errors import DivergenceError, UsageError
from deeprl.math import linear_schedule, q_lambda_returns
from deeprl.math.targets import masked_argmax, masked_max, uniform_allowed_actions
from deeprl.nets import adam, layer_init, make_encoder
from deeprl.protocol import Episode
from deeprl.rollout import Rollout
from deeprl.seeding import Seeds
from deeprl.spaces import mask_of, take, to_tensor


class QNetwork(nn.Module):
    """q(s, ·; w): the observation torso (deeprl.nets.make_encoder without hidden layers: flattening, one-hot,
    or the CNN for images), then Linear → LayerNorm → ReLU per hidden size, then a linear head per action."""

    def __init__(self, obs_space: gym.Space, n_actions: int, hidden: tuple[int, ...], layer_norm: bool = True):
        super().__init__()
        self.encoder = make_encoder(obs_space, ())
        layers: list[nn.Module] = []
        n_in = self.encoder.out_features
        for size in hidden:
            layers += [
                layer_init(nn.Linear(n_in, size)),
                nn.LayerNorm(size) if layer_norm else nn.Identity(),
                nn.ReLU(),
            ]
            n_in = size
        self.torso = nn.Sequential(*layers)
        self.head = layer_init(nn.Linear(n_in, n_actions), gain=1.0)

    def forward(self, obs: Any) -> torch.Tensor:
        return self.head(self.torso(self.encoder(obs)))


class PQN:
    metric_names = ("epsilon", "loss")

    def __init__(self, config: PQNConfig, env: Any, *, seed: int, device: Any = "cpu"):
        self.cfg, self.env, self.seed, self.device = config, env, seed, torch.device(device or "cpu")
        seeds = Seeds(seed)
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        self.n_actions = int(act_space.n)
        self.q = QNetwork(obs_space, self.n_actions, tuple(config.hidden), config.layer_norm).to(self.device)
        self.optimizer = adam(self.q.parameters(), config.learning_rate, self.device)
        # The rollout keeps the partial batch, the episode counters and the env's position between learn() calls
        # (and in the resume state); its `values` row t holds q'_{t−1} = max_a q(s_t, a), read by finish().
        self.rollout = Rollout(env, config.n_steps, self.device, seeds=seeds)
        if isinstance(env, gym.vector.VectorEnv) and autoreset_mode(env) != gym.vector.AutoresetMode.NEXT_STEP:
            raise UsageError(f"PQN needs a vector env with NEXT_STEP autoreset; got {autoreset_mode(env)}.")
        self.rng = seeds.generator("exploration")  # ε-greedy, per env and per step
        self.shuffle = seeds.torch_generator("minibatches")  # the minibatch order (CPU: the same on every device)
        self.updates = 0
        self.loss = math.nan  # the last update's loss (mean over its last epoch)
        self._no_log_prob = torch.zeros(self.rollout.n_envs, device=self.device)

    @property
    def epsilon(self) -> float:
        """ε of the current rollout: the linear schedule at the env steps taken before the rollout began."""
        r = self.rollout
        start = r.env_steps - r.t * r.n_envs
        return linear_schedule(self.cfg.epsilon_start, self.cfg.epsilon_final, self.cfg.epsilon_decay_steps, start)

    # ---- acting: deeprl.rollout.Policy's two methods -------------------------------------------------
    def act(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ε-greedy actions, no log-probabilities (an off-policy target needs none), and max_a q(s, a) over
        the allowed actions: q' of the previous row's transition."""
        q = self.q(obs)
        mask = mask_of(obs)
        greedy = masked_argmax(q, mask).cpu().numpy()
        n = len(greedy)
        explore = self.rng.random(n) < self.epsilon  # drawn every step: the stream does not depend on ε
        if mask is None:
            uniform = self.rng.integers(0, self.n_actions, n)
        else:
            uniform = uniform_allowed_actions(self.rng, mask.cpu().numpy())
        actions = torch.from_numpy(np.where(explore, uniform, greedy)).to(self.device)
        return actions, self._no_log_prob[:n], self._max_q(q, mask)

    def env_action(self, action: torch.Tensor) -> np.ndarray:
        return action.cpu().numpy()

    @staticmethod
    def _max_q(q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return q.amax(-1) if mask is None else masked_max(q, mask)

    @torch.inference_mode()
    def policy(self, obs: Any) -> np.ndarray:
        """Greedy actions argmax_a q(s, a; w) for a batch of observations (over the allowed a, with a mask)."""
        obs = to_tensor(obs, self.device)
        return masked_argmax(self.q(obs), mask_of(obs)).cpu().numpy()

    # ---- learning ------------------------------------------------------------------------------------
    def learn(self, max_steps: int, max_episodes: int | None = None) -> tuple[int, list[Episode]]:
        """Step the vector env ceil(max_steps / n_envs) times, updating at every full rollout; a rollout may span
        learn() calls, so learn(a); learn(b) does what learn(a + b) does."""
        rollout = self.rollout
        n_vec = -(-max_steps // rollout.n_envs)
        taken, finished = 0, []
        while taken < n_vec:
            left = None if max_episodes is None else max_episodes - len(finished)
            extras = (round(self.epsilon, 6), round(self.loss, 6))
            steps, episodes = rollout.collect(self, n_vec - taken, left, extras)
            taken += steps
            finished += episodes
            if rollout.full:
                self.update()
                rollout.clear()
            if max_episodes is not None and len(finished) >= max_episodes:
                break
        return taken * rollout.n_envs, finished

    def update(self) -> None:
        cfg, r = self.cfg, self.rollout
        r.finish(lambda obs: self._max_q(self.q(obs), mask_of(obs)))  # next_values[t] = q'_t
        rewards = cfg.reward_scale * r.rewards
        returns = q_lambda_returns(rewards, r.next_values, r.terminated, r.truncated, cfg.gamma, cfg.q_lambda)
        obs, actions, returns = flat_valid(r, r.obs, r.actions, returns)  # autoreset rows dropped
        if cfg.anneal_steps is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.learning_rate * max(0.0, 1.0 - r.env_steps / cfg.anneal_steps)
        n = len(returns)
        losses = torch.zeros(-(-n // cfg.minibatch_size), device=self.device)
        for _ in range(cfg.n_epochs):
            order = torch.randperm(n, generator=self.shuffle).to(self.device)
            for i, start in enumerate(range(0, n, cfg.minibatch_size)):
                index = order[start : start + cfg.minibatch_size]
                q = self.q(take(obs, index)).gather(1, actions[index].unsqueeze(1)).squeeze(1)  # q(s_t, a_t; w)
                loss = 0.5 * (q - returns[index]).pow(2).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(self.q.parameters(), cfg.max_grad_norm, foreach=True)
                self.optimizer.step()
                losses[i] = loss.detach()
        self.updates += 1
        self.loss = float(losses.mean())  # the update's one host sync: the last epoch's mean loss
        if not math.isfinite(self.loss):
            raise DivergenceError(
                f"the PQN loss became {self.loss} after update {self.updates} at env step {r.env_steps}; "
                "lower --learning-rate or --reward-scale"
            )

    # ---- the run directory's two artefacts ---------------------------------------------------------
    def policy_state(self) -> dict[str, Any]:
        return {"q": self.q.state_dict()}

    def load_policy_state(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": self.q.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rollout": self.rollout.state_dict(),
            "rng": self.rng.bit_generator.state,
            "shuffle": self.shuffle.get_state(),
            "updates": self.updates,
            "loss": self.loss,
        }

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        self.q.load_state_dict(state["q"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rollout.load_state_dict(state["rollout"], env_restored)
        self.rng.bit_generator.state = state["rng"]
        self.shuffle.set_state(state["shuffle"])
        self.updates, self.loss = state["updates"], float(state["loss"])
