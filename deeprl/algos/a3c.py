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

The driver's protocol on top: a shared step counter T that each worker increments before every env
step. `learn(n)` raises the counter's target by n and waits until every worker is paused at the
target, so evaluations and checkpoints see a quiescent model at exact env steps. The worker pool
starts in the first `learn` and is reused across chunks; `close()` stops it.

Reproducibility: A3C's interleaving of workers is decided by the OS scheduler, so two runs with
2+ workers differ. With --workers 1 a run is deterministic and chunk-invariant (a worker pauses
mid-rollout and continues it). A checkpoint holds the model, the optimizer's statistics and the
counters; a resumed run starts fresh episodes in new workers (worker RNG and env state are not saved).
"""

from __future__ import annotations

import queue
import signal
import sys
import time
import traceback
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as mp

from deeprl.protocol import Episode
from deeprl.config import A3CConfig
from deeprl.errors import DivergenceError, WorkerError
from deeprl.math.returns import future_returns
from deeprl.math.surrogate import reinforce_loss, value_loss
from deeprl.nets import ActorCritic

NO_LIMIT = 2**62
POLL_S = 0.1  # how often the parent checks for a crashed worker while it waits


class _Sync:
    """The shared counters and the condition workers pause on; every field is guarded by `cond`."""

    def __init__(self, ctx: Any, env_steps: int, episodes: int, updates: int):
        self.cond = ctx.Condition()
        self.steps = ctx.RawValue("q", env_steps)          # T, the paper's global step counter
        self.step_target = ctx.RawValue("q", env_steps)    # workers pause when T reaches it
        self.episodes = ctx.RawValue("q", episodes)
        self.episode_target = ctx.RawValue("q", NO_LIMIT)
        self.updates = ctx.RawValue("q", updates)
        self.paused = ctx.RawValue("i", 0)
        self.stop = ctx.RawValue("b", 0)
        # Workers post it as they pause. The parent waits on it, not on `cond`: Condition.wait takes the
        # lock back without a timeout, and a worker killed while holding the lock would hang the parent.
        self.wakeup = ctx.Semaphore(0)

    def claim_step(self) -> int:
        """T ← T + 1 and return T; wait while the chunk is done; 0 when the pool is stopping."""
        with self.cond:
            while not self.stop.value and (self.steps.value >= self.step_target.value
                                           or self.episodes.value >= self.episode_target.value):
                self.paused.value += 1
                self.wakeup.release()  # the parent waits for every worker to pause
                self.cond.wait()
                self.paused.value -= 1
            if self.stop.value:
                return 0
            self.steps.value += 1
            return self.steps.value


def shared_optimizer(cfg: A3CConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """RMSProp or Adam whose statistics are created now and moved to shared memory, so that every
    worker's `step()` updates the same g (the paper's "shared RMSProp") instead of a private copy."""
    params = list(model.parameters())
    if cfg.optimizer == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.optimizer_eps)
        keys = ("square_avg",)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, eps=cfg.optimizer_eps)
        keys = ("exp_avg", "exp_avg_sq")
    for p in params:  # torch creates the state lazily at the first step; create it here, in shared memory
        opt.state[p]["step"] = torch.zeros((), dtype=torch.float32).share_memory_()
        for key in keys:
            opt.state[p][key] = torch.zeros_like(p, memory_format=torch.preserve_format).share_memory_()
    return opt


def _worker(rank: int, cfg: A3CConfig, env_spec: Any, seed: int, model: ActorCritic,
            optimizer: torch.optim.Optimizer, sync: _Sync, episodes: Any, errors: Any) -> None:
    """A worker process: runs until the pool stops; reports an exception or a divergence on `errors`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it finishes the chunk and saves
    torch.set_num_threads(1)  # one core per worker; also avoids a forked OpenMP pool
    try:
        _worker_loop(rank, cfg, env_spec, seed, model, optimizer, sync, episodes, errors)
    except BaseException:  # noqa: BLE001 - any failure must reach the parent, which stops the others
        errors.put((rank, "error", traceback.format_exc()))


