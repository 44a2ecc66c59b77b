"""End-to-end tests of the `deeprl` command, run as a user runs it: the console script in a subprocess.

Every training run here is tiny (tens of episodes on toy-text envs); the cost of a test is mostly
the interpreter importing torch. So the training runs start together, in the background, the
first time a test needs one (the `runs` fixture), and each test waits only for its own.
Run directories live under pytest's tmp directories.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

import deeprl
from deeprl.config import TabularConfig

DEEPRL = Path(sys.executable).parent / "deeprl"
SUMMARY_FIELDS = (
    "algo",
    "env_id",
    "seed",
    "env_steps",
    "train_wall_s",
    "eval_mean_return",
    "eval_std_return",
    "eval_episodes",
    "reward_threshold",
    "solved",
    "solved_at_env_steps",
    "solved_at_wall_s",
)
TABULAR_FLAGS = (
    "--alpha",
    "--gamma",
    "--epsilon",
    "--epsilon-schedule",
    "--epsilon-final",
    "--epsilon-decay-episodes",
    "--q-init",
)
RUN_FLAGS = (
    "--seed",
    "--run-dir",
    "--total-steps",
    "--episodes",
    "--eval-every",
    "--eval-episodes",
    "--stop-when-solved",
    "--threshold",
    "--checkpoint-every",
    "--n-envs",
    "--vectorization",
    "--tensorboard",
)
ARROWS = set("←↓→↑")
BOX_CHARS = "│╭╮╰╯─┃━┏┓┗┛┡┩┢┪╇╈┼┬┴├┤┌┐└┘"


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        """stdout and stderr with box-drawing characters removed and whitespace collapsed, so a
        message that a rich panel wrapped over several lines still reads as one sentence."""
        joined = self.stdout + "\n" + self.stderr
        return " ".join(joined.translate({ord(c): " " for c in BOX_CHARS}).split())


def deeprl_cmd(*args: object, cwd: Path, env_extra: dict[str, str] | None = None, timeout: float = 120) -> Result:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env_extra or {})}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(
        [str(DEEPRL), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def ok(result: Result) -> Result:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def fails_cleanly(result: Result) -> str:
    """Assert a clean failure (non-zero exit, no traceback) and return its message as one line."""
    assert result.returncode != 0, f"expected a failure\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert result.text.strip(), "a failure must say what went wrong"
    return result.text


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def read_metrics(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def find_key(obj: object, key: str) -> object:
    """The value of `key` in a (possibly nested) JSON object: top level first, then nested dicts."""
    assert isinstance(obj, dict)
    if key in obj:
        return obj[key]
    for value in obj.values():
        if isinstance(value, dict):
            try:
                return find_key(value, key)
            except KeyError:
                pass
    raise KeyError(key)


def hyperparameters(config: dict) -> dict:
    """The dict in config.json that holds the algorithm's hyperparameters (the one with 'alpha')."""
    if "alpha" in config:
        return config
    found = [v for v in config.values() if isinstance(v, dict) and "alpha" in v]
    assert found, f"no hyperparameters (alpha...) in config.json: {config}"
    return found[0]


# ------------------------------------------------------------------ the training runs, started together
CHAIN_MODULE = '''
import gymnasium as gym
from gymnasium import spaces


class Chain(gym.Env):
    """States 0..4 in a row; action 1 steps right, action 0 left; reward 1 on reaching state 4."""

    def __init__(self, n=5):
        self.n = n
        self.observation_space = spaces.Discrete(n)
        self.action_space = spaces.Discrete(2)
        self.s = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return self.s, {}

    def step(self, action):
        self.s = min(self.s + 1, self.n - 1) if action == 1 else max(self.s - 1, 0)
        done = self.s == self.n - 1
        return self.s, float(done), done, False, {}


gym.register(id="ChainTest-v0", entry_point=Chain, max_episode_steps=50)
'''

