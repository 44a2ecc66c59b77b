"""Worker processes that train one shared model (A3C's Hogwild workers): the pool, the shared step
counter the workers pause on, the queues that bring finished episodes and failures to the parent, the
optimizer whose statistics live in shared memory, and crash detection. deeprl/algos/a3c.py keeps the
algorithm (what a worker does between two steps of the counter); this module knows nothing of it.

The protocol: every worker calls `link.claim_step()` before each env step. `WorkerPool.run(n)` raises
the counter's target by n and returns once every worker is paused at the target, so the parent sees a
quiescent model at an exact env step (for evaluations and checkpoints). The pool starts once and is
reused across `run` calls; `close()` stops it. A worker that raises, reports a divergence or dies
(even inside the shared lock, even by SIGKILL) stops the pool and raises in the parent within a second.
"""

from __future__ import annotations

import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp

from deeprl.errors import DivergenceError, WorkerError
from deeprl.protocol import Episode

NO_LIMIT = 2**62
POLL_S = 0.1  # how often the parent checks for a crashed worker while it waits


class WorkerLink:
    """What a worker holds of its pool: the shared counters and the condition workers pause on (every
    counter is guarded by `cond`), and the queues to the parent. Picklable into a new process."""

    def __init__(self, ctx: Any, env_steps: int, episodes: int, updates: int):
        self.cond = ctx.Condition()
        self.steps = ctx.RawValue("q", env_steps)  # T, the paper's global step counter
        self.step_target = ctx.RawValue("q", env_steps)  # workers pause when T reaches it
        self.episodes = ctx.RawValue("q", episodes)
        self.episode_target = ctx.RawValue("q", NO_LIMIT)
        self.updates = ctx.RawValue("q", updates)
        self.paused = ctx.RawValue("i", 0)
        self.stop = ctx.RawValue("b", 0)
        # Workers post it as they pause. The parent waits on it, not on `cond`: Condition.wait takes the
        # lock back without a timeout, and a worker killed while holding the lock would hang the parent.
        self.wakeup = ctx.Semaphore(0)
        self.finished, self.errors = ctx.Queue(), ctx.Queue()

    def claim_step(self) -> int:
        """T ← T + 1 and return T; wait while the chunk is done; 0 when the pool is stopping."""
        with self.cond:
            while not self.stop.value and (
                self.steps.value >= self.step_target.value or self.episodes.value >= self.episode_target.value
            ):
                self.paused.value += 1
                self.wakeup.release()  # the parent waits for every worker to pause
                self.cond.wait()
                self.paused.value -= 1
            if self.stop.value:
                return 0
            self.steps.value += 1
            return self.steps.value

    def finish_episode(self, episode: Episode) -> None:
        with self.cond:
            self.episodes.value += 1
            self.finished.put(episode)

    def count_update(self) -> None:
        with self.cond:
            self.updates.value += 1

    def report_divergence(self, rank: int, message: str) -> None:
        """The worker stops after this: the parent raises DivergenceError(message)."""
        self.errors.put((rank, "diverged", message))


def shared_optimizer(
    model: torch.nn.Module, kind: str, lr: float, *, rmsprop_alpha: float = 0.99, eps: float = 1e-8
) -> torch.optim.Optimizer:
    """RMSProp or Adam whose statistics are created now and moved to shared memory, so that every
    worker's `step()` updates the same g (the A3C paper's "shared RMSProp") instead of a private copy."""
    params = list(model.parameters())
    if kind == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=lr, alpha=rmsprop_alpha, eps=eps)
        keys = ("square_avg",)
    elif kind == "adam":
        opt = torch.optim.Adam(params, lr=lr, eps=eps)
        keys = ("exp_avg", "exp_avg_sq")
    else:
        raise ValueError(f"the shared optimizer must be 'rmsprop' or 'adam', got {kind!r}")
    for p in params:  # torch creates the state lazily at the first step; create it here, in shared memory
        opt.state[p]["step"] = torch.zeros((), dtype=torch.float32).share_memory_()
        for key in keys:
            opt.state[p][key] = torch.zeros_like(p, memory_format=torch.preserve_format).share_memory_()
    return opt


