"""Callbacks: your code at the events of a training run, in the Python API.

    class PrintBest(deeprl.Callback):
        def on_eval(self, info):
            if info.is_best:
                print(f"new best {info.mean_return:.1f} at {info.env_steps} env steps")

    deeprl.train("ppo", "CartPole-v1", callbacks=[PrintBest(), deeprl.EarlyStopOnPlateau(patience=5)])

The hooks, each given a small frozen record (all of them carry `env_steps`, `episodes`, `train_wall_s`
and `run_dir`):

| hook            | when                                                              | record           |
|-----------------|-------------------------------------------------------------------|------------------|
| `on_step`       | after each chunk of env steps the driver runs (not every env step) | `StepInfo`       |
| `on_episode`    | each finished training episode (called after its chunk)           | `EpisodeInfo`    |
| `on_eval`       | each periodic evaluation, and the final one                       | `EvalInfo`       |
| `on_checkpoint` | each checkpoint written (periodic, `SaveEvery`, the last one)     | `CheckpointInfo` |

The driver runs `algo.learn` in chunks of at most `deeprl.driver.MAX_CHUNK` env steps, ending one at every
evaluation and checkpoint, so that those land on exact env steps; the hooks run between chunks, never inside
the algorithm's step loop (which allocates nothing per step). A hook returning `False` (exactly False: None
goes on) stops the run at the end of the current chunk: the driver writes a checkpoint, runs the final
evaluation and writes summary.json with `"stopped": "callback"` and `"stopped_by": "<name>.<hook>"`. Such a
run continues with `deeprl.resume(run_dir)` (or `deeprl train --resume`) to its own budget, or to a larger
one, exactly as if it had not stopped. A hook that raises stops the run as a crash would: the last
checkpoint stays, and the `CallbackError` names the callback and the hook (the original exception is its
`__cause__`).

A plain function works too: it is given every record, and tells them apart by type
(`isinstance(info, deeprl.EvalInfo)`). Callbacks are Python objects, not run options: config.json does not
record them, and a resume runs with the callbacks it is given (none by default). A callback's own state
(EarlyStopOnPlateau's count) starts afresh in each process.

Calling a hook costs nothing the metrics can see: a run with callbacks that return None writes the same
metrics.csv as one without. `SaveEvery` ends chunks at its multiples, which changes no metric either: the
algorithms learn the same from any split of their env steps (the property exact resume rests on).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deeprl.errors import UsageError

HOOKS = ("on_step", "on_episode", "on_eval", "on_checkpoint")


@dataclass(frozen=True)
class StepInfo:
    """`on_step`: a chunk of training finished."""

    env_steps: int
    """Env steps trained so far (summed over parallel envs)."""
    episodes: int
    """Training episodes finished so far."""
    train_wall_s: float
    """Seconds of training so far (evaluation excluded), over every process of a resumed run."""
    run_dir: Path
    steps: int
    """Env steps this chunk ran."""
    steps_per_s: float
    """This chunk's speed."""
    mean_recent_return: float | None
    """Mean return of the last (up to) 100 training episodes; None before the first ends."""


@dataclass(frozen=True)
class EpisodeInfo:
    """`on_episode`: a training episode finished (the hook runs once its chunk is done)."""

    env_steps: int
    """The env step at which the episode ended."""
    episodes: int
    """Training episodes finished, this one included."""
    train_wall_s: float
    """Seconds of training when the episode ended (as metrics.csv's wall_time_s)."""
    run_dir: Path
    episode_return: float
    episode_length: int
    metrics: Mapping[str, float]
    """The algorithm's own columns of metrics.csv for this episode (epsilon, losses...; NaN before the first update)."""


@dataclass(frozen=True)
class EvalInfo:
    """`on_eval`: an evaluation (deterministic policy, `eval_episodes` episodes) finished."""

    env_steps: int
    episodes: int
    train_wall_s: float
    run_dir: Path
    mean_return: float
    std_return: float
    eval_episodes: int
    is_best: bool
    """This evaluation's policy is the run's best so far (saved as policy_best.safetensors)."""
    best_mean_return: float
    """The best mean return so far (this one's if is_best)."""
    periodic: bool
    """False for the final evaluation after training ends (when the last periodic evaluation is not at the
    last env step already); returning False from it changes nothing."""


@dataclass(frozen=True)
class CheckpointInfo:
    """`on_checkpoint`: a checkpoint was written (atomically) and is on disk."""

    env_steps: int
    episodes: int
    train_wall_s: float
    run_dir: Path
    path: Path
    """The resume state's folder (run_dir/resume/...); the next checkpoint replaces it."""
    policy_path: Path
    """The policy at this checkpoint (run_dir/policy.safetensors; the next checkpoint overwrites it: copy it
    to keep it)."""


