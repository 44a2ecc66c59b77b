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
from deeprl.spaces import take


class PPO(OnPolicyAgent):
    metric_names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")

    def update(self) -> tuple[float, ...]:
        """K epochs of minibatch steps on the clipped surrogate. The metrics are the means over the
        last epoch's minibatches (or the epoch that target_kl stopped), where the policy has moved
        furthest from θ_old; in the other epochs their dozen small ops per gradient step are skipped."""
        cfg, r = self.cfg, self.rollout
        advantages = gae(r.rewards, r.values, r.next_values, r.terminated, r.truncated, cfg.gamma, cfg.gae_lambda)
        returns = advantages + r.values  # the critic's target (TD(λ) return)
        # r.obs is a tensor, or a dict of tensors for Dict observations (deeprl.spaces.take indexes either)
        batch = flat_valid(r, r.obs, r.actions, r.log_probs, r.values, advantages, returns)
        clip_eps = cfg.clip_eps * (self.progress_left() if cfg.anneal_clip else 1.0)
        clip_eps = max(clip_eps, 1e-8)
        n = len(batch[-1])
        whole = cfg.minibatch_size >= n  # one minibatch per epoch: the whole batch, in any order
        for epoch in range(cfg.n_epochs):
            record = epoch == cfg.n_epochs - 1 or cfg.target_kl is not None
            stats = []
            order = None if whole else torch.randperm(n, device=self.device)
            for start in range(0, n, cfg.minibatch_size):
                mb_obs, mb_actions, mb_log_probs, mb_values, mb_advantages, mb_returns = (
                    batch if whole else (take(x, order[start : start + cfg.minibatch_size]) for x in batch)
                )
                log_prob, entropy, values = self.model.evaluate(mb_obs, mb_actions)
                if cfg.normalize_advantages and len(mb_advantages) > 1:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                policy_loss = clipped_surrogate(log_prob, mb_log_probs, mb_advantages, clip_eps)
                if cfg.value_clip is None:
                    v_loss = value_loss(values, mb_returns)
                else:
                    v_loss = clipped_value_loss(values, mb_values, mb_returns, cfg.value_clip)
                loss = policy_loss + cfg.value_coef * v_loss
                if cfg.entropy_coef:  # with a zero weight the entropy stays out of the backward pass
                    loss = loss - cfg.entropy_coef * entropy.mean()
                self.clip_and_step(loss)
                if record:
                    with torch.no_grad():
                        log_ratio = log_prob - mb_log_probs
                        ratio = log_ratio.exp()
                        approx_kl = ((ratio - 1) - log_ratio).mean()  # k3 estimator of KL(π_θ || π_θ')
                        clip_fraction = ((ratio - 1).abs() > clip_eps).float().mean()
                        stats.append(torch.stack([policy_loss, v_loss, entropy.mean(), approx_kl, clip_fraction]))
            if cfg.target_kl is not None and approx_kl.item() > cfg.target_kl:  # one sync per epoch
                break
        return tuple(torch.stack(stats).detach().mean(0).tolist())  # the update's one host sync
