"""`deeprl bench`: the plan of rows, the statistics (medians, unsolved = +inf), the tables, and one
real trial per library."""

from __future__ import annotations

import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from deeprl.bench import DEFAULT_ROWS, SB3_ZOO, Trial, markdown_table, plan_rows, run_trial, summarize, trial_settings
from deeprl.errors import UsageError


def test_plan_filters_the_default_set_and_skips_unregistered_algorithms():
    rows = plan_rows(("q-learning",), (), long=False)
    assert rows == [("q-learning", "FrozenLake-v1"), ("q-learning", "CliffWalking-v1")]
    assert plan_rows((), ("CliffWalking-v1",), long=False) == [("q-learning", "CliffWalking-v1")]
    # An (algo, env) pair outside the sets runs when deeprl has a preset for it.
    assert plan_rows(("sarsa",), ("Taxi-v4",), long=False) == [("sarsa", "Taxi-v4")]
    # Aliases resolve to the registered name.
    assert plan_rows(("sarsamax",), ("FrozenLake-v1",), long=False) == [("q-learning", "FrozenLake-v1")]


def test_plan_errors_name_what_exists():
    with pytest.raises(UsageError, match="Unknown algorithm 'nope'"):
        plan_rows(("nope",), (), long=False)
    with pytest.raises(UsageError, match="No benchmark row matches"):
        plan_rows(("sarsa",), ("NoSuchEnv-v0",), long=False)


def test_every_sb3_row_is_a_benchmark_row():
    from deeprl.bench import LONG_ROWS, SB3_ALGOS

    for algo, env_id in SB3_ZOO:
        assert (algo, env_id) in DEFAULT_ROWS + LONG_ROWS
        assert algo in SB3_ALGOS


def test_settings_come_from_the_preset_and_the_env():
    eval_every, eval_episodes, threshold = trial_settings("q-learning", "FrozenLake-v1")
    assert (eval_every, eval_episodes, threshold) == (100_000, 1000, 0.70)
    assert trial_settings("q-learning", "CliffWalking-v1")[2] == -13.0  # the optimal path's return


def test_summary_medians_count_unsolved_seeds_as_infinite():
    solved = {
        "solved_at_wall_s": 1.0,
        "solved_at_env_steps": 100,
        "final_return": 500.0,
        "env_steps": 100,
        "train_wall_s": 1.0,
    }
    unsolved = {
        "solved_at_wall_s": None,
        "solved_at_env_steps": None,
        "final_return": 20.0,
        "env_steps": 1000,
        "train_wall_s": 4.0,
    }
    s = summarize([solved, {**solved, "solved_at_wall_s": 3.0}, unsolved])
    assert s["solved"] == 2 and s["n"] == 3
    assert s["time"] == 3.0  # median of 1, 3, inf
    assert s["final"] == 500.0
    s = summarize([solved, unsolved, unsolved, {"error": "boom"}])
    assert math.isinf(s["time"]) and s["errors"] == ["boom"] and s["n"] == 4


