"""deeprl.envs: env ids and errors, seeding, vector envs, observation indexing, env state."""

from __future__ import annotations

import itertools
import pickle
import random
import sys
import textwrap
import threading

import gymnasium as gym
import numpy as np
import pytest
import torch

from deeprl.envs import ObservationIndex, autoreset_mode, env_spec, env_state, make_env, make_vec_env, seed_everything
from deeprl.errors import UsageError

# --- Ids and errors ----------------------------------------------------------------------------


def test_env_spec_known_id():
    assert env_spec("CartPole-v1").id == "CartPole-v1"


def test_unknown_env_id_suggests_close_match():
    with pytest.raises(UsageError) as excinfo:
        env_spec("CartPol-v1")
    message = str(excinfo.value)
    assert "'CartPol-v1'" in message
    assert "CartPole-v1" in message.replace("'CartPol-v1'", "")


def test_make_env_unknown_id_raises_usage_error():
    with pytest.raises(UsageError, match="CartPole-v1"):
        make_env("CartPol-v1")


USER_MODULE = textwrap.dedent(
    '''
    import gymnasium as gym


    class TinyEnv(gym.Env):
        """Observation 0 after reset; one step to observation 1 and the end."""

        observation_space = gym.spaces.Discrete(2)
        action_space = gym.spaces.Discrete(2)

        def __init__(self, render_mode=None):
            self.render_mode = render_mode

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return 0, {}

        def step(self, action):
            return 1, 1.0, True, False, {}


    gym.register(id="ENV_ID", entry_point="MODULE:TinyEnv")
    '''
)


def test_module_colon_env_id_imports_user_module(tmp_path, monkeypatch):
    module, env_id = "deeprl_test_user_envs", "MyTestEnv-v0"
    (tmp_path / f"{module}.py").write_text(USER_MODULE.replace("ENV_ID", env_id).replace("MODULE", module))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert env_id not in gym.registry
    try:
        env = make_env(f"{module}:{env_id}", seed=0)
        assert env.spec.id == env_id
        obs, _ = env.reset()
        assert obs == 0
        obs, reward, terminated, truncated, _ = env.step(0)
        assert (obs, reward, terminated, truncated) == (1, 1.0, True, False)
        env.close()
    finally:
        gym.registry.pop(env_id, None)
        sys.modules.pop(module, None)


def test_module_colon_env_id_with_missing_module():
    with pytest.raises(UsageError, match="Could not import") as excinfo:
        env_spec("deeprl_no_such_module_xyz:Foo-v0")
    assert "deeprl_no_such_module_xyz" in str(excinfo.value)


# --- Seeding -----------------------------------------------------------------------------------


def _rollout(env: gym.Env, n_steps: int) -> list:
    """Actions sampled from the env's action space and what the env returned, resetting on ends."""
    trace = [env.reset()[0]]
    for _ in range(n_steps):
        action = int(env.action_space.sample())
        obs, reward, terminated, truncated, _ = env.step(action)
        trace.append((action, int(obs), float(reward), terminated, truncated))
        if terminated or truncated:
            trace.append(env.reset()[0])
    return trace


def test_make_env_seed_repeats_slippery_frozen_lake():
    runs = []
    for seed in (7, 7, 8):
        env = make_env("FrozenLake-v1", seed=seed, is_slippery=True)
        runs.append(_rollout(env, 60))
        env.close()
    assert runs[0] == runs[1]
    # and the seed matters: another seed gives another trajectory
    assert runs[0] != runs[2]


def test_make_env_seed_repeats_cartpole_observations():
    observations = []
    for seed in (3, 3, 4):
        env = make_env("CartPole-v1", seed=seed)
        observations.append(env.reset()[0])
        env.close()
    np.testing.assert_array_equal(observations[0], observations[1])
    assert not np.array_equal(observations[0], observations[2])


# --- Vector envs -------------------------------------------------------------------------------


