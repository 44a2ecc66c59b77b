"""A3C: asynchronous advantage actor-critic (Mnih et al. 2016, "Asynchronous Methods for Deep
Reinforcement Learning", Algorithm S3; notes, "A2C/A3C" and "Actor Critic Methods").

N worker processes each own a copy of the env and a thread-specific copy θ' of the network. A worker
repeats: θ' ← θ (the shared weights); act for up to t_max steps; compute the n-step returns
R_t = r_t + γ r_{t+1} + … + γ^k V(s_{t+k+1}; θ') (0 after a termination) and the advantages
A_t = R_t − V(s_t); take the gradient of

    −log π(a_t|s_t; θ') A_t  +  c_v (R_t − V(s_t; θ'))²/2  −  β H(π(·|s_t; θ'))

and apply it to θ with the shared optimizer, without any lock (Hogwild: workers may overwrite each
other's updates; the paper shows this works and it is what makes the workers scale). The model's
weights and the optimizer's statistics (RMSProp's g, or Adam's moments) live in shared memory.

The driver's protocol on top (deeprl/workers.py, with the pool's processes, queues, shared optimizer
and crash detection): a shared step counter T that each worker increments before every env step.
`learn(n)` raises the counter's target by n and waits until every worker is paused at the target, so
evaluations and checkpoints see a quiescent model at exact env steps. The worker pool starts in the
first `learn` and is reused across chunks; `close()` stops it. With `--backend ray` the same worker loop
runs in Ray actors, and θ and the optimizer live in a parameter actor that applies each gradient as it
arrives (deeprl/backends/ray_a3c.py); the protocol is the same.

Reproducibility: A3C's interleaving of workers is decided by the OS scheduler, so two runs with
2+ workers differ. With --workers 1 a run is deterministic and chunk-invariant (a worker pauses
mid-rollout and continues it). A checkpoint holds the model, the optimizer's statistics and the
counters; a resumed run starts fresh episodes in new workers (worker RNG and env state are not saved):
each pool start seeds worker `rank` from the run's Seeds at (rank, env steps at the start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from deeprl.config import A3CConfig
from deeprl.envs import maker_of
from deeprl.math.returns import future_returns
from deeprl.math.surrogate import reinforce_loss, value_loss
from deeprl.nets import ActorCritic
from deeprl.protocol import Episode
from deeprl.seeding import Seeds
from deeprl.spaces import copy_obs, obs_storage, take, to_tensor
from deeprl.workers import SharedParameters, WorkerLink, WorkerPool, shared_optimizer


def _worker_loop(
    rank: int,
    link: WorkerLink,
    theta: SharedParameters,
    cfg: A3CConfig,
    make_env: Callable[[], gym.Env],
    seeds: Seeds,
    stream: tuple[int, ...],
) -> None:
    """One worker (its own process): n-step actor-critic updates of the shared θ until the pool stops.
    `theta` pulls θ and applies gradients to it (shared memory here, Ray's parameter actor on Ray); `stream`
    picks this worker's seeds: the env step its pool started at (and, on Ray, how often it was restarted)."""
    torch.manual_seed(seeds.integer("worker_torch", rank, *stream))
    env = make_env()
    obs, _ = env.reset(seed=seeds.integer("env_reset", rank, *stream))
    local = ActorCritic(env.observation_space, env.action_space, cfg.hidden)  # θ'
    local_params = list(local.parameters())
    box = isinstance(env.action_space, gym.spaces.Box)
    # Rollout storage, allocated once: row t holds s_t, a_t, r_t and how step t ended. Observations keep
    # their stored dtype (uint8 frames stay bytes) and a Dict observation (an action mask) one tensor per key.
    obs_buf = obs_storage(env.observation_space, (cfg.t_max,))
    last_obs = obs_storage(env.observation_space, (1,))  # s_{t_end}, for the bootstrap value
    act_buf = torch.zeros((cfg.t_max, *env.action_space.shape), dtype=torch.float32 if box else torch.int64)
    rewards, terminated, truncated = (torch.zeros(cfg.t_max) for _ in range(3))
    ep_return, ep_length = 0.0, 0

    while True:
        theta.pull(local_params)  # θ' ← θ
        t = 0
        while t < cfg.t_max:  # act for t_max steps or until the episode ends
            step = link.claim_step()
            if step == 0:
                env.close()
                return
            copy_obs(take(obs_buf, t), obs)
            with torch.inference_mode():
                raw_action, _, _ = local.act(take(obs_buf, slice(t, t + 1)))
            act_buf[t] = raw_action[0]
            obs, reward, term, trunc, _ = env.step(local.env_action(raw_action)[0])
            rewards[t], terminated[t], truncated[t] = float(reward), float(term), float(trunc)
            ep_return += float(reward)
            ep_length += 1
            t += 1
            if term or trunc:
                link.finish_episode(Episode(step, ep_return, ep_length, time.perf_counter(), (rank,)))
                ep_return, ep_length = 0.0, 0
                break
        # V(s_{t_end}) bootstraps a rollout cut by t_max or a truncation; a termination ignores it.
        next_values = torch.zeros(t)
        if not terminated[t - 1]:
            with torch.inference_mode():
                copy_obs(last_obs, obs)
                next_values[t - 1] = local.value(last_obs)[0]
        if terminated[t - 1] or truncated[t - 1]:
            obs, _ = env.reset()
        # The paper's forward view: R ← r_i + γR from the rollout's end, so R_t is the n-step return
        # with n = t_end − t, all bootstrapping from V(s_{t_end}); that is the rollout's future return
        # completed with V (equal to n_step_returns with n = t_max, tested; this loop is O(t_max)).
        returns = future_returns(rewards[:t], terminated[:t], truncated[:t], cfg.gamma, next_values)

        log_prob, entropy, values = local.evaluate(take(obs_buf, slice(0, t)), act_buf[:t])
        advantages = returns - values.detach()  # A_t = R_t − V(s_t)
        loss = (
            reinforce_loss(log_prob, advantages)
            + cfg.value_coef * value_loss(values, returns)
            - cfg.entropy_coef * entropy.mean()
        )
        if not torch.isfinite(loss):
            link.report_divergence(
                rank, f"worker {rank} computed a non-finite loss ({loss.item()}) near env step {step}"
            )
            return
        local.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(local.parameters(), cfg.max_grad_norm)
        theta.push([p.grad for p in local_params])  # Hogwild: no lock around the shared update (Ray: one at a time)
        link.count_update()


class A3C:
    """The parent: holds the shared model and optimizer, drives the worker pool chunk by chunk."""

    metric_names = ("worker",)

    def __init__(self, config: A3CConfig, env: gym.Env, *, seed: int, device: Any = None):
        # Hogwild shares CPU memory between processes: A3C runs on the CPU whatever --device says.
        self.cfg, self.seed, self.seeds = config, seed, Seeds(seed)
        # Each worker makes its own env copy from the training env's recipe (deeprl.envs.EnvMaker: id,
        # kwargs, wrappers, time limit, Atari preprocessing), so it learns on exactly that env; an env made
        # elsewhere falls back to its registered spec.
        self.make_env = maker_of(env) or (partial(gym.make, env.spec) if env.spec is not None else None)
        if self.make_env is None:
            raise ValueError(
                "A3C workers make their own env copies from the env's recipe or registered spec; this env has "
                "neither. Make it with deeprl.envs.make_env, or register it with gymnasium.register and pass its id."
            )
        self.model = ActorCritic(env.observation_space, env.action_space, config.hidden)
        self.model.share_memory()
        self.optimizer = shared_optimizer(
            self.model, config.optimizer, config.lr, rmsprop_alpha=config.rmsprop_alpha, eps=config.optimizer_eps
        )
        self.theta = SharedParameters(self.model, self.optimizer)
        self.env_steps, self.episodes, self.updates = 0, 0, 0
        self.pool = WorkerPool(config.start_method, "A3C")

    def learn(self, max_steps: int, max_episodes: int | None) -> tuple[int, list[Episode]]:
        if not self.pool.running:  # a new pool seeds its workers at this env step: a resumed run does not
            # replay the first pool's episodes
            args = (self.theta, self.cfg, self.make_env, self.seeds, (self.env_steps,))
            self.pool.start(self.cfg.workers, _worker_loop, args, (self.env_steps, self.episodes, self.updates))
        start = self.env_steps
        (self.env_steps, self.episodes, self.updates), finished = self.pool.run(max_steps, max_episodes)
        return self.env_steps - start, finished

    def close(self) -> None:
        """Stop the workers (they finish their env step or update first) and join them; idempotent."""
        self.pool.close()

    def policy(self, obs: Any) -> np.ndarray:
        with torch.inference_mode():
            return self.model.env_action(self.model.mode(to_tensor(obs)))

    def policy_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_policy_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.theta.state_dict(),
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        if self.pool.running:  # the workers restart from the loaded state
            self.close()
        self.theta.load_state_dict(state)  # in place: the tensors stay in the shared memory the workers see
        self.env_steps, self.episodes, self.updates = state["env_steps"], state["episodes"], state["updates"]