# name -> the arguments of `deeprl train` (the fixture adds --run-dir WORKDIR/name)
TRAIN_RUNS: dict[str, tuple[object, ...]] = {
    "cliff": ("q-learning", "CliffWalking-v1", "--episodes", 30),
    "sarsamax": ("sarsamax", "CliffWalking-v1", "--episodes", 3),
    "override": ("q-learning", "CliffWalking-v1", "--alpha", 0.3, "--episodes", 5),
    "total-steps": ("q-learning", "CliffWalking-v1", "--total-steps", 200),
    "seed3-a": ("q-learning", "FrozenLake-v1", "--episodes", 300, "--seed", 3),
    "seed3-b": ("q-learning", "FrozenLake-v1", "--episodes", 300, "--seed", 3),
    "seed4": ("q-learning", "FrozenLake-v1", "--episodes", 300, "--seed", 4),
    "solved": (
        "q-learning",
        "CliffWalking-v1",
        "--episodes",
        500,
        "--eval-every",
        500,
        "--stop-when-solved",
        "--threshold",
        -20,
    ),
    "tensorboard": ("q-learning", "CliffWalking-v1", "--episodes", 5, "--tensorboard"),
    "chain": ("q-learning", "chainmod:ChainTest-v0", "--episodes", 20),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    (path / "modules").mkdir()
    (path / "modules" / "chainmod.py").write_text(CHAIN_MODULE)
    return path


def user_pythonpath(workdir: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(workdir / "modules"), *filter(None, [os.environ.get("PYTHONPATH")])])}


@pytest.fixture(scope="module")
def runs(workdir: Path) -> Iterator[dict[str, Future]]:
    """Every training run of this file, running in the background: name -> Future of (run_dir, Result)."""

    def train(name: str, args: tuple[object, ...]) -> tuple[Path, Result]:
        run_dir = workdir / name
        result = deeprl_cmd("train", *args, "--run-dir", run_dir, cwd=workdir, env_extra=user_pythonpath(workdir))
        return run_dir, result

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        yield {name: pool.submit(train, name, args) for name, args in TRAIN_RUNS.items()}


@pytest.fixture(scope="module")
def cliff_run(runs: dict[str, Future]) -> tuple[Path, Result]:
    return runs["cliff"].result()


def trained(runs: dict[str, Future], name: str) -> Path:
    """The run directory of a background run, once it has finished successfully."""
    run_dir, result = runs[name].result()
    ok(result)
    return run_dir


# ------------------------------------------------------------------ 1. the run directory
def test_train_writes_the_run_directory(cliff_run: tuple[Path, Result]) -> None:
    run_dir, result = cliff_run
    ok(result)
    assert str(run_dir) in result.stdout and "saved" in result.stdout.lower(), result.stdout
    for name in ("config.json", "metrics.csv", "summary.json", "policy.safetensors", "resume/LATEST"):
        assert (run_dir / name).is_file(), f"{name} missing from {sorted(p.name for p in run_dir.iterdir())}"
    assert (run_dir / "policy.safetensors").stat().st_size > 0


def test_summary_has_every_design_field(cliff_run: tuple[Path, Result]) -> None:
    run_dir, result = cliff_run
    ok(result)
    summary = read_json(run_dir / "summary.json")
    missing = [k for k in SUMMARY_FIELDS if k not in summary]
    assert not missing, f"summary.json lacks {missing}"
    assert summary["algo"] == "q-learning"
    assert summary["env_id"] == "CliffWalking-v1"
    assert summary["seed"] == 0
    assert isinstance(summary["env_steps"], int) and summary["env_steps"] >= 30 * 13  # 13 steps is the shortest path
    assert summary["train_wall_s"] > 0
    assert summary["eval_episodes"] >= 1
    assert summary["eval_std_return"] >= 0
    # CliffWalking has no reward_threshold and none was given: nothing can be solved.
    assert summary["reward_threshold"] is None
    assert summary["solved"] is False
    assert summary["solved_at_env_steps"] is None and summary["solved_at_wall_s"] is None


