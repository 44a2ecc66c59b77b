"""A3C with `--backend ray --workers N`: the workers are Ray actors, θ and the optimizer a parameter actor.

Each worker actor runs A3C's own worker loop (deeprl.algos.a3c._worker_loop, in a thread of the actor): its
own env, n-step rollouts of at most t_max steps, the gradient of the actor-critic loss. It pushes the gradient
to the parameter actor, which applies it with the optimizer (RMSProp or Adam, as --optimizer says) as it
arrives and answers with the fresh θ, which the worker copies into θ' for its next rollout. That one round
trip per rollout also reports the env steps and episodes the worker finished since the last, and asks for its
next steps: the parameter actor counts T, the run's env steps, and hands out at most `target - T` of them,
t_max at a time. `learn(n)` raises the target by n and waits until every worker has run out of steps and
paused (mid-rollout if it must), so the driver's evaluations and checkpoints land on exact env steps with a
quiescent θ, which it then copies from the parameter actor (weights and optimizer statistics) into its own
model: evaluations, checkpoints and resume work as with the local A3C. The budget is met exactly.

Asynchronous by definition: which worker's gradient arrives first is decided by the OS and the network, so a
run with 2+ workers is neither deterministic nor equal to the local backend's. With --workers 1 there is no
race: the run equals the local A3C's with --workers 1 (tests/test_ray_a3c.py). An episode's env step is T when the
worker reported it plus its offset in that report (a report covers one rollout, so it is exact to within
the other workers' rollouts); its time is the parameter actor's clock (time.time) at the report, which across
machines assumes their clocks agree (NTP).

A worker that dies (killed, its node lost) or whose env raised is replaced (`ray_runtime.WorkerSet`: a warning
names it) by a fresh one with fresh episodes from its own seed stream (rank, env steps at the pool's start,
restarts); the steps it had taken since its last report are not counted, and the replacement takes them
again, so the budget stays exact. A worker that fails three times in a row stops the run (WorkerError: the
last checkpoint is kept). A non-finite loss stops the run as a divergence, as locally. A checkpoint holds θ,
the optimizer's statistics and the counters; a resumed run starts fresh episodes in new workers, as the
local A3C does.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from deeprl.backends.ray_runtime import WorkerSet, connect, release, require_ray, worker_process_setup
from deeprl.errors import DivergenceError
from deeprl.protocol import Episode
from deeprl.workers import SharedParameters


class ParameterServer:
    """A Ray actor: θ and the optimizer (a SharedParameters, as the local A3C's), the env-step counter T and
    the grants of steps to workers, and the episodes reported since the driver last drained them. Its
    methods run one at a time, so each report and each gradient is applied whole."""

    def __init__(self) -> None:
        torch.set_num_threads(1)

    def reset(self, theta: SharedParameters, counters: tuple[int, int, int]) -> None:
        """θ and the optimizer's statistics as the driver has them, and its counters: a new pool starts."""
        self.theta = theta
        self.env_steps, self.episodes, self.updates = counters
        self.target = self.env_steps
        self.granted: dict[int, int] = {}  # per worker: steps granted and not yet reported as taken
        self.finished: list[Episode] = []

    def where(self) -> tuple[int, str]:
        import ray

        return os.getpid(), ray.util.get_node_ip_address()

    def set_target(self, target: int) -> None:
        self.target = target

    def exchange(
        self, rank: int, grads: list[torch.Tensor] | None, taken: int, episodes: list[tuple], want: int
    ) -> tuple[list[torch.Tensor], int, int]:
        """A worker's report: apply its gradient (if any), count the steps it took and the episodes it finished
        (each as (steps into the report, return, length)); grant it up to `want` more steps. Returns (θ, the
        steps granted, T)."""
        if grads is not None:
            self.theta.push(grads)
            self.updates += 1
        now = time.time()
        for offset, episode_return, length in episodes:
            self.episodes += 1
            self.finished.append(Episode(self.env_steps + offset, episode_return, length, now, (rank,)))
        self.env_steps += taken
        self.granted[rank] = self.granted.get(rank, 0) - taken
        grant = max(0, min(want, self.target - self.env_steps - sum(self.granted.values())))
        self.granted[rank] += grant
        return [p.detach() for p in self.theta.params], grant, self.env_steps

    def forget(self, rank: int) -> None:
        """Worker `rank` was lost: its unused grant is free again (the steps it took since its last report are
        not counted: they were never reported)."""
        self.granted[rank] = 0

    def drain(self) -> tuple[tuple[int, int, int], list[Episode]]:
        finished, self.finished = self.finished, []
        return (self.env_steps, self.episodes, self.updates), finished

    def state_dict(self) -> dict[str, Any]:
        return self.theta.state_dict()


class RayLink:
    """What a worker actor's loop holds of the pool: WorkerLink's side (claim_step, finish_episode, count_update,
    report_divergence) and SharedParameters' (pull, push), through the parameter actor. A push is one round
    trip that also reports the steps and episodes since the last and tops the worker's grant up to t_max; a
    claim with no grant left asks for one, and when none is given the loop pauses until the driver's next
    `run`."""

    def __init__(self, server: Any, rank: int, block: int):
        self.server, self.rank, self.block = server, rank, block
        self.granted = 0  # steps granted and not yet taken
        self.taken = 0  # steps taken since the last report
        self.episodes: list[tuple[int, float, int]] = []  # finished since the last report
        self.weights: list[torch.Tensor] | None = None  # θ as of the last report
        self.global_step = 0  # T as of the last report
        self.cond = threading.Condition()
        self.round = 0  # the driver's `run` calls so far
        self.paused_in = 0  # the round in which the loop last ran out of steps
        self.ended = False  # the loop returned or raised
        self.error: BaseException | None = None
        self.divergence: str | None = None

    # ---- WorkerLink's side
    def claim_step(self) -> int:
        while self.granted == 0:
            with self.cond:
                seen = self.round
            self._exchange(None)
            if self.granted == 0:  # the chunk's steps are all given out: pause until the next round
                with self.cond:
                    self.paused_in = seen
                    self.cond.notify_all()
                    while self.round == seen:
                        self.cond.wait()
        self.granted -= 1
        self.taken += 1
        return self.global_step + self.taken

    def finish_episode(self, episode: Episode) -> None:
        self.episodes.append((self.taken, episode.episode_return, episode.episode_length))

    def count_update(self) -> None:
        """The parameter actor counts the updates it applies."""

    def report_divergence(self, rank: int, message: str) -> None:
        self.divergence = message

    # ---- SharedParameters' side
    def pull(self, local_params: list[torch.Tensor]) -> None:
        if self.weights is None:
            self._exchange(None)
        with torch.no_grad():
            torch._foreach_copy_(local_params, self.weights)

    def push(self, grads: list[torch.Tensor]) -> None:
        self._exchange(grads)

    def _exchange(self, grads: list[torch.Tensor] | None) -> None:
        import ray

        want = max(0, self.block - self.granted)
        call = self.server.exchange.remote(self.rank, grads, self.taken, self.episodes, want)
        self.weights, grant, self.global_step = ray.get(call)
        self.granted += grant
        self.taken, self.episodes = 0, []


class A3CWorker:
    """A Ray actor: A3C's worker loop in a thread (from `begin`), taking the steps the parameter actor grants it.
    It is made before training starts (the driver's clock does not count a process start and its imports)."""

    def __init__(self, sys_path: tuple[str, ...] = ()):
        worker_process_setup(sys_path)
        import deeprl.algos.a3c  # noqa: F401 - the loop's imports, before the clock runs

    def begin(
        self, loop: Callable[..., None], rank: int, server: Any, args: tuple, stream: tuple[int, ...], block: int
    ) -> None:
        self.link = link = RayLink(server, rank, block)

        def main() -> None:
            try:
                loop(rank, link, link, *args, stream)  # the link is both the pool and θ
            except BaseException as e:  # noqa: BLE001 - the driver's next `run` raises it (and restarts the worker)
                link.error = e
            finally:
                with link.cond:
                    link.ended = True
                    link.cond.notify_all()

        threading.Thread(target=main, name=f"a3c-worker-{rank}", daemon=True).start()

    def where(self) -> tuple[int, str]:
        import ray

        return os.getpid(), ray.util.get_node_ip_address()

    def run(self) -> str | None:
        """Take steps until none are granted; returns the divergence message if the loop stopped on one."""
        link = self.link
        with link.cond:
            link.round += 1
            link.cond.notify_all()
            while link.paused_in != link.round and not link.ended:
                link.cond.wait()
        if link.error is not None:
            raise link.error
        return link.divergence


class RayA3CPool:
    """A3C's worker pool on Ray, with deeprl.workers.WorkerPool's interface (running, start, run, close):
    A3C.learn drives it as it drives the local one."""

    def __init__(self, address: str | None, n: int):
        """Ray is joined (deeprl.backends.attach_ray); the n worker actors start now, idle until `start`."""
        self.ray = require_ray()
        self.address = address
        self.workers: WorkerSet | None = None
        self.last_report: dict[str, Any] = {"name": "ray", "workers": n, "nodes": [], "restarts": [0] * n}
        self.server: Any = None
        self.env_steps = 0
        self.actor = self.ray.remote(num_cpus=1, max_restarts=0)(A3CWorker)
        self.sys_path = (os.getcwd(),)
        self.idle = [self.actor.remote(self.sys_path) for _ in range(n)]
        # no CPU held: it applies one small gradient at a time, and every CPU is a worker's
        self.server_actor = self.ray.remote(num_cpus=0, max_restarts=0)(ParameterServer)
        self.server = self.server_actor.remote()
        # started (processes and their imports) before the driver's clock runs
        self.ray.get([worker.where.remote() for worker in self.idle] + [self.server.where.remote()])

    @property
    def running(self) -> bool:
        return self.workers is not None

    def start(self, n: int, loop: Callable[..., None], args: tuple, counters: tuple[int, int, int]) -> None:
        """Start the parameter actor with θ and the optimizer's statistics as they are in `args[0]` (the
        driver's SharedParameters), and n workers running `loop(rank, link, link, *args[1:-1], stream)`."""
        connect(self.address, n)
        self.theta, *loop_args, stream = args
        cfg = loop_args[0]
        self.env_steps = counters[0]
        ray = self.ray
        if self.server is None:  # closed before: a new one
            self.server = self.server_actor.remote()
        ray.get(self.server.reset.remote(self.theta, counters))

        def spawn(i: int, restarts: int) -> Any:
            ray.get(self.server.forget.remote(i))
            worker = self.idle.pop() if self.idle and not restarts else self.actor.remote(self.sys_path)
            worker_stream = (*stream, restarts) if restarts else stream  # a restart plays fresh episodes
            worker.begin.remote(loop, i, self.server, tuple(loop_args), worker_stream, cfg.t_max)
            return worker

        try:
            self.workers = WorkerSet(spawn, n, "A3C")
        except BaseException:
            self._kill_server()
            raise

    def run(self, max_steps: int, max_episodes: int | None) -> tuple[tuple[int, int, int], list[Episode]]:
        """Let the workers take `max_steps` more env steps; returns the counters (env steps, episodes, updates)
        and the finished episodes in env-step order. θ and the optimizer's statistics are copied into the
        driver's model and optimizer. `max_episodes` is refused before the run starts (check_ray_options)."""
        ray = self.ray
        started = time.perf_counter()
        ray.get(self.server.set_target.remote(self.env_steps + max_steps))
        diverged, _ = self.workers.call("run", [()] * len(self.workers))
        counters, finished = ray.get(self.server.drain.remote())
        self.theta.load_state_dict(ray.get(self.server.state_dict.remote()))
        for message in diverged:
            if message is not None:
                raise DivergenceError(message)
        self.env_steps = counters[0]
        # the parameter actor's clock (time.time) as this process's perf_counter, which the driver's rows use
        now, offset = time.perf_counter(), time.perf_counter() - time.time()
        finished = [ep._replace(time=min(now, max(started, ep.time + offset))) for ep in finished]
        finished.sort(key=lambda ep: ep.env_steps)
        return counters, finished

    def _kill_server(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.ray.kill(self.server, no_restart=True)
            self.server = None

    def report(self) -> dict[str, Any]:
        """summary.json's "backend": the workers, their nodes and restarts (the last pool's, once closed)."""
        return self.workers.report() if self.workers is not None else self.last_report

    def close(self) -> None:
        """Stop the workers and the parameter actor, and leave Ray (as RayCollector.close does); idempotent."""
        if self.workers is not None:
            self.last_report = self.workers.report()
            self.workers.close()
            self.workers = None
        for worker in self.idle:
            with contextlib.suppress(Exception):
                self.ray.kill(worker, no_restart=True)
        self.idle = []
        self._kill_server()
        release()
