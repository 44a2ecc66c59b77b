"""The training driver every algorithm shares: build a config, train, resume.

A run is opened (env, algorithm, run directory, metrics), then its loop alternates `algo.learn(chunk)`
with the periodic events (evaluation, checkpoint, video) that land on exact env steps, then it is
finished (a last checkpoint, the final evaluation, summary.json). The run directory's files and
formats are `deeprl.rundir`'s; this module decides when they are written.

A checkpoint records how many metrics rows it covers, so `--resume` after a kill truncates the rows
written since and continues exactly where the checkpoint left off: the resumed run ends with the
uninterrupted run's results. SIGINT and SIGTERM ask the loop to stop after the current chunk, save,
and exit (130 and 143 from the CLI); a second signal stops at once.

Callbacks (`deeprl.callbacks`, Python API only) are called between chunks and at each evaluation and
checkpoint; one returning False stops the run like the end of its budget (a checkpoint, the final
evaluation, summary.json), so that `--resume` continues it exactly. The trackers (`deeprl.tracking`:
TensorBoard, W&B) get what metrics.csv gets, through `MetricsLog`.
"""

from __future__ import annotations

import dataclasses
import pickle
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeprl._version import __version__
from deeprl.agent import configs_from_record
from deeprl.callbacks import CallbackError, CallbackList, CheckpointInfo, EpisodeInfo, EvalInfo, StepInfo
from deeprl.config import RunOptions, to_jsonable
from deeprl.envs import (
    attach_maker,
    check_names_from_file,
    env_maker,
    env_spec,
    env_state,
    fit_mask_to_algorithm,
    global_rng_state,
    import_trusted_modules,
    maker_of,
    register_env_factory,
    seed_everything,
    set_global_rng_state,
)
from deeprl.errors import DivergenceError, Interrupted, SignalScope, UsageError, WorkerError
from deeprl.evaluation import EVAL_SEED_OFFSET, Evaluator
from deeprl.presets import PRESETS
from deeprl.progress import ProgressDisplay
from deeprl.registry import AlgoSpec, build_config, check_spaces, get_algo  # noqa: F401 - build_config: re-exported
from deeprl.rundir import (
    BEST_POLICY,
    CONFIG,
    FORMAT,
    LATEST,
    POLICY,
    RESUME,
    SUMMARY,
    MetricsLog,
    ResumeState,
    check_no_links,
    check_writable,
    claim_run_dir,
    load_resume_state,
    lock_run_dir,
    read_config,
    read_json,
    remove_stray_temp_files,
    save_policy,
    save_resume_state,
    versions,
    write_json,
)
from deeprl.spaces import has_mask
from deeprl.tracking import TensorBoardTracker, WandbTracker, check_wandb, hyperparameters, metric_keys, new_wandb_id

MAX_CHUNK = 5_000  # env steps between progress updates (and callbacks' on_step)


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
    best_eval: tuple[int, float, float] | None = None  # the evaluation whose policy is BEST_POLICY
    recent_returns: list[float] = field(default_factory=list)  # the last 100 training episodes' returns
    recent_lengths: list[float] = field(default_factory=list)  # ... and lengths (rollout/ep_len_mean)


@dataclass(frozen=True)
class RunResult:
    """What `deeprl.train` returns: where the run is and its summary.json."""

    run_dir: Path
    summary: dict[str, Any]

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"RunResult(run_dir={str(self.run_dir)!r}, eval_mean_return={s['eval_mean_return']:.3f}, "
            f"solved={s['solved']}, env_steps={s['env_steps']})"
        )


# ---------------------------------------------------------------- entry points
def train(algo: str, env_id: str | Callable[[], Any], *, callbacks: Any = (), **options: Any) -> RunResult:
    """Train `algo` on `env_id` exactly as `deeprl train ALGO ENV_ID --flag value` does.

    `env_id`: a Gymnasium id, 'module:EnvId', or a function of no arguments that returns an env (a
    module-level function is recorded as 'module:function'; a lambda or closure works in this process
    only, see `deeprl.envs.register_env_factory`). `options` are the CLI flags with underscores: seed=0,
    run_dir="runs/x", total_steps=..., episodes=..., env_kwargs={...}, wrappers=("module:fn",), and any
    hyperparameter of the algorithm's config (see `deeprl train ALGO --help`).

    `callbacks`: `deeprl.Callback` objects (or functions given every record) called at the run's events;
    one returning False stops the run (see `deeprl.callbacks`). They are not run options: config.json does
    not record them.
    """
    hooks = CallbackList(callbacks)  # checked before anything is made or written
    env_id = register_env_factory(env_id)
    spec, config, run_options = build_config(algo, env_id, **options)
    return run_training(spec, config, run_options, callbacks=hooks)


