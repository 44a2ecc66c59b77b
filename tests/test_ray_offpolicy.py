"""DQN, DDPG, TD3 and SAC on Ray actors (deeprl.backends.ray_offpolicy), on tests/conftest.py's two-node loopback
cluster: runs are deterministic and do not depend on how the envs are split over the actors, stop and resume
exactly (stateful OU noise included), survive a killed actor with their budget, and DQN learns CartPole."""

from __future__ import annotations

import contextlib
import signal

import psutil
import pytest
from conftest import read_metrics, read_summary

import deeprl
from deeprl.backends.ray_offpolicy import ROUND_ENV_STEPS, round_steps
from deeprl.config import DQNConfig, SACConfig

DQN_SMALL = dict(n_envs=4, total_steps=2000, learning_starts=500, eval_every=500, eval_episodes=2, progress="off")
PENDULUM_SMALL = dict(
    n_envs=2, total_steps=1000, learning_starts=200, hidden=(32, 32), eval_every=300, eval_episodes=1, progress="off"
)


def _train(algo, env_id, cluster, run_dir, **options):
    return deeprl.train(algo, env_id, backend="ray", ray_address=cluster, run_dir=run_dir, seed=7, **options)


def test_a_round_is_the_learning_cadence_repeated_to_at_least_64_env_steps():
    assert round_steps("dqn", DQNConfig(train_freq=128), 8) == 16  # the cadence alone: 16 vector steps
    assert round_steps("dqn", DQNConfig(train_freq=4), 4) == ROUND_ENV_STEPS // 4
    assert round_steps("sac", SACConfig(train_freq=3), 2) == 33  # whole cadences: 11 x 3 vector steps
    assert round_steps("sac", SACConfig(train_freq=1), 1) == ROUND_ENV_STEPS


def test_dqn_runs_are_deterministic_whatever_the_split_over_the_actors(ray_cluster, tmp_path):
    """Each env explores from its own streams and the Q-network acts on all the envs' rows at once, so two actors
    stepping two envs each give the very run that one actor stepping the four gives; the evaluations (every 500
    env steps: 125 vector steps) end chunks inside rounds of 16."""
    two = _train("dqn", "CartPole-v1", ray_cluster, tmp_path / "two", workers=2, **DQN_SMALL)
    one = _train("dqn", "CartPole-v1", ray_cluster, tmp_path / "one", workers=1, **DQN_SMALL)
    rows = read_metrics(two.run_dir)
    assert rows == read_metrics(one.run_dir)
    two_summary, one_summary = read_summary(two.run_dir), read_summary(one.run_dir)
    assert two_summary.pop("backend")["workers"] == 2 and one_summary.pop("backend")["workers"] == 1
    assert two_summary == one_summary
    train = [r for r in rows if r["kind"] == "train"]
    assert len(train) > 40 and float(train[-1]["epsilon"]) < 1.0 and train[-1]["loss"] != "nan"
    assert [int(r["env_steps"]) for r in rows if r["kind"] == "eval"] == [500, 1000, 1500, 2000]


@pytest.mark.parametrize("algo, options", [("sac", {}), ("td3", {"noise": "ou"})])
def test_a_run_stopped_and_resumed_equals_the_uninterrupted_run(ray_cluster, tmp_path, algo, options):
    """Two runs of one command, one stopped at 600 env steps (inside a round of 32 vector steps) and resumed:
    the checkpoint holds each actor's envs mid-episode, their streams (SAC's ε, TD3's OU noise and its state)
    and the weights the round started with, so the runs are equal."""
    options = {"workers": 2, **options, **PENDULUM_SMALL}
    whole = _train(algo, "Pendulum-v1", ray_cluster, tmp_path / "whole", **options)

    class StopAt600(deeprl.Callback):
        def on_step(self, info):
            return info.env_steps < 600

    part = _train(algo, "Pendulum-v1", ray_cluster, tmp_path / "part", callbacks=[StopAt600()], **options)
    assert part.summary["stopped"] == "callback" and part.summary["env_steps"] == 600
    resumed = deeprl.resume(tmp_path / "part", ray_address=ray_cluster)
    assert resumed.summary["env_steps"] == 1000
    rows = read_metrics(whole.run_dir)
    assert rows == read_metrics(resumed.run_dir)
    assert sum(r["kind"] == "train" for r in rows) == 4  # 2 envs x two 200-step episodes
    assert rows[-2]["critic_loss"] not in ("", "nan")


def _actor_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):  # processes vanish while they are read
            if any("ray::OffPolicyWorker" in part for part in process.info["cmdline"] or ()):
                found.append(process)
    return found


def test_a_killed_actor_is_restarted_and_the_run_ends_with_its_budget(ray_cluster, tmp_path, capfd):
    killed: list[int] = []

    class KillOneActor(deeprl.Callback):
        def on_step(self, info):
            if not killed and info.env_steps >= 1000:
                victim = _actor_processes()[0]
                killed.append(victim.pid)
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)

    result = _train(
        "dqn", "CartPole-v1", ray_cluster, tmp_path / "r", workers=2, callbacks=[KillOneActor()], **DQN_SMALL
    )
    assert killed
    assert result.summary["env_steps"] == 2000
    err = capfd.readouterr().err
    assert f"pid {killed[0]}" in err and "fresh episodes" in err
    rows = read_metrics(result.run_dir)
    steps = [int(r["env_steps"]) for r in rows if r["kind"] == "train"]
    assert steps == sorted(steps) and steps[-1] <= 2000
    assert [int(r["env_steps"]) for r in rows if r["kind"] == "eval"] == [500, 1000, 1500, 2000]


@pytest.mark.slow
def test_dqn_on_two_actors_learns_cartpole(ray_cluster, tmp_path):
    """A random policy keeps CartPole up for about 22 steps; DQN acting through the actors does much better."""
    result = _train(
        "dqn", "CartPole-v1", ray_cluster, tmp_path / "r", workers=2, total_steps=12_000, eval_every=4_000,
        eval_episodes=5, progress="off",
    )  # fmt: skip
    assert result.summary["best_eval_mean_return"] >= 100, result.summary  # seeds 1-3, 7: 141-215
