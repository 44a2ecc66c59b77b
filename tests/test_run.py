"""The shared driver: run directory contract, reproducibility, exact resume, atomic writes, errors."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_metrics, read_summary

import deeprl
from deeprl import driver as driver_module
from deeprl.config import TabularConfig
from deeprl.errors import DivergenceError, UsageError
from deeprl.evaluation import Evaluator
from deeprl.protocol import Episode
from deeprl.registry import ALGOS, AlgoSpec, tabular_support
from deeprl.rundir import BEST_POLICY, atomic_write, load_resume_state

DESIGN_SUMMARY_KEYS = (
    "algo env_id seed env_steps train_wall_s eval_mean_return eval_std_return eval_episodes "
    "reward_threshold solved solved_at_env_steps solved_at_wall_s"
).split()


def test_python_api_writes_the_run_directory_contract(tmp_path):
    result = deeprl.train(
        "q-learning", "FrozenLake-v1", seed=1, episodes=200, eval_every=1000, run_dir=tmp_path / "r", progress="off"
    )
    for name in ("config.json", "metrics.csv", "summary.json", "policy.safetensors", "resume/LATEST"):
        assert (tmp_path / "r" / name).is_file(), name
    assert set(DESIGN_SUMMARY_KEYS) <= set(result.summary)
    assert result.summary["episodes"] == 200
    assert result.summary["reward_threshold"] == 0.7  # FrozenLake-v1's spec
    rows = read_metrics(tmp_path / "r")
    train_rows = [r for r in rows if r["kind"] == "train"]
    eval_rows = [r for r in rows if r["kind"] == "eval"]
    assert len(train_rows) == 200
    # one evaluation per 1000 env steps, plus the final one at the last step
    assert len(eval_rows) == result.summary["env_steps"] // 1000 + 1
    assert int(eval_rows[-1]["env_steps"]) == result.summary["env_steps"]
    assert float(eval_rows[-1]["episode_return"]) == result.summary["eval_mean_return"]
    # env_steps of training rows increase and the last one is the budget's end
    steps = [int(r["env_steps"]) for r in train_rows]
    assert steps == sorted(steps) and steps[-1] == result.summary["env_steps"]


def test_same_seed_same_metrics_different_seed_different(tmp_path):
    kwargs = dict(episodes=300, eval_every=500, eval_episodes=20, progress="off")
    deeprl.train("expected-sarsa", "FrozenLake-v1", seed=4, run_dir=tmp_path / "a", **kwargs)
    deeprl.train("expected-sarsa", "FrozenLake-v1", seed=4, run_dir=tmp_path / "b", **kwargs)
    deeprl.train("expected-sarsa", "FrozenLake-v1", seed=5, run_dir=tmp_path / "c", **kwargs)
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    assert read_metrics(tmp_path / "a") != read_metrics(tmp_path / "c")
    assert read_summary(tmp_path / "a") == read_summary(tmp_path / "b")


@pytest.mark.parametrize("algo", ["sarsa", "q-learning", "mc"])
def test_resume_in_process_matches_uninterrupted(tmp_path, algo):
    """Train 4000 steps in one go, or 1700 (a checkpoint mid-episode) then resume to 4000."""
    opts = dict(seed=2, eval_every=1000, progress="off", max_episode_steps=50)
    whole = deeprl.train(algo, "CliffWalking-v1", total_steps=4000, run_dir=tmp_path / "whole", **opts)
    deeprl.train(algo, "CliffWalking-v1", total_steps=1700, run_dir=tmp_path / "part", **opts)
    resumed = deeprl.resume(tmp_path / "part", total_steps=4000)
    assert read_summary(tmp_path / "part") == read_summary(tmp_path / "whole")
    assert read_metrics(tmp_path / "part") == read_metrics(tmp_path / "whole")
    np.testing.assert_array_equal(deeprl.load(resumed.run_dir).algo.q, deeprl.load(whole.run_dir).algo.q)


# One killed run per family that keeps different state: a tabular Q table; DQN's replay buffer, target
# network, ε schedule and optimizer; PPO's partial on-policy batch; SAC's buffer, twin critics and α.
KILL_CASES = {
    "q-learning": (
        [
            "q-learning",
            "FrozenLake-v1",
            "--seed",
            "7",
            "--episodes",
            "6000",
            "--eval-every",
            "20000",
            "--eval-episodes",
            "20",
        ],
        10_000,
    ),
    "dqn": (
        [
            "dqn",
            "CartPole-v1",
            "--seed",
            "3",
            "--total-steps",
            "12000",
            "--eval-every",
            "4000",
            "--eval-episodes",
            "3",
            "--learning-starts",
            "500",
            "--train-freq",
            "16",
            "--gradient-steps",
            "4",
        ],
        4000,
    ),
    "ppo": (
        [
            "ppo",
            "CartPole-v1",
            "--seed",
            "3",
            "--total-steps",
            "12000",
            "--eval-every",
            "4000",
            "--eval-episodes",
            "3",
            "--n-steps",
            "50",
        ],
        4000,
    ),  # 50 x 8 envs: checkpoints fall mid-batch
    "sac": (
        [
            "sac",
            "Pendulum-v1",
            "--seed",
            "3",
            "--total-steps",
            "900",
            "--eval-every",
            "300",
            "--eval-episodes",
            "1",
            "--learning-starts",
            "200",
            "--batch-size",
            "32",
        ],
        300,
    ),
}


@pytest.mark.parametrize("family", list(KILL_CASES))
def test_sigkill_then_resume_ends_like_the_uninterrupted_run(tmp_path, family):
    """A real SIGKILL after a periodic checkpoint; `--resume` must end with identical results."""
    args, every = KILL_CASES[family]
    args = [*args, "--progress", "off", "--checkpoint-every", str(every)]
    cli = [str(Path(sys.executable).parent / "deeprl"), "train"]
    subprocess.run(cli + args + ["--run-dir", str(tmp_path / "whole")], check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        cli + args + ["--run-dir", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not (killed / "resume" / "LATEST").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed: raise its budget"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()
    checkpoint_steps = load_resume_state(killed).state["loop"]["env_steps"]
    assert checkpoint_steps > 0 and checkpoint_steps % every == 0

    out = subprocess.run(cli + ["--resume", str(killed)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert read_summary(killed) == read_summary(tmp_path / "whole")
    assert read_metrics(killed) == read_metrics(tmp_path / "whole")
    weights = {"dqn": "q", "ppo": "model", "sac": "actor"}.get(family)  # the final weights too, not only
    if weights:  # the evaluations they produced
        whole = getattr(deeprl.load(tmp_path / "whole").algo, weights).state_dict()
        resumed = getattr(deeprl.load(killed).algo, weights).state_dict()
        for name, tensor in whole.items():
            assert torch.equal(tensor, resumed[name]), name
        whole_best = getattr(deeprl.load(tmp_path / "whole", BEST_POLICY).algo, weights).state_dict()
        resumed_best = getattr(deeprl.load(killed, BEST_POLICY).algo, weights).state_dict()
        for name, tensor in whole_best.items():
            assert torch.equal(tensor, resumed_best[name]), f"best policy: {name}"


def test_resume_without_a_picklable_env_starts_fresh_episodes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(driver_module, "env_state", lambda env: None)
    deeprl.train("q-learning", "CliffWalking-v1", total_steps=1500, run_dir=tmp_path / "r", progress="off")
    result = deeprl.resume(tmp_path / "r", total_steps=3000)
    assert "resuming with fresh episodes" in capsys.readouterr().err
    assert result.summary["env_steps"] == 3000
    # the episode cut short by the resume is not counted: returns stay those of real episodes
    rows = [r for r in read_metrics(tmp_path / "r") if r["kind"] == "train"]
    assert all(float(r["episode_return"]) <= -13 for r in rows)


def test_resume_can_extend_the_budget_and_keeps_earlier_rows(tmp_path):
    deeprl.train("sarsa", "CliffWalking-v1", episodes=50, run_dir=tmp_path / "r", progress="off")
    first = [r for r in read_metrics(tmp_path / "r") if r["kind"] == "train"]
    result = deeprl.resume(tmp_path / "r", episodes=80)
    assert result.summary["episodes"] == 80
    rows = [r for r in read_metrics(tmp_path / "r") if r["kind"] == "train"]
    assert rows[:50] == first and len(rows) == 80


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "file.json"
    path.write_text("old")

    def broken(f):
        f.write(b"half of the new con")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]  # no temp file left behind


class _Diverging:
    """A stand-in algorithm whose 'loss' becomes NaN after 300 steps."""

    metric_names = ()

    def __init__(self, config, env, *, seed, device):
        self.steps = 0

    def learn(self, max_steps, max_episodes):
        if self.steps >= 300:
            raise DivergenceError("the loss is nan")
        self.steps += max_steps
        return max_steps, [Episode(self.steps, -1.0, max_steps, time.perf_counter())]

    def policy(self, obs):
        return np.zeros(len(obs), dtype=np.int64)

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state, env_restored=True):
        self.steps = state["steps"]

    def policy_state(self):
        return {}

    def load_policy_state(self, state):
        pass


def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    spec = AlgoSpec("diverging", "test", TabularConfig, "unused:unused", tabular_support, "", "", {"total_steps": 1000})
    monkeypatch.setitem(ALGOS, "diverging", spec)
    monkeypatch.setattr(AlgoSpec, "load", lambda self: _Diverging)
    with pytest.raises(UsageError, match="stopped: the loss is nan. The last good checkpoint \\(env step 300\\)"):
        deeprl.train(
            "diverging", "FrozenLake-v1", run_dir=tmp_path / "r", checkpoint_every=100, eval_every=100, progress="off"
        )
    assert load_resume_state(tmp_path / "r").state["algo"] == {"steps": 300}
    assert not (tmp_path / "r" / "summary.json").exists()


def test_evaluator_is_deterministic_and_caps_endless_episodes():
    evaluator = Evaluator("CliffWalking-v1", episodes=5, seed=0)
    always_up = lambda obs: np.zeros(len(obs), dtype=np.int64)  # never reaches the goal
    returns = evaluator(always_up)
    assert returns.tolist() == [-1000.0] * 5  # CliffWalking has no time limit: capped at 1000 steps
    evaluator.close()

    frozen = Evaluator("FrozenLake-v1", episodes=50, seed=3, batch=8)  # 50 episodes in waves of 8
    policy = lambda obs: np.full(len(obs), 2, dtype=np.int64)
    first, second = frozen(policy), frozen(policy)
    assert len(first) == 50 and first.tolist() == second.tolist()
    frozen.close()


def test_load_gives_an_agent_that_acts_on_single_observations(tmp_path):
    deeprl.train(
        "q-learning",
        "Blackjack-v1",
        episodes=2000,
        eval_every=10_000,
        eval_episodes=20,
        run_dir=tmp_path / "r",
        progress="off",
    )
    agent = deeprl.load(tmp_path / "r")
    action = agent.act((20, 10, 0))  # a Tuple(Discrete...) observation, encoded internally
    assert action in (0, 1) and isinstance(action, int)
    # holding on 20 against a 10 is what any sensible Q-table learns after 2000 hands
    assert agent.act((20, 10, 0)) == 0
    result = deeprl.evaluate(agent, episodes=30)
    assert result["episodes"] == 30 and len(result["returns"]) == 30


def test_checkpoint_holds_everything_resume_needs(tmp_path):
    deeprl.train("sarsa", "FrozenLake-v1", episodes=20, run_dir=tmp_path / "r", progress="off")
    saved = load_resume_state(tmp_path / "r")
    assert {"algo", "env_id", "seed", "format", "config", "run", "env_steps"} <= set(saved.header)
    assert {"algo", "loop", "rng"} <= set(saved.state)
    assert set(saved.state["rng"]) == {"python", "numpy", "torch"}
    assert {"q", "rng", "epsilon", "state", "next_action"} <= set(saved.state["algo"])
    assert isinstance(saved.state["algo"]["q"], np.ndarray)
    env = pickle.loads(saved.env_snapshot)  # the env itself, mid-episode state included (signed by this user)
    assert env.spec.id == "FrozenLake-v1"


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"gamma": 1.5}, "gamma must be in [0.0, 1.0]"),
        ({"alpha": 0.0}, "alpha must be in (0.0, 1.0]"),
        ({"episodes": 5, "total_steps": 5}, "one training budget"),
        ({"epsilon_schedule": "cosine"}, "one of constant, glie, linear"),
        ({"n_envs": 3}, "single env"),
        ({"learning_rate": 0.1}, "Unknown option 'learning_rate'"),
        ({"eval_episodes": 0}, "eval_episodes must be in [1, inf]"),
    ],
)
def test_bad_options_fail_before_any_file_is_written(tmp_path, options, fragment):
    with pytest.raises(UsageError) as info:
        deeprl.train("q-learning", "FrozenLake-v1", run_dir=tmp_path / "r", progress="off", **options)
    assert fragment in str(info.value)
    assert not (tmp_path / "r").exists()


def test_existing_run_dir_is_not_overwritten(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already holds files .*no resume state.*another --run-dir"):
        deeprl.train("q-learning", "FrozenLake-v1", episodes=5, run_dir=tmp_path / "r", progress="off")
    assert (tmp_path / "r" / "notes.txt").read_text() == "mine"
    # a directory holding a run that can be continued says how
    deeprl.train("q-learning", "FrozenLake-v1", episodes=5, run_dir=tmp_path / "run", progress="off")
    with pytest.raises(UsageError, match="already holds a run. Continue it with `deeprl train --resume"):
        deeprl.train("q-learning", "FrozenLake-v1", episodes=5, run_dir=tmp_path / "run", progress="off")


def test_tensorboard_logs_returns_exploration_and_speed(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    deeprl.train(
        "q-learning",
        "FrozenLake-v1",
        episodes=100,
        eval_every=500,
        tensorboard=True,
        run_dir=tmp_path / "r",
        progress="off",
    )
    events = EventAccumulator(str(tmp_path / "r" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    # Stable-Baselines3's names (CleanRL's for each episode): deeprl.tracking's table
    assert {"charts/episodic_return", "rollout/exploration_rate", "eval/mean_reward", "time/fps"} <= tags
    assert len(events.Scalars("charts/episodic_return")) == 100


def test_ctrl_c_finishes_the_chunk_saves_and_resumes(tmp_path):
    cli = [str(Path(sys.executable).parent / "deeprl"), "train"]
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(
        cli
        + [
            "q-learning",
            "FrozenLake-v1",
            "--episodes",
            "1000000",
            "--eval-every",
            "10000000",
            "--run-dir",
            str(run_dir),
            "--progress",
            "off",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not (run_dir / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let it train a few chunks
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "saved at env step" in err
    saved = load_resume_state(run_dir).state["loop"]
    assert saved["env_steps"] > 0
    rows = [r for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert len(rows) == saved["episodes"]  # the checkpoint covers exactly the rows on disk
    result = deeprl.resume(run_dir, episodes=saved["episodes"] + 100, progress="off")
    assert result.summary["episodes"] == saved["episodes"] + 100


def test_resume_after_stop_when_solved_trains_on_with_a_larger_budget(tmp_path):
    first = deeprl.train(
        "q-learning",
        "CliffWalking-v1",
        threshold=-20,
        stop_when_solved=True,
        eval_every=1000,
        run_dir=tmp_path / "r",
        progress="off",
    )
    assert first.summary["stopped"] == "solved"
    result = deeprl.resume(tmp_path / "r", total_steps=first.summary["env_steps"] + 3000)
    assert result.summary["env_steps"] == first.summary["env_steps"] + 3000
    assert result.summary["stopped"] == "budget"
    assert result.summary["solved_at_env_steps"] == first.summary["solved_at_env_steps"]


def test_resume_with_a_budget_already_spent_is_an_error(tmp_path):
    deeprl.train("q-learning", "CliffWalking-v1", episodes=30, run_dir=tmp_path / "r", progress="off")
    with pytest.raises(UsageError, match="already trained"):
        deeprl.resume(tmp_path / "r", episodes=30)
    with pytest.raises(UsageError, match="already trained"):
        deeprl.resume(tmp_path / "r", total_steps=10)


def test_checkpoint_from_another_version_is_a_clear_error(tmp_path):
    import json

    deeprl.train("q-learning", "CliffWalking-v1", episodes=5, run_dir=tmp_path / "r", progress="off")
    for path in (tmp_path / "r" / "config.json", *(tmp_path / "r" / "resume").glob("*/state.json")):
        record = json.loads(path.read_text())
        record["config"]["beta"] = 0.3
        record.setdefault("versions", {})["deeprl"] = "9.9.9"
        path.write_text(json.dumps(record))
    for call in (lambda: deeprl.load(tmp_path / "r"), lambda: deeprl.resume(tmp_path / "r")):
        with pytest.raises(UsageError, match="written by deeprl 9.9.9 .* beta"):
            call()


def test_eval_by_default_reproduces_the_summary(tmp_path):
    result = deeprl.train(
        "q-learning", "FrozenLake-v1", episodes=2000, eval_episodes=50, run_dir=tmp_path / "r", progress="off"
    )
    again = deeprl.evaluate(tmp_path / "r")
    assert again["episodes"] == 50
    assert again["mean_return"] == result.summary["eval_mean_return"]


def test_only_periodic_evaluations_count_as_solving(tmp_path):
    """DESIGN.md: time-to-solve is the first *periodic* evaluation that reaches the threshold."""
    result = deeprl.train(
        "q-learning",
        "CliffWalking-v1",
        total_steps=2500,
        eval_every=100_000,
        threshold=-1000,
        run_dir=tmp_path / "r",
        progress="off",
    )
    assert result.summary["eval_mean_return"] >= -1000  # the final evaluation reaches it...
    assert not result.summary["solved"] and result.summary["solved_at_env_steps"] is None  # ...but is not periodic
