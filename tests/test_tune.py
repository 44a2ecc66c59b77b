"""`deeprl tune`: Optuna studies whose trials are deeprl runs (deeprl/tuning.py, deeprl/search_spaces.py).

The studies here are tiny (PPO on CartPole, a few thousand env steps per trial): they check the bookkeeping (trials
in the database, pruning, resuming after a kill, best.json, --show, errors), not that tuning finds good values.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

optuna = pytest.importorskip("optuna")

from deeprl.cli import main  # noqa: E402
from deeprl.config import RunOptions, field_names  # noqa: E402
from deeprl.registry import ALGOS, get_algo  # noqa: E402
from deeprl.search_spaces import SPACES  # noqa: E402
from deeprl.tuning import check_space  # noqa: E402

# Trials of about a second: PPO's CartPole preset (32 envs) for 2,048 env steps, evaluated every 1,024. The
# minibatch is fixed by its flag (not searched), so that no trial draws the space's smallest, slowest one.
TINY = ["--total-steps", "2048", "--eval-every", "1024", "--eval-episodes", "2", "--minibatch-size", "256"]


def states(db: Path, study_name: str | None = None) -> dict[str, int]:
    storage = f"sqlite:///{db}"
    name = study_name or optuna.study.get_all_study_names(storage)[0]
    study = optuna.load_study(study_name=name, storage=storage)
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def complete_trials(db: Path) -> int:
    """COMPLETE trials in Optuna's SQLite database, read-only: opening it with Optuna while another process
    creates it could race that process's creation of the tables."""
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # no tables yet, or locked for a moment
        return 0


def tune(study_dir: Path, *flags: str, trials: int = 4) -> int:
    return main(["tune", "ppo", "CartPole-v1", "--trials", str(trials), *TINY, "--study-dir", str(study_dir), *flags])


@pytest.mark.parametrize("algo", sorted(SPACES))
def test_every_value_of_every_space_validates(algo):
    """Each built-in space names fields of the algorithm's config, and each of its bounds and choices builds a
    valid config (check_space instantiates the config with each one)."""
    spec = get_algo(algo)
    assert set(SPACES[algo]) <= set(field_names(spec.config_cls))
    checked = check_space(SPACES[algo], spec, spec.config_cls(), RunOptions(env_id="CartPole-v1"), "test")
    assert set(checked) == set(SPACES[algo])


def test_every_algorithm_has_a_space_and_no_flag_clashes():
    assert set(SPACES) == set(ALGOS)
    from deeprl.cli import TuneOptions

    tune_flags = set(field_names(TuneOptions))
    for spec in ALGOS.values():  # tune's flags sit beside every run option and hyperparameter flag
        assert not tune_flags & (set(field_names(spec.config_cls)) | set(field_names(RunOptions)))