def test_metrics_csv_rows_and_columns(cliff_run: tuple[Path, Result]) -> None:
    run_dir, result = cliff_run
    ok(result)
    columns, rows = read_metrics(run_dir / "metrics.csv")
    for col in ("kind", "env_steps", "wall_time_s", "episode_return"):
        assert col in columns, f"metrics.csv columns {columns} lack {col}"
    kinds = {r["kind"] for r in rows}
    assert kinds <= {"train", "eval"}, kinds
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert len(train) == 30
    assert len(evals) >= 1
    steps = [int(r["env_steps"]) for r in train]
    assert steps == sorted(steps) and len(set(steps)) == 30, "one row per finished episode, in order"
    summary = read_json(run_dir / "summary.json")
    assert steps[-1] == summary["env_steps"], "an episode budget ends when the last episode ends"
    # CliffWalking gives -1 per step (-100 for the cliff): every return is a negative whole number.
    for r in train:
        ret = float(r["episode_return"])
        assert ret <= -13 and ret == int(ret), r
        assert float(r["wall_time_s"]) >= 0
    # The final evaluation is the one in summary.json.
    assert float(evals[-1]["episode_return"]) == pytest.approx(summary["eval_mean_return"])
    assert int(evals[-1]["env_steps"]) == summary["env_steps"]


def test_config_json_records_everything(cliff_run: tuple[Path, Result]) -> None:
    run_dir, result = cliff_run
    ok(result)
    config = read_json(run_dir / "config.json")
    assert find_key(config, "algo") == "q-learning"
    assert find_key(config, "env_id") == "CliffWalking-v1"
    assert find_key(config, "seed") == 0
    hp = hyperparameters(config)
    fields = [f.name for f in dataclasses.fields(TabularConfig)]
    missing = [f for f in fields if f not in hp]
    assert not missing, f"config.json lacks hyperparameters {missing}"
    # The CliffWalking preset (Sutton & Barto, Example 6.6): alpha 0.5, undiscounted, constant epsilon 0.1.
    assert hp["alpha"] == 0.5 and hp["gamma"] == 1.0 and hp["epsilon"] == 0.1
    assert hp["epsilon_schedule"] == "constant"
    versions = find_key(config, "versions")
    assert isinstance(versions, dict)
    assert versions.get("torch") and versions.get("gymnasium"), versions
    import gymnasium

    assert versions["gymnasium"] == gymnasium.__version__


# ------------------------------------------------------------------ 2. eval
def test_eval_json(cliff_run: tuple[Path, Result]) -> None:
    run_dir, result = cliff_run
    ok(result)
    out = ok(deeprl_cmd("eval", run_dir, "--episodes", 3, "--json", cwd=run_dir.parent))
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"--json prints one JSON object and nothing else: {out.stdout!r}"
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    assert data["episodes"] == 3
    assert isinstance(data["mean_return"], float) and isinstance(data["std_return"], float)
    assert data["std_return"] >= 0
    assert data["mean_return"] <= -13  # no CliffWalking episode does better than the 13-step path


def test_eval_plain_sentence(cliff_run: tuple[Path, Result]) -> None:
    run_dir, result = cliff_run
    ok(result)
    out = ok(deeprl_cmd("eval", run_dir, "--episodes", 3, cwd=run_dir.parent))
    assert "mean return" in out.stdout.lower(), out.stdout
    assert "3 episodes" in out.stdout, out.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.stdout)


def test_eval_on_corrupt_policy_fails_cleanly(cliff_run: tuple[Path, Result], tmp_path: Path) -> None:
    run_dir, result = cliff_run
    ok(result)
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "policy.safetensors").write_bytes(b"\x00garbage, not a safetensors file\xff" * 10)
    msg = fails_cleanly(deeprl_cmd("eval", broken, "--json", cwd=tmp_path))
    assert "policy.safetensors" in msg, msg


