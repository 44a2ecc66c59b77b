"""Hyperparameter search with Optuna: `deeprl tune ALGO ENV_ID --trials N`.

A study is an Optuna study (TPE sampler seeded from --seed) whose trials are ordinary deeprl runs, each in its
own run directory STUDY_DIR/trials/NNNN (NNNN: the trial's number). A trial samples the hyperparameters of the
search space (deeprl/search_spaces.py, or --space FILE) over the preset for the env and the flags given, trains,
and reports each periodic evaluation to the pruner through a deeprl Callback (`on_eval` -> `trial.report(value,
env_steps)`); when the pruner says so, the callback returns False, the run stops cleanly (checkpoint, summary.json)
and the trial is PRUNED.

The objective:
- `final` (default): the mean return of the final evaluation (deterministic policy, --eval-episodes episodes),
  maximised. The pruner sees each periodic evaluation's mean return.
- `solve`: env steps to the first periodic evaluation whose mean reaches the threshold (--threshold, or the env's
  reward_threshold), minimised; trials stop when solved; an unsolved trial counts its budget plus one evaluation
  interval (total_steps + eval_every), so that any solve ranks above it. The pruner sees minus each evaluation's
  mean return (lower is better, as for the objective).

The study lives in a database: SQLite in the study directory by default (`sqlite:///STUDY_DIR/study.db`), or any
URL Optuna's RDBStorage takes (`postgresql://...`, `mysql+pymysql://...`), which lets machines join one study. It
is resumable: the same command again continues it (--trials N counts the COMPLETE and PRUNED trials the study
holds, so only the missing ones run). A trial cut short by Ctrl-C or SIGTERM is marked FAIL by Optuna; a trial
whose process was killed (SIGKILL, a crash, a power cut) stays RUNNING in the database: the next command marks it
FAIL at once when its process, recorded in the trial (host, pid, start time), is gone from this machine, and
Optuna's heartbeat (every 60 s) marks trials of other machines FAIL once they have been silent for 5 minutes.
FAIL trials do not count towards N.

--jobs J runs J worker processes (not threads: torch's thread pool and the global RNGs are per process), each
taking the next trial from the shared study; a lock file in the study directory makes "count the trials, then
start one" atomic on this machine, so the study ends with exactly N finished trials. Machines sharing one
database may overshoot by a trial or two. A trial that fails for its hyperparameters (diverged, or a combination
the config rejects) is PRUNED with the error recorded; five such failures in a row stop the worker, as something
other than the hyperparameters is then wrong.

At the end: a table of the best trials, STUDY_DIR/best.json (the best trial's algorithm config and run options,
which `deeprl train ALGO ENV --config best.json` reads) and Optuna's plots as PNG files.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import socket
import sys
import time
import typing
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deeprl.config import RunOptions, check_range, field_names, to_jsonable
from deeprl.errors import UsageError, did_you_mean

KINDS = ("float", "log_float", "int", "log_int", "categorical")
OBJECTIVES = {"final": "maximize", "solve": "minimize"}
PRUNERS = ("median", "halving", "none")
RUN_SPACE_FIELDS = ("n_envs",)  # run options a space may sample besides the algorithm's config
STUDY_FILE, BEST_FILE, DB_FILE, LOCK_FILE = "study.json", "best.json", "study.db", ".tune.lock"
HEARTBEAT_S, GRACE_S = 60, 300
ERRORS_IN_A_ROW = 5
# Run options that do not change what a trial learns: a rerun may change them and still continue the study.
_NOT_COMPARED = {
    "run_dir",
    "progress",
    "device",
    "torch_threads",
    "compile",
    "tensorboard",
    "wandb",
    "wandb_project",
    "wandb_id",
    "video_every",
    "checkpoint_every",
    "vectorization",
}
_NOT_IN_BEST = ("run_dir", "wandb_id", "progress")
_STATE_WORDS = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}


# ---------------------------------------------------------------- the plan of a study
@dataclass(frozen=True)
class Plan:
    """Everything a worker needs (plain data and frozen dataclasses: pickled to --jobs worker processes)."""

    algo: str
    config: Any  # the algorithm config every trial starts from: preset, then the flags given
    run: RunOptions
    space: dict[str, tuple[Any, ...]]
    fixed: tuple[str, ...]  # hyperparameters given as flags: held at their value, not sampled
    objective: Literal["final", "solve"]
    trials: int
    timeout: float | None
    jobs: int
    pruner: Literal["median", "halving", "none"]
    pruner_startup_trials: int
    pruner_warmup_steps: int
    study_dir: Path
    storage: str
    study_name: str
    threshold: float | None
    existing_trials: int = 0  # trials in the study when this command began (seeds the samplers)
    deadline: float | None = None  # time.time() after which no trial starts

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective]

    @property
    def storage_in_dir(self) -> bool:
        return self.storage == default_storage(self.study_dir)

    @property
    def unsolved_steps(self) -> int | None:
        return None if self.run.total_steps is None else self.run.total_steps + self.run.eval_every

    def settings(self) -> dict[str, Any]:
        """What must not change between the commands that add trials to one study (trials stay comparable)."""
        run = {k: v for k, v in to_jsonable(self.run).items() if k not in _NOT_COMPARED}
        return {
            "algo": self.algo,
            "env_id": self.run.env_id,
            "objective": self.objective,
            "threshold": self.threshold if self.objective == "solve" else None,
            "config": to_jsonable(self.config),
            "run": run,
            "space": {name: list(to_jsonable(entry)) for name, entry in self.space.items()},
        }


@dataclass(frozen=True)
class TuneResult:
    """What `tune` returns: where the study is, how many trials of each state it holds, and best.json's record."""

    study_dir: Path
    study_name: str
    storage: str  # the URL, its password hidden
    counts: dict[str, int]
    best: dict[str, Any] | None
    plots: list[Path] = field(default_factory=list)


def default_study_dir(algo: str, env_id: str) -> Path:
    """studies/ENV__ALGO, the env id made a file name as run directories make it."""
    safe_env = env_id.replace("/", "-").replace(":", "-")
    return Path("studies") / f"{safe_env}__{algo}"


def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{(Path(study_dir) / DB_FILE).resolve()}"


