"""DDPG, TD3, SAC and their shared pieces: critic targets by hand, soft update, noise, action scaling,
terminated vs truncated on Pendulum (which only truncates), learning, exact resume, divergence, bad input."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import read_metrics, read_summary

import deeprl
from deeprl.buffers import ReplayBuffer
from deeprl.continuous import (
    Collector,
    QEnsemble,
    SquashedGaussianActor,
    scale_action,
    squashed_gaussian_log_prob,
    unscale_action,
)
from deeprl.driver import build_config
from deeprl.errors import DivergenceError, UsageError
from deeprl.math import ddpg_target, sac_target, smoothed_target_actions, td3_target
from deeprl.nets import soft_update
from deeprl.noise import GaussianNoise, OrnsteinUhlenbeckNoise
from deeprl.presets import PRESETS
from deeprl.protocol import Episode

T = torch.tensor


# --- critic targets, by hand ---------------------------------------------------------------------
def test_ddpg_target_hand_computed():
    # y = r + γ(1 − terminated) Q'(s', μ'(s')): 1 + 0.9·10 = 10; terminated: −2 alone; truncated rows
    # carry terminated = 0 and bootstrap: 0.5 + 0.9·(−4) = −3.1
    y = ddpg_target(T([1.0, -2.0, 0.5]), T([10.0, 5.0, -4.0]), 0.9, T([0.0, 1.0, 0.0]))
    torch.testing.assert_close(y, T([10.0, -2.0, -3.1]))


def test_ddpg_target_takes_per_transition_discounts():
    # a 3-step return from the buffer: r + γ³ Q' = 1 + 0.729·2 = 2.458
    assert ddpg_target(np.array([1.0]), np.array([2.0]), np.array([0.729]), np.array([0.0]))[0] == pytest.approx(2.458)


def test_td3_target_uses_the_smaller_critic():
    # min(3, 2) = 2: 0.5 + 0.5·2 = 1.5; terminated: 0.5
    y = td3_target(T([0.5, 0.5]), T([3.0, 3.0]), T([2.0, 2.0]), 0.5, T([0.0, 1.0]))
    torch.testing.assert_close(y, T([1.5, 0.5]))


def test_sac_target_adds_the_entropy_bonus():
    # min(4, 6) − α log π = 4 − 0.5·(−1) = 4.5; y = 1 + 0.9·4.5 = 5.05; terminated: 1
    y = sac_target(T([1.0, 1.0]), T([4.0, 4.0]), T([6.0, 6.0]), T([-1.0, -1.0]), 0.5, 0.9, T([0.0, 1.0]))
    torch.testing.assert_close(y, T([5.05, 1.0]))


def test_smoothed_target_actions_clip_noise_then_action():
    # 0.9 + 0.3 = 1.2 → 1; −0.2 + clip(−0.8) = −0.2 − 0.5 = −0.7; 0 + 0.1 = 0.1
    a = smoothed_target_actions(T([0.9, -0.2, 0.0]), T([0.3, -0.8, 0.1]), 0.5)
    torch.testing.assert_close(a, T([1.0, -0.7, 0.1]))


# --- soft update, action scaling, networks -------------------------------------------------------
def test_soft_update_is_polyak_averaging():
    source, target = QEnsemble(3, 1, (4,), n=2), QEnsemble(3, 1, (4,), n=2)
    for p in source.parameters():
        p.data.fill_(1.0)
    for p in target.parameters():
        p.data.fill_(0.0)
    soft_update(target, source, 0.25)  # 0.25·1 + 0.75·0 = 0.25
    soft_update(target, source, 0.25)  # 0.25 + 0.75·0.25 = 0.4375
    assert all(torch.allclose(p, torch.full_like(p, 0.4375)) for p in target.parameters())
    soft_update(target, source, 1.0)
    assert all(torch.equal(p, torch.ones_like(p)) for p in target.parameters())


def test_action_scaling_maps_the_unit_box_onto_the_bounds_and_back():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 10.0])
    unit = np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 0.5]])
    expected = np.array([[-2.0, 0.0], [0.0, 5.0], [2.0, 7.5]])  # low + (a+1)(high−low)/2
    np.testing.assert_allclose(scale_action(unit, low, high), expected)
    np.testing.assert_allclose(unscale_action(expected, low, high), unit)
    torch.testing.assert_close(scale_action(T(unit), T(low), T(high)), T(expected))


def test_q_ensemble_members_are_independent_critics():
    q = QEnsemble(3, 2, (5,), n=2)
    obs, act = torch.randn(4, 3), torch.randn(4, 2)
    out = q(obs, act)
    assert out.shape == (2, 4)
    x = torch.cat([obs, act], -1)
    for k in range(2):  # member k alone: relu(x W1_k + b1_k) W2_k + b2_k
        h = torch.relu(x @ q.weights[0][k] + q.biases[0][k])
        torch.testing.assert_close(out[k], (h @ q.weights[1][k] + q.biases[1][k]).squeeze(-1))


def test_squashed_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    mean, log_std = torch.randn(64, 2), torch.randn(64, 2).clamp(-2, 1)
    eps = torch.randn(64, 2)
    u = mean + log_std.exp() * eps
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()]
    )
    expected = dist.log_prob(torch.tanh(u)).sum(-1)
    ok = torch.tanh(u).abs() < 0.999  # where torch's own inverse of tanh is accurate
    torch.testing.assert_close(
        squashed_gaussian_log_prob(eps, log_std, u)[ok.all(-1)], expected[ok.all(-1)], rtol=1e-4, atol=1e-4
    )
    # stable where tanh(u) rounds to ±1: log(1 − tanh²u) ≈ log 4 − 2|u|, finite
    assert torch.isfinite(squashed_gaussian_log_prob(T([[0.0]]), T([[0.0]]), T([[30.0]]))).all()


def test_squashed_gaussian_actor_samples_inside_the_unit_box():
    actor = SquashedGaussianActor(3, 2, (8,))
    a, logp = actor.sample(torch.randn(100, 3), torch.Generator().manual_seed(0))
    assert a.abs().max() <= 1.0 and a.shape == (100, 2) and logp.shape == (100,)


# --- noise -----------------------------------------------------------------------------------------
def test_gaussian_noise_statistics():
    noise = GaussianNoise(0.3, (4, 2), seed=0)
    x = np.concatenate([noise() for _ in range(5000)])
    assert abs(x.mean()) < 0.01 and x.std() == pytest.approx(0.3, rel=0.03)


def test_ou_noise_stationary_std_and_correlation():
    noise = OrnsteinUhlenbeckNoise(0.2, (64, 1), theta=0.15, seed=0)
    for _ in range(200):  # burn-in: about 30 times 1/θ
        noise()
    xs = np.stack([noise()[:, 0] for _ in range(2000)])  # (time, env)
    # stationary std σ/√(θ(2 − θ)) = 0.2/√(0.2775) = 0.3797; lag-1 autocorrelation 1 − θ = 0.85
    assert xs.std() == pytest.approx(0.2 / math.sqrt(0.15 * 1.85), rel=0.05)
    lag1 = np.mean([np.corrcoef(xs[:-1, i], xs[1:, i])[0, 1] for i in range(64)])
    assert lag1 == pytest.approx(0.85, abs=0.02)


def test_ou_noise_resets_exactly_the_masked_envs_and_resumes():
    noise = OrnsteinUhlenbeckNoise(0.5, (3, 2), seed=1)
    for _ in range(5):
        noise()
    before = noise.x.copy()
    noise.reset(np.array([True, False, True]))
    assert np.all(noise.x[[0, 2]] == 0.0) and np.array_equal(noise.x[1], before[1])
    saved = noise.state_dict()
    a = [noise() for _ in range(3)]
    other = OrnsteinUhlenbeckNoise(0.5, (3, 2), seed=99)
    other.load_state_dict(saved)
    np.testing.assert_array_equal(np.stack(a), np.stack([other() for _ in range(3)]))


class CountingEnv(gym.Env):
    """obs = [steps so far]; truncates (or terminates) after `length` steps; action Box(-2, 2)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def __init__(self, length: int, terminate: bool = False):
        self.length, self.terminate, self.t = length, terminate, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        end = self.t >= self.length
        return np.array([self.t], np.float32), float(action[0]), end and self.terminate, end and not self.terminate, {}


