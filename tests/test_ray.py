"""The Ray backend of PPO, A2C and REINFORCE (deeprl.backends.ray_onpolicy), on a Ray cluster of two nodes on
loopback started as a user starts one (`ray start --head`, `ray start --address`; tests/conftest.py's
`ray_cluster`): a run split over two workers equals the local backend's run bit for bit, solves CartPole,
survives a killed worker with its budget, stops on a worker that keeps failing, saves on SIGTERM and resumes."""

from __future__ import annotations

import contextlib
import copy
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import psutil
import pytest
import torch
from conftest import read_metrics, read_summary

import deeprl
from deeprl.backends.ray_onpolicy import _side_by_side
from deeprl.errors import UsageError
from deeprl.nets import ActorCritic
from deeprl.rollout import EnvSlice, ObsNormalizer
from deeprl.rundir import load_resume_state
from deeprl.seeding import Seeds

SMALL = dict(n_envs=4, n_steps=32, eval_every=1024, eval_episodes=2, progress="off", seed=5)


def _weights(run_dir: Path) -> list[torch.Tensor]:
    return [p.detach().clone() for p in deeprl.load(run_dir).algo.model.parameters()]


def _vec(env_id: str, n: int) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, n, vectorization_mode="sync")


# ---------------------------------------------------------------- the split, without Ray
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_slices_of_the_envs_side_by_side_equal_the_whole_env_bit_for_bit(env_id):
    """What makes a Ray run equal a local one: envs [0, 1) and [1, 4) stepped apart (each acting on a batch as wide
    as the whole) give exactly the rows of the four envs stepped together: actions, log-probabilities, values,
    rewards, episode ends."""
    probe = _vec(env_id, 1)
    torch.manual_seed(0)
    model = ActorCritic(probe.single_observation_space, probe.single_action_space, (64, 64))
    normalizer = ObsNormalizer(probe.single_observation_space.shape)
    normalizer.update(np.random.default_rng(0).normal(size=(50, *probe.single_observation_space.shape)))
    seeds = Seeds(3)
    whole = EnvSlice(_vec(env_id, 4), 40, seeds=seeds, normalized=True)
    parts = [
        EnvSlice(_vec(env_id, 1), 40, start=0, width=4, seeds=seeds, normalized=True),
        EnvSlice(_vec(env_id, 3), 40, start=1, width=4, seeds=seeds, normalized=True),
    ]
    for batch, t, steps in ((0, 0, 25), (0, 25, 15), (1, 0, 40)):  # pieces of batches, as the driver's chunks cut them
        a = whole.collect(model, steps, batch=batch, t=t, env_steps=0, normalize=normalizer)
        b = _side_by_side(
            [p.collect(model, steps, batch=batch, t=t, env_steps=0, normalize=normalizer) for p in parts], 0.0
        )
        for name in ("obs", "actions", "log_probs", "values"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        for name in ("rewards", "terminated", "truncated", "valid", "next_obs"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert [e[:4] for e in sorted(a.episodes)] == [e[:4] for e in sorted(b.episodes)]
    assert a.actions.float().std() > 0  # the policy sampled: the equality is not of constants


def test_each_env_samples_from_its_own_noise_stream():
    """Env j's noise does not depend on how many envs share its batch (else a split would change it)."""
    model = ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(5), (8,))
    four = EnvSlice(_vec("CartPole-v1", 4), 10, seeds=Seeds(1))
    last = EnvSlice(_vec("CartPole-v1", 1), 10, start=3, width=4, seeds=Seeds(1))
    layout = model.noise_layout()
    assert torch.equal(four._noise_rows(layout, 2, 7)[3], last._noise_rows(layout, 2, 7)[0])
    assert not torch.equal(four._noise_rows(layout, 2, 7)[3], four._noise_rows(layout, 3, 7)[3])  # a new batch


def test_episodes_cut_by_a_lost_worker_bootstrap_from_its_last_observation_across_a_resume():
    """A lost worker's envs end their episodes at the last row it delivered: truncated, with V(s') of the last
    observation it sent, not of the next row (a fresh episode's start); a checkpoint in between keeps that."""
    from deeprl.rollout import Rollout

    model = ActorCritic(gym.spaces.Box(-5, 5, (4,)), gym.spaces.Discrete(2), (8,))
    rollout = Rollout(_vec("CartPole-v1", 4), 6)
    rollout.collect(model, 3)
    final = np.full((4, 4), 0.25, np.float32)  # the last observation the lost worker sent, for its envs 2 and 3
    rollout._cut_episodes(slice(2, 4), final[2:4])
    assert rollout.truncated[2, 2:].tolist() == [1.0, 1.0] and rollout.truncated[2, :2].tolist() == [0.0, 0.0]
    resumed = Rollout(copy.deepcopy(rollout.env), 6)  # the env restored mid-episode, as a checkpoint's pickle
    resumed.load_state_dict(rollout.state_dict())
    for r in (rollout, resumed):
        r.collect(model, 3)
        r.finish(model.value)
    assert torch.equal(rollout.next_values, resumed.next_values)
    expected = model.value(torch.as_tensor(final[2:4]))
    assert torch.allclose(resumed.next_values[2, 2:], expected)
    assert not torch.allclose(resumed.next_values[2, 2:], resumed.values[3, 2:])


# ---------------------------------------------------------------- bad input, before anything starts
@pytest.mark.parametrize(
    ("algo", "options", "message"),
    [
        ("ppo", dict(workers=2), "--workers 2 is for Ray runs"),
        ("ppo", dict(ray_address="127.0.0.1:6379"), "--ray-address 127.0.0.1:6379 is for Ray runs"),
        ("ppo", dict(backend="ray", episodes=10, total_steps=None), "--total-steps"),
        ("ppo", dict(backend="ray", workers=8, n_envs=4), "--workers 8 is more than --n-envs 4"),
        ("q-learning", dict(backend="ray"), "q-learning has no Ray backend"),
    ],
)
def test_options_ray_cannot_run_are_refused_before_anything_is_written(tmp_path, algo, options, message):
    env = "CartPole-v1" if algo != "q-learning" else "FrozenLake-v1"
    with pytest.raises(UsageError, match=message):
        deeprl.train(algo, env, **{"total_steps": 1000, "run_dir": tmp_path / "r", "progress": "off", **options})
    assert not (tmp_path / "r").exists()


def test_more_workers_than_the_cluster_has_cpus_is_refused(ray_cluster, tmp_path):
    with pytest.raises(UsageError, match="needs 3 CPUs"):
        deeprl.train(
            "ppo", "CartPole-v1", backend="ray", workers=3, ray_address=ray_cluster, total_steps=1000,
            run_dir=tmp_path / "r", **{k: v for k, v in SMALL.items() if k != "seed"},
        )  # fmt: skip
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- equality with the local backend
@pytest.mark.parametrize(
    ("algo", "options"),
    [
        ("ppo", dict(normalize_obs=True, scale_rewards=True)),  # the statistics that live on the learner
        ("a2c", dict(n_steps=5)),
        ("reinforce", dict()),
    ],
)
def test_two_workers_on_two_nodes_equal_the_local_backend(ray_cluster, tmp_path, algo, options):
    opts = {**SMALL, "total_steps": 3000, **options}  # 3000: the budget ends inside a batch
    local = deeprl.train(algo, "CartPole-v1", vectorization="sync", run_dir=tmp_path / "local", **opts)
    ray_run = deeprl.train(
        algo, "CartPole-v1", backend="ray", workers=2, ray_address=ray_cluster, run_dir=tmp_path / "ray", **opts
    )
    rows = read_metrics(local.run_dir)
    assert rows == read_metrics(ray_run.run_dir)
    assert sum(r["kind"] == "train" for r in rows) > 20 and sum(r["kind"] == "eval" for r in rows) >= 3
    ray_summary = read_summary(ray_run.run_dir)
    report = ray_summary.pop("backend")
    assert read_summary(local.run_dir) == ray_summary
    assert report["workers"] == 2 and report["envs_per_worker"] == [2, 2] and report["restarts"] == [0, 0]
    assert report["rounds"] > 0 and report["bytes_from_workers"] > report["rounds"] * 32 * 4 * 4  # 32 steps of 4 obs
    for a, b in zip(_weights(local.run_dir), _weights(ray_run.run_dir)):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_ppo_solves_cartpole_with_two_workers(ray_cluster, tmp_path):
    result = deeprl.train(
        "ppo", "CartPole-v1", backend="ray", workers=2, ray_address=ray_cluster, seed=101, stop_when_solved=True,
        run_dir=tmp_path / "r", progress="off",
    )  # fmt: skip
    assert result.summary["solved"], result.summary
    assert result.summary["eval_mean_return"] >= 475


def test_a_ray_run_stopped_and_resumed_equals_the_uninterrupted_local_run(ray_cluster, tmp_path):
    """The checkpoint holds each worker's envs mid-episode (pickled by the worker): --resume continues exactly."""
    opts = {**SMALL, "total_steps": 4000, "normalize_obs": True}
    local = deeprl.train("ppo", "CartPole-v1", vectorization="sync", run_dir=tmp_path / "local", **opts)

    class StopAt2000(deeprl.Callback):
        def on_step(self, info):
            return info.env_steps < 2000

    stop = StopAt2000()
    part = deeprl.train(
        "ppo", "CartPole-v1", backend="ray", workers=2, ray_address=ray_cluster, run_dir=tmp_path / "ray",
        callbacks=[stop], **opts,
    )  # fmt: skip
    assert part.summary["stopped"] == "callback" and part.summary["env_steps"] < 4000
    resumed = deeprl.resume(tmp_path / "ray", ray_address=ray_cluster)
    assert resumed.summary["env_steps"] == 4000
    assert read_metrics(local.run_dir) == read_metrics(resumed.run_dir)


# ---------------------------------------------------------------- faults
def _worker_processes(address: str) -> list[psutil.Process]:
    """The OnPolicyWorker processes of the cluster at `address` (their parent, the node's raylet, names its GCS
    port): never another Ray's on this machine."""
    port = f":{address.rsplit(':', 1)[1]}"
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):  # processes vanish while they are read
            if any("ray::OnPolicyWorker" in part for part in process.info["cmdline"] or ()):
                parent = process.parent()
                if parent is not None and any(port in part for part in parent.cmdline()):
                    found.append(process)
    return found


