"""Every common observation space, and action masks, for the off-policy family (DQN, DDPG, TD3, SAC): the
replay buffer's Dict storage, the masked Q-learning targets against hand-computed values, a masked action
never taken, learning from a Dict observation, image observations in either layout, and exact resume."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import read_metrics, read_summary

import deeprl
from deeprl.buffers import ReplayBuffer
from deeprl.driver import build_config
from deeprl.math import (
    double_dqn_target,
    dqn_target,
    masked_argmax,
    masked_double_dqn_target,
    masked_dqn_target,
    masked_max,
    uniform_allowed_actions,
)
from deeprl.registry import continuous_support, dqn_support
from deeprl.rundir import load_resume_state, save_resume_state

# ---------------------------------------------------------------- toy envs


class DictImageEnv(gym.Env):
    """One-step episodes whose best action needs both keys: a bright 3x3 block in the left or right half of an
    8x8 channels-last uint8 image (bit i) and the sign of a noisy float (bit v). Action 2i + v pays 1, every
    other action 0: a policy that reads one key earns 0.5, a random one 0.25."""

    observation_space = gym.spaces.Dict(
        image=gym.spaces.Box(0, 255, (8, 8, 1), np.uint8), vec=gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    )
    action_space = gym.spaces.Discrete(4)

    def _observe(self):
        self.bits = self.np_random.integers(0, 2, 2)
        image = self.np_random.integers(0, 40, (8, 8, 1), dtype=np.uint8)
        col = 1 if self.bits[0] == 0 else 4
        image[2:5, col : col + 3] = 255
        sign = 1.0 if self.bits[1] else -1.0
        vec = np.array([0.6 * sign, 0.0], np.float32) + self.np_random.uniform(-0.3, 0.3, 2).astype(np.float32)
        return {"image": image, "vec": vec}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._observe(), {}

    def step(self, action):
        reward = float(action == 2 * self.bits[0] + self.bits[1])
        return self._observe(), reward, True, False, {}


class MaskedEnv(gym.Env):
    """Ten steps; at each one a random non-empty subset of 5 actions is allowed (the `action_mask` key), and
    action a pays a/4: the best allowed action is the highest one. Taking a disallowed action raises (the env
    refuses it), so any masked action taken during training or evaluation fails the run. The final observation
    allows nothing (a terminal state whose mask is all zeros)."""

    observation_space = gym.spaces.Dict(step=gym.spaces.Discrete(11), action_mask=gym.spaces.MultiBinary(5))
    action_space = gym.spaces.Discrete(5)
    taken = 0

    def _observe(self):
        mask = np.zeros(5, np.int8)
        if self.t < 10:
            while not mask.any():
                mask = (self.np_random.random(5) < 0.4).astype(np.int8)
        self.mask = mask
        return {"step": self.t, "action_mask": mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        if not self.mask[int(action)]:
            raise RuntimeError(f"masked action {action} taken; allowed {self.mask}")
        MaskedEnv.taken += 1
        self.t += 1
        return self._observe(), int(action) / 4, self.t == 10, False, {}


class DictContinuousEnv(gym.Env):
    """Continuous actions on a Dict observation (a small uint8 image and a float vector): the reward is
    minus the distance between the action and the vector's first two entries; 20 steps an episode."""

    observation_space = gym.spaces.Dict(
        image=gym.spaces.Box(0, 255, (6, 6, 2), np.uint8), vec=gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    )
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _observe(self):
        self.vec = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        return {"image": self.np_random.integers(0, 255, (6, 6, 2), dtype=np.uint8), "vec": self.vec}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = -float(np.abs(np.asarray(action) - self.vec[:2]).sum())
        self.t += 1
        return self._observe(), reward, False, self.t >= 20, {}


def _rgb_image(episode, t):
    """ChannelsFirstRGBEnv's observation at step t of an episode: three independent random channels, its
    first pixels (episode, t), so a stored observation names the one it must equal."""
    episode, t = int(episode) % 256, int(t)
    image = np.random.default_rng((episode, t)).integers(0, 256, (3, 40, 40), dtype=np.uint8)
    image[0, 0, :2] = (episode, t)
    return image