class SpyNoise:
    def __init__(self):
        self.masks = []

    def reset(self, mask=None):
        self.masks.append(None if mask is None else np.array(mask))


class RecordingBuffer:
    def __init__(self):
        self.rows = []

    def add(self, obs, actions, rewards, next_obs, terminated, truncated, valid=None):
        for i in np.flatnonzero(valid):
            self.rows.append(
                (
                    i,
                    float(obs[i, 0]),
                    float(actions[i, 0]),
                    float(rewards[i]),
                    float(next_obs[i, 0]),
                    bool(terminated[i]),
                    bool(truncated[i]),
                )
            )


def test_collector_skips_autoreset_steps_keeps_final_obs_and_resets_noise_per_env():
    env = gym.vector.SyncVectorEnv(
        [lambda: CountingEnv(3), lambda: CountingEnv(5, terminate=True)],
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
    )
    buffer, noise = RecordingBuffer(), SpyNoise()
    c = Collector(env, buffer, noise)
    c.reset(seed=0)
    finished: list[Episode] = []
    for _ in range(7):
        finished += c.step(np.full((2, 1), 0.5, np.float32))  # unit 0.5 → env action 1.0 → reward 1
    env0 = [r for r in buffer.rows if r[0] == 0]
    # env 0: steps 1-3, autoreset at step 4 (not stored), steps 5-7 of the next episode
    assert [(r[1], r[4]) for r in env0] == [(0, 1), (1, 2), (2, 3), (0, 1), (1, 2), (2, 3)]
    assert [r[6] for r in env0] == [False, False, True, False, False, True]  # truncated, never terminated
    assert not any(r[5] for r in env0)
    env1 = [r for r in buffer.rows if r[0] == 1]
    assert [r[5] for r in env1] == [False] * 4 + [True, False]  # terminated at step 5; step 6 is its autoreset
    assert all(r[2] == 0.5 and r[3] == 1.0 for r in buffer.rows)  # unit action stored, env got the scaled one
    # noise resets when an env receives its reset observation: env 0 after step 4, env 1 after step 6
    resets = [m.tolist() for m in noise.masks[1:]]
    assert resets == [[True, False], [False, True]]
    assert [(e.episode_return, e.episode_length, e.env_steps) for e in finished] == [
        (3.0, 3, 6),
        (5.0, 5, 10),
        (3.0, 3, 14),
    ]


