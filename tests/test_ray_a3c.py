"""A3C on Ray (deeprl.backends.ray_a3c), on tests/conftest.py's two-node loopback cluster: the workers are Ray
actors that push gradients to a parameter actor. Asynchronous, so no run equals another: the tests check the
counts (the budget exactly, every episode once), that it learns, that a killed worker is restarted, and that a
resumed run continues from the checkpoint's weights and optimizer statistics."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import psutil
import pytest
from conftest import read_metrics

import deeprl
from deeprl.rundir import load_resume_state

RAY = dict(backend="ray", workers=2, progress="off")


def _worker_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):  # processes vanish while they are read
            if any("ray::A3CWorker" in part for part in process.info["cmdline"] or ()):
                found.append(process)
    return found


def _no_workers_left() -> bool:
    """Ray kills actors asynchronously: their processes end within moments of the run's end."""
    deadline = time.monotonic() + 10
    while _worker_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _worker_processes()


def _check_counts(run_dir: Path, total: int, workers: int = 2) -> list[dict]:
    """The run took exactly `total` env steps, and its episodes add up: each ended at a distinct env step within
    the budget, in order, and together they are the steps taken less each worker's unfinished episode."""
    rows = read_metrics(run_dir)
    train = [r for r in rows if r["kind"] == "train"]
    steps = [int(r["env_steps"]) for r in train]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) and 0 < steps[0] and steps[-1] <= total
    assert [int(r["episodes"]) for r in train] == list(range(1, len(train) + 1))
    assert total - workers * 500 <= sum(int(r["episode_length"]) for r in train) <= total  # CartPole: <= 500 a one
    summary = load_resume_state(run_dir).state["loop"]
    assert summary["env_steps"] == total and summary["episodes"] == len(train)
    return rows


@pytest.mark.slow
def test_two_ray_workers_take_the_budget_exactly_and_learn_cartpole(ray_cluster, tmp_path):
    result = deeprl.train(
        "a3c", "CartPole-v1", ray_address=ray_cluster, total_steps=12_000, eval_every=3_000, seed=1,
        run_dir=tmp_path / "r", **RAY,
    )  # fmt: skip
    assert result.summary["env_steps"] == 12_000
    rows = _check_counts(result.run_dir, 12_000)
    assert {r["worker"] for r in rows if r["kind"] == "train"} == {"0", "1"}  # both workers delivered episodes
    algo = load_resume_state(result.run_dir).state["algo"]
    # one update per rollout of at most t_max = 5 steps (fewer at episode ends), each applied by the optimizer once
    assert algo["updates"] >= 12_000 // 5 - 2 and algo["optimizer"]["state"][0]["step"] == algo["updates"]
    evals = [float(r["episode_return"]) for r in rows if r["kind"] == "eval"]
    assert [int(r["env_steps"]) for r in rows if r["kind"] == "eval"] == [3_000, 6_000, 9_000, 12_000]
    # The greedy policy of an untrained net scores ~9 and a uniform one ~22 on CartPole.
    assert max(evals) >= 150, evals
    assert _no_workers_left()  # the run stopped its actors


def test_one_ray_worker_equals_the_local_a3c_with_one_worker(ray_cluster, tmp_path):
    """One worker has no one to race: the same seeds, its gradients applied in the same order, so the same run."""
    runs = [
        deeprl.train(
            "a3c", "CartPole-v1", workers=1, total_steps=1_200, eval_every=500, eval_episodes=2, seed=4,
            run_dir=tmp_path / backend, progress="off", **options,
        ).run_dir
        for backend, options in (("local", {}), ("ray", {"backend": "ray", "ray_address": ray_cluster}))
    ]  # fmt: skip
    assert read_metrics(runs[1]) == read_metrics(runs[0]) and len(read_metrics(runs[0])) > 10


def test_a_killed_worker_is_restarted_and_the_run_ends_with_its_budget(ray_cluster, tmp_path, capfd):
    killed: list[int] = []

    class KillOneWorker(deeprl.Callback):
        def on_step(self, info):
            if not killed and info.env_steps >= 1_000:
                victim = _worker_processes()[0]
                killed.append(victim.pid)
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)

    result = deeprl.train(
        "a3c", "CartPole-v1", ray_address=ray_cluster, total_steps=3_000, eval_every=1_000, eval_episodes=2,
        run_dir=tmp_path / "r", callbacks=[KillOneWorker()], **RAY,
    )  # fmt: skip
    assert killed and result.summary["env_steps"] == 3_000
    err = capfd.readouterr().err
    assert f"pid {killed[0]}" in err and "A3C worker" in err and "Restarted it" in err, err
    rows = _check_counts(result.run_dir, 3_000)
    assert [int(r["env_steps"]) for r in rows if r["kind"] == "eval"] == [1_000, 2_000, 3_000]
    assert _no_workers_left()


def test_resume_continues_from_the_checkpoints_weights_and_optimizer(ray_cluster, tmp_path):
    run_dir = tmp_path / "r"
    deeprl.train(
        "a3c", "CartPole-v1", ray_address=ray_cluster, total_steps=1_500, eval_every=500, eval_episodes=2,
        optimizer="adam", run_dir=run_dir, **RAY,
    )  # fmt: skip
    first = load_resume_state(run_dir).state["algo"]
    result = deeprl.resume(run_dir, total_steps=3_000)
    assert result.summary["env_steps"] == 3_000
    second = load_resume_state(run_dir).state["algo"]
    # Adam's step count went on from the checkpoint's: the parameter actor started from its state (θ travels with it)
    assert second["updates"] > first["updates"] > 0
    assert second["optimizer"]["state"][0]["step"] == second["updates"]
    rows = _check_counts(run_dir, 3_000)
    assert [int(r["env_steps"]) for r in rows if r["kind"] == "eval"] == [500, 1_000, 1_500, 2_000, 2_500, 3_000]
    assert _no_workers_left()