class ChannelsFirstRGBEnv(gym.Env):
    """Channels-first (3, 40, 40) RGB frames, shaped like a 3-frame stack but not one. Episodes of 1 to 4
    steps (the first ends on its first step); action t % 2 pays 1."""

    observation_space = gym.spaces.Box(0, 255, (3, 40, 40), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = getattr(self, "episode", -1) + 1, 0
        return _rgb_image(self.episode, 0), {}

    def step(self, action):
        reward = float(action == self.t % 2)
        self.t += 1
        return _rgb_image(self.episode, self.t), reward, self.t == 1 + self.episode % 4, False, {}


for _cls in (DictImageEnv, MaskedEnv, DictContinuousEnv, ChannelsFirstRGBEnv):
    if f"DeeprlOffpolicy/{_cls.__name__}-v0" not in gym.registry:
        gym.register(f"DeeprlOffpolicy/{_cls.__name__}-v0", entry_point=f"{__name__}:{_cls.__name__}")

DICT_ENV, MASKED_ENV, CONT_ENV, RGB_ENV = (
    f"DeeprlOffpolicy/{c.__name__}-v0" for c in (DictImageEnv, MaskedEnv, DictContinuousEnv, ChannelsFirstRGBEnv)
)

DQN_FAST = dict(
    progress="off",
    n_envs=4,
    learning_starts=200,
    batch_size=32,
    buffer_size=4000,
    train_freq=4,
    gradient_steps=1,
    hidden=(32,),
)


# ---------------------------------------------------------------- masked targets, by hand


def test_masked_max_and_argmax_hand_computed_numpy_and_torch():
    q = np.array([[1.0, 5.0, 3.0], [2.0, -1.0, 7.0], [4.0, 4.0, 9.0]])
    mask = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=bool)  # the third row allows nothing
    for lib_q, lib_mask in ((q, mask), (torch.tensor(q), torch.tensor(mask))):
        np.testing.assert_array_equal(np.asarray(masked_argmax(lib_q, lib_mask)), [2, 0, 0])
        np.testing.assert_allclose(np.asarray(masked_max(lib_q, lib_mask)), [3.0, 2.0, 0.0])
    np.testing.assert_array_equal(masked_argmax(q, None), [1, 2, 2])  # no mask: the plain argmax


def test_masked_dqn_target_hand_computed():
    rewards, discounts = np.array([1.0, 0.5, 2.0, 1.0]), np.array([0.9, 0.9, 0.81, 0.9])
    q_next = np.array([[2.0, 30.0, 3.0], [4.0, -1.0, 10.0], [5.0, 6.0, 7.0], [8.0, 9.0, 1.0]])
    mask = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=bool)
    terminated = np.array([0.0, 0.0, 1.0, 0.0])  # row 3: terminal, its mask allows nothing
    # the max over allowed next actions: 3 (not the masked 30), 4 (not 10), cut, 9 (all allowed: plain max)
    expected = [1.0 + 0.9 * 3.0, 0.5 + 0.9 * 4.0, 2.0, 1.0 + 0.9 * 9.0]
    np.testing.assert_allclose(masked_dqn_target(rewards, q_next, discounts, terminated, mask), expected)
    got = masked_dqn_target(*(torch.tensor(x) for x in (rewards, q_next, discounts, terminated, mask)))
    np.testing.assert_allclose(got.numpy(), expected)
    every = np.ones_like(mask)  # everything allowed: the same numbers as dqn_target
    np.testing.assert_allclose(
        masked_dqn_target(rewards, q_next, discounts, terminated, every),
        dqn_target(rewards, q_next, discounts, terminated),
    )