def test_existing_run_dir_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "taken"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    msg = fails_cleanly(
        deeprl_cmd("train", "q-learning", "CliffWalking-v1", "--episodes", 3, "--run-dir", run_dir, cwd=tmp_path)
    )
    assert "already holds files" in msg and "another --run-dir" in msg, msg
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"]
    assert (run_dir / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------ 3. alias
def test_sarsamax_is_q_learning(runs: dict[str, Future]) -> None:
    run_dir = trained(runs, "sarsamax")
    assert read_json(run_dir / "config.json")["algo"] == "q-learning"
    assert read_json(run_dir / "summary.json")["algo"] == "q-learning"


# ------------------------------------------------------------------ 4. flags over the preset
def test_flags_override_the_preset(runs: dict[str, Future]) -> None:
    run_dir = trained(runs, "override")  # --alpha 0.3 --episodes 5
    config = read_json(run_dir / "config.json")
    hp = hyperparameters(config)
    assert hp["alpha"] == 0.3
    assert hp["gamma"] == 1.0, "flags not given keep the preset's values"
    assert find_key(config, "episodes") == 5
    _, rows = read_metrics(run_dir / "metrics.csv")
    assert sum(r["kind"] == "train" for r in rows) == 5
    assert read_json(run_dir / "summary.json")["episodes"] == 5


def test_total_steps_replaces_the_preset_episode_budget(runs: dict[str, Future]) -> None:
    run_dir = trained(runs, "total-steps")  # --total-steps 200, where the preset says 500 episodes
    summary = read_json(run_dir / "summary.json")
    assert summary["env_steps"] == 200
    config = read_json(run_dir / "config.json")
    assert find_key(config, "total_steps") == 200
    assert find_key(config, "episodes") is None


# ------------------------------------------------------------------ 5. help
def _flag_section(text: str, flag: str, next_flag: str) -> str:
    match = re.search(re.escape(flag) + r"\b(.*?)" + re.escape(next_flag), text)
    assert match, f"{flag} ... {next_flag} not found in help:\n{text}"
    return match.group(1)


@pytest.mark.parametrize("env_args", [(), ("FrozenLake-v1",)], ids=["no-env", "FrozenLake-v1"])
def test_train_help_lists_every_flag(env_args: tuple[str, ...], tmp_path: Path) -> None:
    out = ok(deeprl_cmd("train", "q-learning", *env_args, "--help", cwd=tmp_path))
    missing = [f for f in TABULAR_FLAGS + RUN_FLAGS if not re.search(re.escape(f) + r"(?![\w-])", out.stdout)]
    assert not missing, f"help lacks {missing}:\n{out.stdout}"
    fields = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(TabularConfig)}
    assert fields <= set(re.findall(r"--[a-z][a-z0-9-]*", out.stdout)), "every TabularConfig field is a flag"
    alpha_help = _flag_section(out.text, "--alpha", "--gamma")
    expected_alpha = "0.05" if env_args else "0.1"  # the FrozenLake preset's alpha, else the dataclass default
    assert re.search(r"default:?\s*" + re.escape(expected_alpha) + r"\b", alpha_help), alpha_help
    assert not list(tmp_path.iterdir()), "--help writes nothing"


# ------------------------------------------------------------------ 6. bad input
BAD_TRAIN = {
    "unknown-algo": (("train", "q-learnin", "CliffWalking-v1"), [r"q-learnin\b", r"did you mean\W+q-learning"]),
    "unknown-env": (("train", "q-learning", "CliffWalkin-v1"), [r"CliffWalkin-v1", r"did you mean\W+CliffWalking-v1"]),
    "box-observations": (("train", "q-learning", "CartPole-v1"), [r"CartPole-v1", r"\bBox", r"Discrete"]),
    "gamma-range": (
        ("train", "q-learning", "CliffWalking-v1", "--gamma", "1.5"),
        [r"gamma", r"1\.5", r"\[0(\.0)?, ?1(\.0)?\]"],
    ),
    "alpha-negative": (("train", "q-learning", "CliffWalking-v1", "--alpha", "-0.1"), [r"alpha", r"-0\.1"]),
    "episodes-zero": (("train", "q-learning", "CliffWalking-v1", "--episodes", "0"), [r"episodes", r"\b0\b"]),
    "two-budgets": (
        ("train", "q-learning", "CliffWalking-v1", "--episodes", "5", "--total-steps", "100"),
        [r"episodes", r"total.steps"],
    ),
    "bad-schedule": (
        ("train", "q-learning", "CliffWalking-v1", "--epsilon-schedule", "cosine"),
        [r"cosine", r"epsilon.schedule", r"constant", r"linear"],
    ),
    "n-envs-tabular": (("train", "q-learning", "CliffWalking-v1", "--n-envs", "4"), [r"n.envs", r"\b4\b"]),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN), ids=list(BAD_TRAIN))