def _worker_loop(rank: int, cfg: A3CConfig, env_spec: Any, seed: int, model: ActorCritic,
                 optimizer: torch.optim.Optimizer, sync: _Sync, episodes: Any, errors: Any) -> None:
    torch.manual_seed(seed)
    env = gym.make(env_spec)
    obs, _ = env.reset(seed=seed)
    local = ActorCritic(env.observation_space, env.action_space, cfg.hidden)  # θ'
    shared_params, local_params = list(model.parameters()), list(local.parameters())
    for shared_p, local_p in zip(shared_params, local_params):
        shared_p.grad = torch.zeros_like(local_p)  # this process's gradient slot for the shared θ
    box = isinstance(env.action_space, gym.spaces.Box)
    # Rollout storage, allocated once: row t holds s_t, a_t, r_t and how step t ended.
    obs_buf = torch.zeros((cfg.t_max, *env.observation_space.shape), dtype=torch.float32)
    act_buf = torch.zeros((cfg.t_max, *env.action_space.shape),
                          dtype=torch.float32 if box else torch.int64)
    rewards, terminated, truncated = (torch.zeros(cfg.t_max) for _ in range(3))
    ep_return, ep_length = 0.0, 0

    while True:
        with torch.no_grad():
            torch._foreach_copy_(local_params, shared_params)  # θ' ← θ
        t = 0
        while t < cfg.t_max:  # act for t_max steps or until the episode ends
            step = sync.claim_step()
            if step == 0:
                env.close()
                return
            obs_buf[t] = torch.as_tensor(obs, dtype=torch.float32)
            with torch.inference_mode():
                raw_action, _, _ = local.act(obs_buf[t : t + 1])
            act_buf[t] = raw_action[0]
            obs, reward, term, trunc, _ = env.step(local.env_action(raw_action)[0])
            rewards[t], terminated[t], truncated[t] = float(reward), float(term), float(trunc)
            ep_return += float(reward)
            ep_length += 1
            t += 1
            if term or trunc:
                with sync.cond:
                    sync.episodes.value += 1
                    episodes.put(Episode(step, ep_return, ep_length, time.perf_counter(), (rank,)))
                ep_return, ep_length = 0.0, 0
                break
        # V(s_{t_end}) bootstraps a rollout cut by t_max or a truncation; a termination ignores it.
        next_values = torch.zeros(t)
        if not terminated[t - 1]:
            with torch.inference_mode():
                next_values[t - 1] = local.value(torch.as_tensor(obs, dtype=torch.float32)[None])[0]
        if terminated[t - 1] or truncated[t - 1]:
            obs, _ = env.reset()
        # The paper's forward view: R ← r_i + γR from the rollout's end, so R_t is the n-step return
        # with n = t_end − t, all bootstrapping from V(s_{t_end}); that is the rollout's future return
        # completed with V (equal to n_step_returns with n = t_max, tested; this loop is O(t_max)).
        returns = future_returns(rewards[:t], terminated[:t], truncated[:t], cfg.gamma, next_values)

        log_prob, entropy, values = local.evaluate(obs_buf[:t], act_buf[:t])
        advantages = returns - values.detach()  # A_t = R_t − V(s_t)
        loss = (reinforce_loss(log_prob, advantages) + cfg.value_coef * value_loss(values, returns)
                - cfg.entropy_coef * entropy.mean())
        if not torch.isfinite(loss):
            message = f"worker {rank} computed a non-finite loss ({loss.item()}) near env step {sync.steps.value}"
            errors.put((rank, "diverged", message))
            return
        local.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(local.parameters(), cfg.max_grad_norm)
        torch._foreach_copy_([p.grad for p in shared_params], [p.grad for p in local_params])
        optimizer.step()  # Hogwild: no lock around the shared update
        with sync.cond:
            sync.updates.value += 1


