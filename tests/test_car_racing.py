"""CarRacing-v3 as its presets train it: deeprl.wrappers:car_racing's (4, 64, 64) uint8 frames, continuous
actions, with PPO (rl-baselines3-zoo's hyperparameters) and SAC (image replay, one frame stored per step)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import deeprl
from deeprl.driver import build_config
from deeprl.envs import env_maker
from deeprl.presets import PRESETS

pytest.importorskip("Box2D")  # gymnasium[box2d]

ENV_ID = "CarRacing-v3"
WRAPPER = "deeprl.wrappers:car_racing"
# Tiny runs (about 5 s each): episodes cut at 50 agent steps, one evaluation episode, the CPU whatever the
# preset's device says.
TINY = dict(max_episode_steps=50, eval_episodes=1, device="cpu", torch_threads=1, progress="off")


def test_presets_build_with_the_wrapper_and_the_zoo_values():
    _, ppo, run = build_config("ppo", ENV_ID)
    assert run.wrappers == (WRAPPER,) and run.n_envs == 8 and run.total_steps == 4_000_000
    assert (run.eval_every, run.eval_episodes, run.device) == (100_000, 5, "auto")
    assert (ppo.n_steps, ppo.minibatch_size, ppo.n_epochs, ppo.learning_rate) == (512, 128, 10, 1e-4)
    assert ppo.anneal_steps == run.total_steps  # the zoo's lin_1e-4
    assert (ppo.gamma, ppo.gae_lambda, ppo.clip_eps, ppo.entropy_coef, ppo.value_coef) == (0.99, 0.95, 0.2, 0.0, 0.5)
    assert (ppo.max_grad_norm, ppo.log_std_init, ppo.log_std) == (0.5, -2.0, "state-independent")
    assert ppo.scale_rewards and not ppo.normalize_obs and ppo.shared
    _, sac, run = build_config("sac", ENV_ID)
    assert run.wrappers == (WRAPPER,) and run.device == "auto"
    assert (sac.buffer_size, sac.batch_size, sac.learning_starts) == (100_000, 256, 10_000)
    assert (sac.actor_lr, sac.critic_lr) == (3e-4, 3e-4)
    assert ENV_ID in PRESETS["ppo"] and ENV_ID in PRESETS["sac"]
    # A flag still overrides a preset value, the wrapper included.
    _, _, run = build_config("ppo", ENV_ID, wrappers=())
    assert run.wrappers == ()


def test_the_wrapped_observation_is_four_64x64_grayscale_frames_channels_first():
    _, _, run = build_config("ppo", ENV_ID)
    env = env_maker(run).make(seed=0)
    try:
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box) and space.shape == (4, 64, 64) and space.dtype == np.uint8
        assert isinstance(env.action_space, gym.spaces.Box) and env.action_space.shape == (3,)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (4, 64, 64) and obs.dtype == np.uint8
        next_obs, *_ = env.step(np.array([0.0, 1.0, 0.0], np.float32))
        assert next_obs.shape == (4, 64, 64)
        np.testing.assert_array_equal(next_obs[:-1], obs[1:])  # a stack: what the replay buffer relies on
    finally:
        env.close()


def test_sac_replay_stores_one_frame_per_step():
    """The preset's buffer_size counts transitions of one 64x64 frame each, not of whole (4, 64, 64) stacks."""
    from deeprl.algos.sac import SAC
    from deeprl.buffers import ReplayBuffer

    _, config, run = build_config("sac", ENV_ID, buffer_size=1_000, hidden=(16,))
    env = env_maker(run).make_vec(1)
    try:
        algo = SAC(config, env, seed=0)
        assert algo.buffer.K == 4 and algo.buffer.frame_shape == (64, 64)
    finally:
        env.close()
    frames = ReplayBuffer.nbytes(100_000, env.single_observation_space, env.single_action_space)
    stacks = ReplayBuffer.nbytes(100_000, env.single_observation_space, env.single_action_space, frame_stack=1)
    assert frames < 0.3 * stacks and frames < 0.5e9  # the preset's 100k transitions: about 0.4 GB


def _trains_and_evaluates(algo: str, run_dir, **overrides) -> deeprl.Agent:
    result = deeprl.train(algo, ENV_ID, seed=0, run_dir=run_dir, **TINY, **overrides)
    assert result.summary["env_steps"] == overrides["total_steps"]
    assert np.isfinite(result.summary["eval_mean_return"])
    agent = deeprl.load(result.run_dir)
    assert agent.run.wrappers == (WRAPPER,)  # the preset's wrapper, recorded in config.json
    assert agent.observation_space.shape == (4, 64, 64) and agent.observation_space.dtype == np.uint8
    # Evaluation after loading rebuilds the same wrapped env from the recipe, and scores the same.
    assert deeprl.evaluate(agent, episodes=1)["mean_return"] == result.summary["eval_mean_return"]
    env = agent.maker.make()
    obs, _ = env.reset(seed=3)
    env.close()
    action = np.asarray(agent.act(obs))
    assert agent.action_space.contains(action.astype(np.float32))
    return agent


def test_ppo_with_the_preset_wrapper_trains_and_evaluates(tmp_path):
    agent = _trains_and_evaluates(
        "ppo", tmp_path / "ppo", total_steps=256, eval_every=256, n_envs=2, n_steps=64, minibatch_size=64, n_epochs=1
    )
    assert type(agent.algo.model.actor_torso.cnn).__name__ == "NatureCNN"
    assert agent.algo.model.critic_torso is None  # shared: one CNN for policy and value (the zoo's CnnPolicy)
    rollout = agent.algo.rollout.obs
    assert rollout.dtype == torch.uint8 and rollout.shape[2:] == (4, 64, 64)


def test_sac_with_the_preset_wrapper_trains_and_evaluates(tmp_path):
    _trains_and_evaluates(
        "sac",
        tmp_path / "sac",
        total_steps=300,
        eval_every=300,
        learning_starts=200,
        gradient_steps=1,  # 12 rounds of one update (every 8 steps, the preset's train_freq)
        batch_size=32,
        buffer_size=1_000,
        hidden=(32,),
    )
    rows = (tmp_path / "sac" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    last_train = [r.split(",") for r in rows[1:] if r.startswith("train,")][-1]
    assert np.isfinite(float(last_train[header.index("critic_loss")]))  # it learned (NaN before the first update)
