"""deeprl.export / `deeprl export`: the exported file computes exactly what `deeprl.load(RUN).act_batch` does
(normalisation, images, masks and the map onto the env's actions inside the graph), on observations sampled
from the observation space. Tiny runs: the policies need not be good, only the same."""

import shutil
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import deeprl
from deeprl.errors import UsageError
from deeprl.exporter import export, sample_observations
from deeprl.rundir import BEST_POLICY, POLICY
from deeprl.spaces import MASK_KEY

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")  # TorchScript is deprecated

QUICK = dict(progress="off", torch_threads=1, eval_episodes=1)
PPO = dict(n_steps=64, minibatch_size=64, n_epochs=1, hidden=(32, 32))
DQN = dict(learning_starts=64, batch_size=32, buffer_size=1_000, hidden=(32,), target_update_interval=64)
OFF = dict(learning_starts=64, batch_size=32, buffer_size=1_000, hidden=(32, 32))


class Frames(gym.Env):
    """uint8 frames (4, 40, 40), channels first: the Nature CNN, which scales the bytes itself."""

    observation_space = gym.spaces.Box(0, 255, (4, 40, 40), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def _obs(self):
        return self.np_random.integers(0, 256, (4, 40, 40), dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):  # a reward no constant action earns more of: the tiny policies stay obs-dependent
        self.t += 1
        return self._obs(), float(action == self.np_random.integers(self.action_space.n)), self.t >= 8, False, {}


class Planes(Frames):
    """MinAtar-like bool object planes (10, 10, 4), channels last: the MinAtar CNN, after a permute."""

    observation_space = gym.spaces.Box(0, 1, (10, 10, 4), np.bool_)
    action_space = gym.spaces.Discrete(4)

    def _obs(self):
        return self.np_random.random((10, 10, 4)) < 0.2


class Mixed(Frames):
    """A Dict of a channels-last uint8 image, a vector (normalised with --normalize-obs) and an action mask."""

    observation_space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (8, 8, 2), np.uint8),
            "vector": gym.spaces.Box(-5.0, 5.0, (3,), np.float32),
            MASK_KEY: gym.spaces.MultiBinary(5),
        }
    )
    action_space = gym.spaces.Discrete(5)

    def _obs(self):
        mask = (self.np_random.random(5) < 0.5).astype(np.int8)
        mask[self.np_random.integers(5)] = 1
        return {
            "image": self.np_random.integers(0, 256, (8, 8, 2), dtype=np.uint8),
            "vector": self.np_random.normal(1.0, 2.0, 3).astype(np.float32),
            MASK_KEY: mask,
        }


for _cls in (Frames, Planes, Mixed):
    if f"DeeprlExport/{_cls.__name__}-v0" not in gym.registry:
        gym.register(f"DeeprlExport/{_cls.__name__}-v0", entry_point=f"{__name__}:{_cls.__name__}")


def onnx_actions(path, obs):
    """Actions of an exported ONNX file for a batch of observations: a dict of arrays feeds one input per key."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = dict(obs) if isinstance(obs, dict) else {"obs": obs}
    assert [i.name for i in session.get_inputs()] == list(feeds)
    return session.run(None, feeds)[0]


def torchscript_actions(path, obs):
    model = torch.jit.load(str(path))
    inputs = obs.values() if isinstance(obs, dict) else [obs]
    return model(*[torch.from_numpy(np.asarray(x)) for x in inputs]).numpy()


def assert_same_actions(path, agent, obs, fmt="onnx", atol=0.0):
    actions = (onnx_actions if fmt == "onnx" else torchscript_actions)(path, obs)
    expected = agent.act_batch(obs)
    assert actions.dtype == expected.dtype and actions.shape == expected.shape
    if atol:
        np.testing.assert_allclose(actions, expected, rtol=0, atol=atol)
    else:
        np.testing.assert_array_equal(actions, expected)
    return actions


def train(tmp_path_factory, algo, env_id, **options):
    run_dir = tmp_path_factory.mktemp(algo) / "run"
    deeprl.train(algo, env_id, run_dir=run_dir, **{**QUICK, **options})
    return run_dir


@pytest.fixture(scope="module")
def ppo_cartpole(tmp_path_factory):
    # batches of 8 x 32 envs: the observation statistics take in each finished batch (deeprl.rollout)
    ppo = {**PPO, "n_steps": 8}
    return train(tmp_path_factory, "ppo", "CartPole-v1", total_steps=512, eval_every=256, normalize_obs=True, **ppo)


@pytest.fixture(scope="module")
def sac_pendulum(tmp_path_factory):
    return train(tmp_path_factory, "sac", "Pendulum-v1", total_steps=160, **OFF)


def cartpole_obs(n=400):
    """Observations around and far beyond what the tiny run saw: the normalisation's clip at ±10 matters."""
    return (np.random.default_rng(0).normal(size=(n, 4)) * np.array([1.0, 2.0, 0.2, 50.0])).astype(np.float32)


