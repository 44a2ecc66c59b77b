"""Many seeds (`deeprl train ... --seeds 0-3 --jobs 2`), their aggregate (IQM, mean, median, 95% bootstrap CIs by
rliable), the plot of a seeds parent directory, and `--config FILE` (deeprl.options_file).

The seeds run Q-learning on FrozenLake-v1 for 2000 episodes (about a second each): slippery ice makes the final
returns differ between seeds, and the low threshold (0.2) makes some of them, not all, solve."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import deeprl
from deeprl.cli import main, parse_train_args
from deeprl.errors import UsageError
from deeprl.seeds import parse_seeds

rly = pytest.importorskip("rliable.library")
metrics = pytest.importorskip("rliable.metrics")
pytestmark = pytest.mark.filterwarnings("ignore:random_state is deprecated:FutureWarning")  # arch 7, under rliable

FAST = (
    "--episodes",
    "2000",
    "--eval-every",
    "1000",
    "--eval-episodes",
    "20",
    "--threshold",
    "0.2",
    "--epsilon-decay-episodes",
    "1000",
)


def deeprl_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deeprl", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


def rliable_by_hand(values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """rliable's IQM, mean and the median over seeds with their 95% intervals, called as the aggregate's "method"
    says: rliable 1.2 resamples with numpy's global RNG, so that is what the seed seeds."""
    scores = np.asarray(values, dtype=float).reshape(-1, 1)
    func = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), np.median(x)])
    np.random.seed(0)
    points, intervals = rly.get_interval_estimates(
        {"x": scores}, func, reps=2000, confidence_interval_size=0.95, random_state=np.random.RandomState(0)
    )
    return points["x"], intervals["x"]