def resume(
    run_dir: Path | str,
    *,
    total_steps: int | None = None,
    episodes: int | None = None,
    progress: str | None = None,
    trust_modules: tuple[str, ...] = (),
    callbacks: Any = (),
    ray_address: str | None = None,
    compile: bool | None = None,
) -> RunResult:
    """Continue a run from its resume state; a larger budget (total_steps/episodes) trains further.

    Everything is checked before anything in the directory changes: the run directory's format, that
    the resume state's algorithm, env id and settings match config.json, that the env and wrappers it
    names run no code you did not trust (`trust_modules`, as for deeprl.load), and that the directory is
    writable. With a new budget, training runs to that budget: a run that stopped because it was
    solved (--stop-when-solved) does not stop again at once. A run a callback stopped trains on to its
    budget. `callbacks` as for `train` (the first run's are not recorded: give them again if you want them).
    `ray_address`: for a run with --backend ray, the Ray cluster to continue on (a cluster's address changes).
    `compile`: continue with (True) or without (False) --compile, whatever the run had (default: as it had).
    """
    hooks = CallbackList(callbacks)
    run_dir = Path(run_dir)
    spec, config, run_options, saved = load_for_resume(run_dir, trust_modules)
    changes: dict[str, Any] = {"run_dir": run_dir}
    if total_steps is not None or episodes is not None:
        done = saved.state["loop"]
        if total_steps is not None and total_steps <= done["env_steps"]:
            raise UsageError(
                f"--total-steps {total_steps} is not more than the {done['env_steps']} env steps "
                "this run has already trained. Give a larger budget."
            )
        if episodes is not None and episodes <= done["episodes"]:
            raise UsageError(
                f"--episodes {episodes} is not more than the {done['episodes']} episodes this run "
                "has already trained. Give a larger budget."
            )
        changes.update(total_steps=total_steps, episodes=episodes, stop_when_solved=False)
    if progress is not None:
        changes["progress"] = progress
    if ray_address is not None:
        if run_options.backend != "ray":
            raise UsageError(
                f"--ray-address is for a run with --backend ray; {run_dir} ran locally. Drop --ray-address."
            )
        changes["ray_address"] = ray_address
    if compile is not None:  # the checkpoint is the same either way (deeprl.compiling)
        changes["compile"] = compile
    return run_training(spec, config, dataclasses.replace(run_options, **changes), saved, hooks)


def load_for_resume(
    run_dir: Path, trust_modules: tuple[str, ...] = ()
) -> tuple[AlgoSpec, Any, RunOptions, ResumeState]:
    """(spec, config, run options, resume state) of a run directory, every check of `resume` made first."""
    import_trusted_modules(trust_modules)
    record = read_config(run_dir)
    source = f"{str(run_dir / CONFIG)!r}"
    recorded = configs_from_record(record, source)[2]  # data only: imports and calls nothing it names
    check_names_from_file(recorded.env_id, source, recorded.wrappers)
    check_no_links(run_dir)
    saved = load_resume_state(run_dir)
    check_matches_config(saved, record, run_dir)
    check_writable(run_dir)
    source = f"The resume state of {str(run_dir)!r}"
    spec, config, run_options = configs_from_record(saved.header, source)
    check_names_from_file(run_options.env_id, source, run_options.wrappers)  # the options the run will use
    return spec, config, dataclasses.replace(run_options, run_dir=run_dir), saved


