"""`deeprl train ALGO ENV_ID --seeds 0-15 --vectorize`: the seeds trained as one seed ensemble in this process
(deeprl.ensemble), each into its own run directory PARENT/sS exactly as `--seeds` writes it.

Every seed is a run of the driver (deeprl.driver: its run directory, evaluator, metrics, checkpoints and summary);
only `learn` is shared: one OnPolicyEnsemble learns a chunk for all of them, then each seed's chunk bookkeeping and
events run as for a run alone (`after_chunk`). Each seed's wall clock (train_wall_s, time-to-solve) is the
ensemble's: a seed costs the time all of them took together. A seed that is done (its budget, or solved with
--stop-when-solved) is finished and written at once and its slot runs on unseen, so the others keep their episodes;
a seed whose loss diverges stops with its last checkpoint, as it would alone, and the others go on.

Checkpoints are each seed's own resume state without its envs (the seeds share one vector env): `--resume
PARENT --vectorize` (or without --vectorize: one process per seed) continues each seed from its checkpoint with
fresh episodes. Seeds checkpointed at different env steps train as separate ensembles, one after the other.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from pathlib import Path
from typing import Any

from deeprl.errors import Interrupted, UsageError

ENSEMBLE_ALGOS = ("ppo", "a2c", "ddpg", "td3", "sac")
ON_POLICY = ("ppo", "a2c")


def check_vectorize(algo: str, config: Any, run: Any, env: Any = None) -> None:
    """What --vectorize cannot do, refused before anything is written."""
    if algo not in ENSEMBLE_ALGOS:
        raise UsageError(
            f"--vectorize trains seeds as one batched ensemble for {', '.join(ENSEMBLE_ALGOS)}; {algo} has no "
            "ensemble update yet. Drop --vectorize (--jobs J runs seeds side by side in processes)."
        )
    if run.backend != "local":
        raise UsageError("--vectorize runs the seeds in this process; drop --backend ray (or drop --vectorize).")
    if getattr(run, "compile", False):
        raise UsageError(
            "--vectorize batches the seeds' networks into one; --compile compiles one seed's update. Drop one of "
            "them (a parent trained with --compile resumes without --vectorize)."
        )
    if run.episodes is not None:
        raise UsageError(
            f"--vectorize trains the seeds in lockstep on an env-step budget; --episodes {run.episodes} ends each "
            "seed at its own step. Give --total-steps N instead."
        )
    if env is not None:
        import gymnasium as gym

        obs_space = getattr(env, "single_observation_space", env.observation_space)
        if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
            raise UsageError(
                f"--vectorize stacks MLP policies over vector observations; {run.env_id} observes {obs_space}. "
                "Drop --vectorize (--jobs J runs seeds side by side in processes)."
            )


class VectorizedSeeds:
    """The `runner` of deeprl.seeds.train_seeds for --vectorize: (parent, seeds, jobs, log) -> outcomes."""

    def __init__(self, spec: Any, config: Any, run: Any, n_seeds: int):
        from deeprl.envs import env_maker

        check_vectorize(spec.name, config, run)
        probe = env_maker(run).make()  # its spaces, checked before the parent directory is claimed
        try:
            check_vectorize(spec.name, config, run, probe)
            if spec.name not in ON_POLICY:
                check_replay_memory(config, run, probe, n_seeds)
        finally:
            probe.close()
        self.spec, self.config, self.run = spec, config, run

    def describe(self, jobs: int | None) -> str:
        return "vectorized: one batched ensemble in this process"

    def __call__(self, parent: Path, seeds: tuple[int, ...], jobs: int | None, log: Any = print) -> list[Any]:
        from deeprl.seeds import SeedOutcome, seed_dir

        outcomes: dict[int, Any] = {}
        groups: dict[int, list[tuple[int, Any]]] = {}  # env steps -> (seed, (spec, config, options, saved))
        for seed in seeds:
            d = seed_dir(parent, seed)
            if (d / "summary.json").is_file():
                outcomes[seed] = SeedOutcome(seed, "skipped", "finished before", _summary(d))
                log(f"seed {seed}: finished before; skipped")
                continue
            plan = self._plan(d, seed)
            groups.setdefault(0 if plan[3] is None else plan[3].header["env_steps"], []).append((seed, plan))
        for env_steps in sorted(groups):
            group = groups[env_steps]
            log(f"seeds {', '.join(str(s) for s, _ in group)}: {'training' if not env_steps else 'resuming'} together")
            outcomes.update(_train_group(group, log))
        return [outcomes[s] for s in seeds]

    def _plan(self, run_dir: Path, seed: int) -> tuple[Any, Any, Any, Any]:
        from deeprl.driver import load_for_resume

        if (run_dir / "resume" / "LATEST").is_file():
            spec, config, options, saved = load_for_resume(run_dir)
            return spec, config, dataclasses.replace(options, progress="off"), saved
        if run_dir.is_dir() and (run_dir / "config.json").is_file():
            shutil.rmtree(run_dir)  # stopped before its first checkpoint: trained again (as deeprl.seeds does)
        options = dataclasses.replace(self.run, seed=seed, run_dir=run_dir, progress="off")
        return self.spec, self.config, options, None


def check_replay_memory(config: Any, run: Any, env: Any, n_seeds: int) -> None:
    """K replay buffers in one process: refused before anything is written when together they do not fit (each
    seed's own buffer checks only itself)."""
    import gymnasium as gym

    from deeprl.buffers import ReplayBuffer, available_memory

    unit_box = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, "float32")
    need = n_seeds * ReplayBuffer.nbytes(config.buffer_size, env.observation_space, unit_box, n_envs=run.n_envs)
    have = available_memory()
    if need > have:
        raise UsageError(
            f"{n_seeds} seeds' replay buffers of {config.buffer_size:,} transitions each need {need / 2**30:.2f} GiB "
            f"in this process, but only {have / 2**30:.2f} GiB of memory is available. Lower --buffer-size (about "
            f"{int(config.buffer_size * have / need * 0.8):,} would fit), or train fewer seeds at once."
        )