class SharedParameters:
    """θ and its optimizer in shared memory (`shared_optimizer`), as A3C's workers see them: a worker pulls
    θ' ← θ and pushes its gradient, which the shared optimizer applies to θ without a lock (Hogwild). Ray's
    parameter actor holds one of these too (deeprl.backends.ray_a3c), and workers there pull and push through it."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer
        self.params = list(model.parameters())

    def pull(self, local_params: list[torch.Tensor]) -> None:
        """θ' ← θ."""
        with torch.no_grad():
            torch._foreach_copy_(local_params, self.params)

    def push(self, grads: list[torch.Tensor]) -> None:
        """θ ← θ - step(dθ) by the shared optimizer, with no lock around it."""
        for p in self.params:
            if p.grad is None:  # this process's gradient slot for the shared θ
                p.grad = torch.zeros_like(p)
        torch._foreach_copy_([p.grad for p in self.params], grads)
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        opt = self.optimizer.state_dict()
        return {
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimizer": {
                "state": {i: {k: v.clone() for k, v in s.items()} for i, s in opt["state"].items()},
                "param_groups": opt["param_groups"],
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """In place (copy_): the tensors stay in the shared memory the workers see."""
        self.model.load_state_dict(state["model"])
        for i, p in enumerate(self.params):
            for key, value in state["optimizer"]["state"][i].items():
                self.optimizer.state[p][key].copy_(value)


def _worker_main(loop: Callable[..., None], rank: int, link: WorkerLink, args: tuple) -> None:
    """A worker process: `loop(rank, link, *args)` until the pool stops; any failure goes to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it finishes the chunk and saves
    torch.set_num_threads(1)  # one core per worker; also avoids a forked OpenMP pool
    try:
        loop(rank, link, *args)
    except BaseException:  # noqa: BLE001 - any failure must reach the parent, which stops the others
        link.errors.put((rank, "error", traceback.format_exc()))


class WorkerPool:
    """The parent's side: starts `n` workers running `loop`, drives them chunk by chunk, stops them."""

    def __init__(self, start_method: str, label: str):
        self.label = label  # names the workers in errors: "A3C worker 1 failed (...)"
        self._ctx = mp.get_context(start_method)
        self.procs: list[Any] = []
        self.link: WorkerLink | None = None

    @property
    def running(self) -> bool:
        return bool(self.procs)

    def start(self, n: int, loop: Callable[..., None], args: tuple, counters: tuple[int, int, int]) -> None:
        """Start n processes running loop(rank, link, *args); `counters` = (env steps, episodes, updates)."""
        self.link = WorkerLink(self._ctx, *counters)
        for rank in range(n):
            p = self._ctx.Process(
                target=_worker_main,
                name=f"deeprl-{self.label.lower()}-worker-{rank}",
                daemon=True,
                args=(loop, rank, self.link, args),
            )
            p.start()
            self.procs.append(p)

    def run(self, max_steps: int, max_episodes: int | None) -> tuple[tuple[int, int, int], list[Episode]]:
        """Let the workers take `max_steps` more env steps (or finish `max_episodes` more episodes) and wait
        until all are paused; returns the counters (env steps, episodes, updates) and the finished episodes
        in env-step order."""
        link = self.link
        self.check()  # before notify_all, which would wait forever on a dead worker
        self._lock()
        try:
            start_episodes = link.episodes.value
            link.step_target.value = link.steps.value + max_steps
            link.episode_target.value = NO_LIMIT if max_episodes is None else start_episodes + max_episodes
            link.cond.notify_all()
        finally:
            link.cond.release()
        finished: list[Episode] = []
        while True:
            self._lock()
            try:
                done = link.paused.value == len(self.procs) and (
                    link.steps.value >= link.step_target.value or link.episodes.value >= link.episode_target.value
                )
                counters = link.steps.value, link.episodes.value, link.updates.value
            finally:
                link.cond.release()
            self._drain(finished, counters[1] - start_episodes, block=done)
            self.check()
            if done:
                break
            link.wakeup.acquire(timeout=POLL_S)  # until a worker pauses (or the next check for crashes)
        finished.sort(key=lambda ep: ep.env_steps)  # workers report out of order
        return counters, finished

    def check(self) -> None:
        """Raise (after stopping the pool) if a worker reported an error or a divergence, or died."""
        dead = [(r, p.exitcode) for r, p in enumerate(self.procs) if p.exitcode is not None]
        try:  # a worker that reported an error exits at once: after its death its report is readable
            rank, kind, message = self.link.errors.get(timeout=0.5) if dead else self.link.errors.get_nowait()
        except queue.Empty:
            if not dead:
                return
            rank, code = dead[0]
            kind, message = (
                "error",
                f"it exited with code {code} (killed by signal {-code})" if code < 0 else f"it exited with code {code}",
            )
        self.close()
        if kind == "diverged":
            raise DivergenceError(message)
        print(f"{self.label} worker {rank} failed:\n{message.rstrip()}", file=sys.stderr)
        raise WorkerError(
            f"{self.label} worker {rank} failed ({message.strip().splitlines()[-1]}); the other workers were shut down"
        )

    def close(self) -> None:
        """Stop the workers (they finish their env step or update first) and join them; idempotent."""
        if not self.procs:
            return
        link = self.link
        # A dead worker breaks the Condition (notify_all waits for every sleeper, the dead one too, and
        # one killed inside the lock never releases it): then skip the graceful stop and terminate below.
        if all(p.exitcode is None for p in self.procs) and link.cond.acquire(timeout=1.0):
            link.stop.value = 1
            link.cond.notify_all()
            link.cond.release()
        deadline = time.monotonic() + 2.0
        for p in self.procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():  # stuck in a slow env step: no need to wait for it
                p.terminate()
                p.join(1.0)
            if p.is_alive():
                p.kill()
                p.join()
        for q in (link.finished, link.errors):
            q.cancel_join_thread()
            q.close()
        self.procs = []

    def _lock(self) -> None:
        """Take the shared lock, checking on the workers while it is busy: one killed inside it never
        releases it (then check() raises)."""
        while not self.link.cond.acquire(timeout=1.0):
            self.check()

    def _drain(self, finished: list[Episode], expected: int, block: bool) -> None:
        while len(finished) < expected:
            try:
                finished.append(self.link.finished.get(timeout=POLL_S) if block else self.link.finished.get_nowait())
            except queue.Empty:
                if not block:
                    return
                self.check()
