"""PPO: proximal policy optimization with the clipped surrogate (Schulman et al. 2017, "Proximal
Policy Optimization Algorithms"); notes, "How do we fix this?" and "PPO".

1. Collect a batch with π_θ (n_steps x n_envs transitions; deeprl.rollout), and set θ' = θ.
2. Advantages by GAE(λ) (Schulman et al. 2016), critic targets R_t = A_t + V(s_t).
3. For K epochs, over shuffled minibatches: ascend L^clip(θ', θ) = mean min(ratio A, clip(ratio) A),
   with ratio = π_θ'(a|s)/π_θ(a|s), minus the critic's loss, plus an entropy bonus.
4. θ = θ'; repeat.
The implementation details follow Huang et al. 2022 ("The 37 implementation details of PPO"):
orthogonal init, Adam ε = 1e-5, per-minibatch advantage normalisation, global gradient clipping,
linear learning-rate (and optionally clip-range) annealing, optional value clipping, and running
observation / reward normalisation kept inside the agent.
"""

from __future__ import annotations

import torch

from deeprl.algos.onpolicy import OnPolicyAgent, flat_valid
from deeprl.math.returns import gae
from deeprl.math.surrogate import clipped_surrogate, clipped_value_loss, value_loss


class PPO(OnPolicyAgent):
    metric_names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")

    def update(self) -> tuple[float, ...]:
        cfg, r = self.cfg, self.rollout
        advantages = gae(r.rewards, r.values, r.next_values, r.terminated, r.truncated, cfg.gamma, cfg.gae_lambda)
        returns = advantages + r.values  # the critic's target (TD(λ) return)
        b_obs, b_actions, b_log_probs, b_values, b_advantages, b_returns = flat_valid(
            r, r.obs, r.actions, r.log_probs, r.values, advantages, returns)
        clip_eps = cfg.clip_eps * (self.progress_left() if cfg.anneal_clip else 1.0)
        clip_eps = max(clip_eps, 1e-8)
        n = len(b_obs)
        stats = []
        for epoch in range(cfg.n_epochs):
            order = torch.randperm(n, device=self.device)
            for start in range(0, n, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size]
                log_prob, entropy, values = self.model.evaluate(b_obs[idx], b_actions[idx])
                mb_advantages = b_advantages[idx]
                if cfg.normalize_advantages and len(idx) > 1:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                policy_loss = clipped_surrogate(log_prob, b_log_probs[idx], mb_advantages, clip_eps)
                if cfg.value_clip is None:
                    v_loss = value_loss(values, b_returns[idx])
                else:
                    v_loss = clipped_value_loss(values, b_values[idx], b_returns[idx], cfg.value_clip)
                entropy = entropy.mean()
                loss = policy_loss + cfg.value_coef * v_loss - cfg.entropy_coef * entropy
                self.clip_and_step(loss)
                with torch.no_grad():
                    log_ratio = log_prob - b_log_probs[idx]
                    approx_kl = ((log_ratio.exp() - 1) - log_ratio).mean()  # k3 estimator of KL(π_θ || π_θ')
                    clip_fraction = ((log_ratio.exp() - 1).abs() > clip_eps).float().mean()
                stats.append(torch.stack([policy_loss.detach(), v_loss.detach(), entropy.detach(),
                                          approx_kl, clip_fraction]))
            if cfg.target_kl is not None and approx_kl.item() > cfg.target_kl:  # one sync per epoch
                break
        return tuple(torch.stack(stats).mean(0).tolist())  # the update's one host sync
