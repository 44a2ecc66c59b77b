"""Ray for `--backend ray`: start a local runtime or join a cluster, and keep a set of worker actors alive.

Without `--ray-address`, a local Ray runtime starts for the run: bound to 127.0.0.1, no dashboard, one CPU per
core (or per worker, if more workers were asked for), and it stops when the run closes. With an address
(`ray start --head` prints it), the run joins that cluster and leaves it running. Either way each worker is
an actor holding one CPU.

`WorkerSet` calls a method on every worker and returns the results in worker order. A worker whose process
died (killed, out of memory, its node lost) or whose method raised (an env that threw) is replaced by a new
actor built by the set's `spawn(index, restarts)`, and its call is made again; a warning names the worker,
where it ran and the cause. A worker that fails `max_failures` times in a row stops the run (WorkerError:
the driver keeps the last good checkpoint).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from deeprl.errors import UsageError, WorkerError

_CONNECTED_HERE: list[bool] = []  # Ray was initialised by deeprl for this run (and is shut down in `release`)


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install 'deeprl[ray]' (or pip install 'ray>=2.10').") from None
    return ray


def connect(address: str | None, workers: int) -> Any:
    """Start a local Ray runtime (address None) or join the cluster at `address`; check it has a CPU per worker.
    Returns the ray module."""
    ray = require_ray()
    if not ray.is_initialized():
        # ray.init replaces the SIGTERM handler with one that exits with status 15; the run's own handling
        # (save, then exit 143) is installed around its training loop, and outside it SIGTERM keeps its meaning
        sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        try:
            if address is None:
                ray.init(
                    address="local",  # a new runtime, even where `ray start` runs a cluster on this machine
                    num_cpus=max(os.cpu_count() or 1, workers),
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",  # loopback only: nothing outside this machine can reach it
                    logging_level=logging.WARNING,
                )
            else:
                ray.init(address=address, logging_level=logging.WARNING)
            _CONNECTED_HERE.append(True)
            if sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UsageError(
                f"Could not join the Ray cluster at {address!r} ({type(e).__name__}: {str(e)[:300]}). Start one with "
                "`ray start --head` and pass the address it prints (e.g. --ray-address 10.0.0.1:6379), or drop "
                "--ray-address to start a local Ray runtime."
            ) from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if workers > cpus:
        release()
        raise UsageError(
            f"--workers {workers} needs {workers} CPUs (one per worker) and the Ray cluster has {cpus}. Use "
            f"--workers {max(cpus, 1)} or fewer, or add nodes (`ray start --address ...`)."
        )
    return ray


def cluster_cpus() -> int:
    """The CPUs of the running cluster (what `--workers` defaults to)."""
    return int(require_ray().cluster_resources().get("CPU", 1))


def release() -> None:
    """Stop the local runtime the run started, or leave the cluster it joined (which keeps running). Ray that the
    caller had initialised before the run is left as it was."""
    if _CONNECTED_HERE:
        _CONNECTED_HERE.clear()
        require_ray().shutdown()


def ray_errors() -> tuple[type[BaseException], ...]:
    """What a call on a lost or failing worker raises: the actor died, is unreachable, or its method raised."""
    from ray import exceptions

    return tuple(
        getattr(exceptions, name)
        for name in ("RayActorError", "RayTaskError", "ActorUnavailableError", "ObjectLostError", "WorkerCrashedError")
        if hasattr(exceptions, name)
    )


class WorkerSet:
    """`n` actors built by `spawn(index, restarts)`, called together and replaced when they fail."""

    def __init__(self, spawn: Callable[[int, int], Any], n: int, label: str, max_failures: int = 3):
        self.ray = require_ray()
        self.spawn, self.label, self.max_failures = spawn, label, max_failures
        self.restarts = [0] * n
        self.failures = [0] * n  # consecutive
        self.actors = [spawn(i, 0) for i in range(n)]
        self.places = self.ray.get([actor.where.remote() for actor in self.actors])

    def __len__(self) -> int:
        return len(self.actors)

    def call(
        self, method: str, args: Sequence[tuple], on_restart: Callable[[int], tuple] | None = None
    ) -> tuple[list[Any], list[int]]:
        """`method(*args[i])` on each worker i; returns (results in worker order, the workers that were restarted
        for this call). `on_restart(i)` gives the arguments for worker i's call after a restart (default: the
        same)."""
        errors = ray_errors()
        refs = [getattr(actor, method).remote(*a) for actor, a in zip(self.actors, args)]
        results, restarted = [], []
        for i, ref in enumerate(refs):
            while True:
                try:
                    results.append(self.ray.get(ref))
                    self.failures[i] = 0
                    break
                except errors as e:
                    self._replace(i, e)
                    restarted.append(i)
                    call_args = on_restart(i) if on_restart is not None else args[i]
                    ref = getattr(self.actors[i], method).remote(*call_args)
        return results, restarted

    def _replace(self, i: int, error: BaseException) -> None:
        pid, node = self.places[i]
        self.failures[i] += 1
        cause = _cause(error)
        if self.failures[i] >= self.max_failures:
            self.close()
            raise WorkerError(
                f"{self.label} worker {i} (pid {pid} on {node}) failed {self.failures[i]} times in a row; the last "
                f"time: {cause}"
            )
        self.ray.kill(self.actors[i], no_restart=True)
        self.restarts[i] += 1
        print(
            f"warning: {self.label} worker {i} (pid {pid} on {node}) failed: {cause}. Restarted it from the current "
            f"weights with fresh episodes (restart {self.restarts[i]}; the run stops after {self.max_failures} "
            "failures in a row).",
            file=sys.stderr,
        )
        self.actors[i] = self.spawn(i, self.restarts[i])
        self.places[i] = self.ray.get(self.actors[i].where.remote())

    def report(self) -> dict[str, Any]:
        """summary.json's "backend" entries every Ray backend shares: the workers, their nodes, their restarts."""
        return {
            "name": "ray",
            "workers": len(self.places),
            "nodes": sorted({node for _, node in self.places}),
            "restarts": list(self.restarts),
        }

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already gone with its node
                self.ray.kill(actor, no_restart=True)
        self.actors = []


def _cause(error: BaseException) -> str:
    """One line on why a worker failed: the env's own exception where there is one, else Ray's reason."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300] if str(cause).strip() else ''}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def worker_process_setup(sys_path: Sequence[str] = ()) -> None:
    """What every worker does first: one torch thread (a worker holds one CPU), and the driver's working
    directory on the import path, where the user's env modules ('module:EnvId') are (on other machines, the
    module must be installed: docs/ray.md)."""
    import torch

    for path in sys_path:
        if path not in sys.path:
            sys.path.insert(0, path)
    torch.set_num_threads(1)


def worker_envs(maker: Any, n: int, vectorization: str, snapshot: bytes | None, sys_path: Sequence[str]) -> Any:
    """A worker's first steps: `worker_process_setup`, then its n envs, made from the run's recipe or restored
    from `snapshot`. The one place a worker unpickles: the bytes were written by a worker of this run, and the
    learner passes them on only after deeprl.rundir verified this user's signature on the resume state."""
    worker_process_setup(sys_path)
    if snapshot is not None:
        import pickle

        return pickle.loads(snapshot)
    return maker.make_vec(n, vectorization=vectorization)
