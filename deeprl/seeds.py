"""Many seeds of one config: `deeprl train ALGO ENV_ID --seeds 0-9 [--jobs J]`, and their aggregate.

    PARENT/                 --run-dir, or runs/ENV__ALGO__seeds0-9__TIME (claimed with an exclusive mkdir)
      seeds.json            the resolved options (the --config layout: algo, env_id, config, run) and the seeds
      s0/ s1/ ...           one ordinary run directory per seed
      logs/s0.log ...       each seed's output
      aggregate.json        IQM, mean and median with 95% bootstrap confidence intervals over the finished seeds

Each seed is `python -m deeprl train ALGO ENV_ID --config PARENT/seeds.json --seed S --run-dir PARENT/sS`
in a process of its own (`--jobs` at a time), so a seed is exactly the run one `deeprl train` makes and a
failing seed stops no other. Ctrl-C (or SIGTERM) is passed to every running seed, which saves as a
single run does. Running the same command again, or `deeprl train --resume PARENT` (the options
recorded in seeds.json, on its seeds), continues: finished seeds (summary.json) are skipped, interrupted
ones resumed (`deeprl train --resume PARENT/sS`), the others trained.

With `--backend ray [--ray-address ADDR]` the seeds are Ray tasks over the cluster instead of processes here, each
trained with the local backend in a temporary directory on its node and returned to PARENT/sS
(deeprl.backends.ray_seeds); seeds.json records the local backend, so the seeds are those of the same command
without Ray, and `deeprl train --resume PARENT [--backend ray]` continues them either way.

The statistics follow Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice" (rliable):
the interquartile mean (IQM: the mean of the middle 50% of seeds), mean and median, each with a 95%
percentile confidence interval from rliable's stratified bootstrap over seeds (one task: the bootstrap
resamples seeds), seeded so that the same runs give the same intervals. Time and env steps to solve are
over the seeds that solved; the others are counted, not given a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from deeprl.errors import Interrupted, SignalScope, UsageError
from deeprl.rundir import lock_run_dir

SEEDS_FILE, AGGREGATE_FILE, LOGS = "seeds.json", "aggregate.json", "logs"
SEEDS_FORMAT = 1
REPS = 2000  # bootstrap resamples: the 95% interval's ends move by well under 1% of its width between seeds
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
METHOD = (
    "rliable.library.get_interval_estimates: stratified bootstrap over seeds (scores of shape seeds x 1 task), "
    "percentile intervals; func = [rliable.metrics.aggregate_iqm, rliable.metrics.aggregate_mean, numpy.median] "
    "(rliable's aggregate_median is the median over tasks of per-task means: with one task, the mean); rliable 1.2 "
    "resamples with numpy's global RNG whatever random_state says, so numpy.random.seed(bootstrap_seed) before each "
    "quantity (the caller's global RNG state is restored after)"
)
# The run options that differ between the seeds of one config, or only say how a process shows progress.
PER_SEED = ("seed", "run_dir", "progress", "wandb_id")
_SEED_DIR = re.compile(r"s(\d+)")


# ---------------------------------------------------------------- --seeds
def parse_seeds(text: str) -> tuple[int, ...]:
    """'0-9' -> 0..9, '0,3,7', '0-3,8'; in the order given. A UsageError says what is wrong."""
    example = "Give seeds such as 0-9, 0,3,7 or 0-3,8"
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"--seeds expects a list of seeds, got {text!r}. {example}.")
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if m is None:
            raise UsageError(f"--seeds {text!r}: {part!r} is not a seed or a range of seeds. {example}.")
        low, high = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if high < low:
            raise UsageError(f"--seeds {text!r}: the range {part!r} runs downwards. Write it low-high: {high}-{low}.")
        if high > 2**31 - 1:
            raise UsageError(f"--seeds {text!r}: seeds go up to {2**31 - 1}, got {high}.")
        seeds += range(low, high + 1)
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise UsageError(f"--seeds {text!r} names seed{'s' if len(twice) > 1 else ''} {seeds_label(twice)} twice.")
    return tuple(seeds)


def seeds_label(seeds: list[int] | tuple[int, ...]) -> str:
    """Sorted seeds, consecutive ones as ranges: 0-3,8 (as --seeds takes them)."""
    parts: list[str] = []
    for s in sorted(seeds):
        if parts and s == parts[-1][1] + 1:
            parts[-1] = (parts[-1][0], s)
        else:
            parts.append((s, s))
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)


def seed_dir(parent: Path, seed: int) -> Path:
    return Path(parent) / f"s{seed}"


def seed_run_dirs(parent: Path | str) -> list[Path]:
    """The seed run directories of a seeds parent (sN holding config.json), by seed; [] for any other directory."""
    parent = Path(parent)
    if not parent.is_dir() or (parent / "config.json").exists():
        return []
    found = []
    for d in parent.iterdir():
        m = _SEED_DIR.fullmatch(d.name)
        if m and d.is_dir() and (d / "config.json").is_file():
            found.append((int(m[1]), d))
    return [d for _, d in sorted(found)]


# ---------------------------------------------------------------- the parent directory
def claim_parent(parent: Path | None, algo: str, env_id: str, seeds: tuple[int, ...]) -> Path:
    """The parent directory: a new default one (an exclusive mkdir, retried with -2, -3... as run
    directories are), or the one --run-dir names: new, empty, or a seeds parent to continue."""
    if parent is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        safe_env = env_id.replace("/", "-").replace(":", "-")
        base = Path("runs") / f"{safe_env}__{algo}__seeds{seeds_label(seeds)}__{stamp}"
        base.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            except OSError as e:
                raise UsageError(
                    f"Cannot create {str(candidate)!r}: {e.strerror}. Pass a --run-dir you can write to."
                ) from None
            return candidate
        raise UsageError(f"Could not find a free directory name next to {str(base)!r}; pass --run-dir.")
    parent = Path(parent)
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--run-dir {str(parent)!r} is a file. Pass a directory (new, empty, or one --seeds wrote).")
    if (parent / "config.json").exists():
        raise UsageError(
            f"--run-dir {str(parent)!r} is a single run's directory. With --seeds, --run-dir names the parent "
            "directory that holds one run directory per seed: pass a new one."
        )
    if parent.is_dir() and any(parent.iterdir()) and not (parent / SEEDS_FILE).is_file():
        raise UsageError(
            f"--run-dir {str(parent)!r} holds files and no {SEEDS_FILE}: it is not a directory `deeprl train --seeds` "
            "wrote. Pass a new or empty directory."
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"Cannot create {str(parent)!r}: {e.strerror}. Pass a --run-dir you can write to.") from None
    return parent


def lock_parent(parent: Path) -> Any:
    """An exclusive lock on the parent for the life of the command: a second `--seeds` on it is refused."""
    return lock_run_dir(
        parent,
        busy="it is running `deeprl train --seeds` there. Wait for it to finish, or stop it with Ctrl-C (its seeds "
        "save), then run the command again.",
    )


def record_options(parent: Path, algo: str, env_id: str, config: Any, run: Any, seeds: tuple[int, ...]) -> None:
    """Write PARENT/seeds.json, or check that the options are those it holds (a rerun must be the same
    command); the seeds of the new command are added to those it lists."""
    from deeprl.config import to_jsonable
    from deeprl.rundir import write_json

    options = {
        "algo": algo,
        "env_id": env_id,
        "config": to_jsonable(config),
        "run": {k: v for k, v in to_jsonable(run).items() if k not in PER_SEED and k != "env_id"},
    }
    path = parent / SEEDS_FILE
    listed: list[int] = []
    if path.is_file():
        old = read_record(parent)
        differences = [
            f"{key}: {old.get(key)!r} then, {options[key]!r} now"
            for key in ("algo", "env_id")
            if old.get(key) != options[key]
        ]
        for section in ("config", "run"):
            before, now = old.get(section) or {}, options[section]
            differences += [
                f"{section}.{k}: {before.get(k)!r} then, {now.get(k)!r} now"
                for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)
            ]
        if differences:
            raise UsageError(
                f"{str(parent)!r} holds seeds of other options ({'; '.join(differences[:5])}). Continue it with "
                f"`deeprl train --resume {parent}` (its own options), or pass a new --run-dir for these options."
            )
        listed = [s for s in old["seeds"] if isinstance(s, int)]
    seeds_all = listed + [s for s in seeds if s not in listed]
    write_json(path, {"format": SEEDS_FORMAT, **options, "seeds": seeds_all})


# ---------------------------------------------------------------- running the seeds
@dataclasses.dataclass
class SeedOutcome:
    seed: int
    status: str  # finished (this time), skipped (finished before), failed, interrupted
    message: str = ""
    summary: dict[str, Any] | None = None


def _plan(parent: Path, seed: int) -> tuple[str, list[str]]:
    """What to do for a seed: ('skip', []), or ('resume' | 'train', the deeprl arguments)."""
    d = seed_dir(parent, seed)
    if (d / "summary.json").is_file():
        return "skip", []
    if (d / "resume" / "LATEST").is_file():
        return "resume", ["train", "--resume", str(d), "--progress", "off"]
    if d.is_dir() and (d / "config.json").is_file():
        # A run stopped before its first checkpoint holds nothing to resume (its config and first metrics):
        # it is trained again from the start, as the driver's message for such a run advises.
        shutil.rmtree(d)
    record = read_record(parent)
    return "train", [
        "train",
        record["algo"],
        record["env_id"],
        "--config",
        str(parent / SEEDS_FILE),
        "--seed",
        str(seed),
        "--run-dir",
        str(d),
        "--progress",
        "off",
    ]


def run_seeds(parent: Path, seeds: tuple[int, ...], jobs: int, log: Any = print) -> list[SeedOutcome]:
    """Train (or resume, or skip) each seed in its own process, `jobs` at a time; returns each seed's outcome.

    SIGINT/SIGTERM: passed on to every running seed (each saves and exits), no further seed starts, and
    Interrupted is raised once they have stopped. The seeds run in sessions of their own, so a Ctrl-C
    reaches them once, through this process (twice would stop them without saving)."""
    (parent / LOGS).mkdir(exist_ok=True)
    outcomes: dict[int, SeedOutcome] = {}
    pending: deque[tuple[int, str, list[str]]] = deque()
    for seed in seeds:
        action, args = _plan(parent, seed)
        if action == "skip":
            summary = _read_summary(seed_dir(parent, seed))
            outcomes[seed] = SeedOutcome(seed, "skipped", "finished before", summary)
            log(f"seed {seed}: finished before ({_result_line(summary)}); skipped")
        else:
            pending.append((seed, action, args))
    running: dict[int, tuple[subprocess.Popen, Any, float, str]] = {}
    stop = _ForwardSignals(lambda: [p for p, *_ in running.values()])
    with stop, _stopping_on_error(running):
        while running or (pending and stop.signum is None):
            while pending and len(running) < jobs and stop.signum is None:
                seed, action, args = pending.popleft()
                log_path = parent / LOGS / f"s{seed}.log"
                out = open(log_path, "a")
                out.write(f"$ {shlex.join(['deeprl', *args])}\n")
                out.flush()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "deeprl", *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
                running[seed] = (proc, out, time.perf_counter(), action)
                log(f"seed {seed}: {'resuming' if action == 'resume' else 'training'} (log: {log_path})")
            time.sleep(0.05)
            for seed, (proc, out, started, _) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                out.close()
                del running[seed]
                outcomes[seed] = _outcome(parent, seed, rc, time.perf_counter() - started)
                log(f"seed {seed}: {outcomes[seed].message}")
        for seed, _, _ in pending:
            outcomes[seed] = SeedOutcome(seed, "interrupted", "not started")
    if stop.signum is not None:
        raise Interrupted(stop.signum)
    return [outcomes[s] for s in seeds]


@contextlib.contextmanager
def _stopping_on_error(running: dict[int, tuple[Any, ...]]) -> Iterator[None]:
    """If this process fails while seeds run, they are asked to stop (SIGTERM: each saves), not left orphaned."""
    try:
        yield
    except BaseException:
        for proc, out, *_ in running.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            out.close()
        raise


def _outcome(parent: Path, seed: int, rc: int, elapsed: float) -> SeedOutcome:
    d = seed_dir(parent, seed)
    if rc == 0 and (d / "summary.json").is_file():
        summary = _read_summary(d)
        return SeedOutcome(seed, "finished", f"finished in {elapsed:.1f} s ({_result_line(summary)})", summary)
    if rc in (128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM):
        saved = (d / "resume" / "LATEST").is_file()
        return SeedOutcome(seed, "interrupted", "interrupted, saved" if saved else "interrupted before a checkpoint")
    return SeedOutcome(seed, "failed", f"failed (exit {rc}): {_last_words(parent / LOGS / f's{seed}.log')}")


def _last_words(log_path: Path) -> str:
    """The error a failed seed printed: its `deeprl: error:` paragraph, or the last line of its log."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if line.startswith("deeprl: error:"):
            return line[len("deeprl: error:") :].strip()[:500]
    return (lines[-1] if lines else "no output")[:500]


