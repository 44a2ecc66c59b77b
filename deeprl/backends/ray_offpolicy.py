"""DQN, DDPG, TD3 and SAC with `--backend ray --workers N`: N Ray actors each step a slice of the --n-envs envs
with a copy of the acting network, and the learner (this process) keeps the replay buffer and does every update.

A round is `round_steps` vector steps: the learning cadence (`train_freq` vector steps; DQN's train_freq is in env
steps) repeated until the round holds at least ROUND_ENV_STEPS env steps, so a Ray round trip is paid once per 64
env steps or more. At each round's start the learner puts the weights it has then in the object store (once a
round); every actor steps its envs `round_steps` times with them and its own exploration, and sends back the
observations, actions, rewards, terminated and truncated flags. The learner then takes the vector steps one by
one, the actors' pieces side by side in env order, exactly as its local loop takes its env's steps: the
transitions into the buffer, the episode counts, and the gradient and target updates due at that env step
(`DQN.observe`, `Collector.record` and `Collector.train_if_due` are the local backend's own code).

Why the result is not the local backend's: locally the policy that acts at step t has every update made before
t; here it is the weights of the round's start, up to `round_steps` vector steps old (where the cadence alone
makes a round, the weights are the same ones: the updates come at the round's end), and the exploration draws
from other streams (below). What does hold: a run is deterministic given the seed and --n-envs, and does not
depend on --workers either. Env j resets from `base + j` (Gymnasium's rule for `reset(seed=base)`, base from
"env_reset"), and draws its exploration from its own streams (Seeds: "exploration", j for ε-greedy and the
uniform warm-up actions, "noise", j for DDPG/TD3's Gaussian or Ornstein-Uhlenbeck noise, whose state is that
env's and lives with it, "policy", j for SAC's ε), and the acting network computes on a batch as wide as all
the envs with the actor's rows in place (deeprl.rollout.EnvSlice's trick: a row comes out bit for bit the same
whatever the split). Rounds start on multiples of `round_steps`: a driver chunk (evaluation, checkpoint) that
ends inside a round leaves the rest of the round to the next chunk with the same weights, so chunks, callbacks'
checkpoints and --resume change nothing (the weights of the round's start are part of the resume state).

Faults: an actor that dies (or whose env raises) is replaced through `ray_runtime.WorkerSet` with fresh episodes
from its own streams ("env_restart", worker, restart, ...; the exploration streams likewise); the learner ends
its envs' episodes where the last delivered transition left them (truncated, so they still bootstrap; not
reported in metrics.csv) and the new actor collects the whole share of the round again: nothing is lost or
counted twice, the budget is exact, and a warning says so. Such a run no longer equals one without the fault.
Resume: each actor's envs are pickled (RayEnvSnapshot) with its exploration state, and a resumed run continues
exactly; an env that cannot be pickled starts fresh episodes, as the local backend does.

Rounds are synchronous: the actors wait while the learner updates, and the learner waits for the slowest actor.
Ray pays off where env steps are dear (simulators, images); for classic control, one process is faster.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from deeprl.backends.ray_onpolicy import RayEnvSnapshot, _concat, _nbytes
from deeprl.backends.ray_runtime import WorkerSet, release, require_ray, worker_envs
from deeprl.buffers import tree_map
from deeprl.continuous import Collector, obs_tensor, scale_action
from deeprl.envs import env_state
from deeprl.errors import DivergenceError
from deeprl.math.targets import masked_argmax, uniform_allowed_actions
from deeprl.noise import make_noise
from deeprl.rollout import widen
from deeprl.seeding import Seeds
from deeprl.spaces import MASK_KEY, has_mask, mask_of, to_tensor

ROUND_ENV_STEPS = 64  # a round holds at least this many env steps (one Ray round trip each)


def round_steps(algo_name: str, config: Any, n_envs: int) -> int:
    """Vector steps per round: the learning cadence, repeated to at least ROUND_ENV_STEPS env steps."""
    cadence = max(1, config.train_freq // n_envs) if algo_name == "dqn" else config.train_freq
    return cadence * max(1, -(-ROUND_ENV_STEPS // (cadence * n_envs)))


class OffPolicyWorker:
    """A Ray actor: the envs [start, start + n) of `width`, a copy of the acting network and each env's exploration.

    `mode`: "epsilon_greedy" (DQN's q-network), "noise" (DDPG/TD3's μ plus `noise` = (kind, σ, θ)) or "sample"
    (SAC's squashed Gaussian). Each step's ε comes from the learner: 1 draws uniform actions (DQN's ε-greedy before
    learning starts, and the continuous warm-up), below 1 DQN explores with probability ε, the others act."""

    def __init__(
        self,
        maker: Any,
        mode: str,
        net: torch.nn.Module,
        noise: tuple[str, float, float] | None,
        start: int,
        n: int,
        width: int,
        seed: int,
        vectorization: str,
        restart: tuple[int, int] | None = None,
        snapshot: bytes | None = None,
        sys_path: tuple[str, ...] = (),
    ):
        self.env = worker_envs(maker, n, vectorization, snapshot, sys_path)
        self.mode, self.net, self.version = mode, net, -1
        self.start, self.n, self.width, self.rows = start, n, width, slice(start, start + n)
        self.seeds, self.restart = Seeds(seed), restart
        space = self.env.single_action_space
        self.discrete = mode == "epsilon_greedy"
        self.masked = has_mask(self.env.single_observation_space)  # a Dict observation with an action mask
        self.n_actions = int(space.n) if self.discrete else None
        self.low, self.high = (
            (None, None) if self.discrete else (space.low.astype(np.float32), space.high.astype(np.float32))
        )
        self.act_shape = tuple(space.shape)
        self.rngs = [self.seeds.generator(*self._stream("exploration", j)) for j in range(n)]
        self.noises = self.generators = None
        if mode == "noise":
            kind, sigma, theta = noise
            dim = (1, int(np.prod(self.act_shape)))
            self.noises = [
                make_noise(kind, sigma, dim, theta=theta, seed=self.seeds.sequence(*self._stream("noise", j)))
                for j in range(n)
            ]
        if mode == "sample":
            self.generators = [
                torch.Generator().manual_seed(self.seeds.integer(*self._stream("policy", j))) for j in range(n)
            ]
        self.obs: Any = None  # the envs' current observation (None: fresh episodes at the next collect)
        self.autoreset = np.zeros(n, dtype=bool)  # env j's next step only returns its reset observation

    def _stream(self, name: str, j: int) -> tuple:
        """The Seeds stream of env `start + j`: its own, or a restarted worker's fresh one."""
        if self.restart is None:
            return (name, self.start + j)
        return (f"{name}_restart", *self.restart, self.start + j)

    def where(self) -> tuple[int, str]:
        import ray

        return os.getpid(), ray.util.get_node_ip_address()

    def _reset(self, env_steps: int) -> None:
        name = "env_reset" if self.restart is None else "env_restart"
        index = (env_steps,) if self.restart is None else (*self.restart, env_steps)
        base = self.seeds.integer(name, *index)
        self.obs, _ = self.env.reset(seed=[base + self.start + j for j in range(self.n)])
        self.autoreset[:] = False
        for noise in self.noises or ():
            noise.reset()

    def _wide(self, x: Any) -> Any:
        """`x` (n rows) inside a `width`-row batch at this slice's rows (deeprl.rollout.widen)."""
        return x if self.n == self.width else widen(x, self.rows, self.width)

    def _act(self, epsilon: float) -> np.ndarray:
        rngs = self.rngs
        if self.discrete:  # ε-greedy: each env draws its uniform action, then (ε < 1) its coin, as DQN does
            if self.masked:
                mask = np.asarray(self.obs[MASK_KEY])
                actions = np.array([uniform_allowed_actions(rng, mask[j : j + 1])[0] for j, rng in enumerate(rngs)])
            else:
                actions = np.array([rng.integers(0, self.n_actions) for rng in rngs], dtype=np.int64)
            if epsilon < 1.0:
                explore = np.array([rng.random() < epsilon for rng in rngs])
                obs = self._wide(to_tensor(self.obs, "cpu"))
                greedy = masked_argmax(self.net(obs), mask_of(obs))[self.rows].numpy()
                actions = np.where(explore, actions, greedy)
            return actions
        if epsilon >= 1.0:  # uniform warm-up actions in the unit box
            return np.stack([rng.uniform(-1.0, 1.0, self.act_shape) for rng in rngs]).astype(np.float32)
        obs = self._wide(obs_tensor(self.obs, torch.device("cpu"), self.net.encoder))
        if self.mode == "noise":  # μ(s) plus each env's noise, clipped to the unit box
            mu = self.net(obs)[self.rows].numpy()
            return np.clip(mu + np.concatenate([noise() for noise in self.noises]), -1.0, 1.0)
        eps = torch.stack([torch.randn(self.act_shape, generator=g) for g in self.generators])
        return self.net.sample(obs, eps=self._wide(eps))[0][self.rows].numpy()

    @torch.inference_mode()
    def collect(self, policy: tuple[int, Any] | None, epsilons: list[float], env_steps: int) -> dict[str, Any]:
        """Step the envs len(epsilons) times; returns their observations (one more than steps), actions, rewards,
        terminated, truncated and lives (Atari; else None), each [step, env]."""
        if policy is not None and policy[0] != self.version:
            self.version, weights = policy
            self.net.load_state_dict(weights)
        if self.obs is None:
            self._reset(env_steps)
        frames, actions, rewards, terminated, truncated, lives = [tree_map(np.array, self.obs)], [], [], [], [], []
        for epsilon in epsilons:
            action = self._act(epsilon)
            obs, reward, term, trunc, info = self.env.step(
                action if self.discrete else scale_action(action, self.low, self.high)
            )
            valid = ~self.autoreset
            for j in np.flatnonzero(self.autoreset) if self.noises else ():
                self.noises[j].reset()  # env j now holds a new episode's first observation
            self.autoreset = (term | trunc) & valid
            self.obs = obs
            frames.append(tree_map(np.array, obs))
            actions.append(action)
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
            lives.append(info.get("lives"))
        stack = lambda xs: np.stack([np.asarray(x) for x in xs])  # noqa: E731
        return {
            "frames": {key: stack([f[key] for f in frames]) for key in frames[0]}
            if isinstance(frames[0], dict)
            else stack(frames),
            "actions": stack(actions),
            "rewards": stack(rewards).astype(np.float64),
            "terminated": stack(terminated).astype(bool),
            "truncated": stack(truncated).astype(bool),
            "lives": None if any(x is None for x in lives) else stack(lives),
        }

    def state(self) -> dict[str, Any]:
        return {
            "obs": None if self.obs is None else tree_map(np.array, self.obs),
            "autoreset": self.autoreset.copy(),
            "rngs": [rng.bit_generator.state for rng in self.rngs],
            "noises": None if self.noises is None else [noise.state_dict() for noise in self.noises],
            "generators": None if self.generators is None else [g.get_state() for g in self.generators],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        for rng, saved in zip(self.rngs, state["rngs"]):
            rng.bit_generator.state = saved
        for noise, saved in zip(self.noises or (), state["noises"] or ()):
            noise.load_state_dict(saved)
        for g, saved in zip(self.generators or (), state["generators"] or ()):
            g.set_state(saved)
        self.obs = state["obs"]  # None: fresh episodes at the next collect
        self.autoreset[:] = state["autoreset"] if self.obs is not None else False

    def snapshot(self) -> bytes | None:
        return env_state(self.env)


class OffPolicyActors:
    """The learner's side: the actors, the rounds, and what a lost actor means for the learner's records.

    `holder` keeps the learner's per-env records (DQN itself, or the continuous algorithms' Collector: `buffer`,
    `autoreset`, `ep_return`, `ep_length`, `env_steps`); `epsilon_at(env_steps)` is the behaviour's ε there."""

    def __init__(
        self,
        algo_name: str,
        net: torch.nn.Module,
        config: Any,
        opts: Any,
        maker: Any,
        snapshot: RayEnvSnapshot | None,
        holder: Any,
        epsilon_at: Callable[[int], float],
    ):
        self.ray = require_ray()
        self.net, self.holder, self.epsilon_at = net, holder, epsilon_at
        self.width = len(holder.autoreset)
        self.round_steps = round_steps(algo_name, config, self.width)
        bounds = np.linspace(0, self.width, opts.workers + 1).round().astype(int)  # as even as can be, in env order
        self.slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        snapshots = snapshot.workers if snapshot is not None else [None] * len(self.slices)
        mode = {"dqn": "epsilon_greedy", "sac": "sample"}.get(algo_name, "noise")
        noise = (config.noise, config.noise_sigma, config.noise_theta) if mode == "noise" else None
        acting = copy.deepcopy(net).cpu().requires_grad_(False)
        vectorization = "sync" if opts.vectorization == "auto" else opts.vectorization  # per-env reset seeds
        actor = self.ray.remote(num_cpus=1, max_restarts=0)(OffPolicyWorker)
        sys_path = (os.getcwd(),)

        def spawn(i: int, restarts: int) -> Any:
            cols = self.slices[i]
            return actor.remote(
                maker,
                mode,
                acting,
                noise,
                cols.start,
                cols.stop - cols.start,
                self.width,
                opts.seed,
                vectorization,
                restart=(i, restarts) if restarts else None,
                snapshot=snapshots[i] if not restarts else None,
                sys_path=sys_path,
            )

        self.workers = WorkerSet(spawn, len(self.slices), "Ray")
        self.version, self.sent = 0, [-1] * len(self.slices)
        self.acting_weights: dict[str, torch.Tensor] | None = None  # the weights of the current round's start
        self.bytes_out = self.bytes_in = 0  # what crossed to and from the workers (docs/ray.md)

    def report(self) -> dict[str, Any]:
        """summary.json's "backend": the workers, where they ran, and what crossed the network."""
        return {
            **self.workers.report(),
            "envs_per_worker": [cols.stop - cols.start for cols in self.slices],
            "bytes_to_workers": self.bytes_out,
            "bytes_from_workers": self.bytes_in,
        }

    def _publish(self, weights: dict[str, torch.Tensor]) -> None:
        self.version += 1
        self.acting_weights = weights
        self.policy_ref = self.ray.put((self.version, weights))

    def run(self, max_steps: int, observe: Callable[..., list]) -> tuple[int, list]:
        """At least `max_steps` env steps (whole vector steps) in rounds; `observe` takes each vector step's
        transitions as the local loop's step would. Returns (env steps taken, finished episodes)."""
        start, finished = self.holder.env_steps, []
        left = -(-max_steps // self.width)
        while left > 0:
            into_round = (self.holder.env_steps // self.width) % self.round_steps
            if into_round == 0 or self.acting_weights is None:  # a round starts: the learner's weights now
                self._publish({k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()})
            k = min(self.round_steps - into_round, left)
            steps = self._collect(k)
            for t in range(k):
                row = lambda x, t=t: None if x is None else x[t]  # noqa: E731
                finished += observe(
                    tree_map(row, steps["frames"]),
                    steps["actions"][t],
                    steps["rewards"][t],
                    tree_map(lambda x, t=t: x[t + 1], steps["frames"]),
                    steps["terminated"][t],
                    steps["truncated"][t],
                    row(steps["lives"]),
                )
            left -= k
        return self.holder.env_steps - start, finished

    def _collect(self, k: int) -> dict[str, Any]:
        """k vector steps from every actor, side by side in env order."""
        env_steps = self.holder.env_steps
        epsilons = [self.epsilon_at(env_steps + t * self.width) for t in range(k)]
        args = []
        for i in range(len(self.slices)):
            stale = self.sent[i] != self.version
            args.append(((self.policy_ref if stale else None), epsilons, env_steps))
            self.bytes_out += _nbytes(self.acting_weights) if stale else 0
        pieces, restarted = self.workers.call(
            "collect", args, on_restart=lambda i: (self.policy_ref, epsilons, env_steps)
        )
        self.sent = [self.version] * len(self.slices)
        self._fresh_episodes(restarted)
        self.bytes_in += sum(_nbytes(p) for p in pieces)
        steps = {key: _concat([p[key] for p in pieces], axis=1) for key in ("frames", "actions", "rewards")}
        for key in ("terminated", "truncated"):
            steps[key] = np.concatenate([p[key] for p in pieces], axis=1)
        lives = [p["lives"] for p in pieces]
        steps["lives"] = None if any(x is None for x in lives) else np.concatenate(lives, axis=1)
        if steps["actions"].dtype.kind == "f" and not np.isfinite(steps["actions"]).all():
            raise DivergenceError(f"the actor produced non-finite actions by env step {env_steps + k * self.width}")
        return steps

    def _fresh_episodes(self, workers: list[int]) -> None:
        """The envs of these (new) actors start fresh episodes: the learner ends theirs at the last transition it
        has (truncated: they still bootstrap; the unfinished episodes are not reported)."""
        holder = self.holder
        for i in sorted(set(workers)):
            cols = self.slices[i]
            holder.buffer.end_streams(np.arange(cols.start, cols.stop))
            holder.autoreset[cols] = False
            holder.ep_return[cols] = 0.0
            holder.ep_length[cols] = 0
            if hasattr(holder, "lives"):
                holder.lives[cols] = 0

    def state_dict(self) -> dict[str, Any]:
        states, restarted = self.workers.call("state", [()] * len(self.slices))
        self._fresh_episodes(restarted)
        return {"workers": states, "acting_weights": self.acting_weights}

    def load_state_dict(self, state: dict[str, Any], env_restored: bool) -> None:
        workers = [ws if env_restored else {**ws, "obs": None} for ws in state["workers"]]
        fresh = lambda i: ({**workers[i], "obs": None},)  # noqa: E731 - a restarted actor has fresh envs
        _, restarted = self.workers.call("load_state", [(ws,) for ws in workers], on_restart=fresh)
        self._fresh_episodes([i for i, ws in enumerate(workers) if ws["obs"] is None] + restarted)
        if state["acting_weights"] is not None:
            self._publish(state["acting_weights"])

    def env_snapshot(self) -> bytes | None:
        snapshots, restarted = self.workers.call("snapshot", [()] * len(self.slices))
        if restarted:  # the new actors' envs start fresh episodes: the run resumes with fresh episodes too
            self._fresh_episodes(restarted)
            return None
        return None if any(s is None for s in snapshots) else pickle.dumps(RayEnvSnapshot(snapshots))

    def close(self) -> None:
        self.workers.close()
        release()


class RayReplayCollector(Collector):
    """DDPG's, TD3's and SAC's Collector when Ray actors step the envs: `run` gives the actors' transitions to
    `record` and trains as the local loop does (the exploration noise lives with each env, on its actor)."""

    actors: OffPolicyActors

    def run(self, agent: Any, max_steps: int, max_episodes: int | None) -> tuple[int, list]:
        def observe(obs, actions, rewards, next_obs, terminated, truncated, lives=None):
            finished = self.record(obs, actions, rewards, next_obs, terminated, truncated, agent.losses)
            self.train_if_due(agent)
            return finished

        return self.actors.run(max_steps, observe)

    def replay_state(self) -> dict[str, Any]:
        actors = self.actors.state_dict()  # first: an actor replaced here changes this side's records
        return {**super().replay_state(), "actors": actors}

    def load_replay_state(self, state: dict[str, Any], env_restored: bool = True) -> None:
        super().load_replay_state(state, env_restored)
        self.actors.load_state_dict(state["actors"], env_restored)


def attach_offpolicy(algo_name: str, algo: Any, opts: Any, maker: Any, snapshot: RayEnvSnapshot | None) -> None:
    """Make `algo` (DQN, DDPG, TD3 or SAC) act on Ray actors; Ray is already connected (backends.attach_ray)."""
    algo.close = release  # until the actors are up: what the driver calls if anything below fails
    cfg = algo.cfg
    if algo_name == "dqn":
        algo.actors = OffPolicyActors(algo_name, algo.q, cfg, opts, maker, snapshot, algo, algo.epsilon_at)
        actors = algo.actors
    else:
        collector = RayReplayCollector(algo.env, algo.buffer, seeds=Seeds(opts.seed))
        warm_up = lambda env_steps: 1.0 if env_steps < cfg.learning_starts else 0.0  # noqa: E731
        collector.actors = OffPolicyActors(algo_name, algo.actor, cfg, opts, maker, snapshot, collector, warm_up)
        algo.collector, actors = collector, collector.actors
    algo.env_snapshot, algo.close, algo.backend_report = actors.env_snapshot, actors.close, actors.report
