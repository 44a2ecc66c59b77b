"""Every common space for the policy-gradient family (REINFORCE, PPO, A2C): Dict, Discrete, MultiBinary and
image observations (either layout), MultiDiscrete and MultiBinary actions, and action masks (the Dict
observation key `action_mask`, deeprl.spaces.MASK_KEY). Toy envs registered here make each case small."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import read_metrics, read_summary

import deeprl
from deeprl.errors import UsageError
from deeprl.nets import ActorCritic
from deeprl.registry import ALGOS, policy_gradient_support
from deeprl.rollout import DictObsNormalizer, Rollout
from deeprl.spaces import MASK_KEY, map_obs, take, to_tensor

LENGTH = 10  # steps per episode of the toy envs


class CueDict(gym.Env):
    """A Dict observation: a 7x7x1 uint8 image lit on its left or right half, and a vector whose first entry is
    ±1 (the second is noise). Action 2·(right half lit) + (vector[0] > 0) of 4 earns 1: a policy that reads one
    key only gets 5 of 10 per episode, one that reads both 10."""

    observation_space = gym.spaces.Dict(
        {"image": gym.spaces.Box(0, 255, (7, 7, 1), np.uint8), "vector": gym.spaces.Box(-1, 1, (2,), np.float32)}
    )
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def _draw(self):
        self.side, self.sign = (int(x) for x in self.np_random.integers(2, size=2))
        image = np.zeros((7, 7, 1), np.uint8)
        lit = image[:, 4:] if self.side else image[:, :3]
        lit[:] = 255
        vector = np.array([2 * self.sign - 1, self.np_random.uniform(-1, 1)], np.float32)
        return {"image": image, "vector": vector}

    def step(self, action):
        reward = float(int(action) == 2 * self.side + self.sign)
        self.t += 1
        return self._draw(), reward, self.t >= LENGTH, False, {}


class CueImage(gym.Env):
    """A channels-last RGB frame (40, 40, 3) lit on one half (the Nature CNN's size range); action = that half."""

    observation_space = gym.spaces.Box(0, 255, (40, 40, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def _draw(self):
        self.side = int(self.np_random.integers(2))
        frame = np.zeros((40, 40, 3), np.uint8)
        lit = frame[:, 20:] if self.side else frame[:, :20]
        lit[:] = 200
        return frame

    def step(self, action):
        reward = float(int(action) == self.side)
        self.t += 1
        return self._draw(), reward, self.t >= LENGTH, False, {}


class MultiCue(gym.Env):
    """A one-hot cue c of 6 and MultiDiscrete([3, 2], start=[-1, 5]) actions: component 0 should be c % 3 − 1,
    component 1 c // 3 + 5, each worth 0.5. Uneven components and a non-zero start; a wrong shape, dtype or
    value range fails the env's check."""

    observation_space = gym.spaces.Box(0, 1, (6,), np.float32)
    action_space = gym.spaces.MultiDiscrete([3, 2], start=[-1, 5])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def _draw(self):
        self.cue = int(self.np_random.integers(6))
        return np.eye(6, dtype=np.float32)[self.cue]

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"{action!r} is not in {self.action_space}")
        reward = 0.5 * (action[0] == self.cue % 3 - 1) + 0.5 * (action[1] == self.cue // 3 + 5)
        self.t += 1
        return self._draw(), float(reward), self.t >= LENGTH, False, {}


class Bits(gym.Env):
    """MultiBinary(4) observations and MultiBinary(4) actions: the reward is the fraction of bits copied."""

    observation_space = gym.spaces.MultiBinary(4)
    action_space = gym.spaces.MultiBinary(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.bits = self.np_random.integers(2, size=4, dtype=np.int8)
        return self.bits, {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"{action!r} is not in {self.action_space}")
        reward = float(np.mean(action == self.bits))
        self.t += 1
        self.bits = self.np_random.integers(2, size=4, dtype=np.int8)
        return self.bits, reward, self.t >= LENGTH, False, {}


class Masked(gym.Env):
    """Discrete(8) actions of which one or two are allowed at each step, drawn anew every step (the mask is the
    Dict key `action_mask`, PettingZoo's convention). Taking a masked action raises. Reward: the action's
    index / 7, so a learner has something to prefer among the allowed ones."""

    action_space = gym.spaces.Discrete(8)
    observation_space = gym.spaces.Dict(
        {"position": gym.spaces.Box(0, 1, (1,), np.float32), MASK_KEY: gym.spaces.MultiBinary(8)}
    )
    length = 20

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def _mask(self) -> np.ndarray:
        mask = np.zeros(self.action_space.n, np.int8)
        mask[self.np_random.choice(self.action_space.n, size=self.np_random.integers(1, 3), replace=False)] = 1
        return mask

    def _draw(self):
        self.mask = self._mask()
        return {"position": np.array([self.t / self.length], np.float32), MASK_KEY: self.mask}

    def allowed(self, action) -> bool:
        return bool(self.mask[int(action)])

    def step(self, action):
        if not self.allowed(action):
            raise ValueError(f"masked action {action!r} taken (mask {self.mask})")
        self.t += 1
        reward = float(np.sum(action)) / 7
        return self._draw(), reward, self.t >= self.length, False, {}


class MaskedMulti(Masked):
    """MultiDiscrete([3, 4]) actions with a mask of 3 + 4 entries (the per-component masks concatenated, as
    sb3-contrib's MaskablePPO has them): one or two values allowed in each component, anew every step."""

    action_space = gym.spaces.MultiDiscrete([3, 4])
    observation_space = gym.spaces.Dict(
        {"position": gym.spaces.Box(0, 1, (1,), np.float32), MASK_KEY: gym.spaces.MultiBinary(7)}
    )

    def _mask(self) -> np.ndarray:
        parts = []
        for n in self.action_space.nvec:
            part = np.zeros(n, np.int8)
            part[self.np_random.choice(n, size=self.np_random.integers(1, 3), replace=False)] = 1
            parts.append(part)
        return np.concatenate(parts)

    def allowed(self, action) -> bool:
        return bool(self.mask[int(action[0])] and self.mask[3 + int(action[1])])


for _cls in (CueDict, CueImage, MultiCue, Bits, Masked, MaskedMulti):
    if f"DeeprlTest/{_cls.__name__}-v0" not in gym.registry:
        gym.register(f"DeeprlTest/{_cls.__name__}-v0", entry_point=f"{__name__}:{_cls.__name__}")


def _minatar() -> None:
    """MinAtar registers its ids only when asked (minatar.gym.register_envs)."""
    if "MinAtar/Breakout-v1" not in gym.registry:
        pytest.importorskip("minatar.gym").register_envs()


SMALL = dict(n_envs=2, eval_episodes=2, progress="off", hidden=(32,))
BUDGET = {"ppo": dict(n_steps=32, minibatch_size=32, n_epochs=2), "a2c": dict(n_steps=8), "reinforce": dict(n_steps=32)}


# ---------------------------------------------------------------- learning
def test_ppo_learns_a_dict_observation_of_an_image_and_a_vector(tmp_path):
    """Both keys are needed to beat 5 of 10: the image through its CNN, the vector beside it, one MLP over both."""
    result = deeprl.train(
        "ppo",
        "DeeprlTest/CueDict-v0",
        seed=0,
        total_steps=4_000,
        eval_every=4_000,
        n_envs=4,
        n_steps=64,
        minibatch_size=64,
        learning_rate=1e-3,
        eval_episodes=10,
        run_dir=tmp_path / "r",
        progress="off",
    )
    assert result.summary["eval_mean_return"] >= 8.5, result.summary
    algo = deeprl.load(result.run_dir).algo
    assert algo.rollout.obs["image"].dtype == torch.uint8 and algo.rollout.obs["image"].shape[2:] == (7, 7, 1)
    assert algo.rollout.obs["vector"].dtype == torch.float32


def test_ppo_learns_multidiscrete_actions_with_uneven_components_and_a_start(tmp_path):
    result = deeprl.train(
        "ppo",
        "DeeprlTest/MultiCue-v0",
        seed=0,
        total_steps=6_000,
        eval_every=6_000,
        n_envs=4,
        n_steps=64,
        minibatch_size=64,
        learning_rate=1e-3,
        eval_episodes=10,
        run_dir=tmp_path / "r",
        progress="off",
    )
    assert result.summary["eval_mean_return"] >= 8.5, result.summary  # one component alone: < 7.5
    algo = deeprl.load(result.run_dir).algo
    assert algo.rollout.actions.dtype == torch.int64 and algo.rollout.actions.shape[2:] == (2,)
    assert algo.model.env_action(torch.tensor([[0, 0], [2, 1]])).tolist() == [[-1, 5], [1, 6]]  # the start added


# ---------------------------------------------------------------- every space trains with every algorithm
SPACES = {
    "DeeprlTest/CueDict-v0": ("image", torch.uint8),  # Dict: a channels-last uint8 image and a vector
    "DeeprlTest/CueImage-v0": (None, torch.uint8),  # channels-last (40, 40, 3) frames: the Nature CNN
    "DeeprlTest/Bits-v0": (None, torch.int8),  # MultiBinary observations and actions
    "DeeprlTest/MultiCue-v0": (None, torch.float32),  # MultiDiscrete actions
    "FrozenLake-v1": (None, torch.int64),  # Discrete observations, one-hot
}


@pytest.mark.parametrize("algo", ["ppo", "a2c", "reinforce"])
@pytest.mark.parametrize("env_id", list(SPACES))
def test_each_space_trains_and_evaluates(tmp_path, algo, env_id):
    result = deeprl.train(
        algo, env_id, seed=1, total_steps=256, eval_every=256, run_dir=tmp_path / "r", **SMALL, **BUDGET[algo]
    )
    assert np.isfinite(result.summary["eval_mean_return"])
    rows = [r for r in read_metrics(tmp_path / "r") if r["kind"] == "train"]
    assert rows and math.isfinite(float(rows[-1]["policy_loss"]))  # (NaN before the first update)
    agent = deeprl.load(result.run_dir)
    key, dtype = SPACES[env_id]
    stored = agent.algo.rollout.obs if key is None else agent.algo.rollout.obs[key]
    assert stored.dtype == dtype  # images, bits and indices stay compact
    assert deeprl.evaluate(agent)["mean_return"] == result.summary["eval_mean_return"]
    action = agent.act(agent.observation_space.sample())
    assert agent.action_space.contains(action) or agent.action_space.contains(np.asarray(action))


def test_minatar_bool_planes_train_with_the_minatar_network(tmp_path):
    _minatar()
    result = deeprl.train(
        "ppo", "MinAtar/Breakout-v1", total_steps=256, eval_every=256, run_dir=tmp_path / "r", **SMALL
    )
    algo = deeprl.load(result.run_dir).algo
    assert algo.rollout.obs.dtype == torch.bool and algo.rollout.obs.shape[2:] == (10, 10, 4)
    assert type(algo.model.actor_torso.cnn).__name__ == "MinAtarCNN"
    assert np.isfinite(result.summary["eval_mean_return"])


@pytest.mark.slow
def test_car_racing_raw_frames_with_ppo(tmp_path):
    """CarRacing-v3 as Gymnasium makes it: (96, 96, 3) uint8 frames, channels last, Box actions."""
    pytest.importorskip("Box2D")
    result = deeprl.train(
        "ppo",
        "CarRacing-v3",
        total_steps=256,
        eval_every=256,
        n_envs=2,
        n_steps=64,
        minibatch_size=64,
        n_epochs=1,
        shared=True,
        eval_episodes=1,
        max_episode_steps=50,
        wrappers=(),  # not the preset's car_racing preprocessing: the raw frames
        run_dir=tmp_path / "r",
        progress="off",
    )
    algo = deeprl.load(result.run_dir).algo
    assert algo.rollout.obs.dtype == torch.uint8 and algo.rollout.obs.shape[2:] == (96, 96, 3)
    assert type(algo.model.actor_torso.cnn).__name__ == "NatureCNN"
    assert np.isfinite(result.summary["eval_mean_return"])


# ---------------------------------------------------------------- action masks
def _vec(env_id: str, n: int = 8):
    return deeprl.envs.make_vec_env(env_id, n)


@pytest.mark.parametrize("env_id", ["DeeprlTest/Masked-v0", "DeeprlTest/MaskedMulti-v0"])
def test_an_untrained_agent_never_takes_a_masked_action(env_id):
    """Thousands of sampled actions (the env raises on a masked one; the stored actions are checked against
    the stored masks too), and the greedy policy on fresh masks, where an untrained network's favourite is
    usually masked."""
    from deeprl.algos.ppo import PPO
    from deeprl.config import PPOConfig

    env = _vec(env_id)
    algo = PPO(PPOConfig(n_steps=500, hidden=(16,)), env, seed=0)
    algo.rollout.collect(algo.model, 500)
    r = algo.rollout
    mask = r.obs[MASK_KEY].flatten(0, 1)
    actions = r.actions.flatten(0, 1)
    if actions.ndim == 1:
        assert mask.gather(1, actions.unsqueeze(1)).all()
    else:
        assert mask[:, :3].gather(1, actions[:, :1]).all() and mask[:, 3:].gather(1, actions[:, 1:]).all()
    assert torch.isfinite(r.log_probs).all()
    single = env.envs[0].unwrapped
    greedy_masked = 0
    for _ in range(500):
        obs = {"position": np.zeros((1, 1), np.float32), MASK_KEY: single._draw()[MASK_KEY][None]}
        greedy_masked += not single.allowed(algo.policy(obs)[0])
    assert greedy_masked == 0


@pytest.mark.parametrize("algo", ["ppo", "a2c", "reinforce"])
def test_masked_envs_train_with_each_algorithm(tmp_path, algo):
    """The toy env raises on a masked action: training, evaluation and Agent.act all respect the mask."""
    for env_id in ("DeeprlTest/Masked-v0", "DeeprlTest/MaskedMulti-v0"):
        run = tmp_path / env_id.split("/")[1]
        result = deeprl.train(algo, env_id, total_steps=512, eval_every=512, run_dir=run, **SMALL, **BUDGET[algo])
        assert np.isfinite(result.summary["eval_mean_return"])
        rows = [r for r in read_metrics(run) if r["kind"] == "train"]
        assert rows and math.isfinite(float(rows[-1]["entropy"]))  # (NaN before the first update)


def test_masked_log_prob_entropy_and_mode_are_those_of_the_allowed_actions():
    """With a zero policy head π is uniform over the allowed actions: log π(a) = −log k, H = log k (summed
    over components), no NaN, finite gradients; and the greedy action is the best allowed one."""
    obs_space = MaskedMulti.observation_space
    model = ActorCritic(obs_space, MaskedMulti.action_space, (8,))
    torch.nn.init.zeros_(model.policy_head.weight)
    torch.nn.init.zeros_(model.policy_head.bias)
    mask = torch.tensor([[1, 0, 0, 0, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    obs = {"position": torch.zeros(2, 1), MASK_KEY: mask}
    actions = torch.tensor([[0, 2], [2, 3]])
    log_prob, entropy, _ = model.evaluate(obs, actions)
    expected = torch.tensor([math.log(1) + math.log(2), math.log(2) + math.log(4)])
    torch.testing.assert_close(log_prob, -expected)
    torch.testing.assert_close(entropy, expected)
    (log_prob.sum() + entropy.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # the greedy action: the best allowed value of each component, though a masked one scores higher
    with torch.no_grad():
        model.policy_head.bias.copy_(torch.tensor([7.0, 1.0, 5.0, 9.0, 2.0, 3.0, 1.0]))
    assert model.mode(obs).tolist() == [[0, 2], [2, 0]]


def test_a_mask_needs_discrete_actions_of_its_size():
    box_masked = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,)), MASK_KEY: gym.spaces.MultiBinary(3)})
    assert "needs discrete actions" in policy_gradient_support(box_masked, gym.spaces.Box(-1, 1, (3,)))
    assert "(4,)" in policy_gradient_support(box_masked, gym.spaces.Discrete(4))
    assert policy_gradient_support(box_masked, gym.spaces.Discrete(3)) is None
    assert policy_gradient_support(box_masked, gym.spaces.MultiDiscrete([1, 2])) is None  # 1 + 2 entries
    with pytest.raises(ValueError, match="needs discrete actions"):
        ActorCritic(box_masked, gym.spaces.Box(-1, 1, (3,)))


# ---------------------------------------------------------------- support, normalisation, resume
def test_support_accepts_the_common_spaces_and_refuses_the_rest():
    box, image = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(0, 255, (96, 96, 3), np.uint8)
    for obs in (box, image, gym.spaces.Discrete(5), gym.spaces.MultiDiscrete([2, 3]), gym.spaces.MultiBinary(4)):
        for act in (gym.spaces.Discrete(2), gym.spaces.MultiDiscrete([2, 3]), gym.spaces.MultiBinary(3), box):
            assert policy_gradient_support(obs, act) is None
            assert policy_gradient_support(gym.spaces.Dict({"a": obs, "b": box}), act) is None
    tuple_obs = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))
    assert "Tuple" in policy_gradient_support(tuple_obs, gym.spaces.Discrete(2))
    assert "'t'" in policy_gradient_support(gym.spaces.Dict({"t": tuple_obs}), gym.spaces.Discrete(2))
    assert "actions must be" in policy_gradient_support(box, gym.spaces.Tuple((gym.spaces.Discrete(2),)))
    assert "MultiDiscrete" in ALGOS["ppo"].action_spaces and "Dict" in ALGOS["ppo"].observation_spaces
    # a space no policy-gradient method takes is refused naming the algorithms that do take it
    with pytest.raises(UsageError, match="a3c cannot train.*sarsa"):
        deeprl.train("a3c", "Blackjack-v1", total_steps=10, progress="off")


def test_normalize_obs_with_a_dict_normalises_the_vector_key_and_evaluation_uses_its_statistics(tmp_path):
    result = deeprl.train(
        "ppo", "DeeprlTest/CueDict-v0", total_steps=256, eval_every=256, normalize_obs=True, run_dir=tmp_path / "r",
        **SMALL, **BUDGET["ppo"],
    )  # fmt: skip
    algo = deeprl.load(result.run_dir).algo
    assert isinstance(algo.obs_normalizer, DictObsNormalizer) and list(algo.obs_normalizer.normalizers) == ["vector"]
    assert algo.obs_normalizer.normalizers["vector"].count > 256  # the training statistics came back with the agent
    assert deeprl.evaluate(result.run_dir)["mean_return"] == result.summary["eval_mean_return"]
    # the image is stored as bytes, unnormalised; the vector normalised (its first entry is ±1 with mean ~0)
    assert algo.rollout.obs["image"].dtype == torch.uint8


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_resume_of_a_dict_observation_run_is_exact(tmp_path, algo):
    """1000 steps at once, or 550 (mid-batch) then resumed: the same metrics and weights (the partial batch's
    Dict observations and the per-key normaliser statistics are in the resume state)."""
    opts = dict(seed=3, eval_every=250, eval_episodes=2, progress="off", n_envs=2, n_steps=40, normalize_obs=True)
    env_id = "DeeprlTest/CueDict-v0"
    deeprl.train(algo, env_id, total_steps=1000, run_dir=tmp_path / "whole", **opts)
    deeprl.train(algo, env_id, total_steps=550, run_dir=tmp_path / "part", **opts)
    deeprl.resume(tmp_path / "part", total_steps=1000)
    assert read_metrics(tmp_path / "part") == read_metrics(tmp_path / "whole")
    assert read_summary(tmp_path / "part") == read_summary(tmp_path / "whole")
    a, b = deeprl.load(tmp_path / "part").algo.model, deeprl.load(tmp_path / "whole").algo.model
    for x, y in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_rollout_state_round_trips_dict_observations():
    env = _vec("DeeprlTest/CueDict-v0", 2)
    model = ActorCritic(env.single_observation_space, env.single_action_space, (8,))
    rollout = Rollout(env, 6)
    rollout.collect(model, 4)
    state = rollout.state_dict()
    assert state["obs"]["image"].shape == (4, 2, 7, 7, 1) and state["obs"]["image"].dtype == torch.uint8
    other = Rollout(_vec("DeeprlTest/CueDict-v0", 2), 6)
    other.load_state_dict(state)
    assert other.t == 4
    for key in ("image", "vector"):
        assert torch.equal(other.obs[key], rollout.obs[key])
        np.testing.assert_array_equal(other.next_obs[key], rollout.next_obs[key])


def test_take_and_map_obs_index_tensors_and_dicts_alike():
    x = torch.arange(12).view(6, 2)
    d = {"a": x, "b": x + 100}
    index = torch.tensor([4, 1])
    assert torch.equal(take(x, index), x[index])
    assert torch.equal(take(d, index)["b"], x[index] + 100)
    assert map_obs(lambda t: t.sum(), d) == {"a": x.sum(), "b": (x + 100).sum()}
    assert to_tensor({"a": np.zeros(2, np.uint8)})["a"].dtype == torch.uint8