# ---------------------------------------------------------------- ONNX equals act_batch, policy kind by kind
def test_ppo_discrete_with_normalized_observations(ppo_cartpole, tmp_path):
    agent = deeprl.load(ppo_cartpole)
    assert agent.algo.obs_normalizer is not None and agent.algo.obs_normalizer.count > 1
    exported = export(ppo_cartpole, tmp_path / "p.onnx")
    assert [str(s) for s in exported.inputs] == ["obs float32 (batch, 4)"] and str(
        exported.output
    ) == "action int64 (batch)"
    assert exported.checked == exported.agreed == 256 and exported.max_abs_diff == 0
    actions = assert_same_actions(tmp_path / "p.onnx", agent, cartpole_obs())
    assert set(np.unique(actions)) == {0, 1}  # not a constant policy: the comparison can fail


def test_dqn_discrete(tmp_path_factory, tmp_path):
    run_dir = train(tmp_path_factory, "dqn", "CartPole-v1", total_steps=256, **DQN)
    export(run_dir, tmp_path / "q.onnx")
    assert_same_actions(tmp_path / "q.onnx", deeprl.load(run_dir), cartpole_obs())


def test_sac_squashed_actions_scaled_to_the_bounds(sac_pendulum, tmp_path):
    export(sac_pendulum, tmp_path / "sac.onnx")
    agent = deeprl.load(sac_pendulum)
    obs = sample_observations(agent.observation_space, 400)
    actions = assert_same_actions(tmp_path / "sac.onnx", agent, obs, atol=1e-5)
    assert actions.shape == (400, 1) and np.abs(actions).max() <= 2.0


def test_td3_deterministic_actor(tmp_path_factory, tmp_path):
    run_dir = train(tmp_path_factory, "td3", "Pendulum-v1", total_steps=160, **OFF)
    agent = deeprl.load(run_dir)
    # weights blown up so that μ(s) saturates: the tanh and the scaling to [-2, 2] are both exercised
    with torch.no_grad():
        agent.algo.actor.net[-1].weight.mul_(30.0)
    export(agent, tmp_path / "td3.onnx")
    actions = assert_same_actions(
        tmp_path / "td3.onnx", agent, sample_observations(agent.observation_space, 400), atol=1e-5
    )
    assert np.abs(actions).max() > 1.99 and np.abs(actions).max() <= 2.0


@pytest.mark.parametrize("bound", ["clip", "tanh"])
def test_ppo_box_actions_bounded_inside_the_graph(tmp_path_factory, tmp_path, bound):
    run_dir = train(tmp_path_factory, "ppo", "Pendulum-v1", total_steps=128, bound=bound, normalize_obs=True, **PPO)
    agent = deeprl.load(run_dir)
    with torch.no_grad():  # means far outside [-2, 2] for many observations: the clip (or squash) decides
        agent.algo.model.policy_head.weight.mul_(2_000.0)
    export(agent, tmp_path / "ppo.onnx")
    obs = sample_observations(agent.observation_space, 400)
    actions = assert_same_actions(tmp_path / "ppo.onnx", agent, obs, atol=1e-5)
    if bound == "clip":
        assert (np.abs(actions) == 2.0).mean() > 0.2 and (np.abs(actions) < 2.0).any()
        assert np.abs(actions).max() <= 2.0
    else:  # low + (tanh(u) + 1)(high − low)/2 rounds to 2.0000002 at tanh(u) = 1 − 2⁻²⁴, in deeprl as in the graph
        assert np.abs(actions).max() <= 2.0 + 1e-6 and (np.abs(actions) > 1.999).mean() > 0.2