def redact(url: str) -> str:
    """A storage URL with its password hidden (it is printed and written to study.json)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:  # not a URL: Optuna reports it when it opens the storage
        return url


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:///PATH URL (None for another database, or SQLite in memory)."""
    if not url.startswith("sqlite:///"):
        return None
    database = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(database) if database and database != ":memory:" else None


def make_plan(
    algo: str,
    config: Any,
    run: RunOptions,
    *,
    fixed: tuple[str, ...] = (),
    trials: int | None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    study_dir: Path | str | None = None,
    jobs: int = 1,
    objective: str = "final",
    pruner: str = "median",
    pruner_startup_trials: int = 5,
    pruner_warmup_steps: int | None = None,
    space: Mapping[str, Any] | Path | str | None = None,
) -> Plan:
    """Check every setting and the space (each of its values against the config), and the env, before any
    study or file is made. `config`/`run`: the algorithm config and run options every trial starts from."""
    from deeprl.registry import get_algo

    spec = get_algo(algo)
    _optuna()  # installed, before anything else is checked
    if trials is None:
        raise UsageError(
            "Give the number of trials: `deeprl tune ALGO ENV_ID --trials N` (N counts the trials the study "
            "finishes, completed or pruned; rerunning the command continues the study to N)."
        )
    _check_study_numbers(trials, timeout, jobs, objective, pruner, pruner_startup_trials, pruner_warmup_steps)
    if run.run_dir is not None:
        raise UsageError(
            f"--run-dir {run.run_dir} names one run; a study writes each trial to STUDY_DIR/trials/NNNN. "
            "Drop --run-dir, and pass --study-dir DIR to choose where the study goes."
        )
    if run.total_steps is None and run.episodes is None:
        raise UsageError("Give a training budget for each trial: --total-steps N or --episodes N.")
    space_, checked = _resolve_space(spec, config, run, space, fixed)
    threshold = _solve_threshold(objective, run)
    check_env(spec, run)
    study_dir = Path(study_dir) if study_dir is not None else default_study_dir(spec.name, run.env_id)
    if study_dir.exists() and not study_dir.is_dir():
        raise UsageError(f"--study-dir {str(study_dir)!r} is a file. Pass a directory (new, or a study's).")
    if study_name is not None and (not isinstance(study_name, str) or not study_name.strip()):
        raise UsageError(f"--study-name must be a name, got {study_name!r}.")
    warmup = pruner_warmup_steps if pruner_warmup_steps is not None else (run.total_steps or 0) // 3
    return Plan(
        algo=spec.name,
        config=config,
        run=run,
        space=space_,
        fixed=tuple(name for name in checked if name in fixed),
        objective=objective,  # type: ignore[arg-type]
        trials=trials,
        timeout=timeout,
        jobs=jobs,
        pruner=pruner,  # type: ignore[arg-type]
        pruner_startup_trials=pruner_startup_trials,
        pruner_warmup_steps=warmup,
        study_dir=study_dir,
        storage=storage or default_storage(study_dir),
        study_name=study_name or study_dir.resolve().name,
        threshold=threshold,
    )


