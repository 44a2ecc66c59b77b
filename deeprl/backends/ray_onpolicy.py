"""PPO, A2C and REINFORCE with `--backend ray --workers N`: N Ray actors each step a slice of the rollout's envs.

The learner (this process) keeps the Rollout and does every update, as the local backend does. A round is
one piece of a batch (the driver's chunks end on evaluations and checkpoints, so a round may be less than a
batch): the learner sends the weights and the observation statistics when they changed (after an update), each
worker steps its envs with them (`EnvSlice.collect`: the envs [start, start + n) of the rollout, acting on a
batch as wide as the whole rollout, with each env's own noise stream), and the learner writes the workers'
pieces side by side in worker order. With the same seed and --n-envs, the rows are those of the local backend
with `--vectorization sync`, bit for bit, on CPU (tests/test_ray.py): each env owns its reset seeds and action
noise wherever it runs, and reward scaling and the observation statistics run on the learner, in row order.

A worker that dies is restarted (`ray_runtime.WorkerSet`) with fresh episodes from its own reset stream
("env_restart", worker, restart); the episodes it was in end as truncated at the last row it delivered, and its
share of the round is collected again, so the budget is exact. Such a run no longer equals the local one.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

import numpy as np
import torch

from deeprl.backends.ray_runtime import WorkerSet, connect, release, require_ray, worker_envs
from deeprl.envs import env_state
from deeprl.rollout import DictObsNormalizer, EnvSlice, Piece, make_obs_normalizer
from deeprl.seeding import Seeds


class RayEnvSnapshot:
    """The resume state's env snapshot of a Ray run: each worker's envs, pickled by the worker."""

    def __init__(self, workers: list[bytes]):
        self.workers = workers


class OnPolicyWorker:
    """A Ray actor: one slice of the rollout's envs and a copy of the policy to step them with."""

    def __init__(
        self,
        maker: Any,
        config: Any,
        uses_critic: bool,
        start: int,
        n: int,
        width: int,
        seed: int,
        vectorization: str,
        restart: tuple[int, int] | None = None,
        snapshot: bytes | None = None,
        sys_path: tuple[str, ...] = (),
    ):
        env = worker_envs(maker, n, vectorization, snapshot, sys_path)
        from deeprl.algos.onpolicy import actor_critic

        obs_space, act_space = env.single_observation_space, env.single_action_space
        self.model = actor_critic(config, obs_space, act_space, uses_critic)
        self.normalizer = make_obs_normalizer(obs_space) if config.normalize_obs else None
        normalized = (
            set(self.normalizer.normalizers)
            if isinstance(self.normalizer, DictObsNormalizer)
            else self.normalizer is not None
        )
        self.slice = EnvSlice(env, config.n_steps, start=start, width=width, seeds=Seeds(seed), normalized=normalized)
        if restart is not None:  # fresh episodes from this worker's own stream, not a replay of the lost ones
            self.slice.reset_stream = ("env_restart", *restart)
        self.version = -1

    def where(self) -> tuple[int, str]:
        import ray

        return os.getpid(), ray.util.get_node_ip_address()

    def collect(self, policy: tuple[int, Any, Any] | None, steps: int, batch: int, t: int, env_steps: int) -> Piece:
        if policy is not None and policy[0] != self.version:
            self.version, weights, statistics = policy
            self.model.load_state_dict(weights)
            if self.normalizer is not None:
                self.normalizer.load_state_dict(statistics)
        normalize = None if self.normalizer is None else self.normalizer
        return self.slice.collect(self.model, steps, batch=batch, t=t, env_steps=env_steps, normalize=normalize)

    def state(self, env_steps: int) -> dict[str, Any]:
        if self.slice.next_obs is None:  # a worker restarted since its last round: its envs start now
            self.slice.reset(env_steps)
        return self.slice.state_dict()

    def load_state(self, state: dict[str, Any]) -> None:
        self.slice.load_state_dict(state)

    def snapshot(self) -> bytes | None:
        return env_state(self.slice.env)


