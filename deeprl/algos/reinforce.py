"""REINFORCE (Williams 1992, "Simple statistical gradient-following algorithms"); notes,
"REINFORCE", "Noise Reduction", "Rewards normalization", "Credit Assignment", "Importance
Sampling" and "The surrogate function".

1. Collect m = n_envs trajectories in parallel with π_θ, horizon H = n_steps (deeprl.rollout; an
   episode that ends starts a new trajectory, one still running at H is cut there).
2. ĝ = 1/m Σ_i Σ_t ∇ log π_θ(a_t|s_t) · R, where R is, by the flags (each on by default):
     --future-rewards      R_t^future, the rewards after t only (credit assignment), else R(τ);
     --baseline            minus a learned V(s_t) (variance reduction; V also completes cut trajectories);
     --normalize-rewards   (R − μ)/σ across the batch (rewards normalization).
3. θ ← θ + α ĝ (Adam). With --reuse K the batch is used for K gradient steps: the first is ĝ,
   the next ones ascend the importance-sampling surrogate L_sur(θ', θ) = mean ratio · R, whose
   ratio π_θ'/π_θ re-weights the old samples; --clip ε clips that ratio as PPO does, which is what
   keeps large K from stepping off the cliff the notes describe.
"""

from __future__ import annotations

import torch

from deeprl.algos.onpolicy import OnPolicyAgent
from deeprl.math.returns import future_returns, normalize_rewards, trajectory_returns
from deeprl.math.surrogate import clipped_surrogate, is_surrogate, reinforce_loss, value_loss
from deeprl.spaces import map_obs


class Reinforce(OnPolicyAgent):
    metric_names = ("policy_loss", "value_loss", "entropy")

    def __init__(self, config, env, **kw):
        self.uses_critic = config.baseline  # without a baseline there is no critic to train
        super().__init__(config, env, **kw)

    def update(self) -> tuple[float, ...]:
        cfg, r = self.cfg, self.rollout
        mask = r.mask
        # r.next_values is V(s_{t+1}) with a baseline, 0 without (the notes' plain horizon-H sums)
        future = future_returns(r.rewards, r.terminated, r.truncated, cfg.gamma, r.next_values)
        returns = (
            future
            if cfg.future_rewards
            else trajectory_returns(r.rewards, r.terminated, r.truncated, cfg.gamma, r.next_values)
        )
        weights = returns - r.values if cfg.baseline else returns
        if cfg.normalize_rewards:
            weights = normalize_rewards(weights, mask)
        obs = map_obs(lambda x: x.flatten(0, 1), r.obs)  # [T*N, ...]; a dict of them for Dict observations
        stats = []
        for _k in range(cfg.reuse):
            log_prob, entropy, values = self.model.evaluate(obs, r.actions.flatten(0, 1))
            log_prob, entropy = log_prob.view_as(mask), entropy.view_as(mask)
            if cfg.reuse == 1:
                policy_loss = reinforce_loss(log_prob, weights, mask)  # the notes' ĝ, as a loss
            elif cfg.clip is not None:
                policy_loss = clipped_surrogate(log_prob, r.log_probs, weights, cfg.clip, mask)
            else:
                policy_loss = is_surrogate(log_prob, r.log_probs, weights, mask)  # −L_sur(θ', θ)
            entropy = (entropy * mask).sum() / mask.sum()
            loss = policy_loss - cfg.entropy_coef * entropy
            v_loss = torch.zeros(())
            if cfg.baseline:  # the baseline regresses on the future returns, whatever weights the policy uses
                v_loss = value_loss(values.view_as(mask), future, mask)
                loss = loss + cfg.value_coef * v_loss
            self.clip_and_step(loss)
            stats.append(torch.stack([policy_loss.detach(), v_loss.detach(), entropy.detach()]))
        return tuple(torch.stack(stats).mean(0).tolist())
