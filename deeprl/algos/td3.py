"""TD3: Twin Delayed DDPG (Fujimoto, van Hoof & Meger 2018, "Addressing function approximation error
in actor-critic methods").

DDPG (notes, "DDPG") overestimates Q, and the actor exploits the overestimate. TD3 changes three things:

    clipped double Q:         y = r + γ (1 − terminated) min(Q'_1, Q'_2)(s', ã')
    target policy smoothing:  ã' = clip(μ'(s') + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ̃²)
    delayed updates:          the actor and the target networks move once every `policy_delay`
                              critic updates, and the actor ascends Q_1(s, μ(s)) alone.

Both critics regress onto the same y. Terminated (not truncated) transitions stop the bootstrap.
Everything but the update (networks, noise, replay, collection, the saved state) is DDPG's: TD3
subclasses it with twin critics and writes its own `train`.
"""

from __future__ import annotations

from typing import Any

import torch

from deeprl.algos.ddpg import DDPG
from deeprl.config import TD3Config
from deeprl.continuous import check_losses, frozen
from deeprl.math import smoothed_target_actions, td3_target
from deeprl.nets import soft_update


class TD3(DDPG):
    n_critics = 2  # Q_1 and Q_2, one batched QEnsemble

    def __init__(self, config: TD3Config, env: Any, *, seed: int, device: Any = "cpu"):
        super().__init__(config, env, seed=seed, device=device)
        self.generator = torch.Generator(self.device).manual_seed(seed)  # target smoothing noise ε
        self.actor_loss = torch.zeros((), device=self.device)  # 0 until the first (delayed) actor update

    def train(self, n_updates: int) -> None:
        """n_updates critic updates (each on its own minibatch); the actor on every policy_delay-th."""
        cfg = self.cfg
        for mb in self.buffer.minibatches(n_updates, cfg.batch_size):
            # Critics: both regress onto the clipped double-Q target at the smoothed target action.
            with torch.no_grad():
                eps = torch.randn(mb.actions.shape, generator=self.generator, device=self.device)
                next_actions = smoothed_target_actions(self.actor_target(mb.next_obs), cfg.target_policy_noise * eps,
                                                       cfg.target_noise_clip)
                q1_next, q2_next = self.critic_target(mb.next_obs, next_actions)
                td_target = td3_target(mb.rewards, q1_next, q2_next, mb.discounts, mb.terminated)
            q = self.critic(mb.obs, mb.actions)  # (2, batch)
            critic_loss = (q - td_target).pow(2).mean(dim=1).sum()  # MSE of Q_1 plus MSE of Q_2
            self.critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic_opt.step()
            self.updates += 1

            # Delayed policy update: the actor ascends Q_1(s, μ(s)); then the targets follow.
            if self.updates % cfg.policy_delay == 0:
                with frozen(self.critic):  # the gradient reaches μ through Q_1's action input only
                    actor_loss = -self.critic(mb.obs, self.actor(mb.obs))[0].mean()
                self.actor_opt.zero_grad(set_to_none=True)
                actor_loss.backward()
                self.actor_opt.step()
                self.actor_loss = actor_loss.detach()
                soft_update(self.critic_target, self.critic, cfg.tau)
                soft_update(self.actor_target, self.actor, cfg.tau)
        self.losses = tuple(check_losses(torch.stack([critic_loss.detach(), self.actor_loss]),
                                         ("critic loss", "actor loss"), self.updates, self.collector.env_steps))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state(), "actor_loss": self.actor_loss.cpu()}

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        super().load_state_dict(state, env_restored)
        self.generator.set_state(state["generator"])
        self.actor_loss = state["actor_loss"].to(self.device)
