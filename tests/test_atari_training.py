"""Atari ids as the SB3 zoo and CleanRL name them, and raw channels-last frames, train (issue 15: the CNN once
read the width of a (210, 160, 3) frame as channels and crashed)."""

import pytest

import deeprl

TINY = {
    "ppo": dict(n_envs=2, n_steps=32, minibatch_size=32, n_epochs=1),
    "dqn": dict(n_envs=1, learning_starts=64, batch_size=16, buffer_size=2_000, train_freq=4),
}


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "shape"),
    [
        ("PongNoFrameskip-v4", {}, (4, 84, 84)),  # preprocessed: frame-stacked 84x84 gray, channels first
        ("ALE/Pong-v5", {"atari_preprocessing": False}, (210, 160, 3)),  # raw RGB frames, channels last
    ],
)
def test_atari_frames_in_either_layout_train_and_evaluate(tmp_path, algo, env_id, env_kwargs, shape):
    result = deeprl.train(
        algo,
        env_id,
        env_kwargs=env_kwargs,
        total_steps=256,
        eval_every=256,
        eval_episodes=1,
        max_episode_steps=200,  # agent steps: keeps the evaluation's game short
        device="cpu",
        torch_threads=1,
        run_dir=tmp_path / "r",
        progress="off",
        **TINY[algo],
    )
    assert result.summary["env_steps"] == 256
    agent = deeprl.load(tmp_path / "r")
    assert agent.observation_space.shape == shape
    assert deeprl.evaluate(agent)["mean_return"] == result.summary["eval_mean_return"]
