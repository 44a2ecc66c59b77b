"""SAC: Soft Actor-Critic (Haarnoja et al. 2018, "Soft actor-critic algorithms and applications").

Maximum-entropy RL: the agent maximises E[Σ γ^t (r_t + α H(π(·|s_t)))]. Next to DDPG (notes, "DDPG"):

    policy:   a = tanh(u), u ~ N(mean(s), std(s)²), with log π(a|s) = log N(u) − Σ log(1 − tanh(u)²)
    critics:  y = r + γ (1 − terminated) (min(Q'_1, Q'_2)(s', a') − α log π(a'|s')),  a' ~ π(·|s')
    actor:    minimise E_s[α log π(a|s) − min(Q_1, Q_2)(s, a)],  a = tanh(mean + std·ε) (reparameterised)
    α:        minimise E[−α (log π(a|s) + H̄)], which raises α when the entropy falls below H̄ = −dim(A)

Exploration comes from sampling the policy, so there is no added noise; evaluation uses tanh(mean).
Only the critics have target copies (Polyak τ). Terminated (not truncated) stops the bootstrap.
The two losses and the action sample are methods of their own, which --compile compiles (deeprl.compiling).
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from deeprl.compiling import compile_methods
from deeprl.config import SACConfig
from deeprl.continuous import (
    QEnsemble,
    SquashedGaussianActor,
    check_losses,
    flat_dims,
    frozen,
    normal,
    obs_tensor,
    replay_collector,
    scale_action,
    torso,
)
from deeprl.errors import DivergenceError
from deeprl.math import sac_target
from deeprl.nets import adam, soft_update
from deeprl.protocol import Episode
from deeprl.seeding import Seeds


class SAC:
    metric_names = ("critic_loss", "actor_loss", "alpha")

    def __init__(self, config: SACConfig, env: Any, *, seed: int, device: Any = "cpu"):
        self.cfg, self.env, self.seed = config, env, seed
        self.device = torch.device(device)
        seeds = Seeds(seed)
        obs_space, act_space, _, self.act_dim = flat_dims(env)
        self.low, self.high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        hidden = tuple(config.hidden)
        actor_encoder, n_actor_in = torso(obs_space)  # images, Dict...: an encoder per network (SB3's recipe)
        critic_encoder, n_critic_in = torso(obs_space)
        self.actor = SquashedGaussianActor(n_actor_in, self.act_dim, hidden, actor_encoder).to(self.device)
        self.critic = QEnsemble(n_critic_in, self.act_dim, hidden, n=2, encoder=critic_encoder).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_opt = adam(self.critic.parameters(), config.critic_lr, self.device)
        self.target_entropy = -float(self.act_dim) if config.target_entropy is None else config.target_entropy
        self.log_alpha = torch.tensor(float(np.log(config.alpha)), device=self.device, requires_grad=config.autotune)
        # log α is a second parameter group of the policy's optimizer (its own step size): the policy and
        # temperature losses share one backward pass and one Adam step.
        self.actor_opt = adam(
            [{"params": list(self.actor.parameters())}]
            + ([{"params": [self.log_alpha], "lr": config.alpha_lr}] if config.autotune else []),
            config.actor_lr,
            self.device,
        )
        self.alpha = self.log_alpha.detach().exp()
        self.generator = seeds.torch_generator("policy", self.device)  # the policy's ε, in acting and training
        self.updates = 0
        self.losses = (float("nan"), float("nan"), config.alpha)
        self.buffer = self.collector = None
        if isinstance(env, gym.vector.VectorEnv):  # deeprl.load gives a single env: policy only, no buffer
            self.buffer, self.collector = replay_collector(config, env, seeds, self.device)

    @torch.inference_mode()
    def policy(self, obs: Any) -> np.ndarray:
        """tanh(mean(s)) scaled to the env's bounds: the deterministic policy for evaluation."""
        unit = self.actor.deterministic(obs_tensor(obs, self.device, self.actor.encoder)).cpu().numpy()
        return scale_action(unit, self.low, self.high)

    def learn(self, max_steps: int, max_episodes: int | None = None) -> tuple[int, list[Episode]]:
        return self.collector.run(self, max_steps, max_episodes)

    def explore(self, obs: Any) -> np.ndarray:
        """An action sampled from the squashed Gaussian policy (after learning_starts)."""
        with torch.inference_mode():
            obs_t = obs_tensor(obs, self.device, self.actor.encoder)
            eps = torch.randn((self.collector.n_envs, self.act_dim), generator=self.generator, device=self.device)
            actions = self.sample_action(obs_t, eps).cpu().numpy()
        if not np.isfinite(actions).all():
            raise DivergenceError(f"the policy produced non-finite actions at env step {self.collector.env_steps}")
        return actions

    def train(self, n_updates: int) -> None:
        """n_updates gradient steps on the critics, the policy and α, each on its own minibatch."""
        cfg = self.cfg
        for mb in self.buffer.minibatches(n_updates, cfg.batch_size):
            # ε of a' ~ π(·|s') in the critics' target, then of a ~ π(·|s) in the policy's loss, drawn in that order
            eps_next = normal(mb.actions.shape, self.generator, self.device)
            eps = normal(mb.actions.shape, self.generator, self.device)
            critic_loss = self.critic_loss(
                mb.obs, mb.actions, mb.rewards, mb.next_obs, mb.terminated, mb.steps, eps_next, self.alpha
            )
            self.critic_opt.zero_grad(set_to_none=True)
            critic_loss.sum().backward()  # one seed: the loss itself; a seed ensemble: the sum of its seeds' losses
            self.critic_opt.step()

            with frozen(self.critic):  # gradients flow through Q to the action, not into the critics' weights
                loss, actor_loss = self.policy_loss(mb.obs, eps, self.alpha)
            self.actor_opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            self.actor_opt.step()
            if cfg.autotune:  # a fixed α never moves
                self.alpha = self.log_alpha.detach().exp()

            soft_update(self.critic_target, self.critic, cfg.tau)
            self.updates += 1
        self.losses = tuple(
            check_losses(
                torch.stack([critic_loss.detach(), actor_loss.detach(), self.alpha.reshape(critic_loss.shape)]),
                ("critic loss", "actor loss", "entropy coefficient α"),
                self.updates,
                self.collector.env_steps,
            )
        )

    def critic_loss(self, obs, actions, rewards, next_obs, terminated, steps, eps_next, alpha) -> torch.Tensor:
        """Σ_k mean (Q_k(s, a) − y)²: the critics regress onto the soft target y, with a fresh a' = tanh(mean(s') +
        std(s')·ε') ~ π(·|s') and its entropy bonus −α log π(a'|s')."""
        with torch.no_grad():
            next_actions, next_log_prob = self.actor.sample(next_obs, eps=eps_next)
            q1_next, q2_next = self.critic_target(next_obs, next_actions)
            discounts = self.cfg.gamma**steps  # γ^k, k = rewards in r (1: no n-step returns here)
            td_target = sac_target(rewards, q1_next, q2_next, next_log_prob, alpha, discounts, terminated)
        q = self.critic(obs, actions)  # (2, batch)
        # the mean over the batch, summed over the critics; a seed ensemble's (2, K, batch): one loss per seed
        return (q - td_target).pow(2).mean(-1).sum(0)

    def policy_loss(self, obs, eps, alpha) -> tuple[torch.Tensor, torch.Tensor]:
        """(the policy's and the temperature's losses summed, the policy's alone). Policy: reparameterised
        a = tanh(mean + std·ε), minimise α log π(a|s) − min Q(s, a). Temperature: move log α so that E[−log π]
        tracks the target entropy H̄. The two share no parameter (α is detached, and so is log π in the second),
        so one backward gives each its own gradient."""
        pi_actions, log_prob = self.actor.sample(obs, eps=eps)
        q_pi = self.critic(obs, pi_actions).min(dim=0).values
        actor_loss = (alpha * log_prob - q_pi).mean(-1)  # the batch's mean (a seed ensemble's: each seed's)
        loss = actor_loss
        if self.cfg.autotune:
            loss = loss - (self.log_alpha.exp() * (log_prob.detach() + self.target_entropy)).mean(-1)
        return loss, actor_loss

    def sample_action(self, obs: Any, eps: torch.Tensor) -> torch.Tensor:
        """a = tanh(mean(s) + std(s)·ε), for acting."""
        return self.actor.sample(obs, eps=eps)[0]

    def compile(self, mode: str | None = "auto") -> None:
        """--compile: the two losses (with their backward passes) and the action sample through torch.compile."""
        compile_methods(self, ("critic_loss", "policy_loss", "sample_action"), self.device, mode)

    def policy_state(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict()}

    def load_policy_state(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])

    def state_dict(self) -> dict[str, Any]:
        state = {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "log_alpha": self.log_alpha.detach().cpu(),
            "generator": self.generator.get_state(),
            "updates": self.updates,
            "losses": self.losses,
        }
        if self.collector is not None:
            state.update(self.collector.replay_state())
        return state

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        for name in ("actor", "critic", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha = self.log_alpha.detach().exp()
        self.generator.set_state(state["generator"])
        self.updates, self.losses = state["updates"], tuple(state["losses"])
        if self.collector is not None:
            self.collector.load_replay_state(state, env_restored)