def check_matches_config(saved: ResumeState, record: dict[str, Any], run_dir: Path) -> None:
    """A resume state that belongs to another run (another algorithm, env or settings) is refused."""
    header = saved.header
    if (
        not isinstance(header.get("config"), dict)
        or not isinstance(header.get("run"), dict)
        or not (
            isinstance(saved.state, dict)
            and {"algo", "loop", "rng"} <= set(saved.state)
            and isinstance(saved.state["loop"], dict)
            and all(type(saved.state["loop"].get(k)) is int for k in ("env_steps", "episodes"))
        )
    ):
        raise UsageError(
            f"The resume state in {str(run_dir)!r} is incomplete (its config, run options, loop or RNG state is "
            "missing): it was changed after deeprl wrote it. Nothing was changed; train again."
        )
    budget = {"total_steps", "episodes", "stop_when_solved", "progress", "run_dir", "ray_address", "compile"}
    differences = [
        f"{key}: config.json has {record.get(key)!r}, the resume state {header.get(key)!r}"
        for key in ("algo", "env_id", "seed")
        if record.get(key) != header.get(key)
    ]
    if header.get("format") != FORMAT:
        differences.insert(
            0, f"format: the resume state is format {header.get('format')!r}, this deeprl reads {FORMAT}"
        )
    if not differences:
        differences += [
            f"config.{k}: {record['config'].get(k)!r} vs {v!r}"
            for k, v in header.get("config", {}).items()
            if record["config"].get(k) != v
        ]
        differences += [
            f"run.{k}: {record['run'].get(k)!r} vs {v!r}"
            for k, v in header.get("run", {}).items()
            if k not in budget and record["run"].get(k) != v
        ]
    if differences:
        raise UsageError(
            f"The resume state in {str(run_dir)!r} does not belong to its config.json "
            f"({'; '.join(differences[:5])}). Nothing was changed. Resume the directory the "
            "resume state came from, or train again."
        )


# ---------------------------------------------------------------- a run
@dataclass
class _Run:
    """Everything an open run holds; the loop and the events read and change it."""

    spec: AlgoSpec
    config: Any
    opts: RunOptions
    run_dir: Path
    env: Any
    algo: Any
    state: LoopState
    metrics: MetricsLog
    evaluator: Evaluator
    video: Any
    threshold: float | None
    lock: Any
    saved_at: list[int] = field(default_factory=list)  # env steps of the checkpoints this process wrote
    next_video: int | None = None
    best_policy: dict[str, Any] | None = None  # a CPU copy of the policy of state.best_eval (BEST_POLICY)
    callbacks: CallbackList = field(default_factory=CallbackList)
    next_save: int | None = None  # the env step of the next checkpoint a callback asked for (SaveEvery)

    def save(self) -> None:
        s = self.state
        self.metrics.flush()
        s.metrics_rows = self.metrics.rows
        info = {"algo": self.spec.name, "env_id": self.opts.env_id, "env_steps": s.env_steps}
        save_policy(self.run_dir, self.algo.policy_state(), info)
        header = {
            **info,
            "format": FORMAT,
            "seed": self.opts.seed,
            "deeprl_version": __version__,
            "config": to_jsonable(self.config),
            "run": to_jsonable(self.opts),
        }
        tree = {
            "algo": self.algo.state_dict(),
            "loop": dataclasses.asdict(s),
            "rng": global_rng_state(),
            # The best policy travels with the checkpoint: after a kill, policy_best.safetensors may hold a
            # policy from past the checkpoint, and the resumed run rewrites it from here (_open).
            "best_policy": self.best_policy,
        }
        # the algorithm's own envs where it has them elsewhere (Ray workers'), else the env this process steps
        snapshot = getattr(self.algo, "env_snapshot", None)
        save_resume_state(self.run_dir, header, tree, snapshot() if snapshot is not None else env_state(self.env))
        self.saved_at.append(s.env_steps)  # only once it is on disk: the interrupt message names it
        if self.callbacks.wants("on_checkpoint"):
            latest = read_json(self.run_dir / RESUME / LATEST)["state"]
            self.callbacks(
                "on_checkpoint",
                CheckpointInfo(
                    s.env_steps,
                    s.episodes,
                    s.train_wall_s,
                    self.run_dir,
                    self.run_dir / RESUME / latest,
                    self.run_dir / POLICY,
                ),
            )

    def evaluate(self, periodic: bool = True) -> None:
        s = self.state
        returns = self.evaluator(self.algo.policy)
        mean, std = float(returns.mean()), float(returns.std())
        s.last_eval = (s.env_steps, mean, std)
        self.metrics.write("eval", s.env_steps, s.episodes, s.train_wall_s, mean, "", std)
        is_best = s.best_eval is None or mean > s.best_eval[1]
        if is_best:  # keep the best policy: presets can train past solving
            s.best_eval = (s.env_steps, mean, std)
            self.best_policy = detached_copy(self.algo.policy_state())
            self.save_best()
        # Time-to-solve counts periodic evaluations only (docs/benchmarks.md, "Protocol").
        if periodic and self.threshold is not None and mean >= self.threshold and s.solved_at_env_steps is None:
            s.solved_at_env_steps, s.solved_at_wall_s = s.env_steps, s.train_wall_s
        if self.callbacks.wants("on_eval"):
            self.callbacks(
                "on_eval",
                EvalInfo(
                    s.env_steps,
                    s.episodes,
                    s.train_wall_s,
                    self.run_dir,
                    mean,
                    std,
                    self.opts.eval_episodes,
                    is_best,
                    s.best_eval[1],
                    periodic,
                ),
            )

    def save_best(self) -> None:
        """policy_best.safetensors from best_policy (or, with none yet, no such file: a resumed run removes the
        one a killed process wrote past its last checkpoint)."""
        s = self.state
        if self.best_policy is None:
            (self.run_dir / BEST_POLICY).unlink(missing_ok=True)
            return
        env_steps, mean, std = s.best_eval
        info = {"algo": self.spec.name, "env_id": self.opts.env_id, "env_steps": env_steps}
        save_policy(
            self.run_dir, self.best_policy, {**info, "eval_mean_return": mean, "eval_std_return": std}, BEST_POLICY
        )

    def close(self) -> None:
        close = getattr(self.algo, "close", None)  # algorithms with worker processes (A3C) stop them here
        if close is not None:
            close()
        self.metrics.close()
        self.evaluator.close()
        self.env.close()
        if self.video is not None:
            self.video.close()