def test_summary_and_report_give_iqm_with_bootstrap_intervals():
    """IQM (the mean of the middle half: trim 25% each end) next to the medians, with rliable's 95% interval."""
    rly = pytest.importorskip("rliable.library")
    metrics = pytest.importorskip("rliable.metrics")
    from deeprl.bench import iqm_section

    def trial(seconds, steps, final):
        return {
            "solved_at_wall_s": seconds,
            "solved_at_env_steps": steps,
            "final_return": final,
            "env_steps": 1000,
            "train_wall_s": 1.0,
        }

    results = [trial(4.0, 400, 40.0), trial(1.0, 100, 10.0), trial(3.0, 300, 30.0), trial(2.0, 200, 20.0)]
    results += [trial(None, None, 50.0), {"error": "boom"}]
    s = summarize(results)
    assert s["time_iqm"]["n"] == 4 and s["time_iqm"]["iqm"] == 2.5  # solved seeds only: mean of 2 and 3
    assert s["steps_iqm"]["iqm"] == 250.0
    assert s["final_iqm"]["n"] == 5 and s["final_iqm"]["iqm"] == 30.0  # 5 values: 1 cut each end, mean of 20, 30, 40
    assert s["time"] == 3.0  # the median still counts the unsolved seed as +inf: median of 1, 2, 3, 4, inf
    scores = np.array([[4.0], [1.0], [3.0], [2.0]])
    func = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), np.median(x)])
    np.random.seed(0)  # rliable 1.2 resamples with numpy's global RNG (deeprl.seeds.METHOD)
    with pytest.warns(FutureWarning):  # arch 7 deprecates the random_state rliable passes
        _, ci = rly.get_interval_estimates({"t": scores}, func, reps=2000, random_state=np.random.RandomState(0))
    assert s["time_iqm"]["iqm_ci"] == pytest.approx([ci["t"][0][0], ci["t"][1][0]])
    assert 1.0 <= s["time_iqm"]["iqm_ci"][0] < 2.5 < s["time_iqm"]["iqm_ci"][1] <= 4.0

    lines = iqm_section([("ppo", "CartPole-v1")], {("deeprl", "ppo", "CartPole-v1"): s})
    assert "IQM (interquartile mean)" in lines[0] and "rliable" in lines[0]
    table = lines[2].splitlines()
    assert table[0] == (
        "| algo | env | library | solved | time-to-solve s, IQM [95% CI] | env steps to solve, IQM [95% CI] "
        "| final return, IQM [95% CI] |"
    )
    lo, hi = s["time_iqm"]["iqm_ci"]
    assert table[2].startswith(f"| ppo | CartPole-v1 | deeprl | 4/6 | 2.50 [{lo:.2f}, {hi:.2f}] | 250 [")
    assert "| 30.0 [" in table[2]


