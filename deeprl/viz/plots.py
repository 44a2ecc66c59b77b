"""Learning curves: the training episodes and evaluations of one or more run directories (or parent
directories of `deeprl train --seeds`), as a matplotlib Figure (return against env steps and against
training wall time), like `deeprl plot`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from deeprl.envs import env_spec
from deeprl.errors import UsageError

PLOT_EXTENSIONS = (".png", ".pdf", ".svg")


# Run options that do not change what a run learns: runs differing only in these are seeds of one config.
_NOT_CONFIG = {
    "seed",
    "run_dir",
    "progress",
    "device",
    "tensorboard",
    "checkpoint_every",
    "video_every",
    "total_steps",
    "episodes",
    "stop_when_solved",
    "eval_every",
    "eval_episodes",
    "threshold",
}


@dataclass
class RunCurves:
    run_dir: Path
    algo: str
    env_id: str
    key: str
    config: dict[str, Any]
    threshold: float | None
    train: dict[str, np.ndarray]  # env_steps, wall, ret
    eval: dict[str, np.ndarray]  # env_steps, wall, ret, std


def read_run(run_dir: Path | str) -> RunCurves:
    """The training episodes and evaluations of a run directory (finished or still running)."""
    from deeprl.rundir import read_config

    run_dir = Path(run_dir)
    record = read_config(run_dir)  # format and types checked; a run directory is data
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        raise UsageError(f"{str(run_dir)!r} has no metrics.csv: it is not a deeprl run directory.")
    train: dict[str, list[float]] = {"env_steps": [], "wall": [], "ret": []}
    evals: dict[str, list[float]] = {"env_steps": [], "wall": [], "ret": [], "std": []}
    with open(metrics, newline="", errors="replace") as f:
        for row in csv.DictReader(f):
            try:
                steps, wall, ret = float(row["env_steps"]), float(row["wall_time_s"]), float(row["episode_return"])
                std = float(row.get("eval_std_return") or 0.0)
            except (TypeError, ValueError, KeyError):
                continue  # a torn last line of a running or killed run
            target = train if row["kind"] == "train" else evals
            target["env_steps"].append(steps)
            target["wall"].append(wall)
            target["ret"].append(ret)
            if row["kind"] != "train":
                evals["std"].append(std)
    if not train["ret"] and not evals["ret"]:
        raise UsageError(f"{str(run_dir)!r} has no finished episode or evaluation yet: nothing to plot.")
    summary_path = run_dir / "summary.json"
    threshold = record["run"].get("threshold")
    if threshold is None and summary_path.is_file():
        try:
            threshold = json.loads(summary_path.read_text()).get("reward_threshold")
        except (OSError, ValueError, AttributeError):
            threshold = None
    if threshold is None and (":" not in record["env_id"] or record["env_id"].split(":")[0] in sys.modules):
        try:  # the env's own threshold; a module named in the file is never imported for it
            threshold = env_spec(record["env_id"]).reward_threshold
        except UsageError:
            threshold = None
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        threshold = None
    config = {**{k: v for k, v in record["run"].items() if k not in _NOT_CONFIG}, **record["config"]}
    key = json.dumps([record["algo"], record["env_id"], config], sort_keys=True, default=str)
    return RunCurves(
        run_dir,
        record["algo"],
        record["env_id"],
        key,
        config,
        threshold,
        {k: np.asarray(v, dtype=float) for k, v in train.items()},
        {k: np.asarray(v, dtype=float) for k, v in evals.items()},
    )


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each point (fewer at the start)."""
    if window <= 1 or len(values) == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def _band(xs: list[np.ndarray], ys: list[np.ndarray], points: int = 300) -> tuple[np.ndarray, ...]:
    """Runs' curves on one grid: mean, min and max over the runs that reach each point, and how many do."""
    top = max(x[-1] for x in xs)
    grid = np.linspace(min(x[0] for x in xs), top, points)
    stacked = np.vstack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in zip(xs, ys)])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return (
                grid,
                np.nanmean(stacked, 0),
                np.nanmin(stacked, 0),
                np.nanmax(stacked, 0),
                np.isfinite(stacked).sum(0),
            )


def _group_label(group: list[RunCurves], groups: list[list[RunCurves]]) -> str:
    label = group[0].algo
    same_algo = [g for g in groups if g[0].algo == label and g is not group]
    if same_algo:
        diffs = [
            f"{k}={v}" for k, v in sorted(group[0].config.items()) if any(g[0].config.get(k) != v for g in same_algo)
        ]
        label += f" ({', '.join(diffs[:3])})" if diffs else ""
    n = len(group)
    return label + (f", {n} seeds" if n > 1 else "")


@lru_cache(maxsize=1)
def _curves_figure_class() -> type:  # matplotlib is imported when a plot is made, not with deeprl
    from matplotlib.figure import Figure

    class CurvesFigure(Figure):
        """A plain matplotlib Figure (no pyplot: no GUI backend, no global state) that Jupyter shows inline."""

        def _repr_png_(self) -> bytes:
            buf = io.BytesIO()
            self.savefig(buf, format="png")
            return buf.getvalue()

    return CurvesFigure