def test_make_vec_env_sync_frozen_lake():
    venv = make_vec_env("FrozenLake-v1", 3, vectorization="sync")
    try:
        assert isinstance(venv.unwrapped, gym.vector.SyncVectorEnv)
        assert venv.num_envs == 3
        obs, _ = venv.reset(seed=0)
        np.testing.assert_array_equal(obs, [0, 0, 0])
        obs, rewards, terminated, truncated, _ = venv.step(venv.action_space.sample())
        assert obs.shape == rewards.shape == terminated.shape == truncated.shape == (3,)
        assert autoreset_mode(venv) == gym.vector.AutoresetMode.NEXT_STEP
    finally:
        venv.close()


def test_make_vec_env_auto_uses_numpy_vector_cartpole():
    venv = make_vec_env("CartPole-v1", 3)
    try:
        name = type(venv.unwrapped).__name__
        assert "VectorEnv" in name
        assert not isinstance(venv.unwrapped, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv))
        obs, _ = venv.reset(seed=0)
        assert obs.shape == (3, 4)
        obs, *_ = venv.step(venv.action_space.sample())
        assert obs.shape == (3, 4)
        assert autoreset_mode(venv) == gym.vector.AutoresetMode.NEXT_STEP
    finally:
        venv.close()


def test_make_vec_env_sync_when_asked_for_cartpole():
    venv = make_vec_env("CartPole-v1", 2, vectorization="sync")
    try:
        assert isinstance(venv.unwrapped, gym.vector.SyncVectorEnv)
    finally:
        venv.close()


def test_make_vec_env_record_stats_wrapper_is_opt_in():
    venv = make_vec_env("FrozenLake-v1", 2, vectorization="sync")
    try:
        assert venv is venv.unwrapped  # off by default: the algorithms count returns themselves
    finally:
        venv.close()
    venv = make_vec_env("CartPole-v1", 2, record_stats=True)
    try:
        assert isinstance(venv, gym.wrappers.vector.RecordEpisodeStatistics)
        venv.reset(seed=0)
        for _ in range(600):
            *_, info = venv.step(np.zeros(2, np.int64))
            if "episode" in info:
                break
        assert info["episode"]["r"].max() > 0
    finally:
        venv.close()