def test_bad_train_input_fails_before_writing(case: str, tmp_path: Path) -> None:
    args, patterns = BAD_TRAIN[case]
    run_dir = tmp_path / "run"
    msg = fails_cleanly(deeprl_cmd(*args, "--run-dir", run_dir, cwd=tmp_path))
    assert not run_dir.exists(), f"{case}: the run dir was created before the error"
    assert not (tmp_path / "runs").exists()
    for pattern in patterns:
        assert re.search(pattern, msg, re.IGNORECASE), f"{case}: {pattern!r} not in message: {msg}"


def test_eval_missing_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    msg = fails_cleanly(deeprl_cmd("eval", missing, cwd=tmp_path))
    assert "nope" in msg and re.search(r"not exist|no such|missing|not found", msg, re.IGNORECASE), msg
    assert not missing.exists()


def test_resume_missing_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    msg = fails_cleanly(deeprl_cmd("train", "--resume", missing, cwd=tmp_path))
    assert "nope" in msg and re.search(r"not exist|no such|missing|not found", msg, re.IGNORECASE), msg
    assert not missing.exists()


def test_unknown_command_suggests_train(tmp_path: Path) -> None:
    msg = fails_cleanly(deeprl_cmd("trian", cwd=tmp_path))
    assert "trian" in msg and re.search(r"did you mean\W+train\b", msg, re.IGNORECASE), msg