def test_pendulum_only_truncates_so_every_stored_transition_bootstraps():
    env = deeprl.envs.make_vec_env("Pendulum-v1", 2, max_episode_steps=20)
    buffer = ReplayBuffer(1000, env.single_observation_space, gym.spaces.Box(-1, 1, (1,), np.float32), n_envs=2)
    c = Collector(env, buffer)
    c.reset(seed=0)
    for _ in range(63):
        c.step(np.zeros((2, 1), np.float32))
    assert len(buffer) == 2 * 60  # 3 episodes of 20 per env; the 3 autoreset steps are not transitions
    batch = buffer.sample(500)
    assert batch.terminated.sum() == 0  # a wrong bootstrap would cut the value at every time limit
    y = ddpg_target(batch.rewards, torch.ones(500), 0.9, batch.terminated)
    torch.testing.assert_close(y, batch.rewards + 0.9)


# --- learning, resume, errors ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("algo, steps", [("ddpg", 6000), ("td3", 8000), ("sac", 6000)])
def test_learns_pendulum_with_a_short_budget(tmp_path, quiet, algo, steps):
    r = deeprl.train(
        algo, "Pendulum-v1", seed=0, total_steps=steps, stop_when_solved=True, run_dir=tmp_path / algo, **quiet
    )
    assert r.summary["solved"], f"{algo} did not reach -200 in {steps} steps: {r.summary['eval_mean_return']}"
    evals = [float(row["episode_return"]) for row in read_metrics(tmp_path / algo) if row["kind"] == "eval"]
    assert evals[0] < -600  # the first policy is bad: the agent learned, the task is not trivial


SMALL = dict(
    total_steps=900,
    learning_starts=200,
    batch_size=32,
    hidden=(16, 16),
    eval_every=300,
    eval_episodes=2,
    buffer_size=5000,
    progress="off",
)


