"""The training progress bar (rich): steps/s of training, recent return, last evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np


class ProgressDisplay:
    """A rich progress bar (steps/s, recent return, last eval) on stderr, only when it is a terminal."""

    def __init__(self, opts: Any, algo: str, state: Any):
        from rich.console import Console

        self.state, self.opts = state, opts
        console = Console(stderr=True)
        self.enabled = opts.progress == "on" or (opts.progress == "auto" and console.is_terminal)
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
                TextColumn("{task.fields[info]}"),
                console=console,
                transient=False,
            )
            total = opts.episodes if self.by_episodes else opts.total_steps
            self.task = self.bar.add_task(
                "train", total=total, unit="episodes" if self.by_episodes else "steps", info=""
            )
            self._wall0, self._steps0 = state.train_wall_s, state.env_steps

    def update(self) -> None:
        if not self.enabled:
            return
        s = self.state
        rate = (s.env_steps - self._steps0) / max(s.train_wall_s - self._wall0, 1e-9)  # training only
        recent = f"return {np.mean(s.recent_returns):.2f}" if s.recent_returns else ""
        last = f"eval {s.last_eval[1]:.2f}" if s.last_eval else ""
        self.bar.update(
            self.task,
            completed=s.episodes if self.by_episodes else s.env_steps,
            info=f"{rate:,.0f} steps/s  {recent}  {last}",
        )

    def __enter__(self) -> ProgressDisplay:
        if self.bar is not None:
            self.bar.__enter__()
            self.update()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
