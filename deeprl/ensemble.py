"""Seed ensembles: K seeds of one on-policy algorithm trained as one batched computation in one process
(`deeprl train ppo ENV --seeds 0-15 --vectorize`, deeprl.ensemble_runner).

Each seed keeps everything that makes it a run of its own: its agent (weights, optimizer state, rollout,
observation and reward statistics, minibatch shuffle), its evaluations, metrics, checkpoints and run directory.
What the seeds share is the arithmetic: small networks on a CPU cost per-op dispatch, not flops, so one batched
op over K seeds costs about what the op of one seed costs.

- `stack_modules` turns K identical networks into one whose every `nn.Linear` is a batched matmul over the seeds
  (weights (K, out, in)); the network's own code then runs on (K, B, ...) batches unchanged.
- `StackedAdam` is K Adams in one: Adam is elementwise, so it is the same update for each seed, with a step count
  per seed (a seed may sit out a step: PPO's minibatches of a seed with fewer real rows, or its target_kl).
- `OnPolicyEnsemble` steps one vector env holding every seed's envs (K x n_envs, seed k's are the block
  [k n, (k+1) n)), acts with the stacked policy, hands each seed's rows to that seed's own `Rollout` (its
  normalisation and reward scaling), and runs the algorithm's stacked update (`update_ensemble` beside the
  algorithm's `update`, in its own file).

One update of seed k in the ensemble equals the update of seed k's agent alone from the same state, to float
tolerance (a batched matmul rounds differently from a plain one; tests/test_ensemble.py). Whole runs are not
bit-equal to the seeds trained alone: those differences grow, and the ensemble's envs and sampling noise come from
the ensemble's streams (docs/benchmarks.md compares the distributions of results).
"""

from __future__ import annotations

import abc
import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deeprl.continuous import QEnsemble, scale_action
from deeprl.errors import DivergenceError
from deeprl.protocol import Episode
from deeprl.rollout import EnvSlice, Piece
from deeprl.seeding import Seeds
from deeprl.spaces import take, to_tensor


class SeedsDiverged(DivergenceError):
    """Seeds of an ensemble whose losses became non-finite in the same update (`messages`: seed index -> why), and
    how far the ensemble got: its env steps in this learn() call and each seed's finished episodes. Every other
    seed's state is consistent; the diverged ones must not be evaluated or saved again."""

    def __init__(self, messages: dict[int, str], progress: int, finished: list[list[Episode]]):
        super().__init__("; ".join(f"seed index {k}: {m}" for k, m in messages.items()))
        self.messages, self.progress, self.finished = messages, progress, finished


# ---------------------------------------------------------------- stacked networks
class StackedLinear(nn.Module):
    """K linear layers applied to K batches at once: (K, B, in) -> (K, B, out), one torch.baddbmm."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))  # (K, out, in)
        bias = [layer.bias for layer in layers]
        self.bias = None if bias[0] is None else nn.Parameter(torch.stack([b.detach() for b in bias]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))


def stack_modules(models: Sequence[nn.Module]) -> nn.Module:
    """One network computing K copies of `models[0]`'s architecture, each with the weights of its model: a copy of
    models[0] whose nn.Linear layers are StackedLinear and whose other parameters (a state-independent log σ) are
    stacked as (K, 1, *shape), so that they broadcast over (K, B, ...) batches. Its parameters have the names of
    the models' parameters (`gather`/`scatter` copy between them). Networks with other parameterised layers
    (convolutions, normalisation layers) are refused: their ops do not take a leading seed dimension."""
    stacked = copy.deepcopy(models[0])
    for name, module in list(stacked.named_modules()):
        if isinstance(module, QEnsemble):  # already batched over its members: K seeds' members side by side
            members = [m.get_submodule(name) if name else m for m in models]
            for attr in ("weights", "biases"):
                lists = [getattr(member, attr) for member in members]
                for i in range(len(lists[0])):
                    getattr(module, attr)[i] = nn.Parameter(torch.cat([values[i].detach() for values in lists]))
            module.n = module.n * len(models)
            continue
        if isinstance(module, nn.Linear):
            parent, _, attr = name.rpartition(".")
            layers = [m.get_submodule(name) for m in models]
            setattr(stacked.get_submodule(parent) if parent else stacked, attr, StackedLinear(layers))
            continue
        own = dict(module.named_parameters(recurse=False))
        if _inside(name, stacked):  # a ParameterList of a stacked QEnsemble
            continue
        if own and not isinstance(module, StackedLinear) and module is not stacked:
            raise ValueError(f"a seed ensemble stacks linear layers; {name} is a {type(module).__name__}")
        for attr in own:  # the top module's own parameters (ActorCritic.log_std)
            full = f"{name}.{attr}" if name else attr
            values = [m.get_parameter(full).detach() for m in models]
            setattr(module, attr, nn.Parameter(torch.stack(values).unsqueeze(1)))
    return stacked


def _inside(name: str, stacked: nn.Module) -> bool:
    """Is module `name` a part of a QEnsemble (stacked as a whole)?"""
    parts = name.split(".")
    return any(isinstance(stacked.get_submodule(".".join(parts[:i])), QEnsemble) for i in range(len(parts)))


@torch.no_grad()
def gather(stacked: nn.Module, models: Sequence[nn.Module]) -> None:
    """The models' weights into the stacked network (seed k's numbers are row k of each parameter's (K, -1) view)."""
    for name, param in stacked.named_parameters():
        param.view(len(models), -1).copy_(torch.stack([m.get_parameter(name).reshape(-1) for m in models]))