def run_training(
    spec: AlgoSpec, config: Any, opts: RunOptions, saved: ResumeState | None = None, callbacks: Any = ()
) -> RunResult:
    hooks = callbacks if isinstance(callbacks, CallbackList) else CallbackList(callbacks)
    run = _open(spec, config, opts, saved)
    run.callbacks, run.next_save = hooks, hooks.next_save(run.state.env_steps)
    try:  # the run directory stays locked until summary.json is written
        try:
            stopped = _loop(run)
            final_report(run)
        except (DivergenceError, WorkerError, KeyboardInterrupt, CallbackError) as e:
            _report_stop(run, saved, e)
            raise
        finally:
            run.close()
        return _finish(run, stopped)
    finally:
        run.lock.close()


def final_report(run: _Run) -> None:
    """The end of training: the last checkpoint, then the final evaluation and video.

    The checkpoint comes before the final evaluation: that evaluation is a report on the finished policy, not a
    step of training, so a resume with a larger budget drops its row and continues exactly as a run that had the
    larger budget from the start."""
    run.save()
    if run.state.last_eval is None or run.state.last_eval[0] != run.state.env_steps:
        run.evaluate(periodic=False)
    final_video = run.run_dir / "videos" / f"step_{run.state.env_steps:07d}.mp4"
    if run.video is not None and not final_video.exists():
        _record_video(run)  # the final policy


def _report_stop(run: _Run, saved: ResumeState | None, e: BaseException) -> None:
    """Say where the run stands: the last checkpoint on disk, and what to do next."""
    last = run.saved_at[-1] if run.saved_at else saved.header["env_steps"] if saved else None
    if isinstance(e, CallbackError):  # the user's code: keep its traceback (the cause)
        kept = (
            f"The last checkpoint (env step {last}) is kept in {run.run_dir}: deeprl.resume({str(run.run_dir)!r}) "
            "continues from it."
            if last is not None
            else f"No checkpoint had been written yet ({run.run_dir} holds the metrics so far)."
        )
        raise CallbackError(f"{e}. {kept}") from e.__cause__
    if isinstance(e, (DivergenceError, WorkerError)):
        kept = (
            f"The last good checkpoint (env step {last}) is kept in {run.run_dir}."
            if last is not None
            else f"No checkpoint had been written yet ({run.run_dir} holds the metrics so far)."
        )
        raise UsageError(f"Training stopped: {e}. {kept}") from None
    if last is not None:
        print(
            f"\nInterrupted; saved at env step {last}. Continue with `deeprl train --resume {run.run_dir}`.",
            file=sys.stderr,
        )
    else:
        print(
            f"\nInterrupted before any checkpoint; nothing to resume. Delete {run.run_dir} and train again.",
            file=sys.stderr,
        )