@pytest.fixture(scope="module")
def frozen_seeds(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    parent = tmp_path_factory.mktemp("seeds") / "fl"
    proc = deeprl_cli(
        "train", "q-learning", "FrozenLake-v1", "--seeds", "0-3", "--jobs", "2", "--run-dir", str(parent), *FAST
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return parent, proc


def summaries(parent: Path, seeds=range(4)) -> list[dict]:
    return [json.loads((parent / f"s{s}" / "summary.json").read_text()) for s in seeds]


# ---------------------------------------------------------------- --seeds
def test_seeds_train_a_run_directory_each_and_aggregate_them_with_rliable(frozen_seeds):
    parent, proc = frozen_seeds
    assert sorted(p.name for p in parent.iterdir() if p.is_dir() and p.name.startswith("s")) == ["s0", "s1", "s2", "s3"]
    runs = summaries(parent)
    configs = [json.loads((parent / f"s{s}" / "config.json").read_text()) for s in range(4)]
    assert [c["seed"] for c in configs] == [0, 1, 2, 3]  # each seed a normal run, with its own seed...
    assert {(c["run"]["episodes"], c["run"]["threshold"], c["config"]["epsilon_decay_episodes"]) for c in configs} == {
        (2000, 0.2, 1000)
    }  # ...and the same options
    assert len({r["eval_mean_return"] for r in runs}) > 1, "the seeds should differ, or the test proves little"

    agg = json.loads((parent / "aggregate.json").read_text())
    returns = [r["eval_mean_return"] for r in runs]
    points, intervals = rliable_by_hand(returns)
    final = agg["final_eval_return"]
    assert final["n"] == 4
    for i, name in enumerate(("iqm", "mean", "median")):
        assert final[name] == pytest.approx(points[i])
        assert final[f"{name}_ci"] == pytest.approx([intervals[0][i], intervals[1][i]])
    assert final["iqm"] == pytest.approx(np.mean(sorted(returns)[1:3]))  # 4 seeds: the IQM is the middle two's mean
    assert final["iqm_ci"][0] <= final["iqm"] <= final["iqm_ci"][1]

    solved = [r for r in runs if r["solved"]]
    assert 0 < len(solved) < 4, "some seeds should solve and some not at threshold 0.2"
    assert agg["solved"] == {
        "seeds": len(solved),
        "of": 4,
        "unsolved_seeds": [r["seed"] for r in runs if not r["solved"]],
    }
    for key, field in (("env_steps_to_solve", "solved_at_env_steps"), ("train_s_to_solve", "solved_at_wall_s")):
        values = [r[field] for r in solved]
        points, intervals = rliable_by_hand(values)
        assert agg[key]["n"] == len(solved)
        assert agg[key]["iqm"] == pytest.approx(points[0]) and agg[key]["median_ci"][1] == pytest.approx(
            intervals[1][2]
        )
    assert agg["per_seed"][1]["eval_mean_return"] == runs[1]["eval_mean_return"]
    assert agg["reps"] == 2000 and agg["rliable_version"] and "stratified bootstrap" in agg["method"]
    assert "IQM [95% CI]" in proc.stdout and f"{len(solved)} of 4 finished seeds solved" in proc.stdout
    for seed in range(4):
        assert f"seed {seed}: finished" in proc.stdout and (parent / "logs" / f"s{seed}.log").is_file()


def test_interval_estimates_by_hand():
    from deeprl.seeds import interval_estimates

    est = interval_estimates([1.0, 2.0, 3.0, 10.0])
    assert (est["n"], est["iqm"], est["mean"], est["median"]) == (4, 2.5, 4.0, 2.5)  # the median is not the mean
    assert est["iqm_ci"] == [1.0, 10.0]  # 2000 resamples of 4 seeds include all-1s and all-10s ones
    assert est["mean_ci"][0] < 4.0 < est["mean_ci"][1]
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    assert interval_estimates([0.3, 0.1, 0.7, 0.2, 0.9]) == interval_estimates([0.3, 0.1, 0.7, 0.2, 0.9])  # seeded
    assert np.random.random() == before  # and the caller's global RNG is left as it was
    assert interval_estimates([])["iqm"] is None


def test_aggregate_recomputes_what_aggregate_json_holds(frozen_seeds):
    parent, _ = frozen_seeds
    assert deeprl.aggregate(parent, write=False) == json.loads((parent / "aggregate.json").read_text())


def test_rerun_skips_finished_seeds_resumes_interrupted_ones_and_reports_a_failing_one(frozen_seeds, tmp_path):
    parent = tmp_path / "fl"
    shutil.copytree(frozen_seeds[0], parent)
    before = summaries(parent)
    mtimes = {s: (parent / f"s{s}" / "summary.json").stat().st_mtime_ns for s in (0, 2, 3)}
    (parent / "s1" / "summary.json").unlink()  # s1 looks interrupted: a resume state and no summary
    (parent / "s4").mkdir()
    (parent / "s4" / "notes.txt").write_text("not a run")  # seed 4 cannot claim its directory: it fails
    proc = deeprl_cli(
        "train", "q-learning", "FrozenLake-v1", "--seeds", "0-4", "--jobs", "2", "--run-dir", str(parent), *FAST
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    for s in (0, 2, 3):
        assert f"seed {s}: finished before" in proc.stdout
        assert (parent / f"s{s}" / "summary.json").stat().st_mtime_ns == mtimes[s]  # not trained again
    assert "seed 1: resuming" in proc.stdout and "seed 1: finished" in proc.stdout
    assert summaries(parent, [1])[0]["eval_mean_return"] == before[1]["eval_mean_return"]  # resumed exactly
    assert "seed 4: failed" in proc.stdout and "already holds files" in proc.stdout
    assert "1 of 5 seeds did not finish (seed 4: failed" in proc.stderr
    assert "the aggregate covers the 4 that finished" in proc.stderr
    assert f"retry them with `deeprl train --resume {parent}`" in proc.stderr
    agg = json.loads((parent / "aggregate.json").read_text())
    assert agg["seeds_finished"] == [0, 1, 2, 3] and agg["seeds_not_finished"] == [4]
    assert "4 of 5 seeds finished" in proc.stdout


def test_resume_of_a_seeds_parent_continues_its_seeds(frozen_seeds, tmp_path, capsys):
    parent = tmp_path / "fl"
    shutil.copytree(frozen_seeds[0], parent)
    (parent / "aggregate.json").unlink()
    assert main(["train", "--resume", str(parent), "--jobs", "2"]) == 0  # every seed finished: all skipped
    out = capsys.readouterr().out
    assert all(f"seed {s}: finished before" in out for s in range(4)) and "4 of 4 seeds finished" in out
    assert json.loads((parent / "aggregate.json").read_text()) == json.loads(
        (frozen_seeds[0] / "aggregate.json").read_text()
    )
    assert main(["train", "--resume", str(parent), "--episodes", "5"]) == 2
    assert "--vectorize and --trust-module M beside, got --episodes 5" in " ".join(capsys.readouterr().err.split())


def test_rerun_error_names_the_changed_option(frozen_seeds, tmp_path, capsys):
    parent = tmp_path / "fl"
    shutil.copytree(frozen_seeds[0], parent)
    other = [a if a != "0.2" else "0.3" for a in FAST]
    assert main(["train", "q-learning", "FrozenLake-v1", "--seeds", "0-3", "--run-dir", str(parent), *other]) == 2
    assert "run.threshold: 0.2 then, 0.3 now" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, seeds",
    [("0-9", tuple(range(10))), ("0,3,7", (0, 3, 7)), ("0-3,8", (0, 1, 2, 3, 8)), (" 5 ", (5,)), ("2-2", (2,))],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    "text, message",
    [
        ("3-1", "runs downwards. Write it low-high: 1-3"),
        ("x", "'x' is not a seed or a range"),
        ("0-3,2", "names seed 2 twice"),
        ("", "expects a list of seeds"),
        ("1,,2", "'' is not a seed"),
        ("-1", "not a seed or a range"),
    ],
)
def test_bad_seeds_are_clear_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_seeds(text)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "3-1"], "--seeds '3-1': the range '3-1' runs downwards"),
        (["--seeds", "x"], "--seeds 'x': 'x' is not a seed"),
        (["--seeds", "0-2", "--seed", "1"], "--seed and --seeds cannot be given together"),
        (["--jobs", "2"], "give the seeds with --seeds"),
        (["--seeds", "0-2", "--jobs", "0"], "jobs"),
    ],
)
def test_seeds_command_line_errors_come_before_any_work(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "q-learning", "FrozenLake-v1", *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no runs/ directory, no parent


def test_run_dir_of_a_single_run_is_not_a_seeds_parent(tmp_path, capsys):
    run = deeprl.train("q-learning", "FrozenLake-v1", episodes=20, run_dir=tmp_path / "one", progress="off")
    assert main(["train", "q-learning", "FrozenLake-v1", "--seeds", "0-1", "--run-dir", str(run.run_dir)]) == 2
    assert "is a single run's directory" in capsys.readouterr().err


def test_plot_of_a_seeds_parent_draws_the_mean_and_a_confidence_band(frozen_seeds, tmp_path, capsys):
    parent, _ = frozen_seeds
    out = tmp_path / "seeds.png"
    assert main(["plot", str(parent), "--out", str(out)]) == 0
    assert "(4 runs)" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    fig = deeprl.plot(parent)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any("q-learning, 4 seeds: evaluation (mean over seeds, 95% bootstrap CI)" in label for label in labels)
    assert len(fig.axes[0].collections) >= 2  # the training min-max band and the evaluations' CI band


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ctrl_c_stops_every_seed_saved(tmp_path):
    parent = tmp_path / "pp"
    args = ["train", "ppo", "CartPole-v1", "--seeds", "0-2", "--jobs", "2", "--run-dir", str(parent)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deeprl", *args, "--total-steps", "10000000", "--no-stop-when-solved"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not all(
        (parent / f"s{s}" / "metrics.csv").is_file() and (parent / f"s{s}" / "metrics.csv").stat().st_size > 200
        for s in (0, 1)
    ):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()  # the seeds, in sessions of their own, stop with their budget's end at worst
        raise
    assert proc.returncode == 130, out + err
    for s in (0, 1):
        assert (parent / f"s{s}" / "resume" / "LATEST").is_file() and not (parent / f"s{s}" / "summary.json").exists()
        assert f"seed {s}: interrupted, saved" in out
    assert not (parent / "s2").exists()  # never started
    assert f"Continue with: deeprl train --resume {parent}" in err


# ---------------------------------------------------------------- --config
def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def resolved(*argv: str):
    _, _, args = parse_train_args(list(argv))
    return args.algo, args.run


def test_config_file_flat_beats_the_preset_and_flags_beat_the_file(tmp_path):
    from deeprl.presets import PRESETS

    preset = PRESETS["q-learning"]["FrozenLake-v1"]
    f = write(tmp_path / "opts.json", {"alpha": 0.3, "episodes": 123, "eval_every": 50})
    config, run = resolved("q-learning", "FrozenLake-v1", "--config", str(f))
    assert (config.alpha, run.episodes, run.eval_every) == (0.3, 123, 50)  # the file beats the preset...
    assert config.gamma == preset["gamma"] and config.epsilon_schedule == preset["epsilon_schedule"]  # ...where given
    config, run = resolved("q-learning", "FrozenLake-v1", "--config", str(f), "--alpha", "0.7", "--total-steps", "500")
    assert (config.alpha, run.total_steps, run.episodes, run.eval_every) == (0.7, 500, None, 50)  # flags beat the file
    config, run = resolved("q-learning", "FrozenLake-v1", "--alpha", "0.7", "--config", str(f))  # in any order
    assert config.alpha == 0.7


def test_config_file_in_the_best_json_layout_and_a_runs_config_json(tmp_path):
    best = write(
        tmp_path / "best.json",
        {"algo": "q-learning", "env_id": "FrozenLake-v1", "config": {"alpha": 0.2}, "run": {"eval_every": 777}},
    )
    config, run = resolved("q-learning", "FrozenLake-v1", "--config", str(best))
    assert (config.alpha, run.eval_every) == (0.2, 777)
    # a run directory's config.json: the same settings for a fresh run (not its run_dir)
    first = deeprl.train(
        "q-learning", "FrozenLake-v1", alpha=0.4, episodes=20, seed=5, run_dir=tmp_path / "r", progress="off"
    )
    config, run = resolved("q-learning", "FrozenLake-v1", "--config", str(first.run_dir / "config.json"))
    assert (config.alpha, run.episodes, run.seed, run.run_dir) == (0.4, 20, 5, None)


def test_config_file_yaml(tmp_path, monkeypatch, capsys):
    pytest.importorskip("yaml")
    f = tmp_path / "opts.yaml"
    f.write_text("alpha: 0.25\nrun_dir: null\nhidden_unused: 1\n")
    assert main(["train", "q-learning", "FrozenLake-v1", "--config", str(f)]) == 2
    assert "'hidden_unused'" in capsys.readouterr().err
    f.write_text("config:\n  alpha: 0.25\nrun:\n  episodes: 40\n")
    config, run = resolved("q-learning", "FrozenLake-v1", "--config", str(f))
    assert (config.alpha, run.episodes) == (0.25, 40)
    monkeypatch.setitem(sys.modules, "yaml", None)  # PyYAML not installed
    assert main(["train", "q-learning", "FrozenLake-v1", "--config", str(f)]) == 2
    assert "pip install pyyaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ({"alpha": 0.3, "learning_rat": 1, "total-steps": 5}, "'learning_rat', 'total-steps'"),
        ({"total-steps": 5}, "Write 'total_steps' for 'total-steps'"),
        ({"alph": 0.3}, "did you mean 'alpha'"),
        ({"config": {"foo": 1}}, "does not know in \"config\": 'foo'"),
        ({"config": {}, "run": {"alpha": 0.1}}, "does not know in \"run\": 'alpha'"),
        ({"config": {}, "studdy": "x"}, "top-level keys deeprl does not know: studdy"),
        ({"algo": "ppo", "alpha": 0.1}, "is for algo 'ppo', and the command trains 'q-learning'"),
        ({"env_id": "CliffWalking-v1"}, "is for env_id 'CliffWalking-v1', and the command trains 'FrozenLake-v1'"),
        ({"alpha": 5.0}, "opts.json: alpha"),  # a bad value: the dataclass's check, naming the file
        ([1, 2], "must hold a mapping"),
    ],
)
def test_config_file_errors(content, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    f = write(tmp_path / "opts.json", content)
    assert main(["train", "q-learning", "FrozenLake-v1", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deeprl: error:") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opts.json"]  # nothing trained


def test_config_file_missing_or_not_json(tmp_path, capsys):
    assert main(["train", "q-learning", "FrozenLake-v1", "--config", str(tmp_path / "nope.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{alpha: 1")
    assert main(["train", "q-learning", "FrozenLake-v1", "--config", str(tmp_path / "bad.json")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_options_from_file_in_python(tmp_path):
    f = write(tmp_path / "best.json", {"algo": "q-learning", "config": {"alpha": 0.3}, "run": {"episodes": 30}})
    options = deeprl.options_from_file(f, "q-learning", "FrozenLake-v1", seed=3, total_steps=400)
    assert options == {"alpha": 0.3, "seed": 3, "total_steps": 400}  # a budget given replaces the file's
    result = deeprl.train("q-learning", "FrozenLake-v1", run_dir=tmp_path / "r", progress="off", **options)
    recorded = json.loads((result.run_dir / "config.json").read_text())
    assert (recorded["config"]["alpha"], recorded["seed"], recorded["run"]["total_steps"]) == (0.3, 3, 400)


def test_default_parent_is_claimed_like_a_run_directory(tmp_path, monkeypatch):
    from deeprl.seeds import claim_parent

    monkeypatch.chdir(tmp_path)
    first = claim_parent(None, "q-learning", "FrozenLake-v1", (8, 0, 1, 2, 3))
    second = claim_parent(None, "q-learning", "FrozenLake-v1", (8, 0, 1, 2, 3))  # the same second: its own directory
    assert first.parent == Path("runs") and first.name.startswith("FrozenLake-v1__q-learning__seeds0-3,8__")
    assert second != first and second.is_dir() and first.is_dir()


def test_train_help_lists_the_seeds_and_config_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "q-learning", "FrozenLake-v1", "--help"])
    out = capsys.readouterr().out
    assert "--seeds" in out and "--jobs" in out and "--config" in out