def _check_study_numbers(
    trials: int,
    timeout: float | None,
    jobs: int,
    objective: str,
    pruner: str,
    pruner_startup_trials: int,
    pruner_warmup_steps: int | None,
) -> None:
    """The study's own numbers and choices, checked as the CLI's flags are (make_plan)."""
    for name, value in (("trials", trials), ("jobs", jobs), ("pruner_startup_trials", pruner_startup_trials)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(
                f"{name} must be a whole number, got {value!r}. Pass it with --{name.replace('_', '-')} N."
            )
    opts = _Checked(trials=trials, timeout=timeout, jobs=jobs, pruner_startup_trials=pruner_startup_trials)
    check_range(opts, "trials", 1)
    check_range(opts, "timeout", 0.0, low_open=True)
    check_range(opts, "jobs", 1)
    check_range(opts, "pruner_startup_trials", 0)
    if pruner_warmup_steps is not None:
        check_range(_Checked(pruner_warmup_steps=pruner_warmup_steps), "pruner_warmup_steps", 0)
    for name, value, allowed in (("objective", objective, OBJECTIVES), ("pruner", pruner, PRUNERS)):
        if value not in allowed:
            raise UsageError(
                f"--{name} must be one of {', '.join(allowed)}, got {value!r}.{did_you_mean(str(value), allowed)}"
            )


def _resolve_space(
    spec: Any, config: Any, run: RunOptions, space: Mapping[str, Any] | Path | str | None, fixed: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the space searched, the whole checked space): the built-in space, a mapping or a --space file, each value
    checked against the config, less the hyperparameters fixed by flags."""
    from deeprl.search_spaces import SPACES

    if space is None:
        if spec.name not in SPACES:
            raise UsageError(f"deeprl has no search space for {spec.name}; give one with --space FILE.")
        raw, source = SPACES[spec.name], f"the built-in search space of {spec.name}"
    elif isinstance(space, Mapping):
        raw, source = space, "the search space given"
    else:
        raw, source = load_space_file(space), f"--space {space}"
    checked = check_space(raw, spec, config, run, source)
    space_ = {name: entry for name, entry in checked.items() if name not in fixed}
    if not space_:
        raise UsageError(
            f"Nothing left to search: every hyperparameter of {source} is fixed by a flag "
            f"({', '.join(fixed)}). Drop a flag, or give a --space FILE naming other hyperparameters."
        )
    return space_, checked


def _solve_threshold(objective: str, run: RunOptions) -> float | None:
    """The return that counts as solved, for --objective solve (None for final)."""
    threshold = None
    if objective == "solve":
        from deeprl.envs import env_spec

        threshold = run.threshold if run.threshold is not None else env_spec(run.env_id).reward_threshold
        if threshold is None:
            raise UsageError(
                f"--objective solve counts env steps to a threshold, and {run.env_id} has no reward_threshold. "
                "Pass the return that counts as solved with --threshold X, or use --objective final."
            )
    return threshold


@dataclass
class _Checked:  # a holder for check_range, which names the attribute (the flag) in its message
    trials: Any = None
    timeout: Any = None
    jobs: Any = None
    pruner_startup_trials: Any = None
    pruner_warmup_steps: Any = None


def check_env(spec: Any, run: RunOptions) -> None:
    """The checks a run makes before it writes anything (budget, env id, spaces), made once for the study."""
    from deeprl.driver import _check_options, _training_env
    from deeprl.registry import check_spaces

    _check_options(spec, run)
    env = _training_env(spec, run, None)[0]
    try:
        check_spaces(
            spec,
            run.env_id,
            getattr(env, "single_observation_space", env.observation_space),
            getattr(env, "single_action_space", env.action_space),
        )
    finally:
        env.close()


# ---------------------------------------------------------------- search spaces
def load_space_file(path: Path | str) -> dict[str, Any]:
    """A search space from a JSON or YAML file, read as data only (json.loads, yaml.safe_load)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--space {path}: no such file. Give a JSON or YAML file mapping fields to ranges.")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise UsageError(f"--space {path} must be a .json, .yaml or .yml file, got {suffix or 'no suffix'}.")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--space {path} is unreadable: {e}.") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as e:
            raise UsageError(f"--space {path} is not valid JSON: {e}.") from None
    try:
        import yaml
    except ImportError:
        raise UsageError(
            f"--space {path} is YAML, which needs PyYAML: pip install pyyaml (or write the space as JSON)."
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UsageError(
            f"--space {path} is not plain YAML data ({' '.join(str(e).split())}). A space file holds data "
            "only (mappings, lists, numbers, strings): tags that build Python objects are refused."
        ) from None


def check_space(raw: Any, spec: Any, config: Any, run: RunOptions, source: str) -> dict[str, tuple[Any, ...]]:
    """The space as {field: (kind, ...)}, each entry well formed and each of its values (bounds, choices) accepted
    by the algorithm's config over the preset. Values are checked one at a time: a combination the config
    rejects is found when a trial samples it (that trial is pruned, its error recorded)."""
    if not isinstance(raw, Mapping) or not raw:
        raise UsageError(
            f"{source} must be a non-empty mapping of hyperparameter names to ranges, e.g. "
            '{"learning_rate": ["log_float", 1e-5, 1e-2], "n_steps": ["categorical", [64, 128, 256]]}; '
            f"got {_short(raw)}."
        )
    fields = field_names(spec.config_cls)
    allowed = fields + [name for name in RUN_SPACE_FIELDS if spec.vectorized]
    hints = {**typing.get_type_hints(spec.config_cls), **typing.get_type_hints(RunOptions)}
    space = {}
    for name, entry in raw.items():
        if name not in allowed:
            raise UsageError(
                f"{source} names {name!r}, which is not a hyperparameter of {spec.name}."
                f"{did_you_mean(str(name), allowed)} Allowed: {', '.join(allowed)}."
            )
        entry = _check_entry(name, entry, source)
        if entry[0] in ("float", "log_float") and not _matches(0.5, hints[name]):
            raise UsageError(
                f"{source}: {name} takes {_describe(hints[name])}, and {entry[0]} samples fractions. "
                'Use ["int", low, high], ["log_int", low, high] or ["categorical", [...]].'
            )
        for value in _corner_values(entry):
            if not _matches(value, hints[name]):
                raise UsageError(
                    f"{source}: {name} takes {_describe(hints[name])}, and {entry[0]} {_short(list(entry[1:]))} "
                    f"gives {value!r}. Give values of that type."
                )
            apply_params(config, run, {name: value}, where=f"{source}: {name} = {value!r}")
        space[name] = entry
    return space


def _check_entry(name: str, entry: Any, source: str) -> tuple[Any, ...]:
    form = (
        '["float"|"log_float"|"int"|"log_int", low, high] (with an optional step for float and int), or '
        '["categorical", [choice, ...]]'
    )
    if not isinstance(entry, (list, tuple)) or not entry or entry[0] not in KINDS:
        raise UsageError(f"{source}: {name} must be {form}; got {_short(entry)}.")
    kind, args = entry[0], list(entry[1:])
    if kind == "categorical":
        if len(args) != 1 or not isinstance(args[0], (list, tuple)) or not args[0]:
            raise UsageError(
                f'{source}: {name} must be ["categorical", [choice, ...]] with one or more choices; got {_short(entry)}.'
            )
        choices = [list(c) if isinstance(c, tuple) else c for c in args[0]]
        for choice in choices:
            if not _is_plain(choice):
                raise UsageError(
                    f"{source}: {name} has the choice {_short(choice)}; choices are numbers, strings, booleans, "
                    "null, or lists of those."
                )
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise UsageError(f"{source}: {name} lists a choice twice: {_short(choices)}.")
        return (kind, choices)
    integer = kind in ("int", "log_int")
    stepped = kind in ("float", "int")
    if len(args) not in ((2, 3) if stepped else (2,)):
        raise UsageError(f"{source}: {name} must be {form}; got {_short(entry)}.")
    ok = all(
        not isinstance(v, bool)
        and (isinstance(v, int) if integer else isinstance(v, (int, float)) and math.isfinite(v))
        for v in args
    )
    if not ok:
        what = "whole numbers" if integer else "finite numbers"
        raise UsageError(
            f"{source}: {name} is {kind}: its bounds{' and step' if len(args) == 3 else ''} must be {what}; got {_short(entry)}."
        )
    low, high = args[0], args[1]
    if not low < high:
        raise UsageError(
            f'{source}: {name} needs low < high, got {low} and {high} (one value: ["categorical", [{low}]]).'
        )
    if kind.startswith("log") and low <= 0:
        raise UsageError(f"{source}: {name} is {kind}, so its low bound must be above 0, got {low}.")
    if len(args) == 3 and args[2] <= 0:
        raise UsageError(f"{source}: {name} needs a step above 0, got {args[2]}.")
    return (kind, *args)


def _corner_values(entry: tuple[Any, ...]) -> list[Any]:
    kind = entry[0]
    if kind == "categorical":
        return list(entry[1])
    low, high = entry[1], entry[2]
    if len(entry) == 4:  # a grid: its highest point may lie below high
        high = low + math.floor((high - low) / entry[3] + 1e-9) * entry[3]
    return [low, high]


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(v is None or isinstance(v, (bool, int, float, str)) for v in value)
    return False


def _matches(value: Any, hint: Any) -> bool:
    """Whether a value from a space fits a config field's type (the configs check ranges, not all types)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _matches(value, args[0])
    if origin is Literal:
        return value in args
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
    return True  # a type the spaces do not sample: the config's own check decides


def _describe(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr) if _jsonable(value) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def apply_params(config: Any, run: RunOptions, params: Mapping[str, Any], where: str = "") -> tuple[Any, RunOptions]:
    """The config and run options of a trial: `params` over the study's base (validated by the dataclasses)."""
    algo_fields = set(field_names(type(config)))
    as_field = lambda v: tuple(v) if isinstance(v, list) else v  # JSON's lists are the configs' tuples
    try:
        config = dataclasses.replace(config, **{k: as_field(v) for k, v in params.items() if k in algo_fields})
        run = dataclasses.replace(run, **{k: as_field(v) for k, v in params.items() if k not in algo_fields})
    except UsageError as e:
        raise UsageError(f"{where}: {e}" if where else str(e)) from None
    except (TypeError, ValueError) as e:  # a value of a type the config's checks do not expect
        raise UsageError(f"{where}: {e}" if where else str(e)) from None
    return config, run


def sample(trial: Any, space: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
    """One value per hyperparameter from Optuna's trial. Choices that are lists (layer sizes) are offered to
    Optuna as their JSON text, which its storage holds as it holds any string."""
    params = {}
    for name, entry in space.items():
        kind = entry[0]
        if kind == "categorical":
            choices = entry[1]
            if all(not isinstance(c, list) for c in choices):
                params[name] = trial.suggest_categorical(name, choices)
            else:
                params[name] = json.loads(trial.suggest_categorical(name, [json.dumps(c) for c in choices]))
        elif kind in ("float", "log_float"):
            step = entry[3] if len(entry) == 4 else None
            params[name] = trial.suggest_float(name, entry[1], entry[2], log=kind == "log_float", step=step)
        else:
            step = entry[3] if len(entry) == 4 else 1
            params[name] = trial.suggest_int(name, entry[1], entry[2], log=kind == "log_int", step=step)
    return params


def decode_params(params: Mapping[str, Any], space: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's params as the config takes them (JSON text of list choices back to lists)."""
    out = {}
    for name, value in params.items():
        entry = space.get(name)
        if (
            entry
            and entry[0] == "categorical"
            and any(isinstance(c, list) for c in entry[1])
            and isinstance(value, str)
        ):
            value = json.loads(value)
        out[name] = value
    return out


def describe_space(space: Mapping[str, tuple[Any, ...]]) -> list[str]:
    lines = []
    for name, entry in space.items():
        kind = entry[0]
        if kind == "categorical":
            lines.append(f"{name}: one of {', '.join(_fmt(c) for c in entry[1])}")
        else:
            what = {"float": "uniform", "log_float": "log-uniform", "int": "integer", "log_int": "integer, log-uniform"}
            step = f", step {_fmt(entry[3])}" if len(entry) == 4 else ""
            lines.append(f"{name}: {what[kind]} in [{_fmt(entry[1])}, {_fmt(entry[2])}]{step}")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


# ---------------------------------------------------------------- the study and its database
def open_storage(url: str) -> Any:
    """Optuna's RDBStorage for `url`, with a heartbeat (so that trials of a dead process become FAIL) and, for
    SQLite, a lock timeout long enough for a few processes writing at once."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat_interval is "experimental" in Optuna
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, **kwargs)
        except ImportError as e:
            raise UsageError(
                f"--storage {redact(url)} needs a database driver that is not installed ({e}). Install it, e.g. "
                "pip install psycopg2-binary for postgresql://, or pymysql for mysql+pymysql://."
            ) from None
        except Exception as e:  # noqa: BLE001 - SQLAlchemy's and Optuna's errors for a URL or database they cannot use
            message = " ".join(str(e).split())[:300]
            raise UsageError(
                f"Cannot open the study storage {redact(url)}: {message}. Give a URL Optuna can use, e.g. "
                "sqlite:///path/study.db or postgresql://user:password@host/db."
            ) from None


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UsageError(
            "deeprl tune needs Optuna: pip install optuna (or pip install -e '.[tune]' in a clone)."
        ) from None

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # deeprl prints one line per trial (and the errors) instead
    return optuna


def make_pruner(plan: Plan) -> Any:
    optuna = _optuna()
    if plan.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=plan.pruner_startup_trials, n_warmup_steps=plan.pruner_warmup_steps
        )
    if plan.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def make_sampler(plan: Plan, worker: int) -> Any:
    """TPE seeded from --seed, the worker's index and the study's size: a new study with --jobs 1 repeats
    itself, and a continued study or a second worker does not replay the first proposals."""
    import numpy as np

    seed = int(np.random.SeedSequence([plan.run.seed, worker, plan.existing_trials]).generate_state(1)[0])
    return _optuna().samplers.TPESampler(seed=seed)


def open_study(plan: Plan, storage: Any, worker: int = 0) -> Any:
    """The study: created with the plan's settings, or loaded when it exists and was made with the same ones."""
    optuna = _optuna()
    names = optuna.study.get_all_study_names(storage)
    if plan.study_name in names:
        study = optuna.load_study(
            study_name=plan.study_name, storage=storage, sampler=make_sampler(plan, worker), pruner=make_pruner(plan)
        )
        check_same_settings(study, plan)
        return study
    study = optuna.create_study(
        study_name=plan.study_name,
        storage=storage,
        direction=plan.direction,
        sampler=make_sampler(plan, worker),
        pruner=make_pruner(plan),
        load_if_exists=True,  # another process may have created it meanwhile
    )
    if "deeprl" not in study.user_attrs:
        study.set_user_attr("deeprl", plan.settings())
    check_same_settings(study, plan)
    return study


def check_same_settings(study: Any, plan: Plan) -> None:
    saved = study.user_attrs.get("deeprl")
    if saved is None:
        raise UsageError(
            f"The study {plan.study_name!r} in {redact(plan.storage)} was not made by `deeprl tune`. "
            "Pass another --study-name."
        )
    mine = json.loads(json.dumps(plan.settings()))
    difference = _first_difference(saved, mine)
    if difference is not None:
        key, old, new = difference
        raise UsageError(
            f"The study {plan.study_name!r} ({redact(plan.storage)}) was started with {key} = {_short(old)}, and "
            f"this command gives {_short(new)}: its trials would not be comparable. Rerun with the study's settings "
            "to continue it, or start another study in another directory with --study-dir DIR."
        )


def _first_difference(old: Any, new: Any, key: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            found = _first_difference(old.get(k), new.get(k), f"{key}.{k}" if key else k)
            if found is not None:
                return found
        return None
    return None if old == new else (key.replace("run.", "").replace("config.", ""), old, new)


def claim_study_dir(plan: Plan) -> None:
    """STUDY_DIR/study.json names the study the directory belongs to (its trials/NNNN are that study's)."""
    from deeprl.rundir import write_json

    record = {
        "study_name": plan.study_name,
        "storage": "study.db" if plan.storage_in_dir else redact(plan.storage),
        "algo": plan.algo,
        "env_id": plan.run.env_id,
        "objective": plan.objective,
        "direction": plan.direction,
    }
    path = plan.study_dir / STUDY_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict) or (old.get("study_name"), old.get("storage")) != (
            record["study_name"],
            record["storage"],
        ):
            held = f"{old.get('study_name')!r} in {old.get('storage')}" if isinstance(old, dict) else "another study"
            raise UsageError(
                f"The study directory {str(plan.study_dir)!r} holds the study {held}, not "
                f"{plan.study_name!r} in {record['storage']}. Pass another --study-dir, or that study's "
                "--study-name and --storage."
            )
        return
    write_json(path, record)


def trial_counts(study: Any) -> Counter:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def fail_dead_trials(study: Any, storage: Any, sqlite: bool) -> list[int]:
    """Mark FAIL the RUNNING trials whose process, on this machine, is gone (killed, crashed); a trial of another
    machine is left to Optuna's heartbeat. Returns their numbers. Called with the study lock held: a process
    creates its trial and records itself in it (host, pid) under that lock, so a RUNNING trial without that
    record, in a SQLite study (which only this machine's processes write), was left by a process killed in
    between. In a network database it may be another machine's, in the making: the heartbeat decides."""
    import psutil
    from optuna.trial import TrialState

    optuna = _optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other machines' trials silent for GRACE_S seconds
    host, failed = socket.gethostname(), []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if "pid" not in attrs:
            if not sqlite:
                continue
        elif attrs.get("host") != host or not isinstance(attrs.get("pid"), int):
            continue
        else:
            try:
                alive = abs(psutil.Process(attrs["pid"]).create_time() - attrs.get("pid_started", 0.0)) < 1.0
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                alive = False
            if alive:
                continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, "error", "its process ended in the middle of the trial")
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except Exception:  # noqa: BLE001 - another process marked it first
            continue
        failed.append(t.number)
    return failed


def lock_path(plan: Plan) -> Path:
    """The lock beside a SQLite database (every process on this machine that writes it shares it, whatever its
    study directory), else in the study directory."""
    database = sqlite_path(plan.storage)
    return database.with_name(database.name + ".lock") if database is not None else plan.study_dir / LOCK_FILE


class _StudyLock:
    """An exclusive lock on STUDY_DIR/.tune.lock (flock: released by the kernel however the process ends)."""

    def __init__(self, path: Path):
        self.file = open(path, "a+")
        self.held = False

    def acquire(self) -> None:
        import fcntl

        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        self.held = True

    def release(self) -> None:
        import fcntl

        if self.held:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.held = False

    def close(self) -> None:
        self.release()
        self.file.close()


# ---------------------------------------------------------------- trials
def _reporter(trial: Any, plan: Plan) -> Any:
    from deeprl.callbacks import Callback

    class ReportEvals(Callback):
        """Each periodic evaluation to Optuna's pruner; False (stop the run) when it says prune."""

        name = "deeprl.tune"

        def __init__(self) -> None:
            self.pruned_at: tuple[int, float] | None = None

        def on_eval(self, info: Any) -> bool | None:
            if not info.periodic:
                return None  # the final evaluation is the objective, not a step
            trial.report(info.mean_return if plan.objective == "final" else -info.mean_return, info.env_steps)
            if plan.objective == "solve" and info.mean_return >= plan.threshold:
                return None  # solved: the run stops by itself (stop_when_solved) and is not pruned
            if trial.should_prune():
                self.pruned_at = (info.env_steps, info.mean_return)
                return False
            return None

    return ReportEvals()


class _Objective:
    def __init__(self, plan: Plan, lock: _StudyLock):
        self.plan, self.lock = plan, lock
        self.errors_in_a_row, self.last_error = 0, ""

    def __call__(self, trial: Any) -> float:
        import psutil

        from deeprl.driver import run_training
        from deeprl.registry import get_algo
        from deeprl.rundir import DiskFullError

        optuna = _optuna()
        plan = self.plan
        me = psutil.Process()  # who runs the trial: a later command marks it FAIL if this process dies
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", me.pid)
        trial.set_user_attr("pid_started", me.create_time())
        self.lock.release()  # the trial is in the database: other workers may count it and start theirs
        run_dir = plan.study_dir / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        params = sample(trial, plan.space)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        progress = plan.run.progress if plan.jobs == 1 or plan.run.progress == "on" else "off"
        try:
            config, run = apply_params(plan.config, plan.run, params, where=f"trial {trial.number}")
            run = dataclasses.replace(
                run,
                run_dir=run_dir,
                progress=progress,
                stop_when_solved=plan.run.stop_when_solved or plan.objective == "solve",
            )
            trial.set_user_attr("config", to_jsonable(config))
            trial.set_user_attr("run", {k: v for k, v in to_jsonable(run).items() if k not in _NOT_IN_BEST})
            reporter = _reporter(trial, plan)
            result = run_training(get_algo(plan.algo), config, run, callbacks=[reporter])
        except DiskFullError:
            raise
        except UsageError as e:  # diverged, or a combination the config or the algorithm rejects
            message = " ".join(str(e).split())
            trial.set_user_attr("error", message)
            _say(f"trial {trial.number}: pruned, it failed: {message} ({shown})")
            self.errors_in_a_row += 1
            self.last_error = message
            raise optuna.TrialPruned(message) from None
        self.errors_in_a_row = 0
        s = result.summary
        for key in ("env_steps", "train_wall_s", "eval_mean_return", "solved", "solved_at_env_steps"):
            trial.set_user_attr(key, s[key])
        if reporter.pruned_at is not None:
            steps, mean = reporter.pruned_at
            _say(f"trial {trial.number}: pruned at {steps:,} env steps (eval mean {mean:.2f}) ({shown})")
            raise optuna.TrialPruned(f"pruned at {steps} env steps")
        if plan.objective == "final":
            value = float(s["eval_mean_return"])
            what = f"final eval mean {value:.2f}"
        elif s["solved"]:
            value = float(s["solved_at_env_steps"])
            what = f"solved at {int(value):,} env steps"
        else:
            value = float((plan.run.total_steps or s["env_steps"]) + plan.run.eval_every)
            what = f"not solved (counts {int(value):,})"
        _say(f"trial {trial.number}: {what} in {s['train_wall_s']:.1f} s ({shown})")
        return value


def _say(line: str) -> None:
    print(line, flush=True)


def run_worker(plan: Plan, worker: int = 0) -> None:
    """Take trials from the study until it holds plan.trials finished (or running) ones, or the time is up."""
    from optuna.trial import TrialState

    storage = open_storage(plan.storage)
    study = open_study(plan, storage, worker)
    lock = _StudyLock(lock_path(plan))
    objective = _Objective(plan, lock)
    parent = os.getppid()
    try:
        while plan.deadline is None or time.time() < plan.deadline:
            if worker > 0 and os.getppid() != parent:  # the command that started this worker is gone
                return
            lock.acquire()
            try:
                fail_dead_trials(study, storage, plan.storage.startswith("sqlite:"))
                counts = trial_counts(study)
                taken = (
                    counts[TrialState.COMPLETE.name] + counts[TrialState.PRUNED.name] + counts[TrialState.RUNNING.name]
                )
                if taken >= plan.trials:
                    return
                study.optimize(objective, n_trials=1, catch=(), gc_after_trial=False, show_progress_bar=False)
            finally:
                lock.release()
            if objective.errors_in_a_row >= ERRORS_IN_A_ROW:
                raise UsageError(
                    f"{ERRORS_IN_A_ROW} trials in a row failed, the last with: {objective.last_error} Something other "
                    "than the sampled hyperparameters is wrong: check the run options and the search space."
                )
    finally:
        lock.close()


def _worker_main(plan: Plan, worker: int) -> None:
    """A --jobs worker process: its own process group, so that a Ctrl-C reaches it once, from the parent."""
    os.setpgid(0, 0)
    try:
        run_worker(plan, worker)
    except UsageError as e:
        print(f"deeprl: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt as e:  # its trial is FAIL in the study; the parent reports
        sys.exit(128 + getattr(e, "signum", 2))


def _run_workers(plan: Plan, jobs: int) -> None:
    import multiprocessing
    import signal

    from deeprl.errors import Interrupted

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch thread pool inherited mid-state
    procs = [ctx.Process(target=_worker_main, args=(plan, i), name=f"deeprl-tune-{i}") for i in range(jobs)]
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        for p in procs:
            if p.pid is not None and p.is_alive():
                try:
                    os.kill(p.pid, signum)
                except ProcessLookupError:
                    pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        raise Interrupted(received[0])
    failed = [(p.name, p.exitcode) for p in procs if p.exitcode != 0]
    if failed:
        raise UsageError(
            f"{len(failed)} of {jobs} worker processes failed (exit codes {', '.join(str(c) for _, c in failed)}); "
            "their messages are above. The study keeps every finished trial: rerun the command to continue it."
        )


def run_study(plan: Plan) -> TuneResult:
    """Open (or continue) the study, run the missing trials, then report: table, best.json, plots."""
    from optuna.trial import TrialState

    _optuna()
    storage = None if plan.storage_in_dir else open_storage(plan.storage)  # a bad URL fails before any mkdir
    try:
        plan.study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"Cannot create the study directory {str(plan.study_dir)!r}: {e.strerror}.") from None
    storage = storage or open_storage(plan.storage)
    study = open_study(plan, storage)
    claim_study_dir(plan)
    lock = _StudyLock(lock_path(plan))
    lock.acquire()
    try:
        failed_now = fail_dead_trials(study, storage, plan.storage.startswith("sqlite:"))
        counts = trial_counts(study)
    finally:
        lock.close()
    finished = counts[TrialState.COMPLETE.name] + counts[TrialState.PRUNED.name]
    to_run = max(0, plan.trials - finished - counts[TrialState.RUNNING.name])
    plan = dataclasses.replace(
        plan,
        existing_trials=sum(counts.values()),
        deadline=None if plan.timeout is None else time.time() + plan.timeout,
    )
    for line in header(plan, counts, to_run, failed_now):
        _say(line)
    interrupted: BaseException | None = None
    try:
        if to_run > 0:
            jobs = min(plan.jobs, to_run)
            if jobs == 1:
                run_worker(plan)
            else:
                _run_workers(plan, jobs)
    except (KeyboardInterrupt, UsageError) as e:  # the study keeps what finished: report it, then stop
        interrupted = e
    study = _optuna().load_study(study_name=plan.study_name, storage=storage)
    result = finish(study, plan.study_dir, plan.storage)
    if isinstance(interrupted, UsageError):
        raise interrupted
    if interrupted is not None:
        counts = result.counts
        _say(
            f"Interrupted: the trial in progress is marked FAIL; the study keeps its {counts['COMPLETE']} complete "
            f"and {counts['PRUNED']} pruned trials. Run the same command again to continue to {plan.trials}."
        )
        raise interrupted
    return result


def header(plan: Plan, counts: Counter, to_run: int, failed_now: list[int]) -> list[str]:
    run = plan.run
    finished = counts["COMPLETE"] + counts["PRUNED"]
    if plan.objective == "final":
        objective = (
            f"the final evaluation's mean return over {run.eval_episodes} episodes (deterministic policy), maximised"
        )
    else:
        unsolved = "its budget plus one evaluation interval" + (
            f" ({plan.unsolved_steps:,})" if plan.unsolved_steps is not None else ""
        )
        objective = (
            f"env steps to the first periodic evaluation (every {run.eval_every:,} env steps) whose mean return "
            f"reaches {plan.threshold:g}, minimised; trials stop when solved, an unsolved trial counts {unsolved}"
        )
    if plan.pruner == "median":
        pruner = (
            f"median: a trial stops at an evaluation whose best mean so far is below the median of earlier trials at "
            f"that env step, once {plan.pruner_startup_trials} trial{'s are' if plan.pruner_startup_trials != 1 else ' is'} "
            "complete and from env step "
            f"{plan.pruner_warmup_steps:,} on"
        )
    elif plan.pruner == "halving":
        pruner = "successive halving: at each rung of env steps only the best quarter of the trials go on"
    else:
        pruner = "none: every trial runs its whole budget"
    if plan.pruner != "none" and plan.objective == "solve":
        pruner += " (the pruner sees minus each evaluation's mean return, lower is better as for the objective)"
    budget = f"{run.total_steps:,} env steps" if run.total_steps is not None else f"{run.episodes:,} episodes"
    lines = [
        f"Tuning {plan.algo} on {run.env_id}: study {plan.study_name!r} in {redact(plan.storage)}",
        f"  objective: {objective}",
        f"  pruner: {pruner}",
        f"  sampler: TPE, seeded from --seed {run.seed}; each trial trains {budget} with seed {run.seed}, "
        f"evaluating every {run.eval_every:,} env steps",
        "  searching: " + "; ".join(describe_space(plan.space)),
    ]
    if plan.fixed:
        held = [
            f"{k}={_fmt(to_jsonable(getattr(plan.config if hasattr(plan.config, k) else run, k)))}" for k in plan.fixed
        ]
        lines.append("  fixed by flags: " + ", ".join(held))
    if failed_now:
        lines.append(
            f"  marked FAIL: trial{'s' if len(failed_now) > 1 else ''} {', '.join(map(str, failed_now))}, "
            "whose process ended in the middle of the trial"
        )
    held = f"{finished} finished ({counts['COMPLETE']} complete, {counts['PRUNED']} pruned)"
    if counts["FAIL"]:
        held += f", {counts['FAIL']} failed"
    if counts["RUNNING"]:
        held += f", {counts['RUNNING']} running elsewhere"
    jobs = min(plan.jobs, to_run)
    lines.append(
        f"  trials: the study holds {held}; running {'up to ' if plan.timeout is not None and to_run else ''}{to_run} more"
        + (f" in {jobs} worker processes" if jobs > 1 else "")
        + (f", none starting after {plan.timeout:g} s" if plan.timeout is not None else "")
        + f"; run directories in {plan.study_dir / 'trials'}"
    )
    return lines


# ---------------------------------------------------------------- results: table, best.json, plots
def best_record(study: Any) -> dict[str, Any] | None:
    """best.json: the best complete trial's algorithm config and run options, which `deeprl train ALGO ENV
    --config best.json` reads, with the objective and the value it reached."""
    settings = study.user_attrs.get("deeprl", {})
    try:
        best = study.best_trial
    except ValueError:  # no complete trial
        return None
    return {
        "algo": settings.get("algo"),
        "env_id": settings.get("env_id"),
        "config": best.user_attrs.get("config"),
        "run": best.user_attrs.get("run"),
        "objective": settings.get("objective"),
        "direction": study.direction.name.lower(),
        "value": best.value,
        "trial": best.number,
        "params": decode_params(best.params, settings.get("space", {})),  # the sampled ones (the rest: preset, flags)
        "study": {
            "name": study.study_name,
            "trial_run_dir": best.user_attrs.get("run_dir"),
            "host": best.user_attrs.get("host"),
        },
    }


def best_table(study: Any, top: int = 10) -> Any:
    """The best complete trials as a rich Table, the study's counts in its caption."""
    from optuna.trial import TrialState
    from rich.table import Table

    settings = study.user_attrs.get("deeprl", {})
    objective, space = settings.get("objective", "final"), settings.get("space", {})
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reverse = study.direction.name == "MAXIMIZE"
    complete.sort(key=lambda t: t.value, reverse=reverse)
    counts = trial_counts(study)
    what = "final eval mean return" if objective == "final" else "env steps to solve"
    table = Table(
        title=f"{study.study_name}: best trials by {what} ({'higher' if reverse else 'lower'} is better)",
        caption=", ".join(f"{counts[s]} {word}" for s, word in _STATE_WORDS.items() if counts[s]) or "no trials yet",
    )
    for header_ in ("trial", "value", "env steps", "train s", "hyperparameters"):
        table.add_column(header_, overflow="fold", justify="right" if header_ != "hyperparameters" else "left")
    for t in complete[:top]:
        a = t.user_attrs
        value = (
            f"{t.value:.2f}"
            if objective == "final"
            else f"{int(t.value):,}" + ("" if a.get("solved") else " (unsolved)")
        )
        params = decode_params(t.params, space)
        table.add_row(
            str(t.number),
            value,
            f"{a['env_steps']:,}" if isinstance(a.get("env_steps"), int) else "-",
            f"{a['train_wall_s']:.1f}" if isinstance(a.get("train_wall_s"), (int, float)) else "-",
            ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()),
        )
    return table


def save_plots(study: Any, study_dir: Path) -> tuple[list[Path], list[str]]:
    """Optuna's optimization history, intermediate values (the pruner's view) and hyperparameter importances as
    PNG files; a note for each one that cannot be drawn."""
    from optuna.trial import TrialState

    from deeprl.rundir import atomic_write

    optuna = _optuna()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return [], ["no plots: the study has no complete trial yet"]
    try:
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError as e:
        return [], [f"no plots: {e}"]
    plots, notes = [], []

    def draw(name: str, make: Any) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                ax = make()
            fig = getattr(ax, "figure", None) or ax.flat[0].figure
            path = study_dir / name
            atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
            plt.close(fig)
            plots.append(path)
        except Exception as e:  # noqa: BLE001 - a plot is a bonus: say why it is missing, keep the results
            notes.append(f"no {name}: {' '.join(str(e).split())[:200]}")

    draw("optimization_history.png", lambda: ovm.plot_optimization_history(study))
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        draw("intermediate_values.png", lambda: ovm.plot_intermediate_values(study))
    varied = {k for t in complete for k in t.params if len({json.dumps(u.params.get(k)) for u in complete}) > 1}
    if len(complete) < 2 or not varied:
        notes.append("no param_importances.png: it needs two or more complete trials with different hyperparameters")
    else:
        if importlib.util.find_spec("sklearn") is not None:  # fANOVA fits scikit-learn's random forests
            evaluator, how = optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
        else:  # PED-ANOVA needs only numpy
            evaluator, how = optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"
        draw("param_importances.png", lambda: ovm.plot_param_importances(study, evaluator=evaluator))
        if plots and plots[-1].name == "param_importances.png" and how == "PED-ANOVA":
            notes.append("importances by PED-ANOVA (pip install scikit-learn for fANOVA, Optuna's default)")
    return plots, notes


def finish(study: Any, study_dir: Path, storage_url: str) -> TuneResult:
    """Print the table, write best.json and the plots."""
    from rich.console import Console

    from deeprl.rundir import write_json

    console = Console()
    console.print(best_table(study))
    best = best_record(study)
    if best is not None:
        write_json(study_dir / BEST_FILE, best)
        _say(
            f"best: trial {best['trial']}, {best['objective']} = {best['value']:g}; its config is in "
            f"{study_dir / BEST_FILE} (deeprl train {best['algo']} {best['env_id']} --config {study_dir / BEST_FILE})"
        )
    else:
        _say("no complete trial yet: no best.json")
    plots, notes = save_plots(study, study_dir)
    if plots:
        _say("plots: " + ", ".join(str(p) for p in plots))
    for note in notes:
        _say(f"  ({note})")
    counts = trial_counts(study)
    return TuneResult(
        study_dir=study_dir,
        study_name=study.study_name,
        storage=redact(storage_url),
        counts={s: counts[s] for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")},
        best=best,
        plots=plots,
    )


# ---------------------------------------------------------------- --show
def resolve_study(target: str, study_name: str | None) -> tuple[str, str, Path | None]:
    """(storage URL, study name, study directory or None) for `deeprl tune --show TARGET`: a study directory, a
    SQLite file, or a database URL. Never creates a database."""
    _optuna()
    study_dir = None
    if "://" in target:
        url = target
        database = sqlite_path(url)
        if url.startswith("sqlite:") and (database is None or not database.is_file()):  # --show creates no file
            raise UsageError(f"--show {target}: no such database file.")
    else:
        path = Path(target)
        if path.is_dir():
            study_dir = path
            record = {}
            if (path / STUDY_FILE).is_file():
                try:
                    record = json.loads((path / STUDY_FILE).read_text())
                except (OSError, ValueError):
                    record = {}
            stored = record.get("storage", DB_FILE)
            if stored == DB_FILE:
                if not (path / DB_FILE).is_file():
                    raise UsageError(f"{str(path)!r} holds no study ({DB_FILE} is missing). Give a study directory.")
                url = default_storage(path)
            elif "***" in stored:
                raise UsageError(
                    f"The study of {str(path)!r} is in {stored}, whose password deeprl does not keep: give the URL, "
                    f"`deeprl tune --show URL --study-name {record.get('study_name', 'NAME')}`."
                )
            else:
                url = stored
            study_name = study_name or record.get("study_name")
        elif path.is_file():
            url = f"sqlite:///{path.resolve()}"
        else:
            raise UsageError(f"--show {target!r}: no such study directory or database file.")
    storage = open_storage(url)
    names = _optuna().study.get_all_study_names(storage)
    if study_name is None:
        if len(names) != 1:
            raise UsageError(
                f"{redact(url)} holds {len(names)} studies ({', '.join(names) or 'none'}): name one with --study-name."
            )
        study_name = names[0]
    elif study_name not in names:
        raise UsageError(
            f"{redact(url)} holds no study {study_name!r}.{did_you_mean(study_name, names)} "
            f"Studies: {', '.join(names) or 'none'}."
        )
    return url, study_name, study_dir


def show(target: str, study_name: str | None = None, top: int = 10, as_json: bool = False) -> dict[str, Any] | None:
    """Print a study's best trials (a table) and where best.json is; with as_json, best.json's record."""
    from rich.console import Console

    url, name, study_dir = resolve_study(target, study_name)
    study = _optuna().load_study(study_name=name, storage=open_storage(url))
    best = best_record(study)
    if as_json:
        print(json.dumps(best, indent=2))
        return best
    Console().print(best_table(study, top))
    if best is None:
        _say("no complete trial yet")
    else:
        where = f" (written to {study_dir / BEST_FILE} at the end of each `deeprl tune`)" if study_dir else ""
        _say(f"best: trial {best['trial']}, {best['objective']} = {best['value']:g}{where}")
        _say(f"  its sampled hyperparameters: {json.dumps(best['params'])}")
    return best


# ---------------------------------------------------------------- Python API
def tune(
    algo: str,
    env_id: str,
    *,
    trials: int,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    study_dir: Path | str | None = None,
    jobs: int = 1,
    objective: str = "final",
    pruner: str = "median",
    pruner_startup_trials: int = 5,
    pruner_warmup_steps: int | None = None,
    space: Mapping[str, Any] | Path | str | None = None,
    **options: Any,
) -> TuneResult:
    """`deeprl tune ALGO ENV_ID --trials N ...` from Python. `options` are `deeprl.train`'s keyword arguments
    (run options and hyperparameters), applied to every trial; a hyperparameter given here is fixed (not sampled).
    `space`: a dict like deeprl.search_spaces.SPACES[algo], or a JSON/YAML file (default: the built-in one)."""
    from deeprl.driver import build_config

    spec, config, run = build_config(algo, env_id, **options)
    fixed = tuple(k for k in options if k in field_names(spec.config_cls) or k in RUN_SPACE_FIELDS)
    plan = make_plan(
        spec.name,
        config,
        run,
        fixed=fixed,
        trials=trials,
        timeout=timeout,
        storage=storage,
        study_name=study_name,
        study_dir=study_dir,
        jobs=jobs,
        objective=objective,
        pruner=pruner,
        pruner_startup_trials=pruner_startup_trials,
        pruner_warmup_steps=pruner_warmup_steps,
        space=space,
    )
    return run_study(plan)