def test_image_policies_nature_cnn_and_bool_planes_channels_last(tmp_path_factory, tmp_path):
    frames = train(tmp_path_factory, "dqn", "DeeprlExport/Frames-v0", total_steps=128, **DQN)
    planes = train(tmp_path_factory, "ppo", "DeeprlExport/Planes-v0", total_steps=128, **PPO)
    for run_dir, dtype in ((frames, "uint8"), (planes, "bool")):
        exported = export(run_dir, tmp_path / "image.onnx")
        assert exported.inputs[0].dtype == dtype and exported.agreed == exported.checked
        agent = deeprl.load(run_dir)
        obs = sample_observations(agent.observation_space, 200)
        actions = assert_same_actions(tmp_path / "image.onnx", agent, obs)
        assert len(np.unique(actions)) > 1


def masked_check(path, agent, n=400):
    obs = sample_observations(agent.observation_space, n)
    actions = assert_same_actions(path, agent, obs)
    mask = obs[MASK_KEY].astype(bool)
    some = mask.any(axis=1)  # a row that allows nothing has no legal action (act_batch gives 0)
    assert some.mean() > 0.9 and mask[np.arange(n), actions][some].all()
    return actions


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_taxi_action_mask_inside_the_graph(tmp_path_factory, tmp_path, algo):
    run_dir = train(tmp_path_factory, algo, "Taxi-v4", total_steps=256, **(PPO if algo == "ppo" else DQN))
    exported = export(run_dir, tmp_path / "taxi.onnx")
    assert [str(s) for s in exported.inputs] == ["action_mask int8 (batch, 6)", "obs int64 (batch)"]
    agent = deeprl.load(run_dir)
    masked_check(tmp_path / "taxi.onnx", agent)
    # the env's own observations, mask from info["action_mask"], as a deployment would feed them
    env = gym.make("Taxi-v4")
    obs, info = env.reset(seed=0)
    batch = {MASK_KEY: info[MASK_KEY][None].astype(np.int8), "obs": np.array([obs])}
    assert onnx_actions(tmp_path / "taxi.onnx", batch)[0] == agent.act(obs, info[MASK_KEY])


def test_dict_with_image_normalised_vector_and_mask(tmp_path_factory, tmp_path):
    run_dir = train(tmp_path_factory, "ppo", "DeeprlExport/Mixed-v0", total_steps=256, normalize_obs=True, **PPO)
    agent = deeprl.load(run_dir)
    assert set(agent.algo.obs_normalizer.normalizers) == {"vector"}
    exported = export(run_dir, tmp_path / "mixed.onnx")
    assert [s.name for s in exported.inputs] == ["action_mask", "image", "vector"]
    actions = masked_check(tmp_path / "mixed.onnx", agent)
    assert len(np.unique(actions)) > 1


def test_tabular_q_table(tmp_path_factory, tmp_path):
    run_dir = train(tmp_path_factory, "q-learning", "CliffWalking-v1", total_steps=2_000)
    agent = deeprl.load(run_dir)
    export(run_dir, tmp_path / "table.onnx")
    states = np.arange(48)  # every state, the unvisited ones tied at q_init: ties go to the first action
    actions = assert_same_actions(tmp_path / "table.onnx", agent, states)
    assert len(np.unique(actions)) > 1
    blackjack = train(tmp_path_factory, "q-learning", "Blackjack-v1", total_steps=2_000)
    agent = deeprl.load(blackjack)
    export(blackjack, tmp_path / "blackjack.onnx")
    obs = sample_observations(agent.observation_space, 300)
    session = ort.InferenceSession(str(tmp_path / "blackjack.onnx"), providers=["CPUExecutionProvider"])
    feeds = {f"obs_{i}": np.asarray(x) for i, x in enumerate(obs)}
    np.testing.assert_array_equal(session.run(None, feeds)[0], agent.act_batch(obs))