def test_masked_double_dqn_target_online_picks_among_allowed():
    rewards, discounts, terminated = np.array([0.0, 1.0, 3.0]), np.array([0.5, 0.5, 0.5]), np.array([0.0, 0.0, 1.0])
    q_online = np.array([[9.0, 5.0, 1.0], [0.0, 2.0, 8.0], [1.0, 2.0, 3.0]])
    q_target = np.array([[1.5, 6.0, 100.0], [7.0, 3.0, -50.0], [1.0, 1.0, 1.0]])
    mask = np.array([[0, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=bool)
    # row 0: online's best allowed is a=1 (9 is masked) -> target 6; row 1: a=1 (8 masked) -> 3; row 2: cut
    expected = [0.5 * 6.0, 1.0 + 0.5 * 3.0, 3.0]
    np.testing.assert_allclose(
        masked_double_dqn_target(rewards, q_online, q_target, discounts, terminated, mask), expected
    )
    t = [torch.tensor(x) for x in (rewards, q_online, q_target, discounts, terminated, mask)]
    np.testing.assert_allclose(masked_double_dqn_target(*t).numpy(), expected)
    every = np.ones_like(mask)
    np.testing.assert_allclose(
        masked_double_dqn_target(rewards, q_online, q_target, discounts, terminated, every),
        double_dqn_target(rewards, q_online, q_target, discounts, terminated),
    )


def test_a_row_allowing_nothing_stays_finite_even_unterminated():
    q = torch.tensor([[1e30, -1e30], [float("-inf"), 2.0]], dtype=torch.float32)
    mask = torch.tensor([[False, False], [False, True]])
    y = masked_dqn_target(torch.zeros(2), q, torch.full((2,), 0.9), torch.zeros(2), mask)
    assert torch.isfinite(y).all() and y.tolist() == pytest.approx([0.0, 1.8])
    y2 = masked_double_dqn_target(torch.zeros(2), q, q, torch.full((2,), 0.9), torch.zeros(2), mask)
    assert torch.isfinite(y2).all() and y2.tolist() == pytest.approx([0.0, 1.8])


def test_uniform_allowed_actions_is_uniform_over_each_rows_allowed_set():
    rng = np.random.default_rng(0)
    mask = np.array([[1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=bool)
    draws = np.stack([uniform_allowed_actions(rng, mask) for _ in range(6000)])  # (6000, 3)
    assert mask[np.arange(3), draws].all()
    for row, allowed in enumerate(mask):
        freq = np.bincount(draws[:, row], minlength=4)[allowed] / len(draws)
        np.testing.assert_allclose(freq, 1 / allowed.sum(), atol=0.025)


# ---------------------------------------------------------------- the replay buffer


def _dict_space(image_side=4):
    return gym.spaces.Dict(
        image=gym.spaces.Box(0, 255, (image_side, image_side, 3), np.uint8),
        planes=gym.spaces.Box(0, 1, (3, 3, 2), bool),
        vec=gym.spaces.Box(-1, 1, (2,), np.float64),
        cell=gym.spaces.Discrete(7),
        bits=gym.spaces.MultiBinary(3),
        action_mask=gym.spaces.MultiBinary(4),
    )


def _dict_obs(rng, n, t, image_side=4):
    """Random observations of n envs at step t; `vec` holds (t, env) to find each one again."""
    return {
        "image": rng.integers(0, 255, (n, image_side, image_side, 3), dtype=np.uint8),
        "planes": rng.random((n, 3, 3, 2)) < 0.5,
        "vec": np.stack([np.full(n, float(t)), np.arange(n, dtype=float)], 1),
        "cell": np.full(n, t % 7),
        "bits": rng.integers(0, 2, (n, 3)).astype(np.int8),
        "action_mask": rng.integers(0, 2, (n, 4)).astype(np.int8),
    }


def test_dict_observations_stored_per_key_in_compact_dtypes():
    space = _dict_space()
    buf = ReplayBuffer(64, space, gym.spaces.Discrete(4), n_envs=2)
    dtypes = {k: a.dtype for k, a in buf.frames.items()}
    assert dtypes == {
        "image": np.uint8,
        "planes": np.bool_,
        "vec": np.float32,
        "cell": np.int64,
        "bits": np.int8,
        "action_mask": np.bool_,  # the mask as bool
    }
    per_slot = 48 + 18 + 8 + 8 + 3 + 4  # the obs bytes of one slot
    assert ReplayBuffer.nbytes(64, space, gym.spaces.Discrete(4), n_envs=2) == 64 * (
        per_slot + 8 + ReplayBuffer._SLOT_EXTRA_BYTES
    )


def test_dict_buffer_n_step_pairs_each_obs_with_its_kth_successor():
    """Episodes of 6 steps from 2 envs, 3-step returns: next_obs must be the observation 3 steps later (or
    the final one) in every key, rewards the discounted sums, terminated only where the episode ended."""
    rng = np.random.default_rng(1)
    space, n, gamma = _dict_space(), 2, 0.5
    buf = ReplayBuffer(200, space, gym.spaces.Discrete(4), n_envs=n, n_step=3, gamma=gamma)
    obs = _dict_obs(rng, n, 0)
    history = []  # per step: obs of env 0, reward
    for t in range(1, 13):
        nxt = _dict_obs(rng, n, t)
        done = np.full(n, t % 6 == 0)
        buf.add(obs, np.full(n, t % 4), np.full(n, float(t)), nxt, done, np.zeros(n, bool))
        history.append((obs, nxt, float(t), bool(done[0])))
        obs = _dict_obs(rng, n, 100 + t) if done[0] else nxt  # a new episode starts from a fresh observation
    batch = buf.sample(400)
    assert isinstance(batch.obs, dict) and set(batch.obs) == set(space.spaces)
    assert batch.obs["action_mask"].dtype == torch.bool and batch.next_obs["image"].dtype == torch.uint8
    step_of = {int(o["vec"][0, 0]): i for i, (o, *_) in enumerate(history)}  # vec[0] is t (100 + t: a reset)
    for j in range(400):
        i, env, k = step_of[int(batch.obs["vec"][j, 0])], int(batch.obs["vec"][j, 1]), int(batch.steps[j])
        end = i + k - 1  # the last of the k steps summed
        assert k == 3 or history[end][3]  # fewer than n only where the episode ended
        for key in space.spaces:
            dtype = batch.obs[key].numpy().dtype
            np.testing.assert_array_equal(batch.obs[key][j].numpy(), np.asarray(history[i][0][key][env], dtype))
            np.testing.assert_array_equal(batch.next_obs[key][j].numpy(), np.asarray(history[end][1][key][env], dtype))
        rewards = [history[i + m][2] for m in range(k)]
        assert batch.rewards[j].item() == pytest.approx(sum(gamma**m * r for m, r in enumerate(rewards)))
        assert batch.terminated[j].item() == float(history[end][3])


def test_dict_buffer_state_dict_round_trips_through_the_run_directory_codec(tmp_path):
    rng = np.random.default_rng(2)
    space, n = _dict_space(image_side=64), 2  # 12 KiB images: their ring is over 1 MiB, streamed to a .npy file
    kwargs = dict(n_envs=n, n_step=2, prioritized=True, seed=5)
    buf = ReplayBuffer(200, space, gym.spaces.Discrete(4), **kwargs)
    obs = _dict_obs(rng, n, 0, 64)
    for t in range(1, 150):  # past the ring's end: wraparound
        nxt = _dict_obs(rng, n, t, 64)
        buf.add(obs, rng.integers(0, 4, n), rng.random(n), nxt, np.full(n, t % 9 == 0), np.zeros(n, bool))
        obs = nxt
    save_resume_state(tmp_path, {"env_steps": 149}, {"buffer": buf.state_dict()}, None)
    assert len(list((tmp_path / "resume").glob("*/arrays/*.npy"))) == 1  # the image ring
    state = load_resume_state(tmp_path).state["buffer"]
    assert isinstance(state["frames"], dict) and isinstance(state["frames"]["image"], np.memmap)
    restored = ReplayBuffer(200, space, gym.spaces.Discrete(4), **kwargs)
    restored.load_state_dict(state)
    for key in space.spaces:
        np.testing.assert_array_equal(restored.frames[key], buf.frames[key])
    a, b = buf.sample(64), restored.sample(64)  # same RNG state, same tree: the same batch
    for key in space.spaces:
        assert torch.equal(a.obs[key], b.obs[key]) and torch.equal(a.next_obs[key], b.next_obs[key])
    assert torch.equal(a.rewards, b.rewards) and np.array_equal(a.indices, b.indices)
    with pytest.raises(ValueError, match="another"):
        ReplayBuffer(400, space, gym.spaces.Discrete(4), **kwargs).load_state_dict(state)  # another --buffer-size
    other = ReplayBuffer(200, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4), **kwargs)
    with pytest.raises(ValueError, match="Dict keys"):
        other.load_state_dict(state)


def test_one_storage_dtype_rule_for_replay_and_rollouts():
    from types import SimpleNamespace

    from deeprl.rollout import Rollout, make_obs_normalizer
    from deeprl.spaces import obs_storage, storage_dtype

    cases = [
        (gym.spaces.Box(0, 255, (84, 84), np.uint8), np.uint8),  # rank 2 (a grayscale frame): still bytes
        (gym.spaces.Box(0, 255, (128,), np.uint8), np.uint8),  # Atari RAM
        (gym.spaces.Box(0, 1, (3, 5), bool), np.bool_),
        (gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), np.uint8),
        (gym.spaces.Box(-1, 1, (3,), np.float64), np.float32),
        (gym.spaces.Box(0, 9, (2,), np.int32), np.float32),
        (gym.spaces.Discrete(5), np.int64),
        (gym.spaces.MultiDiscrete([3, 4], dtype=np.int32), np.int64),
        (gym.spaces.MultiBinary(3), np.int8),
    ]
    for space, dtype in cases:
        assert storage_dtype(space) == dtype, space
        replay = ReplayBuffer(16, space, gym.spaces.Discrete(2), frame_stack=1)
        rollout = obs_storage(space, (2, 3))
        assert replay.frames.dtype == dtype and rollout.dtype == torch.from_numpy(np.zeros(0, dtype)).dtype, space
    with pytest.raises(TypeError, match="stores Box"):
        storage_dtype(gym.spaces.Tuple((gym.spaces.Discrete(2),)))
    # what a running normaliser rewrites (vector Boxes, bytes too) is stored as the float32 it writes
    ram = gym.spaces.Box(0, 255, (8,), np.uint8)
    dict_space = gym.spaces.Dict(ram=ram, image=gym.spaces.Box(0, 255, (8, 8, 3), np.uint8))

    def rollout_obs(space, normalizer):
        env = SimpleNamespace(num_envs=2, single_observation_space=space, single_action_space=gym.spaces.Discrete(2))
        env.observation_space, env.action_space = space, env.single_action_space
        obs = Rollout(env, 4, obs_normalizer=normalizer).obs
        return obs.dtype if isinstance(obs, torch.Tensor) else {k: v.dtype for k, v in obs.items()}

    assert rollout_obs(ram, None) == torch.uint8
    assert rollout_obs(ram, make_obs_normalizer(ram)) == torch.float32
    assert rollout_obs(dict_space, make_obs_normalizer(dict_space)) == {"ram": torch.float32, "image": torch.uint8}


def test_discrete_and_multibinary_observations_and_minibatches():
    buf = ReplayBuffer(50, gym.spaces.Discrete(9), gym.spaces.Discrete(2))
    for t in range(20):
        buf.add(np.array([t % 9]), [t % 2], [1.0], np.array([(t + 1) % 9]), [False], [False])
    b = buf.sample(16)
    assert b.obs.dtype == torch.int64 and b.obs.shape == (16,)
    assert ((b.obs + 1) % 9 == b.next_obs).all()
    dict_buf = ReplayBuffer(100, _dict_space(), gym.spaces.Discrete(4), n_envs=2)
    rng = np.random.default_rng(3)
    obs = _dict_obs(rng, 2, 0)
    for t in range(1, 30):
        nxt = _dict_obs(rng, 2, t)
        dict_buf.add(obs, [0, 1], [0.0, 0.0], nxt, [False, False], [False, False])
        obs = nxt
    parts = list(dict_buf.minibatches(3, 8))
    assert len(parts) == 3 and all(p.obs["image"].shape == (8, 4, 4, 3) for p in parts)


# ---------------------------------------------------------------- registry


def test_registry_accepts_every_common_space_and_refuses_a_mask_with_box_actions():
    img = gym.spaces.Box(0, 255, (96, 96, 3), np.uint8)
    box, disc = gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(3)
    masked = gym.spaces.Dict(image=img, action_mask=gym.spaces.MultiBinary(3))
    for obs in (img, gym.spaces.Box(0, 1, (10, 10, 4), bool), gym.spaces.Discrete(5), gym.spaces.MultiBinary(4)):
        assert dqn_support(obs, disc) is None and continuous_support(obs, box) is None
    assert dqn_support(masked, disc) is None
    assert "MultiBinary(3)" in dqn_support(masked, gym.spaces.Discrete(4))  # one mask entry per action
    assert "continuous" in continuous_support(masked, box)
    assert continuous_support(gym.spaces.Dict(image=img, vec=box), box) is None


# ---------------------------------------------------------------- DQN


def test_a_masked_action_is_never_taken_in_training_or_evaluation(tmp_path):
    """Thousands of steps: uniform warm-up, ε-greedy exploration, greedy acting, evaluation. MaskedEnv raises
    on a disallowed action, and its terminal observations allow nothing (no NaN may reach the loss)."""
    MaskedEnv.taken = 0
    result = deeprl.train(
        "dqn", MASKED_ENV, seed=0, total_steps=3000, run_dir=tmp_path / "r", eval_every=1000, eval_episodes=10,
        **{**DQN_FAST, "double": True, "epsilon_decay_steps": 1000},
    )  # fmt: skip
    assert MaskedEnv.taken > 2700  # 3000 vector steps, less the autoreset ones (1 in 11), plus the evaluations
    rows = read_metrics(tmp_path / "r")
    losses = [float(r["loss"]) for r in rows if r["kind"] == "train" and int(r["env_steps"]) > 400]
    assert losses and np.isfinite(losses).all()
    # the highest allowed action pays most: always taking it earns 7.3 an episode, random allowed actions 5.0
    assert result.summary["eval_mean_return"] > 6.5


def test_an_untrained_agent_never_picks_a_masked_action():
    spec, cfg, _ = build_config("dqn", MASKED_ENV, hidden=(8,))
    agent = spec.load()(cfg, gym.make(MASKED_ENV), seed=0)
    rng = np.random.default_rng(0)
    masks = rng.random((5000, 5)) < 0.3
    masks[np.arange(5000), rng.integers(0, 5, 5000)] = True
    with torch.no_grad():
        agent.q.head.bias.copy_(torch.tensor([50.0, 40.0, 30.0, 20.0, 10.0]))  # unmasked, it would always pick 0
    greedy = agent.policy({"step": rng.integers(0, 11, 5000), "action_mask": masks.astype(np.int8)})
    assert masks[np.arange(5000), greedy].all()
    assert (greedy == masks.argmax(1)).all()  # the best allowed one: the lowest allowed index here


@pytest.mark.parametrize("double", [False, True])
def test_dqn_update_bootstraps_with_the_next_observations_mask(monkeypatch, double):
    """The update's target gets the mask of s' from the buffer (terminal all-zero masks included), for plain
    and double DQN; without a mask the unmasked targets run, as before."""
    import deeprl.algos.dqn as dqn_module
    from deeprl.envs import make_vec_env

    name = "masked_double_dqn_target" if double else "masked_dqn_target"
    real, seen = getattr(dqn_module, name), []
    monkeypatch.setattr(dqn_module, name, lambda *args: seen.append(args[-1]) or real(*args))
    options = {**DQN_FAST, "double": double}
    options.pop("progress")
    spec, cfg, opts = build_config("dqn", MASKED_ENV, **options)
    agent = spec.load()(cfg, make_vec_env(MASKED_ENV, opts.n_envs), seed=0)
    sample, batches = agent.buffer.sample, []
    monkeypatch.setattr(agent.buffer, "sample", lambda *a, **k: batches.append(sample(*a, **k)) or batches[-1])
    agent.learn(600, None)
    assert len(seen) == len(batches) > 50
    assert all(torch.equal(m, b.next_obs["action_mask"]) for m, b in zip(seen, batches))
    assert any((~m).all(-1).any() for m in seen)  # terminal states that allow nothing were among them
    assert np.isfinite(agent._checked_loss())


def test_dqn_learns_a_dict_observation_that_needs_both_keys(tmp_path):
    result = deeprl.train(
        "dqn", DICT_ENV, seed=0, total_steps=3000, run_dir=tmp_path / "r", eval_every=3000, eval_episodes=100,
        **{**DQN_FAST, "train_freq": 1, "learning_rate": 1e-3, "epsilon_decay_steps": 1500, "target_update_interval": 200},
    )  # fmt: skip
    # one key alone earns 0.5, a random policy 0.25
    assert result.summary["eval_mean_return"] >= 0.9, result.summary["eval_mean_return"]


def test_dqn_resume_of_a_dict_observation_run_matches_uninterrupted(tmp_path):
    opts = dict(seed=3, **{**DQN_FAST, "n_step": 2, "prioritized": True}, checkpoint_every=500, eval_every=600)
    deeprl.train("dqn", MASKED_ENV, total_steps=1200, run_dir=tmp_path / "whole", **opts)
    deeprl.train("dqn", MASKED_ENV, total_steps=700, run_dir=tmp_path / "part", **opts)
    deeprl.resume(tmp_path / "part", total_steps=1200)
    assert read_metrics(tmp_path / "part") == read_metrics(tmp_path / "whole")
    assert read_summary(tmp_path / "part") == read_summary(tmp_path / "whole")
    state = load_resume_state(tmp_path / "part").state["algo"]
    assert set(state["buffer"]["frames"]) == {"step", "action_mask"}
    agent, env = deeprl.load(tmp_path / "part"), gym.make(MASKED_ENV)  # the saved policy acts on one observation
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        obs, *_ = env.step(agent.act(obs))  # MaskedEnv raises on a masked action


def _minatar_registered():
    pytest.importorskip("minatar")
    if "MinAtar/Breakout-v1" not in gym.registry:  # deeprl's env factory registers it; older trees do not
        import minatar.gym

        minatar.gym.register_envs()


def test_dqn_on_minatar_breakout_bool_planes_channels_last(tmp_path):
    _minatar_registered()
    result = deeprl.train(
        "dqn", "MinAtar/Breakout-v1", seed=0, total_steps=400, run_dir=tmp_path / "r", eval_every=400,
        eval_episodes=1, **{**DQN_FAST, "learning_starts": 100},
    )  # fmt: skip
    agent = deeprl.load(result.run_dir).algo
    assert type(agent.q.encoder).__name__ == "ImageEncoder" and agent.q.encoder.channels_last
    assert type(agent.q.encoder.cnn).__name__ == "MinAtarCNN"  # 10x10: too small for the Nature CNN
    assert result.summary["env_steps"] == 400


def test_dqn_on_channels_first_rgb_images_that_are_not_a_frame_stack(tmp_path):
    from deeprl.algos.dqn import DQN
    from deeprl.envs import make_vec_env

    result = deeprl.train("dqn", RGB_ENV, seed=0, total_steps=300, run_dir=tmp_path / "r", eval_every=300,
                          eval_episodes=2, **{**DQN_FAST, "learning_starts": 100})  # fmt: skip
    assert result.summary["env_steps"] == 300
    _spec, cfg, _ = build_config("dqn", RGB_ENV, **{**DQN_FAST, "learning_starts": 100})
    agent = DQN(cfg, make_vec_env(RGB_ENV, 4), seed=0)
    agent.learn(300, None)
    buf = agent.buffer
    assert buf.K == 1 and buf.frames.shape == (4, 1000, 3, 40, 40)  # whole images, not one channel a step
    env = gym.make(RGB_ENV)  # env 0's first transition, as the env returned it
    first, _ = env.reset(seed=0)
    after, *_ = env.step(int(buf.actions[0, 0]))
    assert np.array_equal(buf.frames[0, 0], first) and np.array_equal(buf.frames[0, 1], after)
    b = buf.sample(128)
    for obs, nxt, k in zip(b.obs.numpy(), b.next_obs.numpy(), b.steps.numpy()):
        episode, t = obs[0, 0, :2]
        assert np.array_equal(obs, _rgb_image(episode, t)) and np.array_equal(nxt, _rgb_image(episode, t + int(k)))


# ---------------------------------------------------------------- SAC, TD3, DDPG


CONT_FAST = dict(progress="off", learning_starts=100, batch_size=16, buffer_size=2000, hidden=(32,), eval_episodes=1)


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_continuous_algorithms_train_on_a_dict_observation(tmp_path, algo):
    result = deeprl.train(algo, CONT_ENV, seed=0, total_steps=300, run_dir=tmp_path / "r", eval_every=300, **CONT_FAST)
    assert result.summary["env_steps"] == 300
    rows = [r for r in read_metrics(tmp_path / "r") if r["kind"] == "train" and int(r["env_steps"]) > 100]
    assert rows and np.isfinite([float(r["critic_loss"]) for r in rows]).all()
    agent = deeprl.load(result.run_dir)
    actor = agent.algo.actor
    assert type(actor.encoder).__name__ == "DictEncoder"
    assert agent.algo.critic.encoder is not actor.encoder  # each network its own torso (SB3's recipe)
    obs, _ = gym.make(CONT_ENV).reset(seed=1)
    assert np.abs(agent.act(obs)).max() <= 1.0


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_continuous_resume_of_a_dict_observation_run_matches_uninterrupted(tmp_path, algo):
    opts = dict(seed=2, **CONT_FAST, eval_every=200, checkpoint_every=150)
    deeprl.train(algo, CONT_ENV, total_steps=320, run_dir=tmp_path / "whole", **opts)
    deeprl.train(algo, CONT_ENV, total_steps=170, run_dir=tmp_path / "part", **opts)
    deeprl.resume(tmp_path / "part", total_steps=320)
    assert read_metrics(tmp_path / "part") == read_metrics(tmp_path / "whole")
    assert read_summary(tmp_path / "part") == read_summary(tmp_path / "whole")


def test_flat_vectors_keep_the_fast_path_without_an_encoder():
    spec, cfg, _ = build_config("sac", "Pendulum-v1", hidden=(8,))
    agent = spec.load()(cfg, gym.make("Pendulum-v1"), seed=0)
    assert agent.actor.encoder is None and agent.critic.encoder is None


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_continuous_on_car_racing_raw_channels_last_frames(tmp_path, algo):
    result = deeprl.train(
        algo, "CarRacing-v3", seed=0, total_steps=300, run_dir=tmp_path / "r", eval_every=300,
        max_episode_steps=100, train_freq=2, gradient_steps=1, torch_threads=1, wrappers=(), **CONT_FAST,
    )  # fmt: skip
    assert result.summary["env_steps"] == 300
    algo_obj = deeprl.load(result.run_dir).algo
    assert algo_obj.actor.encoder.channels_last and type(algo_obj.actor.encoder.cnn).__name__ == "NatureCNN"
    assert algo_obj.critic.encoder is not algo_obj.actor.encoder
