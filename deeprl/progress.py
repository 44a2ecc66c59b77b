"""The training progress bar (rich, in terminals and notebooks): steps/s of training, the time left,
recent return, last evaluation."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import numpy as np


def format_eta(seconds: float | None) -> str:
    """H:MM:SS as rich's own time columns write it; -:--:-- while there is nothing to estimate from."""
    if seconds is None or not np.isfinite(seconds):
        return "-:--:--"
    return str(timedelta(seconds=max(0, round(seconds))))


def _can_show(console: Any) -> bool:
    """A terminal, or a notebook with ipywidgets (rich draws a live bar in a notebook through an
    ipywidgets Output; without it rich only warns, so `auto` stays quiet there)."""
    if console.is_jupyter:
        import importlib.util

        return importlib.util.find_spec("ipywidgets") is not None
    return console.is_terminal


class ProgressDisplay:
    """A rich progress bar on stderr (`--progress auto`: only when it is a terminal or a notebook;
    `on`: always): done/total in the budget's unit (env steps, or episodes with an episode budget),
    elapsed time, ETA, training steps/s, mean return of the last 100 episodes, last evaluation.

    The ETA is the budget left at the pace of this session so far, in wall time (evaluations and
    checkpoints included, so it does not promise too little): remaining / done * elapsed, counted from
    when the bar opened, so a resumed run is timed by its own pace, not by the original run's. A run
    that stops early (--stop-when-solved) finishes before it."""

    def __init__(self, opts: Any, algo: str, state: Any, console: Any = None):
        from rich.console import Console

        self.state, self.opts = state, opts
        console = console if console is not None else Console(stderr=True)
        self.enabled = opts.progress == "on" or (opts.progress == "auto" and _can_show(console))
        self.bar = None
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.by_episodes = opts.total_steps is None
            self.bar = Progress(
                TextColumn(f"[bold]{algo}[/] {opts.env_id}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
                TextColumn("eta {task.fields[eta]}", style="progress.remaining"),
                TextColumn("{task.fields[info]}"),
                console=console,
                transient=False,
            )
            self.total = opts.episodes if self.by_episodes else opts.total_steps
            self.task = self.bar.add_task(
                "train",
                total=self.total,
                unit="episodes" if self.by_episodes else "steps",
                eta=format_eta(None),
                info="",
            )
            self._wall0, self._steps0 = state.train_wall_s, state.env_steps
            self._done0, self._clock0 = self._done(), time.monotonic()

    def _done(self) -> int:
        return self.state.episodes if self.by_episodes else self.state.env_steps

    def eta_s(self) -> float | None:
        """Seconds left at this session's pace; None before any progress (or without a budget)."""
        done = self._done() - self._done0
        if done <= 0 or self.total is None:
            return None
        return (self.total - self._done()) * (time.monotonic() - self._clock0) / done

    def update(self) -> None:
        if not self.enabled:
            return
        s = self.state
        rate = (s.env_steps - self._steps0) / max(s.train_wall_s - self._wall0, 1e-9)  # training only
        recent = f"return {np.mean(s.recent_returns):.2f}" if s.recent_returns else ""
        last = f"eval {s.last_eval[1]:.2f}" if s.last_eval else ""
        self.bar.update(
            self.task,
            completed=self._done(),
            eta=format_eta(self.eta_s()),
            info=f"{rate:,.0f} steps/s  {recent}  {last}".rstrip(),
        )

    def __enter__(self) -> ProgressDisplay:
        if self.bar is not None:
            self.bar.__enter__()
            self.update()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