# ---------------------------------------------------------------- TorchScript, --best, the command
def test_torchscript_discrete_and_continuous(ppo_cartpole, sac_pendulum, tmp_path):
    exported = export(ppo_cartpole, tmp_path / "p.pt", format="torchscript")
    assert exported.agreed == exported.checked == 256
    assert_same_actions(tmp_path / "p.pt", deeprl.load(ppo_cartpole), cartpole_obs(), fmt="torchscript")
    export(sac_pendulum, tmp_path / "sac.pt", format="torchscript")
    agent = deeprl.load(sac_pendulum)
    obs = sample_observations(agent.observation_space, 400)
    assert_same_actions(tmp_path / "sac.pt", agent, obs, fmt="torchscript", atol=1e-6)


def test_best_exports_the_best_policy(tmp_path_factory, tmp_path):
    run_dir = train(tmp_path_factory, "ppo", "Pendulum-v1", total_steps=512, eval_every=128, seed=3, **PPO)
    export(run_dir, tmp_path / "best.onnx", best=True)
    export(run_dir, tmp_path / "final.onnx")
    obs = sample_observations(gym.make("Pendulum-v1").observation_space, 200)
    best = assert_same_actions(tmp_path / "best.onnx", deeprl.load(run_dir, best=True), obs, atol=1e-5)
    final = assert_same_actions(tmp_path / "final.onnx", deeprl.load(run_dir), obs, atol=1e-5)
    summary = deeprl.load(run_dir, best=True).info
    assert summary["env_steps"] < 512  # an earlier evaluation was the best: the two policies differ
    assert not np.allclose(best, final)


def test_cli_export_end_to_end_and_its_errors(ppo_cartpole, tmp_path, capsys):
    from deeprl.cli import main

    out = tmp_path / "cartpole.onnx"
    assert main(["export", str(ppo_cartpole), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "obs float32 (batch, 4)" in printed and "256 of 256" in printed
    assert_same_actions(out, deeprl.load(ppo_cartpole), cartpole_obs())
    out.write_bytes(b"an older file")  # replaced whole
    assert main(["export", str(ppo_cartpole), "--best", "--out", str(out)]) == 0
    assert_same_actions(out, deeprl.load(ppo_cartpole, best=True), cartpole_obs())
    capsys.readouterr()

    def error(*argv):
        assert main(["export", *map(str, argv)]) == 2
        return capsys.readouterr().err

    assert "Unknown export format 'tflite'" in error(ppo_cartpole, "--format", "tflite", "--out", out)
    assert "does not exist" in error(ppo_cartpole, "--out", tmp_path / "nowhere" / "p.onnx")
    assert "is a directory" in error(ppo_cartpole, "--out", tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(ppo_cartpole, broken)
    (broken / BEST_POLICY).unlink()  # a run killed before its first evaluation
    assert "no evaluation of its run has finished yet" in error(broken, "--best", "--out", out)
    (broken / POLICY).unlink()
    assert "stopped before saving a policy" in error(broken, "--out", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "cartpole.onnx"]  # no temp file left behind


def test_python_errors(ppo_cartpole, tmp_path, monkeypatch):
    assert callable(deeprl.export)  # the function, though the module deeprl.exporter is imported
    with pytest.raises(UsageError, match="pass the run directory"):
        export(deeprl.load(ppo_cartpole), tmp_path / "p.onnx", best=True)
    with pytest.raises(UsageError, match="onnx, torchscript"):
        deeprl.export(ppo_cartpole, tmp_path / "p.onnx", format="ONNX!")
    monkeypatch.setitem(sys.modules, "onnx", None)  # not installed
    with pytest.raises(UsageError, match="needs the onnx package"):
        deeprl.export(ppo_cartpole, tmp_path / "p.onnx")
    assert deeprl.export(ppo_cartpole, tmp_path / "p.pt", format="torchscript").agreed == 256  # only torch needed