def _train_group(group: list[tuple[int, Any]], log: Any) -> dict[int, Any]:
    """Open every seed's run, learn in lockstep until each is done, finish each; returns their outcomes."""
    from deeprl.driver import _open

    runs: list[Any] = []
    try:
        for _, (spec, config, options, saved) in group:
            if saved is not None and saved.env_snapshot is None:  # what _restore tells the user
                saved = dataclasses.replace(saved, env_note="the seeds of an ensemble share one env, not saved")
            runs.append(_open(spec, config, options, saved))
    except BaseException:
        for run in runs:
            run.close()
            run.lock.close()
        raise
    seeds = [seed for seed, _ in group]
    resumed_at = [None if plan[3] is None else plan[3].header["env_steps"] for _, plan in group]
    return _lockstep(seeds, runs, resumed_at, log)


def _lockstep(seeds: list[int], runs: list[Any], resumed_at: list[Any], log: Any) -> dict[int, Any]:
    from deeprl.driver import _budget_left, _chunk_size, _GracefulInterrupt, after_chunk
    from deeprl.ensemble import OffPolicyEnsemble, OnPolicyEnsemble, SeedsDiverged
    from deeprl.envs import maker_of
    from deeprl.evaluation import evaluate_together

    first = runs[0]
    check_vectorize(first.spec.name, first.config, first.opts, first.env)
    n_envs = first.opts.n_envs
    env = maker_of(first.env).make_vec(n_envs * len(runs), vectorization=first.opts.vectorization)
    for run in runs:
        run.algo.env_snapshot = lambda: None  # its envs live in the ensemble's env: a resume starts fresh episodes
    engine = OnPolicyEnsemble if first.spec.name in ON_POLICY else OffPolicyEnsemble
    ensemble = engine([run.algo for run in runs], env)
    for run in runs:
        run.evaluator = _Prepared(run.evaluator)
    outcomes: dict[int, Any] = {}
    live = dict(enumerate(runs))
    started = time.perf_counter()
    try:
        with _GracefulInterrupt() as interrupt:
            while live:
                for k, run in list(live.items()):
                    solved = run.opts.stop_when_solved and run.state.solved_at_env_steps is not None
                    if solved or not _budget_left(run.state, run.opts):
                        outcomes[seeds[k]] = _close(run, "solved" if solved else "budget", started, log, seeds[k])
                        del live[k]
                if not live:
                    break
                lead = next(iter(live.values()))
                start = time.perf_counter()
                try:
                    steps, finished = ensemble.learn(_chunk_size(lead.state, lead.opts), live)
                    diverged: dict[int, str] = {}
                except SeedsDiverged as e:  # every seed that diverged in that update: none is evaluated or saved again
                    steps, finished, diverged = e.progress, e.finished, e.messages
                elapsed = time.perf_counter() - start
                ensemble.scatter()
                for k, why in diverged.items():
                    outcomes[seeds[k]] = _failed(live.pop(k), why, resumed_at[k], log, seeds[k])
                due = {k: run for k, run in live.items() if run.state.env_steps + steps >= run.state.next_eval}
                if due:  # the seeds' periodic evaluations side by side, with the stacked policy
                    evaluators = [run.evaluator.evaluator for run in due.values()]
                    results = evaluate_together(evaluators, functools.partial(ensemble.policy_of, list(due)))
                    for run, returns in zip(due.values(), results):
                        run.evaluator.ready = returns
                for k, run in live.items():
                    after_chunk(run, steps, finished[k], start, elapsed)
                if interrupt.signum is not None:
                    for run in live.values():
                        run.save()
                    raise Interrupted(interrupt.signum)
    finally:
        env.close()
        for run in live.values():
            run.close()
            run.lock.close()
    return outcomes