@pytest.mark.parametrize("algo, extra", [("ddpg", {"noise": "ou"}), ("td3", {"n_envs": 2}), ("sac", {})])
def test_resume_matches_the_uninterrupted_run(tmp_path, algo, extra):
    opts = {**SMALL, **extra}
    whole = deeprl.train(algo, "Pendulum-v1", seed=3, run_dir=tmp_path / "whole", **opts)
    deeprl.train(algo, "Pendulum-v1", seed=3, run_dir=tmp_path / "part", **{**opts, "total_steps": 500})
    resumed = deeprl.resume(tmp_path / "part", total_steps=900)
    assert read_metrics(tmp_path / "part") == read_metrics(tmp_path / "whole")
    assert read_summary(tmp_path / "part") == read_summary(tmp_path / "whole")
    a, b = deeprl.load(whole.run_dir).algo, deeprl.load(resumed.run_dir).algo
    for p, q in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(p, q)


def test_non_finite_loss_stops_with_a_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import deeprl.algos.ddpg as ddpg_module

    monkeypatch.setattr(ddpg_module, "ddpg_target", lambda r, q, d, t: r * float("nan"))
    opts = {**SMALL, "checkpoint_every": 100, "train_freq": 1, "gradient_steps": 1}  # checked after every step
    with pytest.raises(
        UsageError,
        match=r"Training stopped: the critic loss became nan by gradient "
        r"step 1 \(env step 200\); .*The last good checkpoint \(env step 100\)",
    ):
        deeprl.train("ddpg", "Pendulum-v1", seed=0, run_dir=tmp_path / "r", **opts)
    assert (tmp_path / "r" / "resume" / "LATEST").is_file() and (tmp_path / "r" / "policy.safetensors").is_file()


def test_non_finite_actions_raise_divergence():
    spec, cfg, _ = build_config(
        "td3",
        "Pendulum-v1",
        **{k: v for k, v in SMALL.items() if k in ("learning_starts", "batch_size", "hidden", "buffer_size")},
    )
    algo = spec.load()(cfg, deeprl.envs.make_vec_env("Pendulum-v1", 1), seed=0, device="cpu")
    algo.learn(200)
    with torch.no_grad():
        algo.actor.net[-1].bias.fill_(float("nan"))
    with pytest.raises(DivergenceError, match="non-finite actions at env step 200"):
        algo.learn(10)


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_discrete_actions_get_an_error_naming_dqn_and_ppo(tmp_path, algo):
    with pytest.raises(UsageError, match="need continuous \\(Box\\) actions.*use dqn or ppo"):
        deeprl.train(algo, "CartPole-v1", total_steps=100, run_dir=tmp_path / "r", progress="off")
    assert not (tmp_path / "r").exists()


def test_bad_hyperparameters_name_the_flag():
    with pytest.raises(UsageError, match="--tau"):
        build_config("td3", "Pendulum-v1", tau=0.0)
    with pytest.raises(UsageError, match="--noise"):
        build_config("ddpg", "Pendulum-v1", noise="pink")
    with pytest.raises(UsageError, match="--hidden"):
        build_config("sac", "Pendulum-v1", hidden=())


@pytest.mark.parametrize(
    "env_id", ["Pendulum-v1", "MountainCarContinuous-v0", "LunarLanderContinuous-v3", "HalfCheetah-v5", "Hopper-v5"]
)
def test_every_preset_builds_and_takes_a_few_steps(tmp_path, env_id):
    for algo in ("ddpg", "td3", "sac"):
        spec, cfg, run = build_config(algo, env_id)
        assert env_id in PRESETS[algo]
    r = deeprl.train(
        "sac",
        env_id,
        total_steps=150,
        learning_starts=100,
        batch_size=16,
        hidden=(8,),
        eval_every=150,
        eval_episodes=1,
        max_episode_steps=50,
        run_dir=tmp_path / "r",
        progress="off",
    )
    assert r.summary["env_steps"] == 150 and math.isfinite(r.summary["eval_mean_return"])


def test_cli_help_lists_the_algorithm_flags():
    cli = str(Path(sys.executable).parent / "deeprl")
    out = subprocess.run([cli, "train", "td3", "Pendulum-v1", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--target-policy-noise", "--policy-delay", "--noise", "--tau", "--device", "--learning-starts"):
        assert flag in out.stdout