class Callback:
    """Base class: override the hooks you need; each returns None to go on or False to stop the run.

    `save_every`: env steps between the extra checkpoints this callback asks for (None: none). The driver
    ends a chunk at each multiple and writes a checkpoint there, then calls `on_checkpoint`.
    """

    save_every: int | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def on_step(self, info: StepInfo) -> bool | None:
        return None

    def on_episode(self, info: EpisodeInfo) -> bool | None:
        return None

    def on_eval(self, info: EvalInfo) -> bool | None:
        return None

    def on_checkpoint(self, info: CheckpointInfo) -> bool | None:
        return None


class EarlyStopOnPlateau(Callback):
    """Stop when `patience` periodic evaluations in a row have not raised the best mean return by more than
    `min_delta`. Counts the evaluations of this process: a resumed run starts counting afresh."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise UsageError(f"EarlyStopOnPlateau(patience=...) must be a whole number >= 1, got {patience!r}.")
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, (int, float))
            or not math.isfinite(min_delta)
            or min_delta < 0
        ):
            raise UsageError(f"EarlyStopOnPlateau(min_delta=...) must be a finite number >= 0, got {min_delta!r}.")
        self.patience, self.min_delta = patience, float(min_delta)
        self.best: float | None = None
        self.without_improvement = 0

    def on_eval(self, info: EvalInfo) -> bool | None:
        if not info.periodic:
            return None
        if self.best is None or info.mean_return > self.best + self.min_delta:
            self.best, self.without_improvement = info.mean_return, 0
            return None
        self.without_improvement += 1
        return False if self.without_improvement >= self.patience else None

    def __repr__(self) -> str:
        return f"EarlyStopOnPlateau(patience={self.patience}, min_delta={self.min_delta})"


class SaveEvery(Callback):
    """A checkpoint every `n_steps` env steps, at exact multiples, besides `--checkpoint-every`'s. Each one
    replaces the last (one resume state is kept); copy `info.policy_path` in an `on_checkpoint` of your
    own to keep them all."""

    def __init__(self, n_steps: int):
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise UsageError(f"SaveEvery(n_steps) must be a whole number of env steps >= 1, got {n_steps!r}.")
        self.save_every = n_steps

    def __repr__(self) -> str:
        return f"SaveEvery({self.save_every})"


class CallbackError(RuntimeError):
    """A callback raised: the run stopped as a crash would (its last checkpoint stays). The message names the
    callback and the hook; the callback's exception is the `__cause__`."""


class CallbackList:
    """The driver's side: checks the callbacks given (before any file is written), calls each hook on each,
    and remembers the first that asked to stop."""

    def __init__(self, callbacks: Iterable[Any] | Any = ()):
        if callbacks is None:
            callbacks = ()
        if isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable) or isinstance(callbacks, str):
            callbacks = (callbacks,)
        self.callbacks = list(callbacks)
        self.hooks: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {hook: [] for hook in HOOKS}
        self.save_every: list[int] = []
        for cb in self.callbacks:
            if isinstance(cb, type):
                raise UsageError(
                    f"callbacks=[{cb.__name__}] is a class; pass an instance, e.g. callbacks=[{cb.__name__}(...)]."
                )
            has_hooks = [hook for hook in HOOKS if callable(getattr(cb, hook, None))]
            if has_hooks:
                name = getattr(cb, "name", None)
                name = name if isinstance(name, str) and name else type(cb).__name__
                for hook in has_hooks:
                    method = getattr(cb, hook)
                    # Skip Callback's own no-op hooks: a record is built only for a hook someone overrides.
                    if getattr(method, "__func__", None) is not getattr(Callback, hook):
                        self.hooks[hook].append((name, method))
                every = getattr(cb, "save_every", None)
                if every is not None:
                    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                        raise UsageError(f"{name}.save_every must be a whole number >= 1 or None, got {every!r}.")
                    self.save_every.append(every)
            elif callable(cb):
                name = getattr(cb, "__name__", None) or type(cb).__name__
                for hook in HOOKS:
                    self.hooks[hook].append((name, cb))
            else:
                raise UsageError(
                    f"callbacks holds {cb!r}, which is neither a deeprl.Callback (or an object with "
                    f"{', '.join(HOOKS)} methods) nor a function. Subclass deeprl.Callback and override the hooks you need."
                )
        self.stopped_by: str | None = None

    def wants(self, hook: str) -> bool:
        return bool(self.hooks[hook])

    def __call__(self, hook: str, info: Any) -> None:
        for name, fn in self.hooks[hook]:
            try:
                answer = fn(info)
            except Exception as e:  # noqa: BLE001 (KeyboardInterrupt and SystemExit go through untouched)
                raise CallbackError(
                    f"The callback {name} raised {type(e).__name__} in {hook} at env step {info.env_steps}: {e}"
                ) from e
            if answer is False and self.stopped_by is None:
                self.stopped_by = f"{name}.{hook}" if hasattr(fn, "__self__") else name

    def next_save(self, env_steps: int) -> int | None:
        """The env step of the next checkpoint a callback asked for (after `env_steps`), or None."""
        return min(((env_steps // n + 1) * n for n in self.save_every), default=None)