def _check_plot_args(out: Path | str | None, threshold: float | None, smoothing: int | None) -> Path | None:
    """`out` as a Path (None: no file), after checking the arguments of `plot`."""
    if out is not None:
        out = Path(out)
        if out.suffix.lower() not in PLOT_EXTENSIONS:
            raise UsageError(f"Cannot write {str(out)!r}: the file must end in {', '.join(PLOT_EXTENSIONS)}.")
        if not out.parent.exists():
            raise UsageError(f"Cannot write {str(out)!r}: the directory {str(out.parent)!r} does not exist.")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
    ):
        raise UsageError(f"threshold must be a finite number, got {threshold!r}.")
    if smoothing is not None and (isinstance(smoothing, bool) or not isinstance(smoothing, int) or smoothing < 1):
        raise UsageError(f"smoothing must be a positive number of episodes, got {smoothing!r}.")
    return out


def _draw_training(ax: Any, group: list[RunCurves], xkey: str, color: Any, label: str, window: int) -> None:
    """A group's training episodes on `ax`: one run smoothed over its faint raw returns, several as a band."""
    trains = [r for r in group if len(r.train["ret"]) > 0]
    if len(trains) == 1:
        r = trains[0]
        ax.plot(r.train[xkey], r.train["ret"], color=color, alpha=0.18, lw=0.8)
        ax.plot(
            r.train[xkey],
            smooth(r.train["ret"], window),
            color=color,
            lw=2,
            label=f"{label}: training episodes" + (f" (mean of {window})" if window > 1 else ""),
        )
    elif trains:
        grid, mean, lo, hi, count = _band(
            [r.train[xkey] for r in trains], [smooth(r.train["ret"], window) for r in trains]
        )
        ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
        every = count == len(trains)  # where a seed has stopped (solved early), the mean is of fewer runs
        ax.plot(
            grid,
            np.where(every, mean, np.nan),
            color=color,
            lw=2,
            label=f"{label}: training episodes (mean of {window}; mean, min-max over seeds)",
        )
        if not every.all():
            ax.plot(
                grid,
                np.where(every, np.nan, mean),
                color=color,
                lw=1.5,
                alpha=0.7,
                ls=":",
                label=f"{label}: mean of the seeds still running",
            )


CI_REPS = 2000  # bootstrap resamples of the seeds at each evaluation step
CI_SEED = 0  # the same runs draw the same band


