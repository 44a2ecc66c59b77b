"""DDPG: Deep Deterministic Policy Gradient (Lillicrap et al. 2016, "Continuous control with deep RL").

Notes, "DDPG". An actor μ(s | θ^μ) and a critic Q(s, a | θ^Q), each with a target copy (μ', Q')
that follows it by Polyak averaging θ' ← τθ + (1 − τ)θ'. From a replay buffer of transitions:

    critic:  y_i = r_i + γ (1 − terminated_i) Q'(s_{i+1}, μ'(s_{i+1}))      L = 1/N Σ_i (y_i − Q(s_i, a_i))²
    actor:   ∇_θμ J ≈ 1/N Σ_i ∇_a Q(s_i, a)|_{a=μ(s_i)} ∇_θμ μ(s_i), i.e. minimise −Q(s_i, μ(s_i))

Erratum: the notes' `(1 - dones)` must be `terminated` only; Pendulum's time limit still bootstraps.
Exploration: μ(s) plus Ornstein-Uhlenbeck (the paper's) or Gaussian noise, after `learning_starts`
steps of uniform random actions. Actions live in [-1, 1] and are scaled to the env's bounds.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from deeprl.protocol import Episode
from deeprl.buffers import ReplayBuffer
from deeprl.config import DDPGConfig
from deeprl.continuous import (Collector, DeterministicActor, QEnsemble, check_losses, flat_dims, frozen,
                               scale_action)
from deeprl.errors import DivergenceError
from deeprl.math import ddpg_target
from deeprl.nets import adam, soft_update
from deeprl.noise import make_noise


class DDPG:
    metric_names = ("critic_loss", "actor_loss")
    n_critics = 1  # TD3 (a subclass) keeps everything here but the update, with twin critics

    def __init__(self, config: DDPGConfig, env: Any, *, seed: int, device: Any = "cpu"):
        self.cfg, self.env, self.seed = config, env, seed
        self.device = torch.device(device)
        obs_space, act_space, obs_dim, self.act_dim = flat_dims(env)
        self.low, self.high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        hidden = tuple(config.hidden)
        self.actor = DeterministicActor(obs_dim, self.act_dim, hidden).to(self.device)
        self.critic = QEnsemble(obs_dim, self.act_dim, hidden, n=self.n_critics).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), config.actor_lr, self.device)
        self.critic_opt = adam(self.critic.parameters(), config.critic_lr, self.device)
        self.rng = np.random.default_rng(seed)  # uniform actions before learning starts
        self.updates = 0
        self.losses = (float("nan"), float("nan"))  # the last round's, for metrics.csv
        self.collector = None
        if isinstance(env, gym.vector.VectorEnv):  # deeprl.load gives a single env: policy only, no buffer
            n = env.num_envs
            self.noise = make_noise(config.noise, config.noise_sigma, (n, self.act_dim), theta=config.noise_theta,
                                    seed=seed + 1)
            unit_box = gym.spaces.Box(-1.0, 1.0, act_space.shape, np.float32)  # the buffer stores unit actions
            self.buffer = ReplayBuffer(config.buffer_size, obs_space, unit_box, n_envs=n, device=self.device,
                                       gamma=config.gamma, seed=seed + 2)
            self.collector = Collector(env, self.buffer, self.noise)

    @torch.inference_mode()
    def policy(self, obs: np.ndarray) -> np.ndarray:
        """μ(s) scaled to the env's bounds, for a batch of observations (deterministic)."""
        unit = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device)).cpu().numpy()
        return scale_action(unit, self.low, self.high)

    def learn(self, max_steps: int, max_episodes: int | None = None) -> tuple[int, list[Episode]]:
        return self.collector.run(self, max_steps, max_episodes)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """μ(s) plus exploration noise, clipped to the unit box (after learning_starts)."""
        with torch.inference_mode():
            mu = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device)).cpu().numpy()
        if not np.isfinite(mu).all():
            raise DivergenceError(f"the actor produced non-finite actions at env step {self.collector.env_steps}")
        return np.clip(mu + self.noise(), -1.0, 1.0)

    def train(self, n_updates: int) -> None:
        """n_updates gradient steps on the critic and the actor, each on its own minibatch."""
        for mb in self.buffer.minibatches(n_updates, self.cfg.batch_size):
            # Critic: regress Q(s, a) onto y = r + γ (1 − terminated) Q'(s', μ'(s')).
            with torch.no_grad():
                q_next = self.critic_target(mb.next_obs, self.actor_target(mb.next_obs))[0]
                td_target = ddpg_target(mb.rewards, q_next, mb.discounts, mb.terminated)
            q = self.critic(mb.obs, mb.actions)[0]
            critic_loss = (q - td_target).pow(2).mean()
            self.critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic_opt.step()

            # Actor: ascend Q(s, μ(s)) through the critic (the deterministic policy gradient).
            with frozen(self.critic):  # the gradient reaches μ through Q's action input only
                actor_loss = -self.critic(mb.obs, self.actor(mb.obs))[0].mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()

            soft_update(self.critic_target, self.critic, self.cfg.tau)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
            self.updates += 1
        self.losses = tuple(check_losses(torch.stack([critic_loss.detach(), actor_loss.detach()]),
                                         ("critic loss", "actor loss"), self.updates, self.collector.env_steps))

    def policy_state(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict()}

    def load_policy_state(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])

    def state_dict(self) -> dict[str, Any]:
        state = {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "rng": self.rng.bit_generator.state, "updates": self.updates, "losses": self.losses,
        }
        if self.collector is not None:
            state.update(buffer=self.buffer.state_dict(), noise=self.noise.state_dict(),
                         collector=self.collector.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.rng.bit_generator.state = state["rng"]
        self.updates, self.losses = state["updates"], tuple(state["losses"])
        if self.collector is not None:
            self.buffer.load_state_dict(state["buffer"])
            self.noise.load_state_dict(state["noise"])
            self.collector.load_state_dict(state["collector"], env_restored)
