"""TD3: Twin Delayed DDPG (Fujimoto, van Hoof & Meger 2018, "Addressing function approximation error
in actor-critic methods").

DDPG (notes, "DDPG") overestimates Q, and the actor exploits the overestimate. TD3 changes three things:

    clipped double Q:         y = r + γ (1 − terminated) min(Q'_1, Q'_2)(s', ã')
    target policy smoothing:  ã' = clip(μ'(s') + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ̃²)
    delayed updates:          the actor and the target networks move once every `policy_delay`
                              critic updates, and the actor ascends Q_1(s, μ(s)) alone.

Both critics regress onto the same y. Terminated (not truncated) transitions stop the bootstrap.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from deeprl.algos import Episode
from deeprl.buffers import ReplayBuffer
from deeprl.config import TD3Config
from deeprl.continuous import (Collector, DeterministicActor, QEnsemble, adam, check_losses, flat_dims, frozen,
                               scale_action)
from deeprl.errors import DivergenceError
from deeprl.math import smoothed_target_actions, td3_target
from deeprl.nets import soft_update
from deeprl.noise import make_noise


class TD3:
    metric_names = ("critic_loss", "actor_loss")

    def __init__(self, config: TD3Config, env: Any, *, seed: int, device: Any = "cpu"):
        self.cfg, self.env, self.seed = config, env, seed
        self.device = torch.device(device)
        obs_space, act_space, obs_dim, self.act_dim = flat_dims(env)
        self.low, self.high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        hidden = tuple(config.hidden)
        self.actor = DeterministicActor(obs_dim, self.act_dim, hidden).to(self.device)
        self.critic = QEnsemble(obs_dim, self.act_dim, hidden, n=2).to(self.device)  # Q_1 and Q_2, batched
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), config.actor_lr, self.device)
        self.critic_opt = adam(self.critic.parameters(), config.critic_lr, self.device)
        self.rng = np.random.default_rng(seed)  # uniform actions before learning starts
        self.generator = torch.Generator(self.device).manual_seed(seed)  # target smoothing noise ε
        self.updates = 0
        self.losses = (float("nan"), float("nan"))
        self.actor_loss = torch.zeros((), device=self.device)  # 0 until the first (delayed) actor update
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
        """n_updates critic updates (each on its own minibatch); the actor on every policy_delay-th."""
        cfg = self.cfg
        batch = self.buffer.sample(cfg.batch_size * n_updates)  # n_updates independent uniform minibatches at once
        for k in range(n_updates):
            mb = slice(k * cfg.batch_size, (k + 1) * cfg.batch_size)
            obs, actions, next_obs = batch.obs[mb], batch.actions[mb], batch.next_obs[mb]

            # Critics: both regress onto the clipped double-Q target at the smoothed target action.
            with torch.no_grad():
                eps = torch.randn(actions.shape, generator=self.generator, device=self.device)
                next_actions = smoothed_target_actions(self.actor_target(next_obs), cfg.target_policy_noise * eps,
                                                       cfg.target_noise_clip)
                q1_next, q2_next = self.critic_target(next_obs, next_actions)
                td_target = td3_target(batch.rewards[mb], q1_next, q2_next, batch.discounts[mb], batch.terminated[mb])
            q = self.critic(obs, actions)  # (2, batch)
            critic_loss = (q - td_target).pow(2).mean(dim=1).sum()  # MSE of Q_1 plus MSE of Q_2
            self.critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic_opt.step()
            self.updates += 1

            # Delayed policy update: the actor ascends Q_1(s, μ(s)); then the targets follow.
            if self.updates % cfg.policy_delay == 0:
                with frozen(self.critic):  # the gradient reaches μ through Q_1's action input only
                    actor_loss = -self.critic(obs, self.actor(obs))[0].mean()
                self.actor_opt.zero_grad(set_to_none=True)
                actor_loss.backward()
                self.actor_opt.step()
                self.actor_loss = actor_loss.detach()
                soft_update(self.critic_target, self.critic, cfg.tau)
                soft_update(self.actor_target, self.actor, cfg.tau)
        self.losses = tuple(check_losses(torch.stack([critic_loss.detach(), self.actor_loss]),
                                         ("critic loss", "actor loss"), self.updates, self.collector.env_steps))

    def state_dict(self) -> dict[str, Any]:
        state = {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
            "updates": self.updates, "losses": self.losses, "actor_loss": self.actor_loss.cpu(),
        }
        if self.collector is not None:
            state.update(buffer=self.buffer.state_dict(), noise=self.noise.state_dict(),
                         collector=self.collector.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        self.updates, self.losses = state["updates"], tuple(state["losses"])
        self.actor_loss = state["actor_loss"].to(self.device)
        if self.collector is not None:
            self.buffer.load_state_dict(state["buffer"])
            self.noise.load_state_dict(state["noise"])
            self.collector.load_state_dict(state["collector"], env_restored)
