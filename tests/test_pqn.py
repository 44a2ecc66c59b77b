"""PQN: the Q(λ) returns and one update's loss against hand-computed values, the Q-network, the rollout's
bootstrap values at episode ends, action masks, chunk invariance, exact resume, bad input, and a learning test."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import deeprl
from deeprl.algos.pqn import PQN, QNetwork
from deeprl.driver import build_config
from deeprl.errors import UsageError
from deeprl.math import q_lambda_returns

FAST = {"progress": "off", "n_envs": 4, "n_steps": 16, "minibatch_size": 32, "n_epochs": 2, "hidden": (32,)}


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _agent(env_id: str = "CartPole-v1", **overrides) -> PQN:
    from deeprl.envs import make_vec_env

    _spec, config, opts = build_config("pqn", env_id, **{**FAST, **overrides})
    env = make_vec_env(env_id, opts.n_envs, max_episode_steps=opts.max_episode_steps)
    torch.manual_seed(0)  # the driver seeds torch before building the networks
    return PQN(config, env, seed=0)


# ---- the Q(λ) returns --------------------------------------------------------------------------


def test_q_lambda_returns_hand_computed_termination_truncation_and_batch_end():
    # One env, five steps, γ = 0.5, λ = 0.5; q'_t = max_a Q(s_{t+1}, a).
    rewards = torch.tensor([1.0, 2.0, 1.0, 4.0, 1.0])
    next_max_q = torch.tensor([2.0, 8.0, 6.0, 10.0, 4.0])
    terminated = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])  # step 1 ends its episode: no bootstrap
    truncated = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])  # step 3 hits a time limit: bootstrap, no λ-sum
    # R_4 = 1 + 0.5·4 = 3 (the batch's end bootstraps); R_3 = 4 + 0.5·10 = 9 (truncated: q' of its final obs);
    # R_2 = 1 + 0.5·(0.5·6 + 0.5·9) = 4.75; R_1 = 2 (terminated: the 8 is ignored);
    # R_0 = 1 + 0.5·(0.5·2 + 0.5·2) = 2
    expected = [2.0, 2.0, 4.75, 9.0, 3.0]
    got = q_lambda_returns(rewards, next_max_q, terminated, truncated, gamma=0.5, lam=0.5)
    np.testing.assert_allclose(got.numpy(), expected)
    # numpy and bool inputs; a step both terminated and truncated is a termination
    both = q_lambda_returns(
        rewards.numpy(), next_max_q.numpy(), np.array([0, 1, 0, 1, 0], bool), np.array([0, 0, 0, 1, 0], bool), 0.5, 0.5
    )
    np.testing.assert_allclose(both.numpy(), [2.0, 2.0, 1 + 0.5 * (0.5 * 6 + 0.5 * 4), 4.0, 3.0])


def test_q_lambda_zero_is_the_q_learning_target_and_one_the_return():
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])  # [T=3, 2 envs]
    next_max_q = torch.tensor([[5.0, 3.0], [7.0, 1.0], [9.0, 4.0]])
    terminated = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    truncated = torch.zeros(3, 2)
    g = 0.9
    one_step = q_lambda_returns(rewards, next_max_q, terminated, truncated, g, 0.0)
    np.testing.assert_allclose(one_step.numpy(), (rewards + g * (1 - terminated) * next_max_q).numpy())
    mc = q_lambda_returns(rewards, next_max_q, terminated, truncated, g, 1.0)
    # env 0: 1 + .9(1 + .9(1 + .9·9)); env 1 ends at step 1: 0 + .9·1, then 1; step 2: 2 + .9·4
    expected = [[1 + g * (1 + g * (1 + g * 9)), 0 + g * 1], [1 + g * (1 + g * 9), 1.0], [1 + g * 9, 2 + g * 4]]
    np.testing.assert_allclose(mc.numpy(), expected, rtol=1e-6)


# ---- the network and one update ----------------------------------------------------------------


def test_q_network_has_layer_norm_and_takes_images():
    net = QNetwork(gym.spaces.Box(-1, 1, (4,), np.float32), 2, (16, 8))
    assert [type(m).__name__ for m in net.torso] == ["Linear", "LayerNorm", "ReLU"] * 2
    assert net(torch.zeros(3, 4)).shape == (3, 2)
    plain = QNetwork(gym.spaces.Box(-1, 1, (4,), np.float32), 2, (16,), layer_norm=False)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in plain.modules())
    minatar = QNetwork(gym.spaces.Box(0, 1, (10, 10, 4), bool), 6, (32,))  # channels-last bool planes
    assert type(minatar.encoder.cnn).__name__ == "MinAtarCNN"
    assert minatar(torch.zeros(2, 10, 10, 4, dtype=torch.bool)).shape == (2, 6)


def test_one_update_loss_hand_computed():
    """q(s, ·) = (1, 2) everywhere (a zero head with biases 1 and 2), so q' = 2 at every step. Four rows of one
    env, γ = λ = 0.5: rewards 1, 2, 0, 3; the episode terminates at row 1 and row 2 is the autoreset step (no
    transition). R_3 = 3 + 0.5·2 = 4, R_1 = 2, R_0 = 1 + 0.5·(0.5·2 + 0.5·2) = 2. Actions 0, 1, ·, 0 give
    q(s, a) = 1, 2, 1: errors −1, 0, −3 and the loss ½·(1 + 0 + 9)/3 = 5/3 (row 2 left out)."""
    agent = _agent(n_envs=1, n_steps=4, n_epochs=1, minibatch_size=64, gamma=0.5, q_lambda=0.5, reward_scale=1.0)
    with torch.no_grad():
        agent.q.head.weight.zero_()
        agent.q.head.bias.copy_(torch.tensor([1.0, 2.0]))
    r = agent.rollout
    r.rewards.copy_(torch.tensor([[1.0], [2.0], [0.0], [3.0]]))
    r.terminated.copy_(torch.tensor([[0.0], [1.0], [0.0], [0.0]]))
    r.truncated.zero_()
    r.mask.copy_(torch.tensor([[1.0], [1.0], [0.0], [1.0]]))
    r.actions.copy_(torch.tensor([[0], [1], [1], [0]]))
    r.values.fill_(2.0)  # what act() stores: max_a q(s_t, a)
    r.next_obs = np.zeros((1, 4), np.float32)
    r.t = 4
    agent.update()
    np.testing.assert_allclose(r.next_values.numpy(), 2.0)
    assert agent.loss == pytest.approx(5 / 3, rel=1e-6)
    assert agent.updates == 1


def test_rollout_values_are_max_q_and_truncations_bootstrap_from_the_final_observation():
    """Episodes cut at 5 steps (truncations) inside a rollout: the row after each end holds the final
    observation, and the bootstrap q' of the truncated step is max_a q of exactly that observation."""
    agent = _agent(n_envs=2, n_steps=12, max_episode_steps=5, epsilon_start=0.5)
    r = agent.rollout
    r.collect(agent, 12)
    r.finish(lambda obs: agent.q(obs).amax(-1))
    with torch.no_grad():
        max_q = agent.q(r.obs.flatten(0, 1)).amax(-1).reshape(12, 2)
    np.testing.assert_allclose(r.values.numpy(), max_q.numpy(), rtol=1e-5, atol=1e-6)
    ends = (r.truncated[:-1] > 0).nonzero()
    assert len(ends) >= 2 and (r.terminated[ends[:, 0], ends[:, 1]] == 0).all()
    for t, i in ends.tolist():
        assert r.mask[t + 1, i] == 0  # the autoreset step: no transition
        assert r.next_values[t, i] == pytest.approx(float(max_q[t + 1, i]), abs=1e-6)


