"""DQN: Deep Q-Network (Mnih et al. 2015, "Human-level control through deep reinforcement learning").

Notes, "Experience Replay" and "Deep QRLN". The agent acts ε-greedily on q(s, a; w), stores every
real transition in a replay buffer, and regresses q(s, a; w) on the TD target computed with frozen
weights w⁻ (a target network refreshed every C env steps, or by Polyak averaging):

    td_target = r + γ (1 − terminated) max_a q(s', a; w⁻)        delta = td_target − q(s, a; w)
    loss      = mean(weights · L(delta)),  L = Huber (Nature DQN's error clipping) or ½δ² (the notes' MSE)

The bootstrap is cut at termination only: a time-limit truncation keeps γ max_a q(s', a; w⁻).
Extensions, each a flag: --double (van Hasselt et al. 2016, the online net picks the action and the
target net values it), --dueling (Wang et al. 2016, q = V + A − mean_a A), --prioritized (Schaul et
al. 2016; the buffer samples P(i) ∝ |δ_i|^α and returns importance weights, β annealed here),
--n-step N (the buffer returns r = Σ_{j<k} γ^j r_{t+j}, s_{t+k} and k, and the update bootstraps with
γ^k; Sutton & Barto ch. 7).
Atari: --clip-rewards learns from sign(r); --life-loss-terminal ends the episode at a lost life for the TD
target only (metrics.csv and evaluations report real game scores). Action masks (a Dict observation's
`action_mask`): exploration, the greedy argmax and the target's max range over the allowed actions.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deeprl.buffers import ReplayBuffer, tree_map
from deeprl.config import DQNConfig
from deeprl.envs import autoreset_mode
from deeprl.errors import DivergenceError, UsageError
from deeprl.math import double_dqn_target, dqn_target, linear_schedule
from deeprl.math.targets import masked_argmax, masked_double_dqn_target, masked_dqn_target, uniform_allowed_actions
from deeprl.nets import adam, layer_init, make_encoder, soft_update
from deeprl.protocol import Episode
from deeprl.seeding import Seeds
from deeprl.spaces import MASK_KEY, has_mask, mask_of, to_tensor


class QNetwork(nn.Module):
    """q(s, ·; w) for every action: an encoder (MLP or Nature CNN) and a linear head, or the dueling
    heads V(s) and A(s, a) combined as V + A − mean_a A (the mean makes V and A identifiable)."""

    def __init__(self, obs_space: gym.Space, n_actions: int, hidden: tuple[int, ...], dueling: bool):
        super().__init__()
        self.encoder = make_encoder(obs_space, hidden)
        self.dueling = dueling
        self.head = layer_init(nn.Linear(self.encoder.out_features, n_actions), gain=1.0)
        self.value = layer_init(nn.Linear(self.encoder.out_features, 1), gain=1.0) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.encoder(obs)
        advantages = self.head(features)  # q itself without the dueling heads
        if not self.dueling:
            return advantages
        return self.value(features) + advantages - advantages.mean(-1, keepdim=True)


class DQN:
    metric_names = ("epsilon", "loss")

    def __init__(self, config: DQNConfig, env: Any, *, seed: int, device: Any = "cpu"):
        self.cfg, self.env, self.seed, self.seeds = config, env, seed, Seeds(seed)
        self.device = torch.device(device)
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        self.n_actions = int(act_space.n)
        self.masked = has_mask(obs_space)  # a Dict observation with an action mask
        self.q = QNetwork(obs_space, self.n_actions, tuple(config.hidden), config.dueling).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)  # w⁻
        self.params = list(self.q.parameters())
        self.optimizer = adam(self.q.parameters(), config.learning_rate, self.device)
        self.rng = self.seeds.generator("exploration")  # ε-greedy
        self.env_steps = self.vec_steps = self.updates = self.episodes = self.last_target_update = 0
        self.loss = torch.zeros((), device=self.device)  # the last update's loss, read at episode ends
        self.obs = None
        self.actors = None  # with --backend ray: the Ray actors that act for this learner (backends/ray_offpolicy)
        if isinstance(env, gym.vector.VectorEnv):  # deeprl.load gives a single env: policy only, no buffer
            if autoreset_mode(env) != gym.vector.AutoresetMode.NEXT_STEP:
                raise UsageError(f"DQN needs a vector env with NEXT_STEP autoreset; got {autoreset_mode(env)}.")
            n = env.num_envs
            # The buffer's γ sums the n-step rewards (its only use); _update bootstraps with γ^k itself.
            self.buffer = ReplayBuffer(
                config.buffer_size, obs_space, act_space, n_envs=n, device=self.device, n_step=config.n_step,
                gamma=config.gamma, prioritized=config.prioritized, alpha=config.priority_alpha,
                beta=config.priority_beta, seed=self.seeds.sequence("replay"),
            )  # fmt: skip
            self.autoreset = np.zeros(n, dtype=bool)  # env i's next step only returns its reset observation
            self.ep_return, self.ep_length = np.zeros(n), np.zeros(n, dtype=np.int64)
            self.lives = np.zeros(n, dtype=np.int64)

    @torch.inference_mode()
    def policy(self, obs: Any) -> np.ndarray:
        """Greedy actions argmax_a q(s, a; w) for a batch of observations (over the allowed a, with a mask)."""
        obs = to_tensor(obs, self.device)
        return masked_argmax(self.q(obs), mask_of(obs)).cpu().numpy()

    @property
    def epsilon(self) -> float:
        return self.epsilon_at(self.env_steps)

    def epsilon_at(self, env_steps: int) -> float:
        """The behaviour's ε at `env_steps`: 1 (uniform actions) until learning starts, then the linear schedule."""
        c, steps = self.cfg, env_steps - self.cfg.learning_starts
        return 1.0 if steps < 0 else linear_schedule(c.epsilon_start, c.epsilon_final, c.epsilon_decay_steps, steps)

    def learn(self, max_steps: int, max_episodes: int | None = None) -> tuple[int, list[Episode]]:
        if self.actors is not None:  # --backend ray: Ray actors act, this process learns (backends/ray_offpolicy)
            return self.actors.run(max_steps, self.observe)
        env, n = self.env, self.env.num_envs
        if self.obs is None:  # the first call, or a resume whose env could not be saved: fresh episodes
            self.obs, info = env.reset(seed=self.seeds.integer("env_reset", self.env_steps))
            self.autoreset[:] = False
            self.ep_return[:], self.ep_length[:] = 0.0, 0
            self.lives[:] = info.get("lives", 0)
        finished: list[Episode] = []
        start = self.env_steps
        for _ in range(-(-max_steps // n)):
            # ε-greedy behaviour (among the allowed actions, with a mask); uniform actions until learning starts
            epsilon = self.epsilon_at(self.env_steps)
            if self.masked:
                actions = uniform_allowed_actions(self.rng, self.obs[MASK_KEY])
            else:
                actions = self.rng.integers(0, self.n_actions, n)
            if epsilon < 1.0:
                explore = self.rng.random(n) < epsilon
                actions = np.where(explore, actions, self.policy(self.obs))
            next_obs, rewards, terminated, truncated, info = env.step(actions)
            finished += self.observe(self.obs, actions, rewards, next_obs, terminated, truncated, info.get("lives"))
            if max_episodes is not None and len(finished) >= max_episodes:
                break
        self._checked_loss()
        return self.env_steps - start, finished

    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, lives=None) -> list[Episode]:
        """One vector step's transitions into the buffer, then the updates due at this env step; returns the
        episodes it ended. The loop above calls it, and on Ray the learner, with the actors' transitions."""
        cfg, epsilon = self.cfg, self.epsilon_at(self.env_steps)
        valid = ~self.autoreset  # With NEXT_STEP autoreset, the step after an episode ends only returns the reset obs.
        learn_rewards = np.sign(rewards) if cfg.clip_rewards else rewards
        learn_terminated = terminated
        if lives is not None:
            lives = np.asarray(lives)
            if cfg.life_loss_terminal:
                learn_terminated = terminated | (lives < self.lives)
            self.lives = lives
        self.buffer.add(obs, actions, learn_rewards, next_obs, learn_terminated, truncated, valid=valid)
        self.ep_return += np.where(valid, rewards, 0.0)
        self.ep_length += valid
        self.env_steps += len(valid)
        self.vec_steps += 1
        done = (terminated | truncated) & valid
        self.autoreset = done
        self.obs = next_obs
        if (
            self.env_steps >= cfg.learning_starts
            and len(self.buffer) >= cfg.batch_size
            and self.vec_steps % max(1, cfg.train_freq // len(valid)) == 0
        ):
            for _ in range(cfg.gradient_steps):
                self._update()
        if self.env_steps - self.last_target_update >= cfg.target_update_interval:
            soft_update(self.q_target, self.q, cfg.tau)
            self.last_target_update = self.env_steps
        finished: list[Episode] = []
        if done.any():
            now, extras = time.perf_counter(), (round(epsilon, 6), self._checked_loss())
            for i in np.flatnonzero(done):
                self.episodes += 1
                finished.append(Episode(self.env_steps, float(self.ep_return[i]), int(self.ep_length[i]), now, extras))
            self.ep_return[done], self.ep_length[done] = 0.0, 0
        return finished

    def _update(self) -> None:
        cfg = self.cfg
        beta = linear_schedule(cfg.priority_beta, 1.0, cfg.priority_beta_steps, self.env_steps)
        batch = self.buffer.sample(cfg.batch_size, beta=beta)
        discounts = cfg.gamma**batch.steps  # γ^k: the buffer summed k rewards (k = n_step, fewer at an end)
        next_mask = mask_of(batch.next_obs)  # the max runs over the actions allowed in s'
        with torch.no_grad():
            q_next_target = self.q_target(batch.next_obs)
        if cfg.double:  # one forward of the online net over s and s' together (half the call overhead)
            q_both = self.q(tree_map(lambda o, o_next: torch.cat([o, o_next]), batch.obs, batch.next_obs))
            q_all, q_next_online = q_both[: cfg.batch_size], q_both[cfg.batch_size :].detach()
            args = (batch.rewards, q_next_online, q_next_target, discounts, batch.terminated)
            td_target = double_dqn_target(*args) if next_mask is None else masked_double_dqn_target(*args, next_mask)
        else:
            q_all = self.q(batch.obs)
            args = (batch.rewards, q_next_target, discounts, batch.terminated)
            td_target = dqn_target(*args) if next_mask is None else masked_dqn_target(*args, next_mask)
        q = q_all.gather(1, batch.actions.unsqueeze(1)).squeeze(1)  # q(s, a; w)
        delta = td_target - q
        huber = cfg.loss == "huber"
        per_sample = F.huber_loss(q, td_target, reduction="none", delta=1.0) if huber else 0.5 * delta.pow(2)
        loss = (batch.weights * per_sample).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm, foreach=True)
        self.optimizer.step()
        if cfg.prioritized:  # p_i = |δ_i| (+ε in the buffer)
            self.buffer.update_priorities(batch.indices, delta.detach().abs())
        self.loss = loss.detach()
        self.updates += 1

    def _checked_loss(self) -> float:
        """The last loss as a float (one device sync per episode end, not per update)."""
        loss = float(self.loss)
        if not np.isfinite(loss):
            raise DivergenceError(f"the DQN loss became {loss} at env step {self.env_steps}; lower --learning-rate")
        return round(loss, 6)

    def policy_state(self) -> dict[str, Any]:
        return {"q": self.q.state_dict()}

    def load_policy_state(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "loss": self.loss.cpu(),
            "counters": (self.env_steps, self.vec_steps, self.updates, self.episodes, self.last_target_update),
            "obs": None if self.obs is None else tree_map(np.array, self.obs),
            **{name: getattr(self, name).copy() for name in ("autoreset", "ep_return", "ep_length", "lives")},
            **({} if self.actors is None else {"actors": self.actors.state_dict()}),
        }

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        for name in ("q", "q_target", "optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.rng.bit_generator.state = state["rng"]
        self.loss = state["loss"].to(self.device)
        self.env_steps, self.vec_steps, self.updates, self.episodes, self.last_target_update = state["counters"]
        if hasattr(self, "buffer"):
            self.buffer.load_state_dict(state["buffer"])
            self.obs = state["obs"] if env_restored else None  # None: the next learn() starts fresh episodes
            for name in ("autoreset", "ep_return", "ep_length", "lives"):
                getattr(self, name)[:] = state[name]
            if self.actors is not None:
                self.actors.load_state_dict(state["actors"], env_restored)