class A3C:
    """The parent: holds the shared model and optimizer, drives the worker pool chunk by chunk."""

    metric_names = ("worker",)

    def __init__(self, config: A3CConfig, env: gym.Env, *, seed: int, device: Any = None):
        # Hogwild shares CPU memory between processes: A3C runs on the CPU whatever --device says.
        self.cfg, self.seed = config, seed
        if env.spec is None:
            raise ValueError("A3C workers make their own env copies from the env's registered spec; "
                             "this env has none. Register it with gymnasium.register and pass its id.")
        self.env_spec = env.spec
        self.model = ActorCritic(env.observation_space, env.action_space, config.hidden)
        self.model.share_memory()
        self.optimizer = shared_optimizer(config, self.model)
        self.env_steps, self.episodes, self.updates = 0, 0, 0
        self._ctx = mp.get_context(config.start_method)
        self._procs: list[Any] = []
        self._sync: _Sync | None = None

    # ---------------------------------------------------------------- the worker pool
    def _start(self) -> None:
        ctx, cfg = self._ctx, self.cfg
        self._sync = _Sync(ctx, self.env_steps, self.episodes, self.updates)
        self._episodes, self._errors = ctx.Queue(), ctx.Queue()
        for rank in range(cfg.workers):
            # A seed per worker and per pool start: a resumed run does not replay the first one's episodes.
            worker_seed = int(np.random.SeedSequence([self.seed, rank, self.env_steps]).generate_state(1)[0])
            p = ctx.Process(target=_worker, name=f"deeprl-a3c-worker-{rank}", daemon=True,
                            args=(rank, cfg, self.env_spec, worker_seed, self.model, self.optimizer,
                                  self._sync, self._episodes, self._errors))
            p.start()
            self._procs.append(p)

    def _check_workers(self) -> None:
        """Raise (after stopping the pool) if a worker reported an error or died."""
        dead = [(r, p.exitcode) for r, p in enumerate(self._procs) if p.exitcode is not None]
        try:  # a worker that reported an error exits at once: after its death its report is readable
            rank, kind, message = self._errors.get(timeout=0.5) if dead else self._errors.get_nowait()
        except queue.Empty:
            if not dead:
                return
            rank, code = dead[0]
            kind, message = "error", f"it exited with code {code} (killed by signal {-code})" if code < 0 \
                else f"it exited with code {code}"
        self.close()
        if kind == "diverged":
            raise DivergenceError(message)
        print(f"A3C worker {rank} failed:\n{message.rstrip()}", file=sys.stderr)
        raise WorkerError(f"A3C worker {rank} failed ({message.strip().splitlines()[-1]}); "
                          "the other workers were shut down")

    def close(self) -> None:
        """Stop the workers (they finish their env step or update first) and join them; idempotent."""
        if not self._procs:
            return
        sync = self._sync
        # A dead worker breaks the Condition (notify_all waits for every sleeper, the dead one too, and
        # one killed inside the lock never releases it): then skip the graceful stop and terminate below.
        if all(p.exitcode is None for p in self._procs) and sync.cond.acquire(timeout=1.0):
            sync.stop.value = 1
            sync.cond.notify_all()
            sync.cond.release()
        deadline = time.monotonic() + 2.0
        for p in self._procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self._procs:
            if p.is_alive():  # stuck in a slow env step: no need to wait for it
                p.terminate()
                p.join(1.0)
            if p.is_alive():
                p.kill()
                p.join()
        for q in (self._episodes, self._errors):
            q.cancel_join_thread()
            q.close()
        self._procs = []

    # ---------------------------------------------------------------- the driver's protocol
    def learn(self, max_steps: int, max_episodes: int | None) -> tuple[int, list[Episode]]:
        if not self._procs:
            self._start()
        sync = self._sync
        self._check_workers()  # before notify_all, which would wait forever on a dead worker
        self._lock()
        try:
            start_steps, start_episodes = sync.steps.value, sync.episodes.value
            sync.step_target.value = start_steps + max_steps
            sync.episode_target.value = NO_LIMIT if max_episodes is None else start_episodes + max_episodes
            sync.cond.notify_all()
        finally:
            sync.cond.release()
        finished: list[Episode] = []
        while True:
            self._lock()
            try:
                done = sync.paused.value == len(self._procs) and (
                    sync.steps.value >= sync.step_target.value or sync.episodes.value >= sync.episode_target.value)
                steps, episodes, updates = sync.steps.value, sync.episodes.value, sync.updates.value
            finally:
                sync.cond.release()
            self._drain(finished, episodes - start_episodes, block=done)
            self._check_workers()
            if done:
                break
            sync.wakeup.acquire(timeout=POLL_S)  # until a worker pauses (or the next check for crashes)
        self.env_steps, self.episodes, self.updates = steps, episodes, updates
        finished.sort(key=lambda ep: ep.env_steps)  # workers report out of order
        return steps - start_steps, finished

    def _lock(self) -> None:
        """Take the shared lock, checking on the workers while it is busy: one killed inside it never
        releases it (then _check_workers raises)."""
        while not self._sync.cond.acquire(timeout=1.0):
            self._check_workers()

    def _drain(self, finished: list[Episode], expected: int, block: bool) -> None:
        while len(finished) < expected:
            try:
                finished.append(self._episodes.get(timeout=POLL_S) if block else self._episodes.get_nowait())
            except queue.Empty:
                if not block:
                    return
                self._check_workers()

    def policy(self, obs: Any) -> np.ndarray:
        with torch.inference_mode():
            return self.model.env_action(self.model.mode(torch.as_tensor(np.asarray(obs), dtype=torch.float32)))

    def policy_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_policy_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])

    def state_dict(self) -> dict[str, Any]:
        opt = self.optimizer.state_dict()
        return {
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimizer": {"state": {i: {k: v.clone() for k, v in s.items()} for i, s in opt["state"].items()},
                          "param_groups": opt["param_groups"]},
            "env_steps": self.env_steps, "episodes": self.episodes, "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any], env_restored: bool = True) -> None:
        # In place (copy_): the tensors must stay in the shared memory the workers see.
        self.close()
        self.model.load_state_dict(state["model"])
        for i, p in enumerate(self.model.parameters()):
            for key, value in state["optimizer"]["state"][i].items():
                self.optimizer.state[p][key].copy_(value)
        self.env_steps, self.episodes, self.updates = state["env_steps"], state["episodes"], state["updates"]