def test_a_killed_worker_is_restarted_and_the_run_ends_with_its_budget(ray_cluster, tmp_path, capfd):
    killed: list[int] = []

    class KillOneWorker(deeprl.Callback):
        def on_step(self, info):
            if not killed and info.env_steps >= 1024:
                victim = _worker_processes(ray_cluster)[0]
                killed.append(victim.pid)
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)

    result = deeprl.train(
        "ppo", "CartPole-v1", backend="ray", workers=2, ray_address=ray_cluster, run_dir=tmp_path / "r",
        callbacks=[KillOneWorker()], **{**SMALL, "total_steps": 4096},
    )  # fmt: skip
    assert killed
    assert result.summary["env_steps"] == 4096
    assert sorted(result.summary["backend"]["restarts"]) == [0, 1]
    err = capfd.readouterr().err
    assert f"pid {killed[0]}" in err and "Restarted it from the current weights" in err
    rows = read_metrics(result.run_dir)
    steps = [int(r["env_steps"]) for r in rows if r["kind"] == "train"]
    assert steps == sorted(steps) and steps[-1] <= 4096
    assert [int(r["env_steps"]) for r in rows if r["kind"] == "eval"] == [1024, 2048, 3072, 4096]


def test_a_worker_lost_at_a_checkpoint_is_restarted_and_the_checkpoint_resumes(ray_cluster, tmp_path, capfd):
    """The checkpoint asks every worker for its envs' positions: one that died just before answers from a new
    process, its episodes cut at the last row; the run and a resume from that checkpoint go on."""
    killed: list[int] = []

    class KillBeforeTheCheckpoint(deeprl.Callback):
        def on_step(self, info):  # the chunk ends on the checkpoint at 2048, written after this call
            if not killed and info.env_steps == 2048:
                victim = _worker_processes(ray_cluster)[0]
                killed.append(victim.pid)
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)

    opts = {**SMALL, "total_steps": 3072, "checkpoint_every": 2048}
    result = deeprl.train(
        "ppo", "CartPole-v1", backend="ray", workers=2, ray_address=ray_cluster, run_dir=tmp_path / "r",
        callbacks=[KillBeforeTheCheckpoint()], **opts,
    )  # fmt: skip
    assert killed and result.summary["env_steps"] == 3072
    assert sorted(result.summary["backend"]["restarts"]) == [0, 1]
    assert f"pid {killed[0]}" in capfd.readouterr().err
    resumed = deeprl.resume(tmp_path / "r", total_steps=4096, ray_address=ray_cluster)
    assert resumed.summary["env_steps"] == 4096


