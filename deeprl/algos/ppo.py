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

import math
from typing import Any

import torch

from deeprl.algos.onpolicy import OnPolicyAgent, flat_valid
from deeprl.compiling import compile_methods
from deeprl.ensemble import clip_grad_norms
from deeprl.math.returns import gae
from deeprl.math.surrogate import clipped_surrogate, clipped_value_loss, masked_mean, masked_normalize, value_loss
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
        clip_eps = self.clip_range()
        n = len(batch[-1])
        whole = cfg.minibatch_size >= n  # one minibatch per epoch: the whole batch, in any order
        for epoch in range(cfg.n_epochs):
            record = epoch == cfg.n_epochs - 1 or cfg.target_kl is not None
            stats = []
            order = None if whole else torch.randperm(n, generator=self.shuffle).to(self.device)
            for start in range(0, n, cfg.minibatch_size):
                mb_obs, mb_actions, *mb = (
                    batch if whole else (take(x, order[start : start + cfg.minibatch_size]) for x in batch)
                )
                loss, mb_stats = self.minibatch_loss(mb_obs, mb_actions, *mb, clip_eps, record)
                self.clip_and_step(loss)
                if record:
                    stats.append(mb_stats)
            if cfg.target_kl is not None and stats[-1][3].item() > cfg.target_kl:  # one sync per epoch
                break
        return tuple(torch.stack(stats).mean(0).tolist())  # the update's one host sync

    @staticmethod
    def update_ensemble(ens: Any) -> list[tuple[float, ...]]:
        """update() for the K seeds of a seed ensemble at once (deeprl.ensemble), each seed as alone: its own
        rows, minibatches (its real rows, in its own shuffled order) and loss. The stacked network evaluates every
        seed's minibatch in one pass, torch.vmap computes each seed's loss over its real rows (padded minibatches,
        `mask`), and each seed's Adam steps apart: a seed with fewer real rows, or stopped by target_kl, sits out
        the steps it would not take alone. Returns each seed's metrics."""
        cfg, k = ens.cfg, ens.k
        rollouts = [agent.rollout for agent in ens.agents]
        cat = lambda name: torch.cat([getattr(r, name) for r in rollouts], dim=1)  # noqa: E731  (T, K x N)
        advantages = gae(
            *map(cat, ("rewards", "values", "next_values", "terminated", "truncated")), cfg.gamma, cfg.gae_lambda
        )
        advantages = advantages.unflatten(1, (k, -1)).transpose(0, 1).flatten(1, 2)  # (K, T x N), as ens.stacked
        obs, actions, log_probs, values, mask = ens.stacked("obs", "actions", "log_probs", "values", "mask")
        returns = advantages + values
        batch = (log_probs, values, advantages, returns)
        clip_eps = ens.agents[0].clip_range()
        seed_loss = lambda *x: ppo_loss(cfg, *x[:7], clip_eps, True, x[7])  # noqa: E731
        minibatches = _SeedMinibatches(mask, cfg.minibatch_size, [agent.shuffle for agent in ens.agents])
        rows = torch.arange(k, device=mask.device)[:, None]
        stopped = torch.zeros(k, dtype=torch.bool, device=mask.device)
        metrics = torch.zeros(k, len(PPO.metric_names), device=mask.device)
        for _ in range(cfg.n_epochs):
            sums, counts = torch.zeros_like(metrics), torch.zeros(k, device=mask.device)
            last_kl = torch.zeros(k, device=mask.device)
            for idx, real in minibatches.epoch():
                real = real & ~stopped[:, None]
                active = real.any(1)
                if not bool(active.any()):
                    continue
                evaluated = ens.model.evaluate(obs[rows, idx], actions[rows, idx])
                loss, stats = torch.vmap(seed_loss)(*evaluated, *(x[rows, idx] for x in batch), real.float())
                ens.optimizer.zero_grad()
                loss.sum().backward()
                if cfg.max_grad_norm is not None:
                    clip_grad_norms(ens.optimizer.params, cfg.max_grad_norm, k)
                ens.optimizer.step(active)
                sums += stats.detach() * active[:, None]
                counts += active
                last_kl = torch.where(active, stats[:, 3].detach(), last_kl)
            ran = (counts > 0) & ~stopped  # the metrics of the last epoch each seed ran (as update() reports)
            metrics = torch.where(ran[:, None], sums / counts.clamp(min=1)[:, None], metrics)
            if cfg.target_kl is not None:
                stopped |= last_kl > cfg.target_kl
                if bool(stopped.all()):
                    break
        return [tuple(row) for row in metrics.tolist()]

    def clip_range(self) -> float:
        """ε, linearly annealed with the learning rate when anneal_clip is set."""
        return max(self.cfg.clip_eps * (self.progress_left() if self.cfg.anneal_clip else 1.0), 1e-8)

    def minibatch_loss(self, obs, actions, old_log_probs, old_values, advantages, returns, clip_eps, record):
        """`ppo_loss` of a minibatch under the current policy (what --compile compiles, with its backward pass)."""
        evaluated = self.model.evaluate(obs, actions)
        return ppo_loss(self.cfg, *evaluated, old_log_probs, old_values, advantages, returns, clip_eps, record)

    def compile(self, mode: str | None = "auto") -> None:
        """--compile: each minibatch's loss and the rollout's action sample through torch.compile."""
        compile_methods(self, ("minibatch_loss",), self.device, mode)
        compile_methods(self.model, ("act",), self.device, mode)