def bootstrap_mean_ci(values: Sequence[float], confidence: float = 0.95, reps: int = CI_REPS) -> tuple[float, ...]:
    """(mean, low, high): the mean of per-seed `values` and its percentile bootstrap interval (`reps` resamples
    of the seeds with replacement, a fixed numpy seed). One value has no interval: (v, nan, nan). For one task this
    is the stratified bootstrap rliable uses for `deeprl train --seeds`'s aggregate, done here in numpy so that
    plotting needs no rliable."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()) if len(v) else math.nan, math.nan, math.nan
    rng = np.random.default_rng(CI_SEED)
    means = v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(v.mean()), float(lo), float(hi)


def _draw_evaluations(ax: Any, group: list[RunCurves], xkey: str, color: Any, label: str) -> None:
    """A group's evaluations on `ax`: one run's with ± std, several runs' as the mean over seeds with its 95%
    bootstrap confidence band (bootstrap_mean_ci at each evaluation step)."""
    evals = [r for r in group if len(r.eval["ret"]) > 0]
    if len(evals) == 1:
        r = evals[0]
        ax.errorbar(
            r.eval[xkey],
            r.eval["ret"],
            yerr=r.eval["std"],
            fmt="o-",
            ms=5,
            lw=1,
            capsize=3,
            color=color,
            mec="white",
            mew=0.8,
            label=f"{label}: evaluation (mean ± std)",
        )
    elif evals:
        steps = sorted(set(np.concatenate([r.eval["env_steps"] for r in evals]).tolist()))
        at: dict[float, list[float]] = {s: [] for s in steps}
        walls: dict[float, list[float]] = {s: [] for s in steps}
        for r in evals:
            seen = set()
            for s, ret, wall in zip(r.eval["env_steps"].tolist(), r.eval["ret"].tolist(), r.eval["wall"].tolist()):
                if s not in seen:  # a run's first evaluation at a step
                    seen.add(s)
                    at[s].append(ret)
                    walls[s].append(wall)
        # wall time differs per seed: the mean time at which each evaluation happened
        xs = np.asarray(steps if xkey == "env_steps" else [np.mean(walls[s]) for s in steps], dtype=float)
        mean, lo, hi = np.asarray([bootstrap_mean_ci(at[s]) for s in steps]).T
        every = np.asarray([len(at[s]) == len(evals) for s in steps])  # seeds that stopped early (solved) drop out
        ax.fill_between(xs, lo, hi, color=color, alpha=0.25, lw=0)
        ax.plot(
            xs,
            np.where(every, mean, np.nan),
            "o-",
            ms=5,
            lw=1.5,
            color=color,
            mec="white",
            mew=0.8,
            label=f"{label}: evaluation (mean over seeds, 95% bootstrap CI)",
        )
        if not every.all():
            partial = ~every | np.r_[~every[1:], False]  # joined to the last point every seed reached
            ax.plot(
                xs,
                np.where(partial, mean, np.nan),
                "o:",
                ms=4,
                lw=1.2,
                alpha=0.7,
                color=color,
                label=f"{label}: evaluation, mean of the seeds still running",
            )


def _style_axes(axes: Any, threshold: float | None) -> None:
    """The threshold line, axis labels, grid and the env-steps formatter on both panels."""
    from matplotlib.ticker import EngFormatter

    for ax, xlabel in zip(axes, ("env steps", "training wall time (s)")):
        if threshold is not None:
            ax.axhline(threshold, color="0.25", ls="--", lw=1.3, label=f"threshold {threshold:g}", zorder=1)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if xlabel == "env steps":
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20k, 1M
    axes[0].set_ylabel("episode return")


def expand_run_dirs(run_dirs: Sequence[Path | str]) -> list[tuple[Path, bool]]:
    """(run directory, whether it came from a seeds parent): each directory given, a parent directory of
    `deeprl train --seeds` (PARENT/s0, PARENT/s1, ...) replaced by its seed run directories."""
    from deeprl.seeds import seed_run_dirs

    expanded = []
    for d in run_dirs:
        seeds = seed_run_dirs(d)
        expanded += [(s, True) for s in seeds] if seeds else [(Path(d), False)]
    return expanded


def _read_runs(run_dirs: Sequence[Path | str]) -> list[RunCurves]:
    """The runs of `run_dirs` (seeds parents expanded); a seed of a parent with nothing logged yet is left out."""
    runs, empty = [], []
    for d, from_parent in expand_run_dirs(run_dirs):
        try:
            runs.append(read_run(d))
        except UsageError:
            if not from_parent:
                raise
            empty.append(str(d))
    if not runs:
        raise UsageError(f"No run in {', '.join(map(str, run_dirs))} has logged an episode yet: nothing to plot.")
    if empty:
        print(f"note: left out {', '.join(empty)}: nothing logged yet", file=sys.stderr)
    return runs


def plot(
    run_dirs: Sequence[Path | str] | Path | str,
    out: Path | str | None = None,
    *,
    threshold: float | None = None,
    smoothing: int | None = None,
) -> Any:
    """Learning curves of one or more runs: return against env steps and against training wall time.

    A parent directory of `deeprl train --seeds` stands for its seed run directories. Runs of the same
    config (differing only in seed, budget and logging) are drawn as one curve: the training episodes'
    mean over seeds with a min-max band, and the evaluations' mean over seeds with a 95% confidence band
    (a percentile bootstrap over seeds at each evaluation step, `bootstrap_mean_ci`). Training episodes
    are smoothed (`smoothing` episodes, default about 1/20 of the shortest run) over the faint raw
    returns of a single run; a single run's evaluations are dots with ± the std over evaluation
    episodes. The threshold (the env's reward_threshold, or `threshold`) is a dashed line. Returns the
    matplotlib Figure; `out` (.png, .pdf, .svg) also saves it.
    """
    import matplotlib

    out = _check_plot_args(out, threshold, smoothing)
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise UsageError("Give at least one run directory to plot.")
    runs = _read_runs(run_dirs)
    envs = sorted({r.env_id for r in runs})
    if len(envs) > 1:
        raise UsageError(f"These runs are on different envs ({', '.join(envs)}); plot each env separately.")
    groups: dict[str, list[RunCurves]] = {}
    for r in runs:
        groups.setdefault(r.key, []).append(r)
    group_list = list(groups.values())
    if threshold is None:
        threshold = next((r.threshold for r in runs if r.threshold is not None), None)
    lengths = [len(r.train["ret"]) for r in runs if len(r.train["ret"])]
    window = smoothing or max(1, min(100, (min(lengths) if lengths else 1) // 20))

    fig = _curves_figure_class()(figsize=(12, 4.6), dpi=110, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colors = matplotlib.colormaps["tab10"].colors
    for color, group in zip(colors * 10, group_list):
        label = _group_label(group, group_list)
        for ax, xkey in zip(axes, ("env_steps", "wall")):
            _draw_training(ax, group, xkey, color, label, window)
            _draw_evaluations(ax, group, xkey, color, label)
    _style_axes(axes, threshold)
    n = len(runs)
    fig.suptitle(
        f"{envs[0]}: {', '.join(_group_label(g, group_list) for g in group_list)}"
        + (f" ({n} runs)" if n > 1 and len(group_list) > 1 else ""),
        fontsize=12,
    )
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].legend(handles, labels, loc="best", fontsize=8, framealpha=0.85)
    fig.runs_plotted = n  # how many run directories the figure draws (a seeds parent counts its seeds)
    if out is not None:
        fig.savefig(out)
    return fig
