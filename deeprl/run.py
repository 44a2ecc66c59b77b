"""The run directory and the training driver every algorithm shares.

`deeprl train ALGO ENV --run-dir DIR` writes (DESIGN.md, "The run directory"):
    config.json    the resolved config, seed and versions
    metrics.csv    a row per finished training episode (kind=train) and per evaluation (kind=eval)
    summary.json   final evaluation, solved-at figures, budget used
    checkpoint.pt  algorithm state, optimizer/RNG states and, where it pickles, the env itself

The driver alternates `algo.learn(chunk)` with evaluations and checkpoints that land on exact env
steps. Every file is written atomically (temp file + rename), and a checkpoint records how many
metrics rows it covers, so `--resume` after a kill truncates the rows written since and continues
exactly where the checkpoint left off: the resumed run ends with the uninterrupted run's results.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pickle
import platform
import signal
import sys
import threading
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

import deeprl
from deeprl.algos import AlgoSpec, check_spaces, get_algo
from deeprl.config import PRESETS, RunOptions, split_options, to_jsonable
from deeprl.envs import (
    env_spec,
    env_state,
    global_rng_state,
    make_env,
    make_vec_env,
    seed_everything,
    set_global_rng_state,
)
from deeprl.errors import DivergenceError, UsageError, WorkerError

CHECKPOINT, CONFIG, METRICS, SUMMARY = "checkpoint.pt", "config.json", "metrics.csv", "summary.json"
BASE_COLUMNS = ("kind", "env_steps", "episodes", "wall_time_s", "episode_return", "episode_length",
                "eval_std_return")
MAX_CHUNK = 5_000              # env steps between progress updates
EVAL_SEED_OFFSET = 10_000      # evaluation episode i of a run with seed s starts from reset seed s + 10_000 + i
EVAL_STEP_CAP = 1_000          # evaluation episodes of envs without a time limit stop here (--max-episode-steps)
CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------- atomic files
def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write via a temp file in the same directory, fsync, then rename over `path`.

    A kill at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=2, sort_keys=False, default=str), mode="w")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(run_dir: Path | str) -> dict[str, Any]:
    """The checkpoint of a run directory, or a UsageError that says what is missing or broken."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{str(run_dir)!r} is a file, not a run directory. Pass the directory that "
                         "`deeprl train` wrote (it holds checkpoint.pt).")
    if not run_dir.is_dir():
        raise UsageError(
            f"Run directory {str(run_dir)!r} does not exist. Pass the directory a `deeprl train` run "
            "wrote (it holds config.json, metrics.csv, summary.json and checkpoint.pt)."
        )
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise UsageError(
            f"{str(run_dir)!r} has no {CHECKPOINT}: it is not a deeprl run directory, or its run was "
            "stopped before the first checkpoint. Train again, with --checkpoint-every N to save along the way."
        )
    import torch  # imported here, after the cheap checks, so a mistyped path fails at once

    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise UsageError(
            f"{str(path)!r} is unreadable ({type(e).__name__}: {str(e)[:200]}). The file is damaged; "
            "checkpoints are written atomically, so it was changed after deeprl wrote it. Train again."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{str(path)!r} is not a deeprl checkpoint (format {CHECKPOINT_FORMAT}).")
    return payload


def configs_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[AlgoSpec, Any, RunOptions]:
    """The algorithm spec, config and run options a checkpoint was written with.

    A checkpoint from another deeprl version may name options this version does not have: that is
    a UsageError naming them, not a TypeError from a dataclass constructor.
    """
    spec = get_algo(checkpoint["algo"])
    for cls, values in ((spec.config_cls, checkpoint["config"]), (RunOptions, checkpoint["run"])):
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UsageError(
                f"This checkpoint was written by deeprl {checkpoint.get('deeprl_version', '?')} with options "
                f"this version ({deeprl.__version__}) does not know: {', '.join(unknown)}. Use that version "
                "of deeprl to evaluate or resume it."
            )
    return spec, spec.config_cls(**checkpoint["config"]), RunOptions(**checkpoint["run"])


# ---------------------------------------------------------------- metrics
class MetricsLog:
    """metrics.csv (fixed columns, one row per episode or evaluation), mirrored to TensorBoard."""

    def __init__(self, run_dir: Path, extra_columns: tuple[str, ...], keep_rows: int | None,
                 tensorboard: bool, purge_step: int | None):
        self.columns = BASE_COLUMNS + tuple(extra_columns)
        self.path = run_dir / METRICS
        if keep_rows is None or not self.path.exists():
            atomic_write(self.path, lambda f: csv.writer(f).writerow(self.columns), mode="w")
            self.rows = 0
        else:  # resume: drop the rows written after the checkpoint (and any torn last line)
            with open(self.path, newline="") as f:
                lines = list(csv.reader(f))[: keep_rows + 1]
            if len(lines) - 1 < keep_rows:
                raise UsageError(f"{self.path} holds {len(lines) - 1} rows but the checkpoint covers {keep_rows}: "
                                 "the file was changed after deeprl wrote it. Restore it, or train again.")
            atomic_write(self.path, lambda f: csv.writer(f).writerows(lines), mode="w")
            self.rows = keep_rows
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops TensorBoard events logged after the checkpoint we resume from.
            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)

    def write(self, kind: str, env_steps: int, episodes: int, wall: float, ret: float,
              length: float | str = "", std: float | str = "", extras: tuple = ()) -> None:
        self.writer.writerow([kind, env_steps, episodes, f"{wall:.4f}", _fmt(ret), _fmt(length), _fmt(std),
                              *map(_fmt, extras)])
        self.rows += 1
        if self.tb is not None:
            self.tb.add_scalar("train/episode_return" if kind == "train" else "eval/mean_return", ret, env_steps)
            for name, value in zip(self.columns[len(BASE_COLUMNS):], extras):
                # A loss is NaN (or blank) until the first update: TensorBoard gets real values only.
                if isinstance(value, (int, float, np.number)) and math.isfinite(value):
                    self.tb.add_scalar(f"train/{name}", value, env_steps)

    def scalar(self, name: str, value: float, env_steps: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(name, value, env_steps)

    def flush(self) -> None:
        """To disk, not only to the OS: a checkpoint written next must never cover rows a crash loses."""
        self.file.flush()
        os.fsync(self.file.fileno())
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return repr(float(x)) if math.isfinite(x) else str(float(x))
    return x


# ---------------------------------------------------------------- evaluation
class Evaluator:
    """Deterministic evaluation on a vector env of its own: episode i starts from reset seed
    `seed + i`, so every evaluation of a run sees the same starting states and a policy's score
    does not depend on when it was evaluated."""

    def __init__(self, env_id: str, episodes: int, seed: int, max_episode_steps: int | None = None,
                 batch: int = 32, env_kwargs: dict[str, Any] | None = None):
        self.episodes, self.seed = episodes, seed
        if max_episode_steps is None and env_spec(env_id).max_episode_steps is None:
            max_episode_steps = EVAL_STEP_CAP  # a greedy policy can walk in circles forever
        self.n = min(episodes, batch)
        self.venv = make_vec_env(env_id, self.n, vectorization="auto", max_episode_steps=max_episode_steps,
                                 **(env_kwargs or {}))

    def __call__(self, policy: Callable[[Any], np.ndarray]) -> np.ndarray:
        returns: list[float] = []
        for start in range(0, self.episodes, self.n):
            wanted = min(self.n, self.episodes - start)
            obs, _ = self.venv.reset(seed=self.seed + start)
            total = np.zeros(self.n)
            done = np.zeros(self.n, dtype=bool)
            while not done[:wanted].all():
                obs, reward, terminated, truncated, _ = self.venv.step(policy(obs))
                total += np.where(done, 0.0, reward)  # after its episode ends a copy autoresets: ignore it
                done |= terminated | truncated
            returns.extend(total[:wanted].tolist())
        return np.asarray(returns)

    def close(self) -> None:
        self.venv.close()


# ---------------------------------------------------------------- the driver
@dataclass
class LoopState:
    """Counters of a run; saved in every checkpoint so a resumed run picks them up exactly."""

    env_steps: int = 0
    episodes: int = 0
    train_wall_s: float = 0.0
    next_eval: int = 0
    next_checkpoint: int | None = None
    metrics_rows: int = 0
    solved_at_env_steps: int | None = None
    solved_at_wall_s: float | None = None
    last_eval: tuple[int, float, float] | None = None  # (env_steps, mean, std)
    recent_returns: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class RunResult:
    """What `deeprl.train` returns: where the run is and its summary.json."""

    run_dir: Path
    summary: dict[str, Any]

    def __repr__(self) -> str:
        s = self.summary
        return (f"RunResult(run_dir={str(self.run_dir)!r}, eval_mean_return={s['eval_mean_return']:.3f}, "
                f"solved={s['solved']}, env_steps={s['env_steps']})")


def resolve_device(device: str) -> str:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA GPU. Use --device cpu or auto.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def set_torch_threads(requested: int | None, env: Any) -> None:
    """torch.set_num_threads(requested), or by default 1 for vector observations: a small MLP's
    kernels are too short to split, and on 2 busy cores synchronising threads made updates 3-10x
    slower (benchmarks/continuous_update_cost.py --threads); image observations keep torch's default."""
    import torch

    from deeprl.nets import is_image_space

    if requested is None:
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        requested = None if is_image_space(obs_space) else 1
    if requested is not None:
        torch.set_num_threads(requested)


def default_run_dir(algo: str, env_id: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_env = env_id.replace("/", "-").replace(":", "-")
    return Path("runs") / f"{safe_env}__{algo}__s{seed}__{stamp}"


def build_config(algo: str, env_id: str, **options: Any) -> tuple[AlgoSpec, Any, RunOptions]:
    """Resolve algorithm, preset and overrides into (spec, algorithm config, run options).

    Precedence: dataclass defaults < the preset for (algo, env_id) < `options`. Validation runs in
    the dataclasses' __post_init__, so a bad value fails here, before any env is made.
    """
    spec = get_algo(algo)
    preset = PRESETS.get(spec.name, {}).get(env_id, {})
    values = {**spec.default_budget, **preset, **options}
    if "total_steps" in options or "episodes" in options:  # a budget the user names replaces the preset's
        for key in ("total_steps", "episodes"):
            if key not in options:
                values.pop(key, None)
    run_values, algo_values = split_options(spec.config_cls, values)
    return spec, spec.config_cls(**algo_values), RunOptions(env_id=env_id, **run_values)


def train(algo: str, env_id: str, **options: Any) -> RunResult:
    """Train `algo` on `env_id` exactly as `deeprl train ALGO ENV_ID --flag value` does.

    `options` are the CLI flags with underscores: seed=0, run_dir="runs/x", total_steps=...,
    episodes=..., and any hyperparameter of the algorithm's config (see `deeprl train ALGO --help`).
    """
    spec, config, run_options = build_config(algo, env_id, **options)
    return run_training(spec, config, run_options)


def resume(run_dir: Path | str, *, total_steps: int | None = None, episodes: int | None = None,
           progress: str | None = None) -> RunResult:
    """Continue a run from its checkpoint; a larger budget (total_steps/episodes) trains further.

    With a new budget, training runs to that budget: a run that stopped because it was solved
    (--stop-when-solved) does not stop again at once.
    """
    checkpoint = load_checkpoint(run_dir)
    spec, config, run_options = configs_from_checkpoint(checkpoint)
    changes: dict[str, Any] = {"run_dir": Path(run_dir)}
    if total_steps is not None or episodes is not None:
        done = checkpoint["loop"]
        if total_steps is not None and total_steps <= done["env_steps"]:
            raise UsageError(f"--total-steps {total_steps} is not more than the {done['env_steps']} env steps "
                             "this run has already trained. Give a larger budget.")
        if episodes is not None and episodes <= done["episodes"]:
            raise UsageError(f"--episodes {episodes} is not more than the {done['episodes']} episodes this run "
                             "has already trained. Give a larger budget.")
        changes.update(total_steps=total_steps, episodes=episodes, stop_when_solved=False)
    if progress is not None:
        changes["progress"] = progress
    return run_training(spec, config, dataclasses.replace(run_options, **changes), checkpoint)


def run_training(spec: AlgoSpec, config: Any, opts: RunOptions,
                 checkpoint: dict[str, Any] | None = None) -> RunResult:
    resuming = checkpoint is not None
    if opts.n_envs != 1 and not spec.vectorized:
        raise UsageError(f"{spec.name} learns from a single env; drop --n-envs {opts.n_envs}.")
    if opts.total_steps is None and opts.episodes is None:
        raise UsageError("Give a training budget: --total-steps N or --episodes N.")
    if opts.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UsageError("--tensorboard needs the tensorboard package: pip install tensorboard") from None

    # The env first: an unknown id or a space the algorithm cannot handle fails before any file is written.
    env, env_restored = _training_env(spec, opts, checkpoint)
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    act_space = getattr(env, "single_action_space", env.action_space)
    check_spaces(spec, opts.env_id, obs_space, act_space)
    threshold = opts.threshold if opts.threshold is not None else env_spec(opts.env_id).reward_threshold
    if opts.stop_when_solved and threshold is None:
        raise UsageError(f"--stop-when-solved needs a threshold, and {opts.env_id} has no reward_threshold. "
                         "Pass the return that counts as solved with --threshold X.")

    if opts.video_every is not None:  # an env that cannot draw frames fails here, before any file is written
        from deeprl.viz import EvalVideoRecorder

        video = EvalVideoRecorder(opts.env_id, seed=opts.seed + EVAL_SEED_OFFSET, label=spec.name,
                                  max_episode_steps=opts.max_episode_steps)
    else:
        video = None

    run_dir = opts.run_dir or default_run_dir(spec.name, opts.env_id, opts.seed)
    if not resuming:
        if run_dir.exists() and not run_dir.is_dir():
            raise UsageError(f"--run-dir {str(run_dir)!r} is a file. Pass a directory (new or empty).")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UsageError(
                f"Run directory {str(run_dir)!r} already holds files. Continue that run with "
                f"`deeprl train --resume {run_dir}`, or pass another --run-dir."
            )
    device = resolve_device(opts.device)
    if not resuming:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"Cannot create the run directory {str(run_dir)!r}: {e.strerror}. "
                             "Pass a --run-dir you can write to.") from None
    opts = dataclasses.replace(opts, run_dir=run_dir)

    seed_everything(opts.seed)
    set_torch_threads(opts.torch_threads, env)
    algo = spec.load()(config, env, seed=opts.seed, device=device)
    state = LoopState(next_eval=opts.eval_every, next_checkpoint=opts.checkpoint_every)
    if resuming:
        algo.load_state_dict(checkpoint["algo_state"], env_restored=env_restored)
        set_global_rng_state(checkpoint["rng"])
        state = LoopState(**checkpoint["loop"])
        state.next_checkpoint = (state.env_steps // opts.checkpoint_every + 1) * opts.checkpoint_every \
            if opts.checkpoint_every else None
        if not env_restored:
            print(f"note: {opts.env_id} could not be saved in the checkpoint; resuming with fresh episodes.",
                  file=sys.stderr)

    config_record = {
        "algo": spec.name, "env_id": opts.env_id, "seed": opts.seed,
        "config": to_jsonable(config), "run": to_jsonable(opts),
        "preset": opts.env_id if opts.env_id in PRESETS.get(spec.name, {}) else None,
        "versions": versions(),
    }
    write_json(run_dir / CONFIG, config_record)
    metrics = MetricsLog(run_dir, algo.metric_names, state.metrics_rows if resuming else None,
                         opts.tensorboard, state.env_steps if resuming else None)
    evaluator = Evaluator(opts.env_id, opts.eval_episodes, opts.seed + EVAL_SEED_OFFSET, opts.max_episode_steps)
    # --video-every: at the end of the first chunk at or after each multiple of N (chunks end on evaluations,
    # so N a multiple of --eval-every lands exactly); training never sees it (viz.EvalVideoRecorder).
    next_video = (state.env_steps // opts.video_every + 1) * opts.video_every if video is not None else None

    saved_at: list[int] = []  # env steps of the checkpoints this process wrote

    def save() -> None:
        saved_at.append(state.env_steps)
        metrics.flush()
        state.metrics_rows = metrics.rows
        save_checkpoint(run_dir / CHECKPOINT, {
            "format": CHECKPOINT_FORMAT, "deeprl_version": deeprl.__version__,
            "algo": spec.name, "config": to_jsonable(config), "run": to_jsonable(opts),
            "algo_state": algo.state_dict(), "loop": dataclasses.asdict(state),
            "rng": global_rng_state(), "env": env_state(env),
        })

    def evaluate(periodic: bool = True) -> None:
        returns = evaluator(algo.policy)
        mean, std = float(returns.mean()), float(returns.std())
        state.last_eval = (state.env_steps, mean, std)
        metrics.write("eval", state.env_steps, state.episodes, state.train_wall_s, mean, "", std)
        # Time-to-solve counts periodic evaluations only (DESIGN.md, benchmark protocol).
        if periodic and threshold is not None and mean >= threshold and state.solved_at_env_steps is None:
            state.solved_at_env_steps, state.solved_at_wall_s = state.env_steps, state.train_wall_s

    stopped = "budget"
    interrupt = _GracefulInterrupt()
    try:
        with ProgressDisplay(opts, spec.name, state) as progress, interrupt:
            while _budget_left(state, opts):
                if opts.stop_when_solved and state.solved_at_env_steps is not None:
                    stopped = "solved"
                    break
                episodes_left = None if opts.episodes is None else opts.episodes - state.episodes
                start = time.perf_counter()
                steps, finished = algo.learn(_chunk_size(state, opts), episodes_left)
                elapsed = time.perf_counter() - start

                for ep in finished:
                    state.episodes += 1
                    metrics.write("train", ep.env_steps, state.episodes,
                                  state.train_wall_s + (ep.time - start), ep.episode_return,
                                  ep.episode_length, "", ep.extras)
                    state.recent_returns.append(ep.episode_return)
                del state.recent_returns[:-100]  # the progress bar's window
                state.env_steps += steps
                state.train_wall_s += elapsed
                metrics.scalar("time/steps_per_s", steps / max(elapsed, 1e-9), state.env_steps)
                if state.env_steps >= state.next_eval:
                    evaluate()
                    while state.next_eval <= state.env_steps:
                        state.next_eval += opts.eval_every
                if state.next_checkpoint is not None and state.env_steps >= state.next_checkpoint:
                    save()
                    while state.next_checkpoint <= state.env_steps:
                        state.next_checkpoint += opts.checkpoint_every
                if next_video is not None and state.env_steps >= next_video:
                    video(algo.policy, state.env_steps, run_dir / "videos")
                    while next_video <= state.env_steps:
                        next_video += opts.video_every
                progress.update()
                if interrupt.requested:  # Ctrl-C: the chunk is complete, so its state is consistent
                    save()
                    raise KeyboardInterrupt
            if opts.stop_when_solved and state.solved_at_env_steps is not None:
                stopped = "solved"

        # The checkpoint comes before the final evaluation: that evaluation is a report on the finished
        # policy, not a step of training, so a resume with a larger budget drops its row and continues
        # exactly as a run that had the larger budget from the start.
        save()
        if state.last_eval is None or state.last_eval[0] != state.env_steps:
            evaluate(periodic=False)
        if video is not None and not (run_dir / "videos" / f"step_{state.env_steps:07d}.mp4").exists():
            video(algo.policy, state.env_steps, run_dir / "videos")  # the final policy
    except (DivergenceError, WorkerError) as e:
        raise UsageError(f"Training stopped at env step {state.env_steps}: {e}. "
                         f"The last good checkpoint (if any) is kept in {run_dir}.") from None
    except KeyboardInterrupt:
        last = saved_at[-1] if saved_at else checkpoint["loop"]["env_steps"] if resuming else None
        if last is not None:
            print(f"\nInterrupted; saved at env step {last}. "
                  f"Continue with `deeprl train --resume {run_dir}`.", file=sys.stderr)
        else:
            print(f"\nInterrupted before any checkpoint; nothing to resume. Remove {run_dir} and train again.",
                  file=sys.stderr)
        raise
    finally:
        close = getattr(algo, "close", None)  # algorithms with worker processes (A3C) stop them here
        if close is not None:
            close()
        metrics.close()
        evaluator.close()
        env.close()
        if video is not None:
            video.close()

    _, mean, std = state.last_eval
    summary = {
        "algo": spec.name, "env_id": opts.env_id, "seed": opts.seed,
        "env_steps": state.env_steps, "episodes": state.episodes,
        "train_wall_s": round(state.train_wall_s, 4),
        "steps_per_s": round(state.env_steps / max(state.train_wall_s, 1e-9), 1),
        "eval_mean_return": mean, "eval_std_return": std, "eval_episodes": opts.eval_episodes,
        "reward_threshold": threshold, "solved": state.solved_at_env_steps is not None,
        "solved_at_env_steps": state.solved_at_env_steps,
        "solved_at_wall_s": None if state.solved_at_wall_s is None else round(state.solved_at_wall_s, 4),
        "stopped": stopped, "run_dir": str(run_dir),
    }
    write_json(run_dir / SUMMARY, summary)
    return RunResult(run_dir, summary)


class _GracefulInterrupt:
    """The first Ctrl-C asks the loop to stop after the current chunk (it then saves a checkpoint);
    a second one interrupts at once. Only the main thread can install signal handlers."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nStopping after this chunk and saving a checkpoint (Ctrl-C again to stop at once)...",
              file=sys.stderr)

    def __enter__(self) -> _GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _training_env(spec: AlgoSpec, opts: RunOptions, checkpoint: dict[str, Any] | None) -> tuple[Any, bool]:
    """The env to learn from, and whether it is the checkpoint's own (restored mid-episode)."""
    if checkpoint is not None and checkpoint.get("env"):
        return pickle.loads(checkpoint["env"]), True
    if spec.vectorized:
        return make_vec_env(opts.env_id, opts.n_envs, vectorization=opts.vectorization,
                            max_episode_steps=opts.max_episode_steps), False
    return make_env(opts.env_id, max_episode_steps=opts.max_episode_steps), False


def _budget_left(state: LoopState, opts: RunOptions) -> bool:
    if opts.total_steps is not None:
        return state.env_steps < opts.total_steps
    return state.episodes < opts.episodes


def _chunk_size(state: LoopState, opts: RunOptions) -> int:
    """Env steps until the next event (evaluation, checkpoint, end of budget), at most MAX_CHUNK,
    so that evaluations and checkpoints land on exact env steps."""
    chunk = min(MAX_CHUNK, max(1, state.next_eval - state.env_steps))
    if opts.total_steps is not None:
        chunk = min(chunk, opts.total_steps - state.env_steps)
    if state.next_checkpoint is not None:
        chunk = min(chunk, max(1, state.next_checkpoint - state.env_steps))
    return chunk


def versions() -> dict[str, str]:
    import torch

    return {"deeprl": deeprl.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "gymnasium": gym.__version__, "numpy": np.__version__, "platform": platform.platform()}


# ---------------------------------------------------------------- progress bar
class ProgressDisplay:
    """A rich progress bar (steps/s, recent return, last eval) on stderr, only when it is a terminal."""

    def __init__(self, opts: RunOptions, algo: str, state: LoopState):
        from rich.console import Console

        self.state, self.opts = state, opts
        console = Console(stderr=True)
        self.enabled = opts.progress == "on" or (opts.progress == "auto" and console.is_terminal)
        self.bar = None
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.by_episodes = opts.total_steps is None
            self.bar = Progress(
                TextColumn(f"[bold]{algo}[/] {opts.env_id}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                console=console, transient=False,
            )
            total = opts.episodes if self.by_episodes else opts.total_steps
            self.task = self.bar.add_task("train", total=total, unit="episodes" if self.by_episodes else "steps",
                                          info="")
            self._wall0, self._steps0 = state.train_wall_s, state.env_steps

    def update(self) -> None:
        if not self.enabled:
            return
        s = self.state
        rate = (s.env_steps - self._steps0) / max(s.train_wall_s - self._wall0, 1e-9)  # training only
        recent = f"return {np.mean(s.recent_returns):.2f}" if s.recent_returns else ""
        last = f"eval {s.last_eval[1]:.2f}" if s.last_eval else ""
        self.bar.update(self.task, completed=s.episodes if self.by_episodes else s.env_steps,
                        info=f"{rate:,.0f} steps/s  {recent}  {last}")

    def __enter__(self) -> ProgressDisplay:
        if self.bar is not None:
            self.bar.__enter__()
            self.update()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# ---------------------------------------------------------------- using a trained agent
class Agent:
    """A trained policy loaded from a run directory: `act(obs)` for one observation, `act_batch` for many."""

    def __init__(self, algo: Any, algo_name: str, env_id: str, config: Any, run: RunOptions,
                 observation_space: gym.Space, action_space: gym.Space):
        self.algo, self.algo_name, self.env_id, self.config, self.run = algo, algo_name, env_id, config, run
        self.observation_space, self.action_space = observation_space, action_space

    def act_batch(self, obs: Any) -> np.ndarray:
        return self.algo.policy(obs)

    def act(self, obs: Any) -> Any:
        batch = gym.vector.utils.create_empty_array(self.observation_space, 1)
        batch = gym.vector.utils.concatenate(self.observation_space, [obs], batch)
        action = self.algo.policy(batch)[0]
        return action.item() if isinstance(self.action_space, gym.spaces.Discrete) else action

    def __repr__(self) -> str:
        return f"Agent({self.algo_name} on {self.env_id})"


def load(run_dir: Path | str) -> Agent:
    """The trained agent of a run directory (its checkpoint.pt)."""
    checkpoint = load_checkpoint(run_dir)
    spec, config, run = configs_from_checkpoint(checkpoint)
    env = make_env(run.env_id, max_episode_steps=run.max_episode_steps)
    algo = spec.load()(config, env, seed=run.seed, device="cpu")
    algo.load_state_dict(checkpoint["algo_state"], env_restored=True)
    return Agent(algo, spec.name, run.env_id, config, run, env.observation_space, env.action_space)


def evaluate(agent_or_run_dir: Agent | Path | str, episodes: int | None = None,
             seed: int | None = None) -> dict[str, Any]:
    """Deterministic evaluation: {"mean_return", "std_return", "episodes", "returns", ...}.

    By default it repeats the run's own final evaluation (its episodes and seeds), so the mean
    matches summary.json's eval_mean_return.
    """
    agent = agent_or_run_dir if isinstance(agent_or_run_dir, Agent) else load(agent_or_run_dir)
    episodes = agent.run.eval_episodes if episodes is None else episodes
    seed = agent.run.seed + EVAL_SEED_OFFSET if seed is None else seed
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise UsageError(f"episodes must be a positive integer, got {episodes!r}. Pass --episodes 10, say.")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32 - episodes:
        raise UsageError(f"seed must be an integer in [0, 2**32 - episodes), got {seed!r}. Pass --seed 0, say.")
    evaluator = Evaluator(agent.env_id, episodes, seed, agent.run.max_episode_steps)
    try:
        returns = evaluator(agent.act_batch)
    finally:
        evaluator.close()
    return {"mean_return": float(returns.mean()), "std_return": float(returns.std()), "episodes": episodes,
            "min_return": float(returns.min()), "max_return": float(returns.max()),
            "algo": agent.algo_name, "env_id": agent.env_id, "seed": seed, "returns": returns.tolist()}