def read_record(parent: Path) -> dict[str, Any]:
    from deeprl.rundir import read_json

    record = read_json(parent / SEEDS_FILE)
    if not isinstance(record, dict) or not isinstance(record.get("seeds"), list):
        raise UsageError(f"{str(parent / SEEDS_FILE)!r} is not a seeds record: it was changed after deeprl wrote it.")
    return record


def _read_summary(run_dir: Path) -> dict[str, Any]:
    from deeprl.rundir import read_json

    summary = read_json(run_dir / "summary.json")
    if not isinstance(summary, dict):
        raise UsageError(f"{str(run_dir / 'summary.json')!r} is not a summary: it was changed after deeprl wrote it.")
    return summary


def _result_line(s: dict[str, Any]) -> str:
    ret = s.get("eval_mean_return")
    line = f"eval return {ret:.3f}" if isinstance(ret, (int, float)) else "no evaluation"
    if s.get("solved"):
        line += f", solved at {s['solved_at_env_steps']:,} env steps, {s['solved_at_wall_s']:.2f} s"
    elif s.get("reward_threshold") is not None:
        line += ", not solved"
    return line


class _ForwardSignals(SignalScope):
    """SIGINT/SIGTERM to this process: remember it and send it to every running seed's process group."""

    def __init__(self, running: Any) -> None:
        super().__init__()
        self.running = running

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = signum
        for proc in self.running():
            try:
                os.killpg(proc.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass
        if first:
            print(
                f"\n{signal.Signals(signum).name}: stopping every seed after its current chunk (each saves a "
                "checkpoint). Signal again to stop them at once.",
                file=sys.stderr,
            )


def train_seeds(
    parent: Path | None,
    algo: str,
    env_id: str,
    config: Any,
    run: Any,
    seeds: tuple[int, ...],
    jobs: int | None = 1,
    log: Any = print,
    claimed: list[Path] | None = None,
    runner: Any = None,
) -> tuple[Path, list[SeedOutcome], dict[str, Any] | None]:
    """`deeprl train ALGO ENV_ID --seeds ...`: claim (or continue) the parent, run the seeds, aggregate the
    finished ones. Returns (parent, each seed's outcome, the aggregate or None when no seed finished);
    `claimed` gets the parent as soon as it is claimed (for the message of an interrupted run). `runner`: what
    runs the seeds instead of processes on this machine (deeprl.backends.ray_seeds.SeedsOnRay for `--backend
    ray`: Ray tasks, `jobs` None for no limit, each seed trained with the local backend, as `run` records)."""
    require_rliable()  # before hours of training, not after
    parent = claim_parent(parent, algo, env_id, seeds)
    if claimed is not None:
        claimed.append(parent)
    lock = lock_parent(parent)
    try:
        record_options(parent, algo, env_id, config, run, seeds)
        if runner is not None:
            log(f"{len(seeds)} seeds of {algo} on {env_id} in {parent}, {runner.describe(jobs)}")
            outcomes = runner(parent, seeds, jobs, log)
        else:
            log(f"{len(seeds)} seeds of {algo} on {env_id} in {parent}, {jobs} at a time")
            outcomes = run_seeds(parent, seeds, jobs, log)
        done = [o for o in outcomes if o.summary is not None]
        return parent, outcomes, aggregate(parent) if done else None
    finally:
        lock.close()


# ---------------------------------------------------------------- the aggregate
def require_rliable() -> Any:
    """rliable's library and metrics modules, or a UsageError saying how to install them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import rliable.library
            import rliable.metrics
    except ImportError:
        raise UsageError(
            "IQM and bootstrap confidence intervals need rliable: pip install rliable (from a clone: "
            "pip install -e '.[stats]')."
        ) from None
    except Exception as e:  # noqa: BLE001 - rliable 1.2 needs arch<8, whose import fails under pandas 3
        raise UsageError(
            f"rliable is installed but does not import ({type(e).__name__}: {str(e)[:200]}). rliable 1.2 needs "
            "arch<8, which needs pandas<3: pip install 'pandas<3' (or pip install -e '.[stats]' from a clone)."
        ) from None
    return rliable


def interval_estimates(
    values: Any, reps: int = REPS, seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """IQM, mean and median of per-seed `values` with their `confidence` percentile intervals, by rliable's
    stratified bootstrap (`reps` resamples of the seeds; see METHOD for how it is seeded). No values: n=0 and
    None for each statistic."""
    import numpy as np

    rliable = require_rliable()
    metrics = rliable.metrics
    values = [float(v) for v in values]
    out: dict[str, Any] = {"n": len(values)}
    if not values:
        return {**out, **{k: None for k in ("iqm", "iqm_ci", "mean", "mean_ci", "median", "median_ci")}}
    scores = np.asarray(values, dtype=float).reshape(-1, 1)  # (runs, tasks): one task
    # rliable's aggregate_median is a median over tasks of the per-task means; over one task's seeds, numpy's median.
    func = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), np.median(x)])  # noqa: E731
    saved = np.random.get_state()
    try:
        # rliable 1.2's StratifiedBootstrap draws its resamples from numpy's global RNG (random_state seeds only arch's
        # own generator, which it does not use): seeding the global one makes the intervals reproducible.
        np.random.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch 7 deprecates random_state, which rliable passes
            points, intervals = rliable.library.get_interval_estimates(
                {"x": scores},
                func,
                reps=reps,
                confidence_interval_size=confidence,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(saved)
    for i, name in enumerate(("iqm", "mean", "median")):
        out[name] = _round(points["x"][i])
        out[f"{name}_ci"] = [_round(intervals["x"][0][i]), _round(intervals["x"][1][i])]
    return out


def _round(x: float) -> float:
    """12 significant digits: more than any return needs, and short in aggregate.json."""
    return float(f"{float(x):.12g}")


def aggregate(
    parent_dir: Path | str, *, reps: int = REPS, seed: int = BOOTSTRAP_SEED, write: bool = True
) -> dict[str, Any]:
    """The aggregate of a seeds parent directory (as `deeprl train --seeds` writes it): IQM, mean and median
    with 95% stratified bootstrap confidence intervals (rliable) of the final evaluation return over the
    finished seeds, and of env steps and training seconds to solve over the seeds that solved. Also
    written to PARENT/aggregate.json (unless write=False); the same runs give the same numbers."""
    import numpy as np

    parent = Path(parent_dir)
    if not parent.is_dir():
        raise UsageError(f"{str(parent)!r} is not a directory. Pass the --run-dir of `deeprl train --seeds`.")
    record = read_record(parent) if (parent / SEEDS_FILE).is_file() else {}
    dirs = {int(d.name[1:]): d for d in seed_run_dirs(parent)}
    asked = [s for s in record.get("seeds", []) if isinstance(s, int)] or sorted(dirs)
    if not asked:
        raise UsageError(f"{str(parent)!r} holds no seed run directories (s0, s1, ...): nothing to aggregate.")
    per_seed, not_finished = [], []
    for s in sorted(set(asked) | set(dirs)):
        d = seed_dir(parent, s)
        if not (d / "summary.json").is_file():
            not_finished.append(s)
            continue
        summary = _read_summary(d)
        per_seed.append(
            {
                "seed": s,
                "run_dir": d.name,
                "eval_mean_return": summary.get("eval_mean_return"),
                "solved": bool(summary.get("solved")),
                "solved_at_env_steps": summary.get("solved_at_env_steps"),
                "solved_at_wall_s": summary.get("solved_at_wall_s"),
                "env_steps": summary.get("env_steps"),
                "train_wall_s": summary.get("train_wall_s"),
            }
        )
    if not per_seed:
        raise UsageError(
            f"No seed in {str(parent)!r} has finished (no summary.json): nothing to aggregate. Run the `deeprl train "
            "--seeds` command again to continue them."
        )
    summaries = [_read_summary(seed_dir(parent, p["seed"])) for p in per_seed]
    solved = [p for p in per_seed if p["solved"]]
    thresholds = sorted({s.get("reward_threshold") for s in summaries}, key=str)
    from importlib.metadata import version

    result = {
        "format": SEEDS_FORMAT,
        "algo": record.get("algo", summaries[0].get("algo")),
        "env_id": record.get("env_id", summaries[0].get("env_id")),
        "seeds": sorted(set(asked) | set(dirs)),
        "seeds_finished": [p["seed"] for p in per_seed],
        "seeds_not_finished": not_finished,
        "reward_threshold": thresholds[0] if len(thresholds) == 1 else thresholds,
        "solved": {
            "seeds": len(solved),
            "of": len(per_seed),
            "unsolved_seeds": [p["seed"] for p in per_seed if not p["solved"]],
        },
        "final_eval_return": interval_estimates([p["eval_mean_return"] for p in per_seed], reps, seed),
        "env_steps_to_solve": interval_estimates([p["solved_at_env_steps"] for p in solved], reps, seed),
        "train_s_to_solve": interval_estimates([p["solved_at_wall_s"] for p in solved], reps, seed),
        "method": METHOD,
        "confidence": CONFIDENCE,
        "reps": reps,
        "bootstrap_seed": seed,
        "rliable_version": version("rliable"),
        "numpy_version": np.__version__,
        "per_seed": per_seed,
    }
    if write:
        from deeprl.rundir import write_json

        write_json(parent / AGGREGATE_FILE, result)
    return result


STAT_ROWS = (
    ("final_eval_return", "final eval return", 2),
    ("env_steps_to_solve", "env steps to solve", 0),
    ("train_s_to_solve", "training s to solve", 2),
)


def format_estimate(stats: dict[str, Any] | None, name: str, digits: int, sep: str = " ") -> str:
    """'12.30 [10.10, 14.00]' for stats[name] and its interval (`sep` between them); '—' where there is none."""
    if not stats or stats.get(name) is None:
        return "—"
    lo, hi = stats[f"{name}_ci"]
    f = lambda x: "—" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"  # noqa: E731
    return f"{f(stats[name])}{sep}[{f(lo)}, {f(hi)}]"


def aggregate_table(agg: dict[str, Any]) -> Any:
    """The aggregate as a rich Table: each statistic over its line, its 95% interval under it."""
    from rich import box
    from rich.table import Table

    n_done, n_all = len(agg["seeds_finished"]), len(agg["seeds"])
    solved, threshold = agg["solved"], agg["reward_threshold"]
    if threshold is None:
        solving = "No reward threshold (--threshold X sets one): no seed counts as solved."
    else:
        solving = (
            f"{solved['seeds']} of {solved['of']} finished seeds solved (threshold {threshold:g}); the to-solve rows "
            "are over those."
        )
    table = Table(
        title=f"{agg['algo']} on {agg['env_id']}: {n_done} of {n_all} seeds finished",
        caption=f"{solving} [95% CI]: stratified bootstrap, rliable {agg['rliable_version']}, {agg['reps']} resamples.",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("over the seeds", no_wrap=True)
    table.add_column("n", justify="right")
    for name in ("IQM", "mean", "median"):
        table.add_column(f"{name} [95% CI]", justify="right")
    for key, label, digits in STAT_ROWS:
        stats = agg[key]
        cells = (format_estimate(stats, n, digits, sep="\n") for n in ("iqm", "mean", "median"))
        table.add_row(label, str(stats["n"]), *cells, end_section=True)
    return table
