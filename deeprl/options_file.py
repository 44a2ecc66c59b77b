"""Options from a file: `deeprl train ALGO ENV_ID --config FILE` and `deeprl.options_from_file`.

A JSON or YAML file holds the options of a run in one of two layouts:

- flat: the names of the flags with underscores, algorithm hyperparameters and run options mixed,
  `{"learning_rate": 0.0003, "n_envs": 8, "total_steps": 100000}`;
- sectioned: `{"algo": "ppo", "env_id": "CartPole-v1", "config": {...}, "run": {...}}`, the layout of a
  run directory's config.json and of the best.json `deeprl tune` writes. "algo" and "env_id", where
  given, must be the command's. The metadata a run directory's config.json carries next to them
  ("format", "seed", "preset", "versions") is ignored, as are the run options that name the run that
  wrote the file or how it showed progress (run.run_dir, run.env_id, run.wandb_id, run.progress), so
  `--config runs/x/config.json` trains a fresh run with x's settings (and seed: --seed S beats it).

Precedence: the dataclass defaults < the preset for (algo, env) < the file < the flags on the command
line (or the keyword arguments given to `options_from_file`).

The file is data: it is read with json.load or yaml.safe_load (PyYAML, where installed), nothing else.
The env wrappers it names (run.wrappers) are imported and called as `--wrapper` names are: a config
file is a command line written down, so pass only files you would type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deeprl.config import RUN_FIELDS, field_names
from deeprl.errors import UsageError, close_matches

YAML_SUFFIXES = (".yaml", ".yml")
# Top-level keys of the sectioned layout that describe the file rather than the run (a run's config.json).
METADATA_KEYS = frozenset(
    {"format", "seed", "seeds", "preset", "versions", "objective", "direction", "value", "trial", "params", "study"}
)  # run files and best.json
# Run options of the sectioned layout that identify the run that wrote the file (or how it showed progress),
# not its settings.
RUN_IDENTITY = ("run_dir", "env_id", "wandb_id", "progress")
BUDGET = ("total_steps", "episodes")


def read_options_file(path: Path | str, algo: str, env_id: str) -> dict[str, Any]:
    """The options a file gives for `algo` on `env_id`, flat ({name: value}, run options and
    hyperparameters mixed), or a UsageError naming what is wrong: an unreadable file, keys no option
    has, another algorithm or env than the command's."""
    from deeprl.registry import get_algo

    path = Path(path)
    spec = get_algo(algo)
    data = _load(path)
    src = str(path)
    algo_fields = set(field_names(spec.config_cls))
    run_fields = set(RUN_FIELDS) - {"env_id", "wandb_id"}  # env_id is the command's; wandb_id is not a flag
    for key, given in (("algo", spec.name), ("env_id", env_id)):
        if key in data and data[key] is not None:
            theirs = get_algo(data[key]).name if key == "algo" and isinstance(data[key], str) else data[key]
            if theirs != given:
                raise UsageError(
                    f"{src} is for {key} {data[key]!r}, and the command trains {given!r}. "
                    f"Train {data[key]!r} with this file, or drop {key!r} from it."
                )
    if "config" in data or "run" in data:  # the sectioned layout
        unknown = sorted(set(data) - {"algo", "env_id", "config", "run"} - METADATA_KEYS)
        if unknown:
            raise UsageError(
                f"{src} has top-level keys deeprl does not know: {', '.join(unknown)}. A sectioned file holds "
                '"algo", "env_id", "config" (hyperparameters) and "run" (run options).'
            )
        sections = {"config": data.get("config", {}), "run": data.get("run", {})}
        for name, section in sections.items():
            if not isinstance(section, dict):
                raise UsageError(f'{src}: "{name}" must be a mapping of option names to values, got {section!r}.')
        run = {k: v for k, v in sections["run"].items() if k not in RUN_IDENTITY}
        _check_keys(src, "config", sections["config"], algo_fields, spec.config_cls.__name__)
        _check_keys(src, "run", run, run_fields, "RunOptions")
        options = {**run, **sections["config"]}  # a name both have is the algorithm's (A3C's workers)
    else:
        options = {k: v for k, v in data.items() if k not in ("algo", "env_id")}
        _check_keys(src, None, options, algo_fields | run_fields, f"{spec.config_cls.__name__} or RunOptions")
    if "run_dir" in options and options["run_dir"] is not None:
        options["run_dir"] = Path(options["run_dir"])
    # JSON and YAML have lists where the dataclasses have tuples (hidden sizes, wrappers).
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def merge_options(from_file: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The file's options, with `overrides` (the command line's) on top; a budget in `overrides`
    (total_steps or episodes) replaces the file's budget whole, as it replaces a preset's."""
    merged = dict(from_file)
    if any(k in overrides for k in BUDGET):
        for key in BUDGET:
            merged.pop(key, None)
    merged.update(overrides)
    return merged


def options_from_file(path: Path | str, algo: str, env_id: str, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of `deeprl.train` that a file gives, with `overrides` on top:

        deeprl.train("ppo", "CartPole-v1", **deeprl.options_from_file("best.json", "ppo", "CartPole-v1", seed=3))

    trains as `deeprl train ppo CartPole-v1 --config best.json --seed 3` does (defaults < preset < file <
    overrides)."""
    return merge_options(read_options_file(path, algo, env_id), overrides)


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise UsageError(f"--config {str(path)!r} {what}. Pass a JSON or YAML file of options.")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"Cannot read --config {str(path)!r}: {e}.") from None
    if path.suffix.lower() in YAML_SUFFIXES:
        try:
            import yaml
        except ImportError:
            raise UsageError(
                f"--config {str(path)!r} is YAML, which needs PyYAML: pip install pyyaml (or give a .json file)."
            ) from None
        try:
            data = yaml.safe_load(text)  # data only: safe_load builds no Python objects
        except yaml.YAMLError as e:
            raise UsageError(f"--config {str(path)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as e:
            hint = " (a YAML file must end in .yaml or .yml)" if path.suffix.lower() != ".json" else ""
            raise UsageError(f"--config {str(path)!r} is not valid JSON{hint}: {e}.") from None
    if not isinstance(data, dict):
        raise UsageError(
            f"--config {str(path)!r} must hold a mapping of option names to values, got {type(data).__name__}."
        )
    return data


def _check_keys(src: str, section: str | None, values: dict[str, Any], allowed: set[str], owner: str) -> None:
    bad = [k for k in values if not isinstance(k, str) or k not in allowed]
    if not bad:
        return
    where = f' in "{section}"' if section else ""
    hints = []
    for key in bad:
        fixed = str(key).replace("-", "_")
        if fixed in allowed:
            hints.append(f"Write {fixed!r} for {key!r}: option names take underscores.")
        else:
            hits = close_matches(str(key), sorted(allowed))
            if hits:
                hints.append(f"For {key!r}, did you mean {', '.join(map(repr, hits))}?")
    raise UsageError(
        f"{src} has option{'s' if len(bad) > 1 else ''} that {owner} does not know{where}: "
        f"{', '.join(map(repr, bad))}. {' '.join(hints)}{' ' if hints else ''}Allowed: {', '.join(sorted(allowed))}."
    )