def test_table_shows_the_ratio_and_rows_without_an_sb3_counterpart():
    d = {"n": 5, "solved": 5, "errors": [], "time": 2.0, "steps": 1000, "final": 500.0, "steps_per_s": 5000.0}
    s = {**d, "time": 8.0, "steps_per_s": 1000.0}
    stats = {
        ("deeprl", "ppo", "CartPole-v1"): d,
        ("sb3", "ppo", "CartPole-v1"): s,
        ("deeprl", "q-learning", "CliffWalking-v1"): d,
    }
    table = markdown_table([("ppo", "CartPole-v1"), ("q-learning", "CliffWalking-v1")], stats, vs_sb3=True)
    lines = table.splitlines()
    assert lines[2].endswith("| 0.25 |")
    assert "no SB3 counterpart" in lines[3]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cli_runs_a_row_end_to_end(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deeprl.cli",
            "bench",
            "--algos",
            "q-learning",
            "--envs",
            "CliffWalking-v1",
            "--seeds",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = out.read_text()
    assert report.strip() == proc.stdout.strip()
    assert "| q-learning | CliffWalking-v1 | 1/1 |" in report
    assert "Command: `deeprl bench --algos q-learning --envs CliffWalking-v1 --seeds 1`" in report
    assert "raw env" in report  # the throughput table


def test_cli_rejects_bad_flags_before_any_work():
    proc = subprocess.run(
        [sys.executable, "-m", "deeprl.cli", "bench", "--seeds", "0"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "--seeds" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "deeprl.cli", "bench", "--first-seed", "-1"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "--first-seed" in proc.stderr


def test_held_out_seeds_are_the_ones_run(monkeypatch):
    """--first-seed S --seeds N runs seeds S..S+N-1 (e.g. seeds a preset was not tuned on)."""
    from deeprl import bench

    seen = []

    def fake_trial(t):
        seen.append((t.library, t.seed))
        if t.library == "throughput":
            return {"raw_steps_per_s": 1.0, "acting_steps_per_s": 1.0, "n_envs": 1}
        return {
            "solved_at_wall_s": 1.0,
            "solved_at_env_steps": 100,
            "final_return": 0.0,
            "env_steps": 100,
            "train_wall_s": 1.0,
        }

    monkeypatch.setattr(bench, "run_trial", fake_trial)
    report = bench.run_bench(("q-learning",), ("CliffWalking-v1",), seeds=2, first_seed=5, log=lambda line: None)
    assert [seed for lib, seed in seen if lib == "deeprl"] == [5, 6]
    assert "--seeds 2 --first-seed 5" in report and "seeds (5..6;" in report


def test_vs_rltools_is_parsed_and_without_rltools_says_what_to_install(monkeypatch):
    import importlib.util

    from deeprl import bench

    with pytest.raises(UsageError, match="sb3 or rltools"):
        bench._check_bench_args(1, 0, "rl-tools")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "rltools" else real_find_spec(name, *a)
    )
    monkeypatch.setattr(bench, "run_trial", lambda t: pytest.fail("no trial may run without rltools"))
    with pytest.raises(UsageError, match=r"pip install rltools.*libopenblas-dev"):
        bench.run_bench(("sac",), ("Pendulum-v1",), seeds=1, vs="rltools", log=lambda line: None)
    # The CLI takes the choice and fails with the same message (exit 2), before any work.
    proc = subprocess.run(
        [sys.executable, "-m", "deeprl.cli", "bench", "--vs", "rltools", "--seeds", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "--seeds" in proc.stderr and "--vs" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "deeprl.cli", "bench", "--vs", "bogus"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "rltools" in proc.stderr


def test_vs_rltools_runs_rltools_on_its_rows_only_and_reports_the_ratio(monkeypatch):
    from deeprl import bench

    monkeypatch.setattr(bench, "_check_rltools", lambda: None)  # whether or not rltools is installed here
    seen = []

    def fake_trial(t):
        seen.append((t.library, t.algo, t.seed))
        if t.library == "throughput":
            return {"raw_steps_per_s": 1.0, "acting_steps_per_s": 1.0, "n_envs": 1}
        wall = 4.0 if t.library == "deeprl" else 2.0
        return {
            "solved_at_wall_s": wall,
            "solved_at_env_steps": 3000,
            "final_return": -150.0,
            "env_steps": 3000,
            "train_wall_s": wall,
        }

    monkeypatch.setattr(bench, "run_trial", fake_trial)
    report = bench.run_bench(
        ("sac", "ddpg"), ("Pendulum-v1",), seeds=2, first_seed=100, vs="rltools", log=lambda line: None
    )
    libs = [(lib, algo, seed) for lib, algo, seed in seen if lib != "throughput"]
    assert ("rltools", "sac", 100) in libs and ("rltools", "sac", 101) in libs
    assert not any(lib == "rltools" and algo == "ddpg" for lib, algo, _ in libs)  # RLtools has no DDPG row
    assert "--vs rltools" in report and "time ratio deeprl/RLtools" in report
    sac_line = next(line for line in report.splitlines() if line.startswith("| sac | Pendulum-v1 | 2/2"))
    assert sac_line.endswith("| 2.00 |")
    assert "no RLtools counterpart" in report


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_rltools_trial_uses_the_same_evaluation_protocol():
    # A few hundred RLtools steps (compiling its interface first when not cached: ~10 s with g++ on 2 cores).
    pytest.importorskip("rltools")
    t = Trial("rltools", "sac", "Pendulum-v1", seed=0, eval_every=300, eval_episodes=2, threshold=-1e9, timeout_s=110)
    r = run_trial(t)
    assert "error" not in r, r
    assert r["solved_at_env_steps"] == 300 and r["env_steps"] == 300
    assert 0 < r["solved_at_wall_s"] <= r["train_wall_s"] + 1e-6
    assert -2000 < r["final_return"] <= 0


@pytest.mark.timeout(180)
def test_an_sb3_trial_uses_the_same_evaluation_protocol():
    # Stable-Baselines3 is an optional benchmark dependency: [bench], and [dev] for the tests.
    # A threshold every policy reaches: the first periodic evaluation (at 512 steps) solves it.
    t = Trial("sb3", "ppo", "CartPole-v1", seed=0, eval_every=512, eval_episodes=2, threshold=1.0, timeout_s=170)
    r = run_trial(t)
    assert "error" not in r, r
    assert r["solved_at_env_steps"] == 512
    assert 0 < r["solved_at_wall_s"] <= r["train_wall_s"] + 1e-6
    assert r["final_return"] >= 1.0


# ---------------------------------------------------------------- envs from the preset's recipe
def plus_one_reward(env):
    """A `--wrapper` callable for the tests below (module:callable, this module is imported)."""
    return gym.wrappers.TransformReward(env, lambda r: r + 1.0)


@pytest.fixture
def recipe_preset(monkeypatch):
    """A ppo preset for FrozenLake-v1 with env kwargs (the 8x8 map), a wrapper and a time limit."""
    from deeprl.presets import PRESETS

    preset = {
        "env_kwargs": {"map_name": "8x8"},
        "wrappers": (f"{__name__}:plus_one_reward",),
        "max_episode_steps": 30,
        "n_envs": 2,
        "n_steps": 16,
        "minibatch_size": 32,
    }
    monkeypatch.setitem(PRESETS["ppo"], "FrozenLake-v1", preset)
    return preset


def test_trial_envs_are_the_presets_recipe_as_the_driver_makes_them(recipe_preset):
    from deeprl.bench import _throughput_trial, learning_env, trial_recipe
    from deeprl.envs import maker_of

    spec, _, opts, maker = trial_recipe("ppo", "FrozenLake-v1", 0)
    env = learning_env(spec, opts, maker)
    assert env.num_envs == 2 and env.single_observation_space == gym.spaces.Discrete(64)  # the 8x8 map
    made = maker_of(env)
    assert made.wrappers == recipe_preset["wrappers"] and made.max_episode_steps == 30
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(2, np.int64))
    assert (reward >= 1.0).all()  # the wrapper's +1
    env.close()
    out = _throughput_trial(Trial("throughput", "ppo", "FrozenLake-v1", 0, 100, 1, 1.0, 60), seconds=0.05)
    assert out["n_envs"] == 2 and out["raw_steps_per_s"] > 0 and out["acting_steps_per_s"] > 0


def test_trial_envs_keep_the_mask_for_an_algorithm_that_takes_it_and_drop_it_for_one_that_cannot():
    from deeprl.bench import learning_env, trial_recipe
    from deeprl.spaces import has_mask

    spec, _, opts, maker = trial_recipe("ppo", "Taxi-v4", 0)  # Taxi reports info["action_mask"]
    env = learning_env(spec, opts, maker)
    assert has_mask(env.single_observation_space)
    env.close()
    spec, _, opts, maker = trial_recipe("q-learning", "Taxi-v4", 0)  # a Q-table indexes Discrete states
    env = learning_env(spec, opts, maker)
    assert env.observation_space == gym.spaces.Discrete(500)
    env.close()


@pytest.mark.timeout(120)
def test_an_sb3_trial_learns_and_is_evaluated_on_the_presets_recipe(recipe_preset, monkeypatch):
    pytest.importorskip("stable_baselines3")
    from deeprl import bench, evaluation

    seen = []

    class SpyEvaluator(evaluation.Evaluator):
        def __init__(self, env, *args, **kwargs):
            seen.append(env)
            super().__init__(env, *args, **kwargs)

    monkeypatch.setattr(evaluation, "Evaluator", SpyEvaluator)
    zoo = dict(n_envs=2, n_timesteps=64, n_steps=16, batch_size=32, n_epochs=1)
    monkeypatch.setitem(SB3_ZOO, ("ppo", "FrozenLake-v1"), zoo)
    r = bench._sb3_trial(Trial("sb3", "ppo", "FrozenLake-v1", 0, 32, 2, 1e9, 60))
    assert r["env_steps"] == 64 and r["solved_at_env_steps"] is None
    assert r["final_return"] >= 2.0  # the wrapper's +1 per step: the evaluation ran on the recipe's env
    (maker,) = seen
    assert maker.kwargs == {"map_name": "8x8"} and maker.wrappers == recipe_preset["wrappers"]
    assert maker.max_episode_steps == 30 and not maker.action_mask  # SB3's policies take no masks