def _check_options(spec: AlgoSpec, opts: RunOptions) -> None:
    if opts.n_envs != 1 and not spec.vectorized:
        raise UsageError(f"{spec.name} learns from a single env; drop --n-envs {opts.n_envs}.")
    if opts.total_steps is None and opts.episodes is None:
        raise UsageError("Give a training budget: --total-steps N or --episodes N.")
    if opts.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UsageError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    if opts.wandb:
        check_wandb()
    if opts.backend == "ray":
        from deeprl.backends import check_ray_options

        check_ray_options(spec.name, opts)
    if opts.compile and not hasattr(spec.load(), "compile"):
        from deeprl.registry import ALGOS

        compiled = [s.name for s in ALGOS.values() if hasattr(s.load(), "compile")]
        raise UsageError(f"--compile is for {', '.join(compiled)}; {spec.name} has no compiled update. Drop --compile.")


def _open(spec: AlgoSpec, config: Any, opts: RunOptions, saved: ResumeState | None) -> _Run:
    """Check everything that can fail before a file is written, then claim the run directory."""
    _check_options(spec, opts)
    # The env first: an unknown id or a space the algorithm cannot handle fails before any file is written.
    env, env_restored, ray_envs = _training_env(spec, opts, saved)
    opened: list[Any] = [env]  # closed again if anything below fails
    try:
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        check_spaces(spec, opts.env_id, obs_space, act_space)
        threshold = _threshold(opts)
        video = None
        if opts.video_every is not None:  # an env that cannot draw frames fails here, before any file is written
            from deeprl.viz.video import EvalVideoRecorder

            video = EvalVideoRecorder(maker_of(env), seed=opts.seed + EVAL_SEED_OFFSET, label=spec.name)
            opened.append(video)
        device = resolve_device(opts.device)
        seed_everything(opts.seed)
        set_torch_threads(opts.torch_threads, env)
        algo = spec.load()(config, env, seed=opts.seed, device=device)  # a buffer too large fails here
        if opts.compile:  # losses and acting through torch.compile (deeprl.compiling); modules, state unchanged
            algo.compile()
        if opts.backend == "ray":  # Ray started or joined, the workers up (or a clear error), before any file
            from deeprl.backends import attach_ray

            opened.append(_Closing(algo))  # closing it stops the workers
            opts = attach_ray(spec.name, algo, opts, maker_of(env), ray_envs)
        state = LoopState(next_eval=opts.eval_every, next_checkpoint=opts.checkpoint_every)
        if saved is not None:
            state = _restore(algo, saved, env_restored, opts)
        # The training env's recipe: the same kwargs, wrappers, time limit and masks.
        evaluator = Evaluator(maker_of(env), opts.eval_episodes, opts.seed + EVAL_SEED_OFFSET)
        opened.append(evaluator)
        # Only now is the directory claimed: a run that cannot start leaves nothing behind.
        run_dir = claim_run_dir(opts.run_dir, spec.name, opts.env_id, opts.seed) if saved is None else opts.run_dir
        opts = dataclasses.replace(opts, run_dir=run_dir)
        if opts.wandb and opts.wandb_id is None:  # recorded in config.json: a resume continues this W&B run
            opts = dataclasses.replace(opts, wandb_id=new_wandb_id())
        lock = lock_run_dir(run_dir)  # held until the run closes: a --resume meanwhile is refused
        opened.append(lock)
        # On resume, metrics.csv is checked (and cut to the checkpoint's rows) before anything else is written.
        metrics = MetricsLog(run_dir, algo.metric_names, state.metrics_rows if saved else None)
        opened.append(metrics)  # closing it closes the trackers it holds
        keys = metric_keys(spec.name, tuple(algo.metric_names))
        hparams = hyperparameters(spec.name, opts.env_id, to_jsonable(config), to_jsonable(opts))
        if opts.tensorboard:
            metrics.trackers += (TensorBoardTracker(run_dir, keys, hparams, state.env_steps + 1 if saved else None),)
        if opts.wandb:
            metrics.trackers += (WandbTracker(opts.wandb_id, opts.wandb_project, run_dir.name, hparams, keys),)
    except BaseException:
        for thing in opened:
            thing.close()
        raise
    if saved is not None:
        remove_stray_temp_files(run_dir)
    write_json(
        run_dir / CONFIG,
        {
            "format": FORMAT,
            "algo": spec.name,
            "env_id": opts.env_id,
            "seed": opts.seed,
            "config": to_jsonable(config),
            "run": to_jsonable(opts),
            "preset": opts.env_id if opts.env_id in PRESETS.get(spec.name, {}) else None,
            "versions": versions(),
        },
    )
    run = _Run(spec, config, opts, run_dir, env, algo, state, metrics, evaluator, video, threshold, lock)
    if saved is not None:
        run.best_policy = saved.state.get("best_policy")
        run.save_best()
    # --video-every: at the end of the first chunk at or after each multiple of N (chunks end on evaluations,
    # so N a multiple of --eval-every lands exactly); training never sees it (viz.video.EvalVideoRecorder).
    if video is not None:
        run.next_video = (state.env_steps // opts.video_every + 1) * opts.video_every
    return run


def _threshold(opts: RunOptions) -> float | None:
    """The return that counts as solved: --threshold, else the env's reward_threshold (None: it has none)."""
    threshold = opts.threshold if opts.threshold is not None else env_spec(opts.env_id).reward_threshold
    if opts.stop_when_solved and threshold is None:
        raise UsageError(
            f"--stop-when-solved needs a threshold, and {opts.env_id} has no reward_threshold. "
            "Pass the return that counts as solved with --threshold X."
        )
    return threshold


def _restore(algo: Any, saved: ResumeState, env_restored: bool, opts: RunOptions) -> LoopState:
    """Load the resume state into a fresh algorithm; a state that does not fit (edited, or from another
    deeprl) is a UsageError, raised before anything in the run directory is written."""
    try:
        algo.load_state_dict(saved.state["algo"], env_restored=env_restored)
        set_global_rng_state(saved.state["rng"])
        state = LoopState(**saved.state["loop"])
        for name in ("env_steps", "episodes", "next_eval", "metrics_rows"):
            if isinstance(getattr(state, name), bool) or not isinstance(getattr(state, name), int):
                raise TypeError(f"loop.{name} is {getattr(state, name)!r}")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        raise UsageError(
            f"The resume state of {str(opts.run_dir)!r} does not fit {opts.env_id} with this config "
            f"({type(e).__name__}: {str(e)[:200]}). It was changed after deeprl wrote it, or written by another "
            "version; nothing was changed. Train again."
        ) from None
    state.next_checkpoint = (
        (state.env_steps // opts.checkpoint_every + 1) * opts.checkpoint_every if opts.checkpoint_every else None
    )
    if not env_restored:
        why = saved.env_note or f"{opts.env_id} could not be saved in the checkpoint"
        print(f"note: {why}; resuming with fresh episodes.", file=sys.stderr)
    return state


def _loop(run: _Run) -> str:
    """Train until the budget is spent (or the run is solved, with --stop-when-solved); returns why it stopped."""
    state, opts, algo = run.state, run.opts, run.algo
    with ProgressDisplay(opts, run.spec.name, state) as progress, _GracefulInterrupt() as interrupt:
        while _budget_left(state, opts):
            if opts.stop_when_solved and state.solved_at_env_steps is not None:
                return "solved"
            episodes_left = None if opts.episodes is None else opts.episodes - state.episodes
            start = time.perf_counter()
            steps, finished = algo.learn(_chunk_size(state, opts, run.next_save), episodes_left)
            after_chunk(run, steps, finished, start, time.perf_counter() - start)
            progress.update()
            if interrupt.signum is not None:  # the chunk is complete, so its state is consistent
                run.save()
                raise Interrupted(interrupt.signum)
            if run.callbacks.stopped_by is not None:  # after the chunk's events: run_training saves and finishes
                return "callback"
    return "solved" if opts.stop_when_solved and state.solved_at_env_steps is not None else "budget"


def after_chunk(run: _Run, steps: int, finished: list[Any], start: float, elapsed: float) -> None:
    """A learned chunk's bookkeeping: its episodes into metrics.csv (and the callbacks), the counters, the
    trackers, then the events due (evaluation, checkpoint, video). A seed ensemble (deeprl.ensemble_runner) calls
    it for each seed after the chunk all of them learned together."""
    state = run.state
    for ep in finished:
        state.episodes += 1
        run.metrics.write(
            "train",
            ep.env_steps,
            state.episodes,
            state.train_wall_s + (ep.time - start),
            ep.episode_return,
            ep.episode_length,
            "",
            ep.extras,
        )
        state.recent_returns.append(ep.episode_return)
        state.recent_lengths.append(ep.episode_length)
        if run.callbacks.wants("on_episode"):
            run.callbacks(
                "on_episode",
                EpisodeInfo(
                    ep.env_steps,
                    state.episodes,
                    state.train_wall_s + (ep.time - start),
                    run.run_dir,
                    ep.episode_return,
                    ep.episode_length,
                    dict(zip(run.algo.metric_names, ep.extras)),
                ),
            )
    del state.recent_returns[:-100]  # the progress bar's window (and rollout/ep_rew_mean's, as SB3's)
    del state.recent_lengths[:-100]
    state.env_steps += steps
    state.train_wall_s += elapsed
    recent = sum(state.recent_returns) / len(state.recent_returns) if state.recent_returns else None
    if run.metrics.trackers:
        _log_chunk(run, recent)
    if run.callbacks.wants("on_step"):
        run.callbacks(
            "on_step",
            StepInfo(
                state.env_steps,
                state.episodes,
                state.train_wall_s,
                run.run_dir,
                steps,
                steps / max(elapsed, 1e-9),
                recent,
            ),
        )
    _periodic_events(run)


def _log_chunk(run: _Run, recent_return: float | None) -> None:
    """The trackers' per-chunk scalars, named as SB3 names them (deeprl.tracking)."""
    state = run.state
    scalars = {"time/fps": state.env_steps / max(state.train_wall_s, 1e-9)}
    if recent_return is not None:
        scalars["rollout/ep_rew_mean"] = recent_return
        scalars["rollout/ep_len_mean"] = sum(state.recent_lengths) / max(len(state.recent_lengths), 1)
    run.metrics.chunk(state.env_steps, scalars)


def _record_video(run: _Run) -> None:
    recording = run.video(run.algo.policy, run.state.env_steps, run.run_dir / "videos")
    run.metrics.video(run.state.env_steps, recording.path)


def _periodic_events(run: _Run) -> None:
    state, opts = run.state, run.opts
    if state.env_steps >= state.next_eval:
        run.evaluate()
        while state.next_eval <= state.env_steps:
            state.next_eval += opts.eval_every
    checkpoint_due = state.next_checkpoint is not None and state.env_steps >= state.next_checkpoint
    asked_by_callback = run.next_save is not None and state.env_steps >= run.next_save  # SaveEvery
    if checkpoint_due or asked_by_callback:
        run.save()
    if checkpoint_due:
        while state.next_checkpoint <= state.env_steps:
            state.next_checkpoint += opts.checkpoint_every
    if asked_by_callback:
        run.next_save = run.callbacks.next_save(state.env_steps)
    if run.next_video is not None and state.env_steps >= run.next_video:
        _record_video(run)
        while run.next_video <= state.env_steps:
            run.next_video += opts.video_every


def _finish(run: _Run, stopped: str) -> RunResult:
    state, opts = run.state, run.opts
    _, mean, std = state.last_eval
    summary = {
        "algo": run.spec.name,
        "env_id": opts.env_id,
        "seed": opts.seed,
        "env_steps": state.env_steps,
        "episodes": state.episodes,
        "train_wall_s": round(state.train_wall_s, 4),
        "steps_per_s": round(state.env_steps / max(state.train_wall_s, 1e-9), 1),
        "eval_mean_return": mean,
        "eval_std_return": std,
        "eval_episodes": opts.eval_episodes,
        "reward_threshold": run.threshold,
        "solved": state.solved_at_env_steps is not None,
        "solved_at_env_steps": state.solved_at_env_steps,
        "solved_at_wall_s": None if state.solved_at_wall_s is None else round(state.solved_at_wall_s, 4),
        # The final policy is policy.safetensors; the best evaluated one (`deeprl eval RUN --best`) may be earlier.
        "best_eval_mean_return": state.best_eval[1],
        "best_eval_env_steps": state.best_eval[0],
        "best_policy": BEST_POLICY,
        "stopped": stopped,  # budget, solved (--stop-when-solved) or callback
        "stopped_by": run.callbacks.stopped_by if stopped == "callback" else None,  # "<callback>.<hook>"
        "run_dir": str(run.run_dir),
    }
    backend_report = getattr(run.algo, "backend_report", None)
    if backend_report is not None:  # a Ray run: its workers, rounds and traffic (deeprl.backends)
        summary["backend"] = backend_report()
    write_json(run.run_dir / SUMMARY, summary)
    return RunResult(run.run_dir, summary)


class _GracefulInterrupt(SignalScope):
    """The first SIGINT (Ctrl-C) or SIGTERM (`timeout`, `docker stop`, Kubernetes, Slurm) asks the loop to
    stop after the current chunk (it then saves a checkpoint); a second one interrupts at once. Only the
    main thread can install signal handlers."""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this chunk and saving a checkpoint "
            "(signal again to stop at once)...",
            file=sys.stderr,
        )


def _training_env(spec: AlgoSpec, opts: RunOptions, saved: ResumeState | None) -> tuple[Any, bool, Any]:
    """The env to learn from, whether it is the snapshot's own (restored mid-episode), and a Ray run's snapshot
    of its workers' envs (which the workers restore; the env here is then a fresh one, for its spaces and
    recipe). The snapshot is unpickled only when `rundir` verified this user's signature on it.

    The env carries its recipe (`deeprl.envs.maker_of`), from which the evaluator, the video recorder and
    A3C's workers make theirs: the run options' env, masks joined to the observation unless the algorithm
    cannot take them (`fit_mask_to_algorithm`)."""
    maker = env_maker(opts)
    loaded = None if saved is None or saved.env_snapshot is None else pickle.loads(saved.env_snapshot)
    ray_envs = None
    if opts.backend == "ray":
        from deeprl.backends import ray_snapshot

        ray_envs = ray_snapshot(loaded)
        # a local run's env cannot be split over workers; A3C's workers start fresh episodes on either backend,
        # and its snapshot is the driver's own env, restored as the local backend restores it
        if ray_envs is not None or spec.name != "a3c":
            loaded = None
    elif loaded is not None and hasattr(loaded, "workers") and not hasattr(loaded, "step"):
        loaded = None  # a Ray run's snapshot, resumed locally
    if loaded is not None:
        if maker_of(loaded) is None:  # a snapshot written before envs carried their recipe
            obs_space = getattr(loaded, "single_observation_space", loaded.observation_space)
            attach_maker(loaded, dataclasses.replace(maker, action_mask=has_mask(obs_space)))
        return loaded, True, None
    if spec.vectorized:
        make = lambda m: m.make_vec(opts.n_envs, vectorization=opts.vectorization)
    else:
        make = lambda m: m.make()
    env, _ = fit_mask_to_algorithm(maker, spec.support, make, algo=spec.name)
    return env, ray_envs is not None, ray_envs


class _Closing:
    """`close()` for an algorithm that may have none (those without workers)."""

    def __init__(self, thing: Any):
        self.thing = thing

    def close(self) -> None:
        close = getattr(self.thing, "close", None)
        if close is not None:
            close()


def detached_copy(tree: Any) -> Any:
    """A copy of a policy state (nested dicts/lists of tensors, arrays, numbers) that later training cannot
    change: tensors detached, on the CPU, cloned."""
    import numpy as np
    import torch

    if isinstance(tree, dict):
        return {k: detached_copy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(detached_copy(v) for v in tree)
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu().clone()
    if isinstance(tree, np.ndarray):
        return tree.copy()
    return tree


def _budget_left(state: LoopState, opts: RunOptions) -> bool:
    if opts.total_steps is not None:
        return state.env_steps < opts.total_steps
    return state.episodes < opts.episodes


def _chunk_size(state: LoopState, opts: RunOptions, next_save: int | None = None) -> int:
    """Env steps until the next event (evaluation, checkpoint, a callback's checkpoint, end of budget), at
    most MAX_CHUNK, so that evaluations and checkpoints land on exact env steps."""
    chunk = min(MAX_CHUNK, max(1, state.next_eval - state.env_steps))
    if opts.total_steps is not None:
        chunk = min(chunk, opts.total_steps - state.env_steps)
    if state.next_checkpoint is not None:
        chunk = min(chunk, max(1, state.next_checkpoint - state.env_steps))
    if next_save is not None:
        chunk = min(chunk, max(1, next_save - state.env_steps))
    return chunk


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

    from deeprl.spaces import has_image as is_image_space  # a Dict with an image key counts

    if requested is None:
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        requested = None if is_image_space(obs_space) else 1
    if requested is not None:
        torch.set_num_threads(requested)