@torch.no_grad()
def scatter(stacked: nn.Module, models: Sequence[nn.Module]) -> None:
    """The stacked network's weights back into the models."""
    for name, param in stacked.named_parameters():
        rows = param.view(len(models), -1)
        for k, model in enumerate(models):
            target = model.get_parameter(name)
            target.copy_(rows[k].view(target.shape))


def clip_grad_norms(params: Sequence[torch.Tensor], max_norm: float, k: int) -> None:
    """torch.nn.utils.clip_grad_norm_ for each of the k seeds of stacked parameters: seed i's gradients are scaled by
    min(1, max_norm / (‖g_i‖ + 1e-6)), with ‖g_i‖ the norm over all its parameters' gradients."""
    grads = [p.grad.view(k, -1) for p in params if p.grad is not None]
    norms = torch.stack([g.pow(2).sum(1) for g in grads]).sum(0).sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef[:, None])


class _StackedOptimizer(abc.ABC):
    """What K seeds' optimizers stacked share: the parameters of k seeds (seed i's numbers are row i of each tensor's
    (k, -1) view), their state buffers, a step count per seed, and the copies to and from each seed's own torch
    optimizer (`gather`, `scatter`: its checkpoint is then the one it would have alone). `step(active)` moves only
    the seeds in `active`; the others keep their weights, state and count (a seed sitting out a PPO minibatch).
    `lrs`: a learning rate per parameter (SAC's temperature has its own), else `lr` for all."""

    BUFFERS: tuple[str, ...] = ()

    def __init__(self, params: Sequence[nn.Parameter], lr: float, k: int, lrs: Any = None):
        self.params, self.k = list(params), k
        self.lrs = list(lrs) if lrs is not None else [lr] * len(self.params)
        self.state = {name: [torch.zeros_like(p) for p in self.params] for name in self.BUFFERS}
        self.steps = torch.zeros(k, dtype=torch.float64, device=self.params[0].device)
        self._torch: Any = None
        self._synced = False

    @property
    def lr(self) -> float:
        return self.lrs[0]

    @lr.setter
    def lr(self, value: float) -> None:
        self.lrs = [value] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def _groups(self) -> list[dict[str, Any]]:
        """The parameters in one group per learning rate (a fused kernel per group), each group's first index."""
        groups: dict[float, dict[str, Any]] = {}
        for i, (p, lr) in enumerate(zip(self.params, self.lrs)):
            groups.setdefault(lr, {"params": [], "index": i})["params"].append(p)
        return list(groups.values())

    def _torch_optimizer(self) -> torch.optim.Optimizer | None:
        """The torch optimizer that does this one's step when every seed steps from the same count (one fused or
        foreach kernel over all parameters, and torch's own arithmetic), sharing this one's state tensors."""
        return None

    def _uniform_step(self) -> bool:
        """Step every seed with the torch optimizer, when they share a step count; False if they do not."""
        if self._torch is None:
            self._torch = self._torch_optimizer() or False
        if self._torch is False or not bool((self.steps == self.steps[0]).all()):
            return False
        if not self._synced:  # its state: these buffers (the same tensors) and the shared step count
            fused = self._torch.defaults.get("fused")
            for i, p in enumerate(self.params):
                state = self._torch.state[p]
                state.update({name: self.state[name][i] for name in self.BUFFERS})
                state["step"] = torch.tensor(float(self.steps[0]), device=p.device if fused else "cpu")
            self._synced = True
        for group in self._torch.param_groups:
            group["lr"] = self.lrs[group["index"]]
        self._torch.step()
        self.steps = self.steps + 1.0
        return True

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        all_active = active is None or bool(active.all())
        if all_active and self._uniform_step():
            return
        self._synced = False  # the step counts (and maybe the buffers' objects) move apart from the torch optimizer's
        steps = self.steps + (1.0 if active is None else active.double())
        for i, (p, lr) in enumerate(zip(self.params, self.lrs)):
            if p.grad is None:
                continue
            rows = lambda x: x.view(self.k, -1)  # noqa: E731
            old = [rows(p)] + [rows(self.state[name][i]) for name in self.BUFFERS]
            new = self._update(rows(p.grad), rows(p), [rows(self.state[name][i]) for name in self.BUFFERS], lr, steps)
            if not all_active:
                keep = ~active[:, None]
                new = [torch.where(keep, a, b) for a, b in zip(old, new)]
            for target, value in zip(old, new):
                target.copy_(value)
        self.steps = steps

    @abc.abstractmethod
    def _update(self, g: torch.Tensor, p: torch.Tensor, buffers: list[torch.Tensor], lr: float, steps: torch.Tensor):
        """Each optimizer's own arithmetic on (k, -1) rows: [new p, *new buffers]."""

    def gather(self, named: Sequence[tuple[Any, Any]], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """The seeds' torch optimizer states into this one: `named` pairs each stacked parameter with the function
        that finds that parameter in seed i (i -> its nn.Parameter); the learning rates of the first seed's groups."""
        for i, (_, find) in enumerate(named):
            states = [opt.state.get(find(s), {}) for s, opt in enumerate(optimizers)]
            for name in self.BUFFERS:
                rows = self.state[name][i].view(self.k, -1)
                for s, state in enumerate(states):
                    rows[s].copy_(state[name].reshape(-1) if state else torch.zeros_like(rows[s]))
            if i == 0:
                self.steps.copy_(torch.tensor([float(s["step"]) if s else 0.0 for s in states], dtype=torch.float64))
        lr_of = {id(p): g["lr"] for g in optimizers[0].param_groups for p in g["params"]}
        self.lrs = [lr_of[id(find(0))] for _, find in named]
        self._torch, self._synced = None, False  # groups by the learning rates just read

    def scatter(self, named: Sequence[tuple[Any, Any]], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """This optimizer's state back into each seed's torch optimizer (what its checkpoint saves)."""
        for s, opt in enumerate(optimizers):
            if self.steps[s] == 0:
                continue
            fused = opt.defaults.get("fused")  # a fused Adam keeps its step count on the parameter's device
            for i, (_, find) in enumerate(named):
                param = find(s)
                state = opt.state[param]
                state["step"] = torch.tensor(float(self.steps[s]), device=param.device if fused else "cpu")
                for name in self.BUFFERS:
                    state[name] = self.state[name][i].view(self.k, -1)[s].view(param.shape).clone()


class StackedAdam(_StackedOptimizer):
    """Adam (Kingma & Ba 2015) as torch.optim.Adam computes it, for k seeds at once."""

    BUFFERS = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Sequence[nn.Parameter], lr: float, betas: tuple[float, float], eps: float, k: int):
        super().__init__(params, lr, k)
        self.betas, self.eps = betas, eps

    def _torch_optimizer(self) -> torch.optim.Optimizer:
        fused = self.params[0].device.type in ("cpu", "cuda")  # as deeprl.nets.adam builds each seed's
        return torch.optim.Adam(self._groups(), lr=self.lr, betas=self.betas, eps=self.eps, fused=fused)

    def _update(self, g, p, buffers, lr, steps):
        (beta1, beta2), (m, v) = self.betas, buffers
        bias1 = (1 - beta1**steps).float()[:, None]
        bias2_sqrt = (1 - beta2**steps).sqrt().float()[:, None]
        m = m.lerp(g, 1 - beta1)
        v = v.mul(beta2).addcmul_(g, g, value=1 - beta2)
        return [p - (lr / bias1) * m / (v.sqrt() / bias2_sqrt).add_(self.eps), m, v]


class StackedRMSprop(_StackedOptimizer):
    """RMSprop (Tieleman & Hinton 2012) as torch.optim.RMSprop computes it without momentum or centring (A2C's)."""

    BUFFERS = ("square_avg",)

    def __init__(self, params: Sequence[nn.Parameter], lr: float, alpha: float, eps: float, k: int):
        super().__init__(params, lr, k)
        self.alpha, self.eps = alpha, eps

    def _torch_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(self._groups(), lr=self.lr, alpha=self.alpha, eps=self.eps, foreach=True)

    def _update(self, g, p, buffers, lr, steps):
        square_avg = buffers[0].mul(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        return [p - lr * g / square_avg.sqrt().add_(self.eps), square_avg]


def stacked_optimizer(optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter], k: int) -> _StackedOptimizer:
    """The stacked counterpart of a seed's optimizer (Adam, or RMSprop without momentum or centring)."""
    group = optimizer.param_groups[0]
    if isinstance(optimizer, torch.optim.Adam) and not group.get("amsgrad") and not group.get("weight_decay"):
        return StackedAdam(params, group["lr"], group["betas"], group["eps"], k)
    if isinstance(optimizer, torch.optim.RMSprop) and not group["momentum"] and not group["centered"]:
        if not group.get("weight_decay"):
            return StackedRMSprop(params, group["lr"], group["alpha"], group["eps"], k)
    raise ValueError(f"a seed ensemble stacks Adam and plain RMSprop, not {type(optimizer).__name__} with {group}")


# ---------------------------------------------------------------- collection and the learn loop
class EnsembleSlice(EnvSlice):
    """The envs of every seed in one vector env, seed k's the block [k n, (k + 1) n). As an EnvSlice, but the
    policy's sampling noise is drawn per seed, from that seed's own stream (one draw per batch for its n envs)."""

    def __init__(self, env: Any, n_steps: int, seeds: Sequence[Seeds], **kwargs: Any):
        super().__init__(env, n_steps, seeds=seeds[0], **kwargs)
        self.seed_streams = list(seeds)

    def _noise_rows(self, layout: tuple[str, tuple[int, ...]], batch: int, t: int) -> torch.Tensor:
        if self._noise_key != (batch, layout):
            kind, shape = layout
            n = self.n // len(self.seed_streams)
            blocks = []
            for seeds in self.seed_streams:
                rng = seeds.generator("ensemble_action_noise", batch)
                draw = rng.standard_exponential if kind == "exponential" else rng.standard_normal
                blocks.append(draw((self.n_steps, n, *shape), dtype=np.float32))
            self._noise = torch.from_numpy(np.concatenate(blocks, axis=1)).to(self.device)
            self._noise_key = (batch, layout)
        return self._noise[t]


class _StackedPolicy:
    """The stacked network as the policy of one vector env of K x n envs: (K n, ...) rows in, (K n, ...) out."""

    def __init__(self, model: nn.Module, k: int):
        self.model, self.k = model, k

    def act(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        per_seed = lambda x: x.unflatten(0, (self.k, -1))  # noqa: E731
        action, log_prob, value = self.model.act(per_seed(obs), per_seed(noise))
        return action.flatten(0, 1), log_prob.flatten(0, 1), None if value is None else value.flatten(0, 1)

    def env_action(self, raw_action: torch.Tensor) -> np.ndarray:
        return self.model.env_action(raw_action)

    def noise_layout(self) -> tuple[str, tuple[int, ...]]:
        return self.model.noise_layout()


class OnPolicyEnsemble:
    """K agents of one on-policy algorithm (deeprl.algos.onpolicy) learning in lockstep: one env of K x n_envs
    envs, one stacked network and optimizer, each agent's own Rollout. `learn(max_steps)` is each agent's
    learn(max_steps) done together; between calls the agents hold the current weights and optimizer state
    (`scatter`), so evaluation, checkpoints and the policy files are each agent's own, as for a run alone."""

    def __init__(self, agents: Sequence[Any], env: Any):
        self.agents, self.k = list(agents), len(agents)
        first = self.agents[0]
        self.cfg, self.device = first.cfg, first.device
        self.update_fn = type(first).update_ensemble
        self.model = stack_modules([a.model for a in self.agents])
        self.names = [name for name, _ in self.model.named_parameters()]
        self.optimizer = stacked_optimizer(first.optimizer, list(self.model.parameters()), self.k)
        self.named = [(name, lambda s, name=name: self.agents[s].model.get_parameter(name)) for name in self.names]
        self.n = first.rollout.n_envs
        self.source = EnsembleSlice(
            env,
            first.rollout.n_steps,
            [Seeds(a.seed) for a in self.agents],
            device=self.device,
            normalized=first.rollout.normalized,
        )
        self.acting = _StackedPolicy(self.model, self.k)
        for agent in self.agents:  # a seed resumed with its own env (trained alone): its episodes cannot go on here
            if agent.rollout.t > 0 or agent.rollout.next_obs is not None:
                agent.rollout.forget_env()
        self.gather()

    def gather(self) -> None:
        gather(self.model, [a.model for a in self.agents])
        self.optimizer.gather(self.named, [a.optimizer for a in self.agents])

    def scatter(self) -> None:
        scatter(self.model, [a.model for a in self.agents])
        self.optimizer.scatter(self.named, [a.optimizer for a in self.agents])

    def blocks(self) -> list[slice]:
        return [slice(k * self.n, (k + 1) * self.n) for k in range(self.k)]

    def normalizer(self) -> Any:
        """The seeds' observation normalisation as one function of (K n, ...) rows, with each seed's statistics
        (fixed within a batch, as deeprl.rollout does): the same numbers as each seed's ObsNormalizer."""
        normalizers = [a.obs_normalizer for a in self.agents]
        if normalizers[0] is None:
            return None
        mean = np.concatenate([np.broadcast_to(z.mean, (self.n, *z.mean.shape)) for z in normalizers])
        std = np.concatenate([np.broadcast_to(z.std, (self.n, *z.std.shape)) for z in normalizers])
        clip = normalizers[0].clip
        return lambda obs: np.clip((obs - mean) / std, -clip, clip).astype(np.float32)

    def learn(self, max_steps: int, live: Any = None) -> tuple[int, list[list[Episode]]]:
        """Each agent's learn(max_steps) done together: (env steps per seed, each seed's finished episodes). `live`:
        the seeds still watched (default all); the others run on unseen. A live seed whose update diverges raises
        DivergenceError with `seed_index`, `progress` (the env steps taken) and `finished` set, once every
        seed's state is consistent."""
        live = range(self.k) if live is None else live
        rollouts = [a.rollout for a in self.agents]
        first = rollouts[0]
        n_vec = -(-max_steps // self.n)
        taken, finished = 0, [[] for _ in range(self.k)]
        while taken < n_vec:
            steps = min(n_vec - taken, first.n_steps - first.t)
            normalize = self.normalizer()
            piece = self.source.collect(
                self.acting, steps, batch=first.batches, t=first.t, env_steps=first.env_steps, normalize=normalize
            )
            for k, (rollout, cols) in enumerate(zip(rollouts, self.blocks())):
                finished[k] += rollout.write(_seed_piece(piece, cols), self.agents[k].last_metrics)
            taken += steps
            if first.full:
                self._update()
                when = lambda a: f"after update {a.updates} at env step {a.rollout.env_steps}"  # noqa: E731
                _raise_if_diverged(self.agents, live, "last_metrics", when, taken * self.n, finished)
        return taken * self.n, finished

    def _update(self) -> None:
        values = self._next_values()
        for k, agent in enumerate(self.agents):
            agent.rollout.finish(lambda _obs, k=k: values[k])
        lr = self.cfg.learning_rate * self.agents[0].progress_left()
        self.optimizer.lr = lr
        metrics = self.update_fn(self)
        for k, agent in enumerate(self.agents):
            for group in agent.optimizer.param_groups:
                group["lr"] = lr
            agent.updates += 1
            agent.rollout.clear()
            agent.last_metrics = metrics[k]

    def policy_of(self, seeds: Sequence[int], obs: np.ndarray) -> np.ndarray:
        return _policy_of(self, seeds, obs)

    @torch.inference_mode()
    def policy(self, obs: np.ndarray) -> np.ndarray:
        """Every seed's deterministic policy (PPO's policy()) on its own observations (K, n, ...): (K, n, ...)."""
        obs = np.stack([a.policy_input(o) for a, o in zip(self.agents, obs)])
        actions = self.model.env_action(self.model.mode(to_tensor(obs, self.device)))
        return actions.reshape(self.k, obs.shape[1], *self.source.action_space.shape)

    @torch.inference_mode()
    def _next_values(self) -> torch.Tensor:
        """V(s) of each seed's envs' current observations (K, n): the last row's bootstrap."""
        obs = [a.rollout.normalize(a.rollout.next_obs) for a in self.agents]
        return self.model.value(to_tensor(np.stack(obs), self.device))

    def stacked(self, *names: str) -> list[torch.Tensor]:
        """The agents' rollout tensors `names`, stacked and flattened per seed: (K, n_steps x n_envs, ...)."""
        return [torch.stack([getattr(a.rollout, name) for a in self.agents]).flatten(1, 2) for name in names]


def _policy_of(engine: Any, seeds: Sequence[int], obs: np.ndarray) -> np.ndarray:
    """The ensemble's deterministic policy for some of its seeds: `obs` (len(seeds), n, ...) in their rows of a
    (K, n, ...) batch (the other rows zeros, their actions dropped)."""
    full = np.zeros((engine.k, *obs.shape[1:]), dtype=obs.dtype)
    full[list(seeds)] = obs
    return engine.policy(full)[list(seeds)]


def _seed_piece(piece: Piece, cols: slice) -> Piece:
    """The rows of one seed's envs (columns `cols`) of a piece collected over every seed's envs."""
    episodes = [(row, env - cols.start, ret, length, when) for row, env, ret, length, when in piece.episodes]
    return Piece(
        piece.steps,
        take(piece.obs, (slice(None), cols)),
        None if piece.raw_obs is None else [raw[cols] for raw in piece.raw_obs],
        piece.actions[:, cols],
        piece.log_probs[:, cols],
        piece.values[:, cols],
        piece.rewards[:, cols],
        piece.terminated[:, cols],
        piece.truncated[:, cols],
        piece.valid[:, cols],
        piece.next_obs[cols],
        [e for e in episodes if 0 <= e[1] < cols.stop - cols.start],
    )


# ---------------------------------------------------------------- off-policy seeds: DDPG, TD3, SAC
class _Minibatches:
    """Each seed's replay buffer drawn as alone (its own minibatches, from its own stream), stacked: (K, batch, ...)."""

    def __init__(self, buffers: Sequence[Any]):
        self.buffers = list(buffers)

    def minibatches(self, n: int, batch_size: int) -> Any:
        for batches in zip(*(buffer.minibatches(n, batch_size) for buffer in self.buffers)):
            yield type(batches[0])(*(_stack_field(field) for field in zip(*batches)))

    def __len__(self) -> int:
        return min(len(buffer) for buffer in self.buffers)


def _stack_field(values: Sequence[Any]) -> Any:
    if isinstance(values[0], dict):
        return {key: torch.stack([v[key] for v in values]) for key in values[0]}
    return torch.stack(values) if isinstance(values[0], torch.Tensor) else values[0]


class _Losses:
    """What an off-policy algorithm's train() reads of its collector: the env steps (for its messages)."""

    def __init__(self, collector: Any):
        self.collector = collector

    @property
    def env_steps(self) -> int:
        return self.collector.env_steps


class OffPolicyEnsemble:
    """K agents of DDPG, TD3 or SAC learning in lockstep: one env of K x n_envs envs, each seed's own Collector
    (replay buffer, exploration noise, uniform warm-up actions, episodes), and one stacked copy of the algorithm
    (`stacked`: an instance of the same class whose networks, optimizers and temperature hold every seed) whose
    own train() runs each round: the algorithm's update code, on (K, batch, ...) minibatches."""

    _PARAMS = ("log_alpha",)  # tensors of an algorithm that are parameters without a module (SAC's temperature)

    def __init__(self, agents: Sequence[Any], env: Any):
        self.agents, self.k = list(agents), len(agents)
        first = self.agents[0]
        self.cfg, self.device, self.n = first.cfg, first.device, first.collector.n_envs
        self.env = env
        self.modules = [name for name in ("actor", "critic", "actor_target", "critic_target") if hasattr(first, name)]
        self.optimizers = [name for name in ("actor_opt", "critic_opt") if hasattr(first, name)]
        stacked = object.__new__(type(first))
        stacked.__dict__.update({key: value for key, value in vars(first).items() if not _per_seed_state(value)})
        for name in self.modules:
            setattr(stacked, name, stack_modules([getattr(a, name) for a in self.agents]))
        if getattr(first, "log_alpha", None) is not None:
            stacked.log_alpha = nn.Parameter(torch.stack([a.log_alpha.detach() for a in self.agents]).reshape(-1, 1))
            stacked.log_alpha.requires_grad_(first.log_alpha.requires_grad)
        if getattr(first, "generator", None) is not None:
            stacked.generator = [a.generator for a in self.agents]  # each seed's draws from its own stream
        stacked.buffer = _Minibatches([a.buffer for a in self.agents])
        for agent in self.agents:  # the ensemble's env starts fresh episodes, whatever a seed's checkpoint held
            agent.collector.obs = None
        stacked.collector = _Losses(first.collector)
        self.stacked = stacked
        self.named = {opt: self._optimizer_params(opt) for opt in self.optimizers}
        for opt in self.optimizers:
            params = [tensor for tensor, _ in self.named[opt]]
            setattr(stacked, opt, stacked_optimizer(getattr(first, opt), params, self.k))
        self.gather()

    def _optimizer_params(self, opt: str) -> list[tuple[torch.Tensor, Any]]:
        """(stacked tensor, seed -> its parameter) for each parameter of optimizer `opt`, in the optimizer's order."""
        first = self.agents[0]
        where: dict[int, tuple[str, str]] = {}
        for module in self.modules:
            for name, param in getattr(first, module).named_parameters():
                where[id(param)] = (module, name)
        for name in self._PARAMS:
            if getattr(first, name, None) is not None:
                where[id(getattr(first, name))] = (name, "")
        pairs = []
        for group in getattr(first, opt).param_groups:
            for param in group["params"]:
                module, name = where[id(param)]
                tensor = (
                    getattr(self.stacked, module) if not name else getattr(self.stacked, module).get_parameter(name)
                )
                find = (
                    (lambda s, m=module: getattr(self.agents[s], m))
                    if not name
                    else (lambda s, m=module, n=name: getattr(self.agents[s], m).get_parameter(n))
                )
                pairs.append((tensor, find))
        return pairs

    @torch.no_grad()
    def gather(self) -> None:
        stacked, agents = self.stacked, self.agents
        for name in self.modules:
            gather(getattr(stacked, name), [getattr(a, name) for a in agents])
        if getattr(stacked, "log_alpha", None) is not None:
            stacked.log_alpha.copy_(torch.stack([a.log_alpha.detach() for a in agents]).reshape(-1, 1))
            stacked.alpha = stacked.log_alpha.detach().exp()
        for opt in self.optimizers:
            getattr(stacked, opt).gather(self.named[opt], [getattr(a, opt) for a in agents])
        stacked.updates = agents[0].updates
        if hasattr(stacked, "actor_loss") and isinstance(agents[0].actor_loss, torch.Tensor):  # TD3's delayed one
            stacked.actor_loss = torch.stack([a.actor_loss for a in agents])

    @torch.no_grad()
    def scatter(self) -> None:
        stacked, agents = self.stacked, self.agents
        for name in self.modules:
            scatter(getattr(stacked, name), [getattr(a, name) for a in agents])
        for k, agent in enumerate(agents):
            if getattr(stacked, "log_alpha", None) is not None:
                agent.log_alpha.copy_(stacked.log_alpha[k].reshape(agent.log_alpha.shape))
                agent.alpha = agent.log_alpha.detach().exp()
            agent.updates = stacked.updates
            if hasattr(agent, "actor_loss") and isinstance(agent.actor_loss, torch.Tensor):
                agent.actor_loss = stacked.actor_loss[k].clone()
        for opt in self.optimizers:
            getattr(stacked, opt).scatter(self.named[opt], [getattr(a, opt) for a in agents])

    def learn(self, max_steps: int, live: Any = None) -> tuple[int, list[list[Episode]]]:
        """Each agent's learn(max_steps) done together, as OnPolicyEnsemble.learn (a live seed that diverges raises
        DivergenceError with `seed_index`, `progress` and `finished`, after a complete round)."""
        live = range(self.k) if live is None else live
        collectors = [a.collector for a in self.agents]
        first, cfg = collectors[0], self.cfg
        if any(c.obs is None for c in collectors):  # the first call, or a resume (the shared env is not saved)
            obs, _ = self.env.reset(seed=first.seeds.integer("env_reset", first.env_steps))
            for collector, cols in zip(collectors, self._blocks()):
                collector.obs, collector.autoreset[:] = obs[cols], False
                collector.ep_return[:], collector.ep_length[:] = 0.0, 0
                if collector.noise is not None:
                    collector.noise.reset()
        finished: list[list[Episode]] = [[] for _ in range(self.k)]
        start = first.env_steps
        for _ in range(-(-max_steps // self.n)):
            if first.env_steps < cfg.learning_starts:
                actions = np.concatenate([c.rng.uniform(-1.0, 1.0, c.act_shape).astype(np.float32) for c in collectors])
            else:
                actions = self._explore(np.stack([c.obs for c in collectors]))
            next_obs, rewards, terminated, truncated, _ = self.env.step(scale_action(actions, first.low, first.high))
            for k, (collector, cols) in enumerate(zip(collectors, self._blocks())):
                finished[k] += collector.record(
                    collector.obs,
                    actions[cols],
                    rewards[cols],
                    next_obs[cols],
                    terminated[cols],
                    truncated[cols],
                    self.agents[k].losses,
                )
            if (
                first.env_steps >= cfg.learning_starts
                and len(first.buffer) >= cfg.batch_size
                and (first.env_steps // self.n) % cfg.train_freq == 0
            ):
                self._train(
                    cfg.gradient_steps if cfg.gradient_steps > 0 else cfg.train_freq * self.n,
                    live,
                    finished,
                    first.env_steps - start,
                )
        return first.env_steps - start, finished

    def _blocks(self) -> list[slice]:
        return [slice(k * self.n, (k + 1) * self.n) for k in range(self.k)]

    def policy_of(self, seeds: Sequence[int], obs: np.ndarray) -> np.ndarray:
        return _policy_of(self, seeds, obs)

    def policy(self, obs: np.ndarray) -> np.ndarray:
        """Every seed's deterministic policy on its own observations (K, n, ...): the algorithm's policy() of the
        stacked copy, which reads a leading seed dimension as it reads a batch."""
        return np.nan_to_num(self.stacked.policy(obs))

    @torch.no_grad()
    def _explore(self, obs: np.ndarray) -> np.ndarray:
        """Each seed's behaviour policy on its envs' observations (K, n, ...): SAC's sample, or μ(s) plus the
        seed's own exploration noise, clipped to the unit box; (K n, act_dim) unit actions."""
        stacked, obs_t = self.stacked, torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if hasattr(stacked, "sample_action"):
            actions = stacked.sample_action(
                obs_t, _normal_per_seed(stacked.generator, (self.n, stacked.act_dim), self.device)
            )
            actions = actions.cpu().numpy()
        else:
            mu = stacked.actor(obs_t).cpu().numpy()
            actions = np.clip(mu + np.stack([a.noise() for a in self.agents]), -1.0, 1.0)
        return np.nan_to_num(actions.reshape(self.k * self.n, -1))  # a retired seed's NaN must not reach its env

    def _train(self, n_updates: int, live: Any, finished: list[list[Episode]], progress: int) -> None:
        self.stacked.train(n_updates)
        losses = list(zip(*self.stacked.losses))  # (n_losses, K) -> per seed
        for k, agent in enumerate(self.agents):
            agent.losses, agent.updates = tuple(losses[k]), self.stacked.updates
        when = lambda a: f"by gradient step {a.updates} at env step {a.collector.env_steps}"  # noqa: E731
        _raise_if_diverged(self.agents, live, "losses", when, progress, finished)


def _raise_if_diverged(
    agents: Sequence[Any], live: Any, metrics: str, when: Any, progress: int, finished: list[list[Episode]]
) -> None:
    """SeedsDiverged naming every live seed whose metrics (the agent's attribute `metrics`) are not all finite;
    `when(agent)` says when, for the message."""
    bad = {}
    for k in live:
        agent, values = agents[k], getattr(agents[k], metrics)
        if not all(math.isfinite(v) for v in values):
            named = dict(zip(agent.metric_names, values))
            bad[k] = f"non-finite loss {when(agent)} ({named}); try a smaller learning rate"
    if bad:
        raise SeedsDiverged(bad, progress, finished)


def _normal_per_seed(generators: Sequence[torch.Generator], shape: tuple[int, ...], device: Any) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g, device=device) for g in generators])


def _per_seed_state(value: Any) -> bool:
    """What a stacked algorithm must not share with seed 0: its networks, optimizers, buffers and generators."""
    return isinstance(value, (nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Generator))