class RayCollector:
    """The Rollout's source on Ray: `collect` has EnvSlice's signature and returns the whole width's piece."""

    def __init__(self, algo: Any, opts: Any, maker: Any, snapshot: RayEnvSnapshot | None):
        self.ray = require_ray()
        rollout = algo.rollout
        self.width = rollout.n_envs
        n_workers = opts.workers
        bounds = np.linspace(0, self.width, n_workers + 1).round().astype(int)  # as even as can be, in env order
        self.slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        snapshots = snapshot.workers if snapshot is not None else [None] * n_workers
        vectorization = "sync" if opts.vectorization == "auto" else opts.vectorization
        actor = self.ray.remote(num_cpus=1, max_restarts=0)(OnPolicyWorker)
        sys_path = (os.getcwd(),)

        def spawn(i: int, restarts: int) -> Any:
            cols = self.slices[i]
            return actor.remote(
                maker,
                algo.cfg,
                algo.uses_critic,
                cols.start,
                cols.stop - cols.start,
                self.width,
                opts.seed,
                vectorization,
                restart=(i, restarts) if restarts else None,
                snapshot=snapshots[i] if not restarts else None,
                sys_path=sys_path,
            )

        self.workers = WorkerSet(spawn, n_workers, "Ray")
        self.model, self.normalizer = algo.model, algo.obs_normalizer
        self.version, self.sent_batch = 0, None
        self.sent: list[int] = [-1] * n_workers  # the policy version each worker holds
        self.last_obs: list[Any] = [None] * n_workers  # each worker's envs' last raw observation (for a restart)
        self.bytes_out = self.bytes_in = 0  # what crossed to and from the workers (docs/ray.md)
        self.rounds = 0
        self.env_steps = rollout.env_steps  # the rollout's count after the last round
        self.cut = rollout._cut_episodes  # ends a lost worker's episodes in the rollout's rows
        algo.env_snapshot = self.env_snapshot
        algo.backend_report = self.report

    def _policy(self, batch: int) -> tuple[int, Any]:
        """(version, ObjectRef of (version, weights, statistics)): put in the object store once per change."""
        if self.sent_batch != batch:
            self.version += 1
            self.sent_batch = batch
            weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            statistics = None if self.normalizer is None else self.normalizer.state_dict()
            self.payload_bytes = _nbytes(weights) + _nbytes(statistics)
            self.policy_ref = self.ray.put((self.version, weights, statistics))
        return self.version, self.policy_ref

    def collect(
        self, policy: Any, steps: int, *, piece: Any = None, batch: int, t: int, env_steps: int, **_: Any
    ) -> Piece:
        version, ref = self._policy(batch)
        args = []
        for i in range(len(self.slices)):
            args.append((ref if self.sent[i] != version else None, steps, batch, t, env_steps))
            if self.sent[i] != version:
                self.bytes_out += self.payload_bytes
        pieces, restarted = self.workers.call("collect", args, on_restart=lambda i: (ref, steps, batch, t, env_steps))
        self._lost(restarted)  # before the Rollout writes the new rows: the cut is at the last row written
        self.rounds += 1
        self.sent = [version] * len(self.slices)
        whole = _side_by_side(pieces, time.perf_counter())
        for i, p in enumerate(pieces):
            self.last_obs[i] = p.next_obs
        self.bytes_in += sum(_nbytes(vars(p)) for p in pieces)
        self.env_steps = env_steps + whole.steps * self.width
        return whole

    def _lost(self, restarted: list[int]) -> None:
        """The episodes of restarted workers' envs end at the last row they delivered (truncated, bootstrapping
        from the last observation they sent); their new envs start fresh ones."""
        for i in sorted(set(restarted)):
            if self.last_obs[i] is not None:
                self.cut(self.slices[i], self.last_obs[i])
            self.last_obs[i] = None

    def state_dict(self) -> dict[str, Any]:
        """The workers' envs' positions side by side (a worker restarted meanwhile starts its envs first), and
        the restart counts (a restarted worker's reset stream is numbered by them)."""
        states, restarted = self.workers.call(
            "state", [(self.env_steps,)] * len(self.slices), on_restart=lambda i: (self.env_steps,)
        )
        self._lost(restarted)
        for i in restarted:
            self.last_obs[i] = states[i]["next_obs"]
        keys = ("next_obs", "prev_done", "ep_return", "ep_length")
        return {
            **{key: _concat([s[key] for s in states], axis=0) for key in keys},
            "ray_restarts": self.workers.restarts,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = ("next_obs", "prev_done", "ep_return", "ep_length")
        parts = [{key: _rows(state[key], cols) for key in keys} for cols in self.slices]
        self.env_steps = state["env_steps"]
        self.workers.restarts = list(state["ray_restarts"])
        self.last_obs = [part["next_obs"] for part in parts]
        # a worker lost here comes back with fresh envs: no position to load, its episodes end at the last row
        _, restarted = self.workers.call(
            "load_state", [(part,) for part in parts], on_restart=lambda i: ({**parts[i], "next_obs": None},)
        )
        self._lost(restarted)

    def forget(self) -> None:
        """Fresh episodes: the workers were made fresh (no snapshot), so their envs reset at the first collect."""

    @property
    def next_obs(self) -> Any:
        return None if any(obs is None for obs in self.last_obs) else _concat(self.last_obs, axis=0)

    def env_snapshot(self) -> bytes | None:
        """Each worker's envs pickled; None (a resume then starts fresh episodes) if one cannot be, or if a worker
        was lost since `state_dict` took the positions the snapshot must match."""
        snapshots, restarted = self.workers.call("snapshot", [()] * len(self.slices))
        self._lost(restarted)
        if restarted or any(s is None for s in snapshots):
            return None
        return pickle.dumps(RayEnvSnapshot(snapshots))

    def report(self) -> dict[str, Any]:
        """summary.json's "backend": the workers, where they ran, the rounds, and what crossed the network."""
        return {
            **self.workers.report(),
            "envs_per_worker": [cols.stop - cols.start for cols in self.slices],
            "rounds": self.rounds,
            "bytes_to_workers": self.bytes_out,
            "bytes_from_workers": self.bytes_in,
        }

    def close(self) -> None:
        self.workers.close()
        release()


def attach(algo: Any, opts: Any, maker: Any, snapshot: RayEnvSnapshot | None) -> None:
    """Make `algo` (an OnPolicyAgent) collect on Ray workers."""
    connect(opts.ray_address, opts.workers)
    algo.rollout.source = RayCollector(algo, opts, maker, snapshot)


# ---------------------------------------------------------------- pieces side by side
def _nbytes(tree: Any) -> int:
    """The bytes of the arrays and tensors in a tree (what a message carries, give or take its framing)."""
    if isinstance(tree, dict):
        return sum(_nbytes(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_nbytes(v) for v in tree)
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, np.ndarray):
        return tree.nbytes
    return 8 if isinstance(tree, (int, float)) else 0


def _concat(parts: list[Any], axis: int) -> Any:
    first = parts[0]
    if isinstance(first, dict):
        return {key: _concat([p[key] for p in parts], axis) for key in first}
    if isinstance(first, torch.Tensor):
        return torch.cat(parts, dim=axis)
    return np.concatenate([np.asarray(p) for p in parts], axis=axis)


def _rows(x: Any, cols: slice) -> Any:
    if isinstance(x, dict):
        return {key: _rows(value, cols) for key, value in x.items()}
    return None if x is None else x[cols].copy()


def _side_by_side(pieces: list[Piece], now: float) -> Piece:
    """The workers' pieces as one piece of the rollout's whole width (envs in worker order)."""
    steps = pieces[0].steps
    raw = None
    if pieces[0].raw_obs is not None:
        raw = [_concat([p.raw_obs[j] for p in pieces], axis=0) for j in range(steps)]
    return Piece(
        steps,
        _concat([p.obs for p in pieces], axis=1),
        raw,
        torch.cat([p.actions for p in pieces], dim=1),
        torch.cat([p.log_probs for p in pieces], dim=1),
        torch.cat([p.values for p in pieces], dim=1),
        np.concatenate([p.rewards for p in pieces], axis=1),
        np.concatenate([p.terminated for p in pieces], axis=1),
        np.concatenate([p.truncated for p in pieces], axis=1),
        np.concatenate([p.valid for p in pieces], axis=1),
        _concat([p.next_obs for p in pieces], axis=0),
        # the learner's clock: a worker's perf_counter means nothing here
        [(row, env, ret, length, now) for p in pieces for row, env, ret, length, _ in p.episodes],
    )