def ppo_loss(
    cfg: Any,
    log_prob: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    old_log_probs: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    clip_eps: float,
    record: bool = True,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A minibatch's loss −L^clip + c_v L^V − c_H H, and (with `record`) its statistics: policy loss, value
    loss, entropy, approximate KL and clip fraction. A seed ensemble (deeprl.ensemble) computes it for every
    seed at once under torch.vmap, with `mask` marking the seed's real rows in a padded minibatch."""
    if cfg.normalize_advantages and mask is None and len(advantages) > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    elif cfg.normalize_advantages and mask is not None:  # the same over the real rows
        advantages = masked_normalize(advantages, mask)
    policy_loss = clipped_surrogate(log_prob, old_log_probs, advantages, clip_eps, mask)
    if cfg.value_clip is None:
        v_loss = value_loss(values, returns, mask)
    else:
        v_loss = clipped_value_loss(values, old_values, returns, cfg.value_clip, mask)
    loss = policy_loss + cfg.value_coef * v_loss
    mean_entropy = entropy.mean() if mask is None else masked_mean(entropy, mask)
    if cfg.entropy_coef:  # with a zero weight the entropy stays out of the backward pass
        loss = loss - cfg.entropy_coef * mean_entropy
    if not record:
        return loss, None
    log_ratio = (log_prob - old_log_probs).detach()
    ratio = log_ratio.exp()
    approx_kl = masked_mean((ratio - 1) - log_ratio, mask)  # k3 estimator of KL(π_θ || π_θ')
    clip_fraction = masked_mean(((ratio - 1).abs() > clip_eps).float(), mask)
    return loss, torch.stack([policy_loss.detach(), v_loss.detach(), mean_entropy.detach(), approx_kl, clip_fraction])


class _SeedMinibatches:
    """Each seed's minibatches as PPO.update forms them alone, side by side: its real rows (mask 1), the whole batch
    in order when one minibatch holds it, else shuffled by its own generator each epoch, cut into minibatch_size
    pieces. Yields (row indices, real) of shape (K, width) per minibatch step; a seed with fewer pieces is padded."""

    def __init__(self, mask: torch.Tensor, minibatch_size: int, shuffles: list[torch.Generator]):
        self.valid = [m.nonzero().squeeze(-1) for m in mask]
        self.shuffles, self.size = shuffles, minibatch_size
        self.whole = [minibatch_size >= len(v) for v in self.valid]
        self.width = max(len(v) for v in self.valid) if all(self.whole) else minibatch_size
        self.steps = max(1 if w else math.ceil(len(v) / minibatch_size) for v, w in zip(self.valid, self.whole))
        self.device = mask.device

    def epoch(self) -> Any:
        span = self.steps * self.width
        index = torch.zeros(len(self.valid), span, dtype=torch.int64, device=self.device)
        real = torch.zeros(len(self.valid), span, dtype=torch.bool, device=self.device)
        for k, (valid, whole) in enumerate(zip(self.valid, self.whole)):
            order = valid if whole else valid[torch.randperm(len(valid), generator=self.shuffles[k]).to(self.device)]
            index[k, : len(order)] = order
            real[k, : len(order)] = True
        for j in range(self.steps):
            cols = slice(j * self.width, (j + 1) * self.width)
            yield index[:, cols], real[:, cols]
