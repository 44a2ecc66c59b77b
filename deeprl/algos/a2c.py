"""A2C: synchronous advantage actor-critic (the synchronous variant of A3C, Mnih et al. 2016,
"Asynchronous Methods for Deep Reinforcement Learning"); notes, "Actor Critic Methods" and "A2C/A3C".

n_envs copies of the env step together for n steps (deeprl.rollout); then one gradient step on
    −mean log π(a_t|s_t) A_t  +  c_v · ½ mean (R_t − V(s_t))²  −  c_H · mean H(π(·|s_t)),
with the n-step return R_t = r_t + γ r_{t+1} + … + γ^{n−t} V(s_n) (the notes' "n-step return":
each step bootstraps from V of the state the batch ends in, cut at episode ends) and the advantage
A_t = R_t − V(s_t) — GAE with λ = 1, which is what `gae_lambda` defaults to.
The paper's optimizer is RMSProp (α = 0.99, ε = 1e-5 here as in SB3 and OpenAI baselines); Adam
is an option. Synchronous updates replace A3C's lock-free asynchronous ones: the batch of n_envs
parallel envs decorrelates the data as the paper's parallel actors do.
"""

from __future__ import annotations

from typing import Any

import torch

from deeprl.algos.onpolicy import OnPolicyAgent, flat_valid
from deeprl.ensemble import clip_grad_norms
from deeprl.math.returns import gae
from deeprl.math.surrogate import masked_mean, masked_normalize, reinforce_loss, value_loss
from deeprl.nets import adam


class A2C(OnPolicyAgent):
    metric_names = ("policy_loss", "value_loss", "entropy")

    def make_optimizer(self) -> torch.optim.Optimizer:
        params, cfg = self.model.parameters(), self.cfg
        if cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=0.99, eps=cfg.optimizer_eps, foreach=True)
        return adam(params, cfg.learning_rate, self.device, eps=cfg.optimizer_eps)

    def update(self) -> tuple[float, ...]:
        cfg, r = self.cfg, self.rollout
        advantages = gae(r.rewards, r.values, r.next_values, r.terminated, r.truncated, cfg.gamma, cfg.gae_lambda)
        returns = advantages + r.values  # n-step returns R_t (with λ = 1)
        b_obs, b_actions, b_advantages, b_returns = flat_valid(r, r.obs, r.actions, advantages, returns)
        if cfg.normalize_advantages and len(b_advantages) > 1:
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)
        log_prob, entropy, values = self.model.evaluate(b_obs, b_actions)
        policy_loss = reinforce_loss(log_prob, b_advantages)  # ∇ log π(a|s) A(s, a)
        v_loss = value_loss(values, b_returns)
        entropy = entropy.mean()
        self.clip_and_step(policy_loss + cfg.value_coef * v_loss - cfg.entropy_coef * entropy)
        return tuple(torch.stack([policy_loss.detach(), v_loss.detach(), entropy.detach()]).tolist())

    @staticmethod
    def update_ensemble(ens: Any) -> list[tuple[float, ...]]:
        """update() for the K seeds of a seed ensemble at once (deeprl.ensemble): the stacked network evaluates
        every seed's whole batch in one pass and torch.vmap computes each seed's loss over its real rows (mask 1),
        the same loss as update()'s over the rows flat_valid keeps; then one step of each seed's optimizer."""
        cfg, k = ens.cfg, ens.k
        rollouts = [agent.rollout for agent in ens.agents]
        cat = lambda name: torch.cat([getattr(r, name) for r in rollouts], dim=1)  # noqa: E731  (T, K x N)
        names = ("rewards", "values", "next_values", "terminated", "truncated")
        advantages = gae(*map(cat, names), cfg.gamma, cfg.gae_lambda).unflatten(1, (k, -1)).transpose(0, 1)
        obs, actions, values, mask = ens.stacked("obs", "actions", "values", "mask")
        advantages = advantages.flatten(1, 2)  # (K, T x N), as ens.stacked
        log_prob, entropy, new_values = ens.model.evaluate(obs, actions)
        seed_loss = lambda *x: a2c_loss(cfg, *x)  # noqa: E731
        loss, stats = torch.vmap(seed_loss)(log_prob, entropy, new_values, advantages, advantages + values, mask)
        ens.optimizer.zero_grad()
        loss.sum().backward()
        if cfg.max_grad_norm is not None:
            clip_grad_norms(ens.optimizer.params, cfg.max_grad_norm, k)
        ens.optimizer.step()
        return [tuple(row) for row in stats.detach().tolist()]


def a2c_loss(cfg: Any, log_prob, entropy, values, advantages, returns, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """A seed's loss over its real rows (mask 1) and its (policy loss, value loss, entropy): A2C.update's loss, as
    a seed ensemble computes it under torch.vmap."""
    if cfg.normalize_advantages:
        advantages = masked_normalize(advantages, mask)
    policy_loss = reinforce_loss(log_prob, advantages, mask)
    v_loss = value_loss(values, returns, mask)
    mean_entropy = masked_mean(entropy, mask)
    loss = policy_loss + cfg.value_coef * v_loss - cfg.entropy_coef * mean_entropy
    return loss, torch.stack([policy_loss, v_loss, mean_entropy])