class MaskedChoice(gym.Env):
    """Eight steps; a random non-empty subset of 4 actions is allowed at each (`action_mask`); action a pays a.
    A disallowed action raises, so one taken in training or evaluation fails the run."""

    observation_space = gym.spaces.Dict(step=gym.spaces.Discrete(9), action_mask=gym.spaces.MultiBinary(4))
    action_space = gym.spaces.Discrete(4)

    def _observe(self):
        self.mask = np.zeros(4, np.int8)
        while self.t < 8 and not self.mask.any():
            self.mask = (self.np_random.random(4) < 0.5).astype(np.int8)
        return {"step": self.t, "action_mask": self.mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        if not self.mask[int(action)]:
            raise RuntimeError(f"masked action {action} taken; allowed {self.mask}")
        self.t += 1
        return self._observe(), float(action), self.t == 8, False, {}


if "DeeprlPQN/MaskedChoice-v0" not in gym.registry:
    gym.register("DeeprlPQN/MaskedChoice-v0", entry_point=f"{__name__}:MaskedChoice")


def test_a_masked_action_is_never_taken_and_the_greedy_one_is_learnt(tmp_path):
    result = deeprl.train(
        "pqn", "DeeprlPQN/MaskedChoice-v0", total_steps=6000, eval_every=3000, eval_episodes=5,
        run_dir=tmp_path / "r", seed=1, **{**FAST, "learning_rate": 3e-3, "epsilon_decay_steps": 2000},
    )  # fmt: skip
    assert result.summary["env_steps"] == 6000  # no RuntimeError from a disallowed action
    agent = deeprl.load(tmp_path / "r")
    obs = {
        "step": np.zeros(4, np.int64),
        "action_mask": np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]]),
    }
    assert list(agent.act_batch(obs)) == [3, 2, 0, 1]  # the best allowed action (a pays a)


