"""What REINFORCE, PPO and A2C share: the actor-critic network, the rollout, the learn() loop, the
deterministic policy and the saved state. Each algorithm subclasses `OnPolicyAgent` once and writes
only its `update()` (its loss and update order), which reads top to bottom in its own file.

learn(max_steps) steps the vector env ceil(max_steps / n_envs) times, in pieces that stop at every
full batch to update; a batch may span learn() calls (the rollout keeps its partial rows), so
learn(a); learn(b) does exactly what learn(a + b) does.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from deeprl.errors import DivergenceError
from deeprl.nets import ActorCritic, adam
from deeprl.protocol import Episode
from deeprl.rollout import RewardScaler, Rollout, make_obs_normalizer
from deeprl.seeding import Seeds
from deeprl.spaces import map_obs, to_tensor


class OnPolicyAgent(abc.ABC):
    metric_names: tuple[str, ...] = ()
    uses_critic = True

    def __init__(self, config: Any, env: Any, *, seed: int, device: Any = "cpu"):
        cfg = self.cfg = config
        self.env, self.seed, self.device = env, seed, torch.device(device or "cpu")
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        self.model = actor_critic(cfg, obs_space, act_space, self.uses_critic).to(self.device)
        # vector Boxes only (per key for Dict observations): images, one-hot inputs and masks pass through
        self.obs_normalizer = make_obs_normalizer(obs_space) if cfg.normalize_obs else None
        n_envs = getattr(env, "num_envs", 1)
        reward_scaler = RewardScaler(n_envs, cfg.gamma) if cfg.scale_rewards else None
        self.rollout = Rollout(
            env,
            cfg.n_steps,
            self.device,
            seeds=Seeds(seed),
            obs_normalizer=self.obs_normalizer,
            reward_scaler=reward_scaler,
        )
        self.optimizer = self.make_optimizer()
        # PPO's minibatch order, from the run's own stream (CPU: the same order on every device), not torch's
        # global generator: a seed's update is then the same alone or in a seed ensemble (deeprl.ensemble)
        self.shuffle = Seeds(seed).torch_generator("minibatches")
        # where the training envs live elsewhere (Ray workers), the function that pickles them for the resume
        # state (deeprl.backends.ray_onpolicy); None: the driver pickles `env`, which this process steps
        self.env_snapshot: Callable[[], bytes | None] | None = None
        self.updates = 0
        self.last_metrics: tuple[float, ...] = (math.nan,) * len(self.metric_names)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return adam(self.model.parameters(), self.cfg.learning_rate, self.device, eps=1e-5)

    def progress_left(self) -> float:
        """1 − (env steps so far) / anneal_steps, floored at 0: the factor of linear annealing."""
        if self.cfg.anneal_steps is None:
            return 1.0
        return max(0.0, 1.0 - self.rollout.env_steps / self.cfg.anneal_steps)

    @abc.abstractmethod
    def update(self) -> tuple[float, ...]:
        """Learn from the full rollout; returns the values of `metric_names` (each algorithm's own file)."""

    def learn(self, max_steps: int, max_episodes: int | None = None) -> tuple[int, list[Episode]]:
        rollout = self.rollout
        n_vec = -(-max_steps // rollout.n_envs)  # ceil
        taken, finished = 0, []
        while taken < n_vec:
            left = None if max_episodes is None else max_episodes - len(finished)
            steps, episodes = rollout.collect(self.model, n_vec - taken, left, self.last_metrics)
            taken += steps
            finished += episodes
            if rollout.full:
                rollout.finish(self.model.value if self.uses_critic else None)
                for group in self.optimizer.param_groups:
                    group["lr"] = self.cfg.learning_rate * self.progress_left()
                metrics = self.update()
                self.updates += 1
                rollout.clear()
                if not all(math.isfinite(m) for m in metrics):
                    raise DivergenceError(
                        f"non-finite loss after update {self.updates} at env step "
                        f"{rollout.env_steps} ({dict(zip(self.metric_names, metrics))}); "
                        "try a smaller learning rate"
                    )
                self.last_metrics = metrics
            if max_episodes is not None and len(finished) >= max_episodes:
                break
        return taken * rollout.n_envs, finished

    def clip_and_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()

    @torch.inference_mode()
    def policy(self, obs: Any) -> np.ndarray:
        """Deterministic actions (argmax / Gaussian mean; masked actions excluded) for a batch (an array, or a
        dict of arrays for Dict observations), with the training obs statistics."""
        return self.model.env_action(self.model.mode(to_tensor(self.policy_input(obs), self.device)))

    def policy_input(self, obs: Any) -> Any:
        """What policy() feeds its network: the observations as arrays, normalised with the training statistics."""
        obs = {key: np.asarray(value) for key, value in obs.items()} if isinstance(obs, dict) else np.asarray(obs)
        return obs if self.obs_normalizer is None else self.obs_normalizer(obs)

    def close(self) -> None:
        close = getattr(self.rollout.source, "close", None)  # Ray workers are stopped here
        if close is not None:
            close()

    def policy_state(self) -> dict[str, Any]:
        """The weights and the observation statistics policy() normalises with."""
        return {
            "model": self.model.state_dict(),
            "obs_normalizer": None if self.obs_normalizer is None else self.obs_normalizer.state_dict(),
        }

    def load_policy_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rollout": self.rollout.state_dict(),
            "updates": self.updates,
            "last_metrics": self.last_metrics,
            "shuffle": self.shuffle.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rollout.load_state_dict(state["rollout"], env_restored)
        self.updates, self.last_metrics = state["updates"], tuple(state["last_metrics"])
        if "shuffle" in state:  # older checkpoints drew PPO's minibatches from torch's global generator
            self.shuffle.set_state(state["shuffle"])


def actor_critic(cfg: Any, obs_space: Any, act_space: Any, critic: bool) -> ActorCritic:
    """The algorithm's network from its config (what a Ray worker builds too, to act with the learner's weights)."""
    return ActorCritic(
        obs_space,
        act_space,
        cfg.hidden,
        cfg.activation,
        shared=cfg.shared,
        critic=critic,
        log_std=cfg.log_std,
        log_std_init=cfg.log_std_init,
        bound=cfg.bound,
    )


def flat_valid(rollout: Rollout, *tensors: Any) -> tuple[Any, ...]:
    """The [T, N, ...] tensors (or dicts of them: Dict observations) flattened to [T*N, ...] and restricted
    to real transitions (mask 1): the vector env's autoreset rows are dropped here, once, instead of
    masked in every loss."""
    valid = rollout.mask.flatten().nonzero().squeeze(-1)
    return tuple(map_obs(lambda x: x.flatten(0, 1)[valid], tensor) for tensor in tensors)