class _Prepared:
    """A seed's Evaluator whose next periodic evaluation the ensemble already ran (with every due seed's, side by side:
    deeprl.evaluation.evaluate_together); any other evaluation (the final one) runs as usual."""

    def __init__(self, evaluator: Any):
        self.evaluator, self.ready = evaluator, None

    def __call__(self, policy: Any) -> Any:
        if self.ready is None:
            return self.evaluator(policy)
        ready, self.ready = self.ready, None
        return ready

    def close(self) -> None:
        self.evaluator.close()


def _close(run: Any, stopped: str, started: float, log: Any, seed: int) -> Any:
    from deeprl.driver import _finish, final_report
    from deeprl.seeds import SeedOutcome, _result_line

    try:
        final_report(run)
    finally:
        run.close()
    try:
        summary = _finish(run, stopped).summary
    finally:
        run.lock.close()
    message = f"finished at {time.perf_counter() - started:.1f} s ({_result_line(summary)})"
    log(f"seed {seed}: {message}")
    return SeedOutcome(seed, "finished", message, summary)


def _failed(run: Any, why: str, resumed_at: int | None, log: Any, seed: int) -> Any:
    from deeprl.seeds import SeedOutcome

    last = run.saved_at[-1] if run.saved_at else resumed_at  # this process's last checkpoint, or the one it resumed
    kept = f"its last good checkpoint (env step {last}) is kept" if last is not None else "no checkpoint yet"
    run.close()
    run.lock.close()
    message = f"Training stopped: {why}; {kept} in {run.run_dir}"
    log(f"seed {seed}: {message}")
    return SeedOutcome(seed, "failed", message)


def _summary(run_dir: Path) -> dict[str, Any]:
    from deeprl.seeds import _read_summary

    return _read_summary(run_dir)