# ---- chunks, resume, the run directory ---------------------------------------------------------


def test_epsilon_is_fixed_per_rollout_and_learning_is_chunk_invariant():
    a, b = _agent(epsilon_decay_steps=256), _agent(epsilon_decay_steps=256)
    assert a.epsilon == 1.0
    steps_a, episodes_a = a.learn(640, None)
    episodes_b = []
    for chunk in (4, 60, 132, 444):  # not multiples of the rollout's 64 env steps
        episodes_b += b.learn(chunk, None)[1]
    assert steps_a == 640 and b.rollout.env_steps == 640 and a.updates == b.updates == 10
    assert a.epsilon == a.cfg.epsilon_final
    drop_clock = lambda episodes: repr([e[:3] + e[4:] for e in episodes])  # noqa: E731 (repr: nan == nan)
    assert drop_clock(episodes_a) == drop_clock(episodes_b)
    assert {e.extras[0] for e in episodes_a} >= {1.0, 0.05}  # ε as of each rollout's start
    for p, q in zip(a.q.parameters(), b.q.parameters()):
        assert torch.equal(p, q)


def test_resume_matches_uninterrupted(tmp_path):
    opts = dict(seed=3, **FAST, checkpoint_every=500, eval_every=400, eval_episodes=2, epsilon_decay_steps=600)
    deeprl.train("pqn", "CartPole-v1", total_steps=1200, run_dir=tmp_path / "whole", **opts)
    deeprl.train("pqn", "CartPole-v1", total_steps=700, run_dir=tmp_path / "part", **opts)  # stops mid-rollout
    deeprl.resume(tmp_path / "part", total_steps=1200)
    whole, part = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "part")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]  # noqa: E731
    assert strip(part) == strip(whole)
    losses = [float(r["loss"]) for r in whole if r["kind"] == "train" and r["loss"] not in ("", "nan")]
    assert len(losses) > 20 and all(math.isfinite(x) for x in losses)


# ---- bad input ---------------------------------------------------------------------------------


def test_continuous_actions_name_the_algorithms_that_handle_them(tmp_path):
    with pytest.raises(UsageError, match=r"pqn cannot train on Pendulum-v1.*Discrete actions") as e:
        deeprl.train("pqn", "Pendulum-v1", total_steps=100, run_dir=tmp_path / "r", progress="off")
    able = str(e.value).split("Algorithms that handle it: ")[1].split(" (e.g.")[0].split(", ")
    assert able and "pqn" not in able and "dqn" not in able
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "flags, flag",
    [
        ({"q_lambda": 1.5}, "--q-lambda"),
        ({"n_steps": 0}, "--n-steps"),
        ({"minibatch_size": 0}, "--minibatch-size"),
        ({"reward_scale": 0.0}, "--reward-scale"),
        ({"epsilon_final": -0.1}, "--epsilon-final"),
        ({"hidden": ()}, "--hidden"),
        ({"max_grad_norm": 0.0}, "--max-grad-norm"),
    ],
)
def test_bad_hyperparameters_name_the_flag(flags, flag):
    with pytest.raises(UsageError, match=flag):
        build_config("pqn", "CartPole-v1", **flags)


def test_same_step_autoreset_is_refused():
    _spec, config, _opts = build_config("pqn", "CartPole-v1", **FAST)
    env = gym.make_vec(
        "CartPole-v1",
        2,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    with pytest.raises(UsageError, match="NEXT_STEP"):
        PQN(config, env, seed=0)


# ---- learning ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_cartpole_preset_learns(tmp_path):
    """The CartPole preset's greedy policy reaches 475 (random play: ~20) within 60k env steps, a second or two
    of training (the held-out seeds' times are in docs/benchmarks.md, "PQN")."""
    result = deeprl.train(
        "pqn", "CartPole-v1", total_steps=60_000, seed=0, run_dir=tmp_path / "r", progress="off", stop_when_solved=True
    )
    assert result.summary["solved"], result.summary
    assert result.summary["eval_mean_return"] >= 475