def test_autoreset_mode_reads_the_env():
    # A vector env built in another mode reports it; autoreset_mode must not assume NEXT_STEP.
    venv = gym.vector.SyncVectorEnv(
        [lambda: gym.make("FrozenLake-v1")], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    try:
        assert autoreset_mode(venv) == gym.vector.AutoresetMode.SAME_STEP
    finally:
        venv.close()


def test_make_vec_env_async():
    venv = make_vec_env("FrozenLake-v1", 2, vectorization="async")
    try:
        assert isinstance(venv.unwrapped, gym.vector.AsyncVectorEnv)
        obs, _ = venv.reset(seed=0)
        np.testing.assert_array_equal(obs, [0, 0])
        obs, rewards, *_ = venv.step(np.array([1, 2]))
        assert obs.shape == rewards.shape == (2,)
    finally:
        venv.close()


# --- ObservationIndex --------------------------------------------------------------------------


def test_observation_index_discrete():
    index = ObservationIndex(gym.spaces.Discrete(5))
    assert index.n == 5
    assert index(3) == 3
    assert index(np.int64(0)) == 0


def test_observation_index_discrete_with_start():
    index = ObservationIndex(gym.spaces.Discrete(5, start=2))
    assert index.n == 5
    # values 2..6 -> rows 0..4
    assert index(2) == 0
    assert index(6) == 4
    np.testing.assert_array_equal(index.batch(np.array([2, 4, 6])), [0, 2, 4])


def test_observation_index_blackjack_tuple():
    space = gym.spaces.Tuple((gym.spaces.Discrete(32), gym.spaces.Discrete(11), gym.spaces.Discrete(2)))
    index = ObservationIndex(space)
    # 32 * 11 * 2 = 704
    assert index.n == 704
    # (a, b, c) -> (a * 11 + b) * 2 + c: (20, 10, 1) -> (220 + 10) * 2 + 1 = 461
    assert index((20, 10, 1)) == 461
    assert index((0, 0, 0)) == 0
    # (31, 10, 1) -> (341 + 10) * 2 + 1 = 703
    assert index((31, 10, 1)) == 703
    rows = {index((a, b, c)) for a, b, c in itertools.product(range(32), range(11), range(2))}
    assert rows == set(range(704))


def test_observation_index_tuple_with_starts():
    space = gym.spaces.Tuple((gym.spaces.Discrete(3, start=1), gym.spaces.Discrete(2, start=-1)))
    index = ObservationIndex(space)
    assert index.n == 6
    # (3, 0) -> (3 - 1) * 2 + (0 - (-1)) = 4 + 1 = 5
    assert index((3, 0)) == 5
    assert index((1, -1)) == 0
    # batch: (1, 0) -> 0 * 2 + 1 = 1; (2, -1) -> 1 * 2 + 0 = 2; (3, 0) -> 5
    np.testing.assert_array_equal(index.batch((np.array([1, 2, 3]), np.array([0, -1, 0]))), [1, 2, 5])


def test_observation_index_batch_agrees_with_scalar():
    space = gym.spaces.Tuple((gym.spaces.Discrete(32), gym.spaces.Discrete(11), gym.spaces.Discrete(2)))
    index = ObservationIndex(space)
    rng = np.random.default_rng(0)
    a, b, c = rng.integers(0, 32, 50), rng.integers(0, 11, 50), rng.integers(0, 2, 50)
    batched = index.batch((a, b, c))
    assert batched.shape == (50,)
    np.testing.assert_array_equal(batched, [index((x, y, z)) for x, y, z in zip(a, b, c)])


def test_observation_index_of_real_blackjack_env():
    env = gym.make("Blackjack-v1")
    index = ObservationIndex(env.observation_space)
    assert index.n == 704
    obs, _ = env.reset(seed=0)
    assert 0 <= index(obs) < 704
    env.close()


# --- Env state ---------------------------------------------------------------------------------


def test_env_state_round_trip_continues_identically():
    env = make_env("FrozenLake-v1", seed=11, is_slippery=True)
    env.reset()
    for action in (1, 2, 2):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    state = env_state(env)
    assert isinstance(state, bytes)
    copy = pickle.loads(state)
    assert copy is not env
    for action in [1, 2, 2, 1, 0, 3, 2, 1, 1, 2, 3, 0] * 3:
        original_step = env.step(action)
        copy_step = copy.step(action)
        assert original_step[:4] == copy_step[:4]
        if original_step[2] or original_step[3]:
            assert env.reset()[0] == copy.reset()[0]
    env.close()
    copy.close()


class _HoldsLambda:
    def __init__(self):
        self.fn = lambda x: x


class _HoldsLock:
    def __init__(self):
        self.lock = threading.Lock()


@pytest.mark.parametrize("unpicklable", [_HoldsLambda, _HoldsLock])
def test_env_state_of_unpicklable_object_is_none(unpicklable):
    assert env_state(unpicklable()) is None


# --- Global seeding ----------------------------------------------------------------------------


def _draw() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_everything_repeats_all_generators():
    seed_everything(3)
    first = _draw()
    seed_everything(3)
    second = _draw()
    assert first == second
    seed_everything(4)
    other = _draw()
    # each generator moved with the seed, not just one of them
    assert all(x != y for x, y in zip(first, other))


def test_missing_extra_names_the_pip_command(monkeypatch):
    """An env whose package is missing (box2d, mujoco...) fails with the install line, not a traceback."""
    import gymnasium as gym

    from deeprl.envs import make_env

    def missing(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("Box2D is not installed")

    monkeypatch.setattr(gym, "make", missing)
    with pytest.raises(UsageError, match=r"pip install 'gymnasium\[box2d\]'"):
        make_env("CartPole-v1")