BREAKING_ENV = '''
import os
import gymnasium as gym


class Breaking(gym.Wrapper):
    """CartPole that raises once the file named by `switch` exists (the test creates it mid-run)."""

    def __init__(self, switch):
        super().__init__(gym.make("CartPole-v1"))
        self.switch = switch

    def step(self, action):
        if os.path.exists(self.switch):
            raise RuntimeError("the simulator lost its licence")
        return super().step(action)


gym.register("Breaking-v0", entry_point=Breaking)
'''


def test_a_worker_that_keeps_failing_stops_the_run_with_its_last_checkpoint(ray_cluster, tmp_path, monkeypatch, capfd):
    (tmp_path / "breaking_env.py").write_text(textwrap.dedent(BREAKING_ENV))
    monkeypatch.chdir(tmp_path)  # the workers import the env's module from the driver's working directory
    monkeypatch.syspath_prepend(str(tmp_path))
    switch = tmp_path / "break-now"

    class BreakTheEnvs(deeprl.Callback):
        def on_checkpoint(self, info):
            switch.touch()

    with pytest.raises(UsageError, match="failed 3 times in a row") as error:
        deeprl.train(
            "ppo", "breaking_env:Breaking-v0", backend="ray", workers=2, ray_address=ray_cluster,
            env_kwargs={"switch": str(switch)}, checkpoint_every=1024, callbacks=[BreakTheEnvs()],
            run_dir=tmp_path / "r", **{**SMALL, "total_steps": 8192},
        )  # fmt: skip
    assert "the simulator lost its licence" in str(error.value)
    assert "last good checkpoint (env step 1024)" in str(error.value)
    assert "RuntimeError: the simulator lost its licence" in capfd.readouterr().err  # the restart warnings
    assert not _worker_processes(ray_cluster)
    monkeypatch.chdir(Path(__file__).parent.parent)
    assert deeprl.load(tmp_path / "r").algo is not None  # the checkpoint's policy loads


def test_sigterm_saves_stops_every_worker_and_resume_continues(ray_cluster, tmp_path):
    run_dir = tmp_path / "r"
    command = [
        sys.executable, "-m", "deeprl", "train", "ppo", "CartPole-v1", "--backend", "ray", "--workers", "2",
        "--ray-address", ray_cluster, "--n-envs", "4", "--total-steps", "10000000", "--eval-every", "2048",
        "--eval-episodes", "1", "--threshold", "1e9", "--progress", "off", "--run-dir", str(run_dir),
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "metrics.csv").exists():
        time.sleep(0.2)
    while time.time() < deadline and sum(1 for _ in open(run_dir / "metrics.csv")) < 30:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, (process.returncode, err[-3000:])
    assert "saved at env step" in err
    time.sleep(1.0)
    assert not _worker_processes(ray_cluster)  # the workers went with their driver
    saved = load_resume_state(run_dir).header["env_steps"]
    resumed = deeprl.resume(run_dir, total_steps=saved + 2048, progress="off")
    assert resumed.summary["env_steps"] == saved + 2048
