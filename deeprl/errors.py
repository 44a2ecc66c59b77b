"""Errors a user can fix.

`UsageError` is a `ValueError` whose message is written for a person: what was given, what is
allowed, and what to do. The CLI prints it as one paragraph and exits non-zero without a
traceback; any other exception is a bug in deeprl and keeps its traceback.
"""

from __future__ import annotations

import difflib
import signal
import threading
from collections.abc import Iterable
from typing import Any


class UsageError(ValueError):
    """Bad input (unknown name, wrong space, invalid hyperparameter, missing run directory)."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite value; the last good checkpoint is kept."""


class WorkerError(RuntimeError):
    """A worker process of a multi-process algorithm (A3C) failed; the others were stopped and the
    last good checkpoint is kept."""


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Candidates that look like `name` (case-insensitive), best first."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    # Substring hits catch "cartpole" -> "CartPole-v1", which difflib ranks low.
    hits += [c for c in lowered if name.lower() in c and c not in hits][: max(0, n - len(hits))]
    return [lowered[h] for h in hits]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    hits = close_matches(name, candidates)
    return f" Did you mean {', '.join(repr(h) for h in hits)}?" if hits else ""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a run after saving it; the CLI exits with 128 + the signal number
    (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process killed by that signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class SignalScope:
    """Inside `with`, SIGINT and SIGTERM go to `self._handle` (a subclass says what they do) and `signum`
    holds the first one; the previous handlers come back on exit. Only the main thread can install handlers,
    so elsewhere the scope does nothing. Shared by a run's graceful stop (driver) and `--seeds` (seeds)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
