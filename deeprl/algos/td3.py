"""TD3: Twin Delayed DDPG (Fujimoto, van Hoof & Meger 2018, "Addressing function approximation error
in actor-critic methods").

DDPG (notes, "DDPG") overestimates Q, and the actor exploits the overestimate. TD3 changes three things:

    clipped double Q:         y = r + γ (1 − terminated) min(Q'_1, Q'_2)(s', ã')
    target policy smoothing:  ã' = clip(μ'(s') + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ̃²)
    delayed updates:          the actor and the target networks move once every `policy_delay`
                              critic updates, and the actor ascends Q_1(s, μ(s)) alone.

Both critics regress onto the same y. Terminated (not truncated) transitions stop the bootstrap.
The networks (μ, twin critics in one QEnsemble, their targets), the exploration noise, the replay
buffer and the collector are built as DDPG's are, by the functions of deeprl/continuous.py; this file
holds what is TD3's own: the smoothing noise's generator and the update, whose two losses are methods of their
own that --compile compiles (deeprl.compiling).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from deeprl.compiling import compile_methods
from deeprl.config import TD3Config
from deeprl.continuous import (
    check_losses,
    deterministic_nets,
    exploration_noise,
    flat_dims,
    frozen,
    noisy_actions,
    normal,
    obs_tensor,
    replay_collector,
    scale_action,
)
from deeprl.math import smoothed_target_actions, td3_target
from deeprl.nets import soft_update
from deeprl.protocol import Episode
from deeprl.seeding import Seeds

_NETS = ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt")


class TD3:
    metric_names = ("critic_loss", "actor_loss")

    def __init__(self, config: TD3Config, env: Any, *, seed: int, device: Any = "cpu"):
        self.cfg, self.env, self.seed = config, env, seed
        self.device = torch.device(device)
        seeds = Seeds(seed)
        _, act_space, _, self.act_dim = flat_dims(env)
        self.low, self.high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        (
            self.actor,
            self.critic,
            self.actor_target,
            self.critic_target,  # Q_1 and Q_2: one batched QEnsemble
            self.actor_opt,
            self.critic_opt,
        ) = deterministic_nets(config, env, n_critics=2, device=self.device)
        self.generator = seeds.torch_generator("target_smoothing", self.device)  # target smoothing noise ε
        self.updates = 0
        self.actor_loss = torch.zeros((), device=self.device)  # 0 until the first (delayed) actor update
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
        """n_updates critic updates (each on its own minibatch); the actor on every policy_delay-th."""
        cfg = self.cfg
        for mb in self.buffer.minibatches(n_updates, cfg.batch_size):
            eps = normal(mb.actions.shape, self.generator, self.device)  # smoothing noise
            critic_loss = self.critic_loss(mb.obs, mb.actions, mb.rewards, mb.next_obs, mb.terminated, mb.steps, eps)
            self.critic_opt.zero_grad(set_to_none=True)
            critic_loss.sum().backward()  # one seed: the loss itself; a seed ensemble: the sum of its seeds' losses
            self.critic_opt.step()
            self.updates += 1

            # Delayed policy update: the actor ascends Q_1(s, μ(s)); then the targets follow.
            if self.updates % cfg.policy_delay == 0:
                with frozen(self.critic):  # the gradient reaches μ through Q_1's action input only
                    actor_loss = self.policy_loss(mb.obs)
                self.actor_opt.zero_grad(set_to_none=True)
                actor_loss.sum().backward()
                self.actor_opt.step()
                self.actor_loss = actor_loss.detach()
                soft_update(self.critic_target, self.critic, cfg.tau)
                soft_update(self.actor_target, self.actor, cfg.tau)
        self.losses = tuple(
            check_losses(
                torch.stack([critic_loss.detach(), self.actor_loss]),
                ("critic loss", "actor loss"),
                self.updates,
                self.collector.env_steps,
            )
        )

    def critic_loss(self, obs, actions, rewards, next_obs, terminated, steps, eps) -> torch.Tensor:
        """MSE of Q_1 plus MSE of Q_2: both regress onto the clipped double-Q target at the smoothed target action
        ã' = clip(μ'(s') + clip(σ̃ε, −c, c), −1, 1)."""
        cfg = self.cfg
        with torch.no_grad():
            next_actions = smoothed_target_actions(
                self.actor_target(next_obs), cfg.target_policy_noise * eps, cfg.target_noise_clip
            )
            q1_next, q2_next = self.critic_target(next_obs, next_actions)
            discounts = cfg.gamma**steps  # γ^k, k = rewards in r (1: no n-step returns here)
            td_target = td3_target(rewards, q1_next, q2_next, discounts, terminated)
        q = self.critic(obs, actions)  # (2, batch)
        # the mean over the batch, summed over the critics; a seed ensemble's (2, K, batch): one loss per seed
        return (q - td_target).pow(2).mean(-1).sum(0)

    def policy_loss(self, obs: Any) -> torch.Tensor:
        """−mean Q_1(s, μ(s)): the actor ascends the first critic."""
        return -self.critic(obs, self.actor(obs))[0].mean(-1)  # the batch's mean (a seed ensemble's: each seed's)

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
        state.update(
            updates=self.updates,
            losses=self.losses,
            generator=self.generator.get_state(),
            actor_loss=self.actor_loss.cpu(),
        )
        if self.collector is not None:
            state.update(self.collector.replay_state())
        return state

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        for name in _NETS:
            getattr(self, name).load_state_dict(state[name])
        self.updates, self.losses = state["updates"], tuple(state["losses"])
        self.generator.set_state(state["generator"])
        self.actor_loss = state["actor_loss"].to(self.device)
        if self.collector is not None:
            self.collector.load_replay_state(state, env_restored)