# ------------------------------------------------------------------ 7. list
def test_list_table(tmp_path: Path) -> None:
    out = ok(deeprl_cmd("list", cwd=tmp_path))
    for name in ("sarsa", "expected-sarsa", "q-learning", "mc", "sarsamax"):
        assert re.search(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", out.stdout), f"{name} not listed"
    for env_id in ("CliffWalking-v1", "FrozenLake-v1", "Taxi-v4", "Blackjack-v1"):
        assert env_id in out.stdout, f"preset {env_id} not listed"


def test_list_json(tmp_path: Path) -> None:
    out = ok(deeprl_cmd("list", "--json", cwd=tmp_path))
    entries = json.loads(out.stdout)
    assert isinstance(entries, list) and entries
    by_name = {e["algo"]: e for e in entries}
    assert {"sarsa", "expected-sarsa", "q-learning", "mc"} <= set(by_name)
    for entry in entries:
        for key in ("observation_spaces", "action_spaces", "presets"):
            assert key in entry, f"{entry.get('algo')} lacks {key}"
    assert "CliffWalking-v1" in by_name["q-learning"]["presets"]
    assert "Discrete" in by_name["q-learning"]["action_spaces"]


# ------------------------------------------------------------------ 8. solve
def test_solve_frozenlake_prints_residual_and_arrow_grid(tmp_path: Path) -> None:
    out = ok(deeprl_cmd("solve", "FrozenLake-v1", cwd=tmp_path))
    assert "residual" in out.stdout.lower()
    arrow_rows = [
        line.split() for line in out.stdout.splitlines() if line.split() and all(tok in ARROWS for tok in line.split())
    ]
    assert len(arrow_rows) == 4 and all(len(row) == 4 for row in arrow_rows), out.stdout
    # From the start state (top left) the slippery-lake optimal action is LEFT (Sutton & Barto's classic result).
    assert arrow_rows[0][0] == "←", out.stdout


def test_solve_cliffwalking_json(tmp_path: Path) -> None:
    out = ok(deeprl_cmd("solve", "CliffWalking-v1", "--gamma", "1.0", "--json", cwd=tmp_path))
    data = json.loads(out.stdout)
    v = data["v"]
    assert len(v) == 48
    assert v[36] == pytest.approx(-13.0, abs=1e-6)  # the start: 13 steps along the cliff edge, -1 each


def test_solve_cartpole_fails_cleanly(tmp_path: Path) -> None:
    msg = fails_cleanly(deeprl_cmd("solve", "CartPole-v1", cwd=tmp_path))
    assert "CartPole-v1" in msg and re.search(r"transition model", msg, re.IGNORECASE), msg


# ------------------------------------------------------------------ 9. reproducibility
def _rows_without_wall_time(run_dir: Path) -> list[dict[str, str]]:
    columns, rows = read_metrics(run_dir / "metrics.csv")
    assert "wall_time_s" in columns
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


def test_same_seed_same_metrics_other_seed_differs(runs: dict[str, Future]) -> None:
    first, second, other = (_rows_without_wall_time(trained(runs, name)) for name in ("seed3-a", "seed3-b", "seed4"))
    assert sum(r["kind"] == "train" for r in first) == 300
    assert len(first) == len(second)
    for i, (x, y) in enumerate(zip(first, second)):
        assert x == y, f"row {i} differs between two runs with seed 3: {x} vs {y}"
    assert first != other, "seed 4 gave exactly the rows of seed 3"


# ------------------------------------------------------------------ 10. stop when solved
def test_stop_when_solved(runs: dict[str, Future]) -> None:
    run_dir = trained(runs, "solved")  # --episodes 500 --eval-every 500 --stop-when-solved --threshold -20
    summary = read_json(run_dir / "summary.json")
    assert summary["solved"] is True
    assert summary["stopped"] == "solved"
    assert summary["reward_threshold"] == -20
    at = summary["solved_at_env_steps"]
    assert isinstance(at, int) and not isinstance(at, bool)
    assert 0 < at <= summary["env_steps"]
    assert at % 500 == 0, "solved is decided at a periodic evaluation"
    assert summary["episodes"] < 500
    assert summary["eval_mean_return"] >= -20
    assert isinstance(summary["solved_at_wall_s"], (int, float)) and summary["solved_at_wall_s"] >= 0
    _, rows = read_metrics(run_dir / "metrics.csv")
    assert sum(r["kind"] == "train" for r in rows) == summary["episodes"]


# ------------------------------------------------------------------ 11. tensorboard
def test_tensorboard_writes_event_files(runs: dict[str, Future]) -> None:
    run_dir = trained(runs, "tensorboard")
    events = [p for p in (run_dir / "tb").rglob("*") if p.name.startswith("events.out.tfevents")]
    assert events, f"no event file under {run_dir / 'tb'}"
    assert any(p.stat().st_size > 0 for p in events)


# ------------------------------------------------------------------ 12. a user's env
def test_user_env_module_form(runs: dict[str, Future], workdir: Path) -> None:
    run_dir, result = runs["chain"].result()  # chainmod:ChainTest-v0, chainmod.py on PYTHONPATH
    ok(result)
    assert str(run_dir) in result.stdout
    summary = read_json(run_dir / "summary.json")
    assert summary["env_id"] == "chainmod:ChainTest-v0"
    _, rows = read_metrics(run_dir / "metrics.csv")
    train = [r for r in rows if r["kind"] == "train"]
    assert len(train) == 20
    assert all(float(r["episode_return"]) in (0.0, 1.0) for r in train)
    # a module named in a run directory is imported only when the user vouches for it (importing runs its code)
    refused = deeprl_cmd("eval", run_dir, "--episodes", 2, cwd=workdir, env_extra=user_pythonpath(workdir))
    assert refused.returncode == 2 and "--trust-module chainmod" in refused.stderr, refused.stderr
    ev = ok(
        deeprl_cmd(
            "eval",
            run_dir,
            "--episodes",
            2,
            "--json",
            "--trust-module",
            "chainmod",
            cwd=workdir,
            env_extra=user_pythonpath(workdir),
        )
    )
    data = json.loads(ev.stdout)
    assert data["episodes"] == 2
    assert 0.0 <= data["mean_return"] <= 1.0


# ------------------------------------------------------------------ 13. version and usage
def test_version(tmp_path: Path) -> None:
    out = ok(deeprl_cmd("--version", cwd=tmp_path))
    assert deeprl.__version__ in out.stdout


def test_no_arguments_prints_usage(tmp_path: Path) -> None:
    out = deeprl_cmd(cwd=tmp_path)
    assert "Traceback" not in out.stderr
    text = (out.stdout + out.stderr).lower()
    assert "usage" in text
    for command in ("train", "eval", "solve", "list"):
        assert command in text, f"usage does not mention {command}"


# ------------------------------------------------------------------ 14. one error style for parse errors
BAD_PARSE = {
    "int-not-a-number": (("train", "ppo", "CartPole-v1", "--n-envs", "abc"), [r"--n-envs", r"'abc'", r"integer"]),
    "float-not-a-number": (
        ("train", "ppo", "CartPole-v1", "--learning-rate", "x"),
        [r"--learning-rate", r"'x'", r"number"],
    ),
    "unknown-flag": (("train", "ppo", "CartPole-v1", "--no-such-flag"), [r"unknown flag --no-such-flag"]),
    "misspelt-flag": (
        ("train", "q-learning", "CliffWalking-v1", "--alpah", "0.3"),
        [r"--alpah", r"did you mean --alpha\b"],
    ),
    "bad-choice": (
        ("train", "ppo", "CartPole-v1", "--vectorization", "foo"),
        [r"--vectorization", r"'foo'", r"auto, sync, async"],
    ),
    "missing-value": (("train", "ppo", "CartPole-v1", "--n-envs"), [r"--n-envs", r"integer"]),
    "missing-required": (("render", "RUN"), [r"deeprl render", r"--out PATH", r"FILE\.gif"]),
    "missing-positional": (("eval",), [r"RUN_DIR"]),
    "eval-bad-int": (("eval", "RUN", "--episodes", "many"), [r"--episodes", r"'many'", r"integer"]),
    "stray-value": (("list", "--json", "x"), [r"'x'", r"--json takes no value"]),
    "resume-bad-choice": (("train", "--resume", "RUN", "--progress", "maybe"), [r"--progress", r"'maybe'"]),
}


def parse_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """stderr of `deeprl ARGS` in process, after checking it is deeprl's one error line and exit 2."""
    from deeprl.cli import main

    rc = main(list(args))
    out, err = capsys.readouterr()
    assert rc == 2, f"exit {rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert err.startswith("deeprl: error: "), err
    assert len(err.strip().splitlines()) == 1, f"one line expected:\n{err}"
    assert not set(err) & set(BOX_CHARS), f"a panel, not deeprl's error line:\n{err}"
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("case", list(BAD_PARSE), ids=list(BAD_PARSE))
def test_parse_errors_are_one_deeprl_error_line(
    case: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args, patterns = BAD_PARSE[case]
    err = parse_error(capsys, *args)
    for pattern in patterns:
        assert re.search(pattern, err, re.IGNORECASE), f"{case}: {pattern!r} not in: {err}"
    assert re.search(r"`deeprl [^`]*--help`", err), f"{case}: no pointer to --help: {err}"
    assert not list(tmp_path.iterdir()), f"{case}: a parse error writes nothing"


def test_range_check_of_a_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A __post_init__ range check runs inside tyro, which used to wrap it in its panel."""
    err = parse_error(capsys, "solve", "FrozenLake-v1", "--gamma", "1.5")
    assert re.search(r"gamma.*1\.5", err), err


def test_parse_error_from_the_console_script(tmp_path: Path) -> None:
    out = deeprl_cmd("train", "ppo", "CartPole-v1", "--n-envs", "abc", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("deeprl: error: --n-envs expects an integer, got 'abc'."), out.stderr
    assert not set(out.stderr) & set(BOX_CHARS), out.stderr
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ 15. list at the terminal's width
@pytest.fixture
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.mark.parametrize("columns", [160, 80, 60])
def test_list_fits_the_terminal_without_cutting_words(
    columns: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plain_terminal: None
) -> None:
    from rich.cells import cell_len

    from deeprl.cli import main

    assert main(["list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    too_wide = [line for line in lines if cell_len(line) > columns]
    assert not too_wide, f"lines wider than {columns}:\n" + "\n".join(too_wide)
    words = set()
    for e in entries:
        for value in (e["algo"], *e["aliases"], e["summary"], e["observation_spaces"], e["action_spaces"]):
            words.update(w.strip(",()") for w in value.split())
        words.update(e["presets"])
    assert {"MultiDiscrete", "LunarLanderContinuous-v3", "expected-sarsa"} <= words
    cut = sorted(w for w in words if w and w not in text)
    assert not cut, f"split across lines at {columns} columns: {cut}\n{text}"


def test_list_json_is_unchanged_by_the_width(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plain_terminal: None
) -> None:
    from deeprl.cli import main

    outputs = []
    for columns in ("200", "40"):
        monkeypatch.setenv("COLUMNS", columns)
        assert main(["list", "--json"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])


# ------------------------------------------------------------------ 16. the progress bar
def _progress_run(opts: dict, steps: int, episodes: int) -> str:
    """Render ProgressDisplay with progress='on' into a recording console through one update."""
    import io
    import types

    from rich.console import Console

    from deeprl.progress import ProgressDisplay

    opts = types.SimpleNamespace(progress="on", env_id="CartPole-v1", **opts)
    state = types.SimpleNamespace(env_steps=0, train_wall_s=0.0, episodes=0, recent_returns=[], last_eval=None)
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    with ProgressDisplay(opts, "ppo", state, console=console) as display:
        assert display.enabled
        state.env_steps, state.train_wall_s, state.episodes = steps, 0.5, episodes
        state.recent_returns, state.last_eval = [20.0, 30.0], (steps, 42.0)
        display.update()
        assert display.eta_s() is not None and display.eta_s() >= 0
    return console.export_text()


ETA = r"eta (\d+:\d{2}:\d{2}|-:--:--)"


def test_progress_shows_steps_per_s_and_eta_for_a_step_budget() -> None:
    text = _progress_run({"total_steps": 10_000, "episodes": None}, steps=2_000, episodes=40)
    assert re.search(r"\b4,000 steps/s\b", text), text  # 2,000 steps in 0.5 s of training
    assert re.search(ETA, text), text
    assert "2000/10000 steps" in text and "return 25.00" in text and "eval 42.00" in text, text


def test_progress_eta_counts_episodes_for_an_episode_budget() -> None:
    text = _progress_run({"total_steps": None, "episodes": 100}, steps=500, episodes=25)
    assert "25/100 episodes" in text, text
    assert re.search(ETA, text) and re.search(r"[\d,]+ steps/s", text), text


def test_progress_eta_format_and_auto_off_outside_a_terminal() -> None:
    import io
    import types

    from rich.console import Console

    from deeprl.progress import ProgressDisplay, format_eta

    assert format_eta(None) == "-:--:--" and format_eta(float("inf")) == "-:--:--"
    assert format_eta(83.4) == "0:01:23" and format_eta(3 * 3600 + 5) == "3:00:05"
    opts = types.SimpleNamespace(progress="auto", env_id="X", total_steps=10, episodes=None)
    state = types.SimpleNamespace(env_steps=0, train_wall_s=0.0, episodes=0, recent_returns=[], last_eval=None)
    assert not ProgressDisplay(opts, "ppo", state, console=Console(file=io.StringIO())).enabled