def test_a_study_of_four_trials_with_best_json_table_and_plots(tmp_path, capsys):
    study_dir = tmp_path / "study"
    assert tune(study_dir, "--pruner", "none") == 0
    out = capsys.readouterr().out
    assert "objective: the final evaluation's mean return" in out and "maximised" in out
    assert "fixed by flags: minibatch_size=256" in out
    assert states(study_dir / "study.db") == {"COMPLETE": 4}
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{study_dir / 'study.db'}")
    for t in study.trials:  # each trial is a normal run directory named by its number
        run_dir = study_dir / "trials" / f"{t.number:04d}"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["eval_mean_return"] == t.value
        assert json.loads((run_dir / "config.json").read_text())["config"]["minibatch_size"] == 256
    best = json.loads((study_dir / "best.json").read_text())
    assert best["trial"] == study.best_trial.number and best["value"] == study.best_value
    assert best["objective"] == "final" and best["algo"] == "ppo" and best["env_id"] == "CartPole-v1"
    config = json.loads((study_dir / "trials" / f"{best['trial']:04d}" / "config.json").read_text())["config"]
    assert best["config"] == config  # the whole algorithm config the trial ran, by field name
    assert set(best["config"]) == set(field_names(get_algo("ppo").config_cls))
    for name, value in best["params"].items():
        assert best["config"][name] == value
    assert best["run"]["total_steps"] == 2048 and "run_dir" not in best["run"]
    assert (study_dir / "optimization_history.png").stat().st_size > 1000
    assert (study_dir / "param_importances.png").is_file() or "no param_importances.png" in out

    assert main(["tune", "--show", str(study_dir)]) == 0
    shown = capsys.readouterr().out
    assert "best trials by final eval mean return" in shown and "4 complete" in shown
    assert f"best: trial {best['trial']}" in shown
    assert main(["tune", "--show", str(study_dir / "study.db"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == best["params"]


def test_the_pruner_stops_trials_early(tmp_path, capsys):
    study_dir = tmp_path / "pruned"
    flags = ["--pruner", "median", "--pruner-startup-trials", "1", "--pruner-warmup-steps", "0"]
    assert tune(study_dir, *flags, trials=5) == 0
    counts = states(study_dir / "study.db")
    assert counts.get("PRUNED", 0) >= 1 and counts.get("COMPLETE", 0) + counts["PRUNED"] == 5
    assert "pruned at 1,024 env steps" in capsys.readouterr().out
    study = optuna.load_study(study_name="pruned", storage=f"sqlite:///{study_dir / 'study.db'}")
    for t in study.trials:
        if t.state.name == "PRUNED":  # stopped cleanly at its first evaluation: a finished run, stopped by us
            summary = json.loads((study_dir / "trials" / f"{t.number:04d}" / "summary.json").read_text())
            assert summary["stopped"] == "callback" and summary["stopped_by"] == "deeprl.tune.on_eval"
            assert summary["env_steps"] == 1024


def test_a_killed_study_continues_where_it_stopped(tmp_path, capsys):
    """SIGKILL the command once the database holds two finished trials; the same command again runs only the
    missing ones in the same study, and marks the trial the kill cut short FAIL."""
    study_dir = tmp_path / "killed"
    db = study_dir / "study.db"
    command = ["tune", "ppo", "CartPole-v1", "--trials", "4", *TINY, "--study-dir", str(study_dir), "--pruner", "none"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "deeprl", *command], env=env, stdout=subprocess.DEVNULL)
    try:
        finished, deadline = 0, time.monotonic() + 120
        while finished < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            finished = complete_trials(db)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    counts = states(db)
    assert proc.returncode == -signal.SIGKILL and 2 <= counts["COMPLETE"] < 4, counts
    cut_short = counts.get("RUNNING", 0)

    assert main(command) == 0
    out = capsys.readouterr().out
    after = states(db)
    assert optuna.study.get_all_study_names(f"sqlite:///{db}") == ["killed"]  # the same study, continued
    assert after["COMPLETE"] == 4 and after.get("RUNNING", 0) == 0
    assert after.get("FAIL", 0) == cut_short
    assert f"running {4 - counts['COMPLETE']} more" in out
    if cut_short:
        assert "marked FAIL" in out

    assert main(command) == 0  # a finished study: nothing more runs
    assert "running 0 more" in capsys.readouterr().out and states(db)["COMPLETE"] == 4


def test_trials_whose_process_died_are_marked_fail(tmp_path, capsys):
    """A RUNNING trial whose process on this machine is gone, and one left without its owner's record (killed
    between creating it and recording itself, which a process does under the study's lock), become FAIL; a
    running trial of a live process stays RUNNING and counts as taken."""
    import socket

    study_dir = tmp_path / "stale"
    assert tune(study_dir, "--pruner", "none", trials=1) == 0
    study = optuna.load_study(study_name="stale", storage=f"sqlite:///{study_dir / 'study.db'}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan, killed, alive = study.ask(), study.ask(), study.ask()
    killed.set_user_attr("host", socket.gethostname())
    killed.set_user_attr("pid", dead.pid)
    killed.set_user_attr("pid_started", 0.0)
    alive.set_user_attr("host", socket.gethostname())
    alive.set_user_attr("pid", os.getpid())
    alive.set_user_attr("pid_started", psutil.Process().create_time())
    capsys.readouterr()
    assert tune(study_dir, "--pruner", "none", trials=3) == 0
    assert f"marked FAIL: trials {orphan.number}, {killed.number}" in capsys.readouterr().out
    after = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
    assert after[orphan.number] == after[killed.number] == "FAIL" and after[alive.number] == "RUNNING"
    assert list(after.values()).count("COMPLETE") == 2  # 3 taken: 2 complete and the live one running


def test_trials_that_fail_are_pruned_with_their_error_and_five_in_a_row_stop(tmp_path, capsys):
    """A trial whose hyperparameters fail (here a replay buffer no memory holds) is PRUNED with the error
    recorded; five in a row mean something else is wrong, and the command stops with that error."""
    space = tmp_path / "space.json"
    space.write_text('{"buffer_size": ["categorical", [1000000000000, 2000000000000]]}')
    args = ["tune", "dqn", "CartPole-v1", "--trials", "8", "--total-steps", "1000", "--eval-every", "500"]
    assert main([*args, "--space", str(space), "--study-dir", str(tmp_path / "big")]) == 2
    captured = capsys.readouterr()
    assert "trial 0: pruned, it failed: A replay buffer of" in captured.out
    assert "deeprl: error: 5 trials in a row failed" in captured.err
    study = optuna.load_study(study_name="big", storage=f"sqlite:///{tmp_path / 'big' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["PRUNED"] * 5
    assert all("Lower --buffer-size" in t.user_attrs["error"] for t in study.trials)


def test_solve_objective_from_python_with_a_space_of_our_own(tmp_path, capsys):
    from deeprl.tuning import tune as tune_api

    result = tune_api(
        "ppo",
        "CartPole-v1",
        trials=2,
        study_dir=tmp_path / "solve",
        objective="solve",
        pruner="none",
        space={"learning_rate": ("log_float", 1e-3, 1e-2), "hidden": ("categorical", [[32], [64, 64]])},
        total_steps=2048,
        eval_every=512,
        eval_episodes=2,
        threshold=30.0,
        minibatch_size=256,
        progress="off",
    )
    out = capsys.readouterr().out
    assert "minimised" in out and "an unsolved trial counts its budget plus one evaluation interval (2,560)" in out
    assert result.counts["COMPLETE"] == 2 and result.best["objective"] == "solve"
    assert result.best["direction"] == "minimize" and set(result.best["params"]) == {"learning_rate", "hidden"}
    assert isinstance(result.best["params"]["hidden"], list)
    assert result.best["run"]["stop_when_solved"] is True and result.best["run"]["threshold"] == 30.0
    for t in optuna.load_study(study_name="solve", storage=f"sqlite:///{tmp_path / 'solve' / 'study.db'}").trials:
        assert t.value == (t.user_attrs["solved_at_env_steps"] if t.user_attrs["solved"] else 2560)


def test_best_json_is_what_train_config_reads(tmp_path):
    """best.json in the sectioned layout of `deeprl train ALGO ENV --config FILE`: the options it gives build the
    best trial's algorithm config and run options again."""
    options_file = pytest.importorskip("deeprl.options_file")
    from deeprl.driver import build_config

    study_dir = tmp_path / "b"
    assert tune(study_dir, "--pruner", "none", trials=1) == 0
    best = json.loads((study_dir / "best.json").read_text())
    options = options_file.read_options_file(study_dir / "best.json", "ppo", "CartPole-v1")
    _, config, run = build_config("ppo", "CartPole-v1", **options)
    trial = json.loads((study_dir / "trials" / "0000" / "config.json").read_text())
    assert json.loads(json.dumps(config.__dict__)) == trial["config"] == best["config"]
    assert run.total_steps == 2048 and run.eval_every == 1024 and run.run_dir is None


@pytest.mark.parametrize(
    "args, space, message",
    [
        (["tune", "nope", "CartPole-v1", "--trials", "2"], None, "Unknown algorithm 'nope'"),
        (["tune", "ppo", "CartPole-v1", "--trials", "0"], None, "trials must be in [1, inf]"),
        (["tune", "ppo", "CartPole-v1"], None, "Give the number of trials"),
        (
            ["tune", "q-learning", "CliffWalking-v1", "--trials", "2", "--episodes", "5", "--objective", "solve"],
            None,
            "has no reward_threshold",
        ),
        (["tune", "ppo", "CartPole-v1", "--trials", "2", "--run-dir", "x"], None, "--study-dir"),
        (
            ["tune", "ppo", "CartPole-v1", "--trials", "2"],
            ("json", '{"learnin_rate": ["float", 0.1, 0.2]}'),
            "Did you mean 'learning_rate'",
        ),
        (
            ["tune", "ppo", "CartPole-v1", "--trials", "2"],
            ("json", '{"n_steps": ["float", 1, 100]}'),
            "n_steps takes int",
        ),
        (
            ["tune", "ppo", "CartPole-v1", "--trials", "2"],
            ("json", '{"gamma": ["float", 0.5, 1.5]}'),
            "gamma must be in [0.0, 1.0], got 1.5",
        ),
        (
            ["tune", "ppo", "CartPole-v1", "--trials", "2"],
            ("json", '{"gamma": ["exec", "import os"]}'),
            "gamma must be",
        ),
        (
            ["tune", "ppo", "CartPole-v1", "--trials", "2"],
            ("yaml", "learning_rate: !!python/object/apply:os.system ['echo pwned']\n"),
            "not plain YAML data",
        ),
    ],
)
def test_bad_input_is_a_clear_error_before_any_study(tmp_path, capsys, monkeypatch, args, space, message):
    monkeypatch.chdir(tmp_path)
    if space is not None:
        path = tmp_path / f"space.{space[0]}"
        path.write_text(space[1])
        args = [*args, "--space", str(path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("deeprl: error:") and message in err, err
    assert not (tmp_path / "studies").exists() and "pwned" not in err


def test_a_rerun_with_other_settings_is_refused(tmp_path, capsys):
    study_dir = tmp_path / "s"
    assert tune(study_dir, "--pruner", "none", trials=1) == 0
    capsys.readouterr()
    assert (
        main(["tune", "ppo", "CartPole-v1", "--trials", "2", *TINY, "--study-dir", str(study_dir), "--gamma", "0.9"])
        == 2
    )
    err = capsys.readouterr().err
    assert "was started with gamma" in err and "--study-dir" in err
    assert states(study_dir / "study.db") == {"COMPLETE": 1}


@pytest.mark.slow
def test_jobs_run_trials_in_worker_processes_and_stop_at_n(tmp_path, capsys):
    study_dir = tmp_path / "jobs"
    assert tune(study_dir, "--pruner", "none", "--jobs", "2", trials=4) == 0
    assert "in 2 worker processes" in capsys.readouterr().out
    study = optuna.load_study(study_name="jobs", storage=f"sqlite:///{study_dir / 'study.db'}")
    assert states(study_dir / "study.db") == {"COMPLETE": 4}  # exactly N: the workers count under a lock
    assert os.getpid() not in {t.user_attrs["pid"] for t in study.trials}  # each ran in a worker process


def test_the_same_command_gives_the_same_study(tmp_path, capsys):
    """TPE seeded from --seed, each trial seeded with --seed: two new studies propose and score the same trials."""
    studies = []
    for name in ("a", "b"):
        assert tune(tmp_path / name, "--pruner", "none", trials=2) == 0
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / name / 'study.db'}")
        studies.append([(t.params, t.value) for t in study.trials])
    assert studies[0] == studies[1] and studies[0][0][0] != studies[0][1][0]
