"""DDPG: Deep Deterministic Policy Gradient (Lillicrap et al. 2016, "Continuous control with deep RL").

Notes, "DDPG". An actor μ(s | θ^μ) and a critic Q(s, a | θ^Q), each with a target copy (μ', Q')
that follows it by Polyak averaging θ' ← τθ + (1 − τ)θ'. From a replay buffer of transitions:

    critic:  y_i = r_i + γ (1 − terminated_i) Q'(s_{i+1}, μ'(s_{i+1}))      L = 1/N Σ_i (y_i − Q(s_i, a_i))²
    actor:   ∇_θμ J ≈ 1/N Σ_i ∇_a Q(s_i, a)|_{a=μ(s_i)} ∇_θμ μ(s_i), i.e. minimise −Q(s_i, μ(s_i))

Erratum: the notes' `(1 - dones)` must be `terminated` only; Pendulum's time limit still bootstraps.
Exploration: μ(s) plus Ornstein-Uhlenbeck (the paper's) or Gaussian noise, after `learning_starts`
steps of uniform random actions. Actions live in [-1, 1] and are scaled to the env's bounds.
The two losses are methods of their own, which --compile compiles (deeprl.compiling).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from deeprl.compiling import compile_methods
from deeprl.config import DDPGConfig
from deeprl.continuous import (
    check_losses,
    deterministic_nets,
    exploration_noise,
    flat_dims,
    frozen,
    noisy_actions,
    obs_tensor,
    replay_collector,
    scale_action,
)
from deeprl.math import ddpg_target
from deeprl.nets import soft_update
from deeprl.protocol import Episode
from deeprl.seeding import Seeds

_NETS = ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt")


class DDPG:
    metric_names = ("critic_loss", "actor_loss")

    def __init__(self, config: DDPGConfig, env: Any, *, seed: int, device: Any = "cpu"):
        self.cfg, self.env, self.seed = config, env, seed
        self.device = torch.device(device)
        seeds = Seeds(seed)
        _, act_space, _, self.act_dim = flat_dims(env)
        self.low, self.high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        (self.actor, self.critic, self.actor_target, self.critic_target, self.actor_opt, self.critic_opt) = (
            deterministic_nets(config, env, n_critics=1, device=self.device)
        )
        self.updates = 0
        self.losses = (float("nan"), float("nan"))  # the last round's, for metrics.csv
        self.noise = self.buffer = self.collector = None
        if isinstance(env, gym.vector.VectorEnv):  # deeprl.load gives a single env: policy only, no buffer
            self.noise = exploration_noise(config, env, seeds)
            self.buffer, self.collector = replay_collector(config, env, seeds, self.device, self.noise)

    @torch.inference_mode()
    def policy(self, obs: Any) -> np.ndarray:
        """μ(s) scaled to the env's bounds, for a batch of observations (deterministic)."""
        unit = self.actor(obs_tensor(obs, self.device, self.actor.encoder)).cpu().numpy()
        return scale_action(unit, self.low, self.high)

    def learn(self, max_steps: int, max_episodes: int | None = None) -> tuple[int, list[Episode]]:
        return self.collector.run(self, max_steps, max_episodes)

    def explore(self, obs: Any) -> np.ndarray:
        """μ(s) plus exploration noise, clipped to the unit box (after learning_starts)."""
        return noisy_actions(self.actor, obs, self.noise, self.device, self.collector.env_steps)

    def train(self, n_updates: int) -> None:
        """n_updates gradient steps on the critic and the actor, each on its own minibatch."""
        for mb in self.buffer.minibatches(n_updates, self.cfg.batch_size):
            critic_loss = self.critic_loss(mb.obs, mb.actions, mb.rewards, mb.next_obs, mb.terminated, mb.steps)
            self.critic_opt.zero_grad(set_to_none=True)
            critic_loss.sum().backward()  # one seed: the loss itself; a seed ensemble: the sum of its seeds' losses
            self.critic_opt.step()

            # Actor: ascend Q(s, μ(s)) through the critic (the deterministic policy gradient).
            with frozen(self.critic):  # the gradient reaches μ through Q's action input only
                actor_loss = self.policy_loss(mb.obs)
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.sum().backward()
            self.actor_opt.step()

            soft_update(self.critic_target, self.critic, self.cfg.tau)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
            self.updates += 1
        self.losses = tuple(
            check_losses(
                torch.stack([critic_loss.detach(), actor_loss.detach()]),
                ("critic loss", "actor loss"),
                self.updates,
                self.collector.env_steps,
            )
        )

    def critic_loss(self, obs, actions, rewards, next_obs, terminated, steps) -> torch.Tensor:
        """1/N Σ_i (y_i − Q(s_i, a_i))²: the critic regresses onto y = r + γ (1 − terminated) Q'(s', μ'(s'))."""
        with torch.no_grad():
            q_next = self.critic_target(next_obs, self.actor_target(next_obs))[0]
            discounts = self.cfg.gamma**steps  # γ^k, k = rewards in r (1: no n-step returns here)
            td_target = ddpg_target(rewards, q_next, discounts, terminated)
        q = self.critic(obs, actions)[0]
        return (q - td_target).pow(2).mean(-1)  # the batch's mean (a seed ensemble's (K, batch): each seed's)

    def policy_loss(self, obs: Any) -> torch.Tensor:
        """−1/N Σ_i Q(s_i, μ(s_i)): the actor ascends Q through the critic (the deterministic policy gradient)."""
        return -self.critic(obs, self.actor(obs))[0].mean(-1)

    def compile(self, mode: str | None = "auto") -> None:
        """--compile: the two losses (with their backward passes) through torch.compile, and on a GPU μ(s) for acting
        too (on a CPU its compiled call cost 5 µs more than the eager MLP: docs/benchmarks.md, "--compile")."""
        compile_methods(self, ("critic_loss", "policy_loss"), self.device, mode)
        if self.device.type == "cuda":
            compile_methods(self.actor, ("forward",), self.device, mode)

    def policy_state(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict()}

    def load_policy_state(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])

    def state_dict(self) -> dict[str, Any]:
        state = {name: getattr(self, name).state_dict() for name in _NETS}
        state.update(updates=self.updates, losses=self.losses)
        if self.collector is not None:
            state.update(self.collector.replay_state())
        return state

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        for name in _NETS:
            getattr(self, name).load_state_dict(state[name])
        self.updates, self.losses = state["updates"], tuple(state["losses"])
        if self.collector is not None:
            self.collector.load_replay_state(state, env_restored)
