"""The env factory as users meet it (deeprl.envs.EnvMaker): Atari evaluation plays whole games and every ALE
id gets the same preprocessing, A3C's workers make the training env, MinAtar ids, --env-kwargs, a user's
module from the working directory, env functions given to deeprl.train, --wrapper, deeprl.wrappers and
action masks from info."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import deeprl
from deeprl.agent import Agent
from deeprl.config import RunOptions
from deeprl.driver import build_config
from deeprl.envs import EnvMaker, env_maker, env_spec, fit_mask_to_algorithm, make_env, maker_of
from deeprl.errors import UsageError
from deeprl.evaluation import EVAL_STEP_CAP, Evaluator
from deeprl.registry import tabular_support
from deeprl.spaces import MASK_KEY
from deeprl.wrappers import OBS_KEY, InfoActionMask

DEEPRL = Path(sys.executable).parent / "deeprl"


def deeprl_cmd(*args: object, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """The console script as a user runs it: no PYTHONPATH unless given."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(COLUMNS="200", NO_COLOR="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(DEEPRL), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def ok(out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert out.returncode == 0, f"exit {out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    return out


@pytest.fixture(autouse=True)
def fresh_trust(monkeypatch):
    """Each test starts trusting no module and no callable (trust lasts for the process, as imports do)."""
    import deeprl.envs
    import deeprl.trust

    monkeypatch.setattr(deeprl.envs, "_TRUSTED_MODULES", set())
    monkeypatch.setattr(deeprl.trust, "TRUSTED_NAMES", set())


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write `name.py` into tmp_path (on sys.path) and import it; forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return __import__(name)

    yield write
    for name in written:
        sys.modules.pop(name, None)
    for key in [k for k in gym.registry if any(k.startswith(f"{n}:") for n in written)]:
        gym.registry.pop(key)


# ---------------------------------------------------------------- 1-3. Atari
needs_ale = pytest.mark.skipif(importlib.util.find_spec("ale_py") is None, reason="needs ale-py (deeprl[atari])")


@pytest.fixture
def one_torch_thread():
    """A CNN's forward pass on one thread: on a busy 2-core machine, two threads made it 15x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@needs_ale
def test_atari_evaluation_plays_whole_games_and_max_episode_steps_counts_agent_steps(one_torch_thread):
    """An untrained agent's evaluation on Pong is a whole game (21 points to the opponent, ~760 agent steps),
    not 1,000 emulator frames (244 agent steps, about -6); --max-episode-steps 400 cuts at 400 agent steps."""
    spec, config, _ = build_config("ppo", "ALE/Pong-v5", n_envs=1, n_steps=16, minibatch_size=16)
    maker = EnvMaker("ALE/Pong-v5")
    assert maker.has_time_limit  # the ALE's own 108,000-frame limit: the evaluator adds no cap
    algo = spec.load()(config, maker.make_vec(1), seed=0, device="cpu")  # random init, never trained
    for limit in (None, 400):
        steps = 0

        def policy(obs):
            nonlocal steps
            steps += 1
            return algo.policy(obs)

        evaluator = Evaluator(maker, episodes=1, seed=0, max_episode_steps=limit)
        try:
            assert evaluator.maker.max_episode_steps == limit  # no EVAL_STEP_CAP on an ALE env
            (episode_return,) = evaluator(policy)
        finally:
            evaluator.close()
        if limit is None:
            assert steps > 244 and episode_return <= -15, (steps, episode_return)
        else:
            assert steps == 400, steps


@needs_ale
@pytest.mark.parametrize(
    ("env_id", "sticky"), [("PongNoFrameskip-v4", 0.0), ("Breakout-v4", 0.0), ("ALE/Breakout-v5", 0.25)]
)
def test_every_ale_id_gets_the_same_atari_preprocessing(env_id, sticky):
    from deeprl.atari import FireReset
    from deeprl.envs import is_atari

    assert is_atari(env_id) and not is_atari("CartPole-v1") and not is_atari("NoSuchGame-v9")
    env = make_env(env_id, seed=0)
    try:
        assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
        assert env.reset(seed=0)[0].shape == (4, 84, 84)
        assert env.unwrapped._frameskip == 1  # AtariPreprocessing skips 4 itself
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(sticky)  # the spec's
        chain = []
        e = env
        while isinstance(e, gym.Wrapper):
            chain.append(type(e))
            e = e.env
        assert gym.wrappers.AtariPreprocessing in chain and gym.wrappers.FrameStackObservation in chain
        assert FireReset in chain  # Pong and Breakout both wait for FIRE
        # FireReset records its constructor arguments: Gymnasium can make the wrapped env again from its spec
        gym.make(env.spec).close()
    finally:
        env.close()
    with pytest.raises(UsageError, match="frameskip"):
        EnvMaker(env_id, {"frameskip": 4}).make()


@needs_ale
def test_a3c_workers_make_the_training_env_with_fire_reset(tmp_path, one_torch_thread):
    result = deeprl.train(
        "a3c",
        "ALE/Breakout-v5",
        total_steps=300,
        workers=2,
        eval_episodes=1,
        max_episode_steps=100,
        torch_threads=1,
        run_dir=tmp_path / "r",
        progress="off",
    )
    assert result.summary["env_steps"] == 300


# ---------------------------------------------------------------- 4. MinAtar
def test_minatar_ids_resolve_like_ale_ids():
    pytest.importorskip("minatar")
    env = make_env("MinAtar/Breakout-v1", seed=0)
    try:
        assert env.observation_space.shape == (10, 10, 4) and env.observation_space.dtype == np.bool_
        assert env.reset(seed=0)[0].shape == (10, 10, 4)
    finally:
        env.close()
    assert not EnvMaker("MinAtar/Breakout-v1").has_time_limit  # no limit of its own: the evaluator caps it
    from deeprl.viz.video import annotate, make_render_env

    env = make_render_env("MinAtar/Breakout-v1")
    try:
        env.reset(seed=0)
        assert annotate(env.render(), "t", "s")[40:].max() > 100  # its [0, 1] float colours, not black
    finally:
        env.close()


def test_minatar_without_the_package_names_the_pip_command(monkeypatch):
    for key in [k for k in gym.registry if k.startswith("MinAtar/")]:
        monkeypatch.delitem(gym.registry, key)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)  # import fails as if not installed
    with pytest.raises(UsageError, match=r"pip install minatar"):
        env_spec("MinAtar/Breakout-v1")


def test_importing_minatar_logs_nothing_even_without_seaborn():
    """minatar.gym logs a warning on the root logger at import when seaborn is missing, which also
    installs a stderr handler for the rest of the process (logging.basicConfig): deeprl silences it."""
    pytest.importorskip("minatar")
    code = (
        "import sys, logging; sys.modules['seaborn'] = None\n"
        "from deeprl.envs import env_spec; env_spec('MinAtar/Breakout-v1')\n"
        "assert 'minatar.gym' in sys.modules\n"
        "print(len(logging.getLogger().handlers))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0" and "seaborn" not in out.stderr, out.stderr
    assert logging.getLogger().manager.disable == logging.NOTSET


# ---------------------------------------------------------------- 5-6. the recipe, --env-kwargs
def test_env_maker_is_a_picklable_recipe_from_run_options():
    run = RunOptions(env_id="FrozenLake-v1", env_kwargs={"map_name": "8x8"}, max_episode_steps=7)
    maker = env_maker(run)
    assert maker == EnvMaker("FrozenLake-v1", {"map_name": "8x8"}, (), 7, action_mask=True)
    assert pickle.loads(pickle.dumps(maker)) == maker and str(maker) == "FrozenLake-v1"
    env = maker()
    assert maker_of(env) is maker and env.observation_space.n == 64
    venv = maker.make_vec(2)
    assert maker_of(venv) is maker and venv.single_observation_space.n == 64
    env.close()
    venv.close()
    assert EnvMaker("LunarLander-v3", {"continuous": True}).make().action_space.shape == (2,)
    # values as config.json holds them: training makes its env with what a later eval reads back
    assert RunOptions(env_id="x", env_kwargs={"reward_schedule": (1, 0, -1)}).env_kwargs == {
        "reward_schedule": [1, 0, -1]
    }
    with pytest.raises(UsageError, match="config.json"):
        RunOptions(env_id="x", env_kwargs={"s": {1, 2}})
    with pytest.raises(UsageError, match="--max-episode-steps"):
        RunOptions(env_id="x", env_kwargs={"max_episode_steps": 3})


def test_parse_env_kwargs_reads_literals_and_keeps_other_text():
    from deeprl.config import parse_env_kwargs

    assert parse_env_kwargs(["continuous=True", "gravity=-9.8", "map_name=8x8", "n=3", "t=(1, 2)", "s='a=b'"]) == {
        "continuous": True,
        "gravity": -9.8,
        "map_name": "8x8",
        "n": 3,
        "t": (1, 2),
        "s": "a=b",
    }
    assert parse_env_kwargs(["code=__import__('os').system('x')"]) == {"code": "__import__('os').system('x')"}
    for bad in ("continuous", "=3", "not a name=1"):
        with pytest.raises(UsageError, match="KEY=VALUE"):
            parse_env_kwargs([bad])


def test_env_kwargs_reach_training_and_load_in_python(tmp_path):
    result = deeprl.train(
        "q-learning",
        "FrozenLake-v1",
        env_kwargs={"map_name": "8x8", "is_slippery": False},
        episodes=5,
        eval_episodes=2,
        run_dir=tmp_path / "r",
        progress="off",
    )
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["run"]["env_kwargs"] == {"map_name": "8x8", "is_slippery": False}
    agent = deeprl.load(result.run_dir)
    assert agent.observation_space.n == 64 and agent.maker.kwargs == {"map_name": "8x8", "is_slippery": False}


def test_env_kwargs_on_the_cli_and_deeprl_eval_makes_the_same_env(tmp_path):
    # a step on ice costs 1 with this reward schedule: the env's default (0) could not give a negative return
    run = tmp_path / "r"
    ok(
        deeprl_cmd(
            "train", "q-learning", "FrozenLake-v1", "--env-kwargs", "reward_schedule=(1, 0, -1)", "is_slippery=False",
            "--episodes", 5, "--eval-episodes", 3, "--run-dir", run, "--progress", "off", cwd=tmp_path,
        )
    )  # fmt: skip
    assert json.loads((run / "config.json").read_text())["run"]["env_kwargs"] == {
        "reward_schedule": [1, 0, -1],
        "is_slippery": False,
    }
    summary = json.loads((run / "summary.json").read_text())
    evaluated = json.loads(ok(deeprl_cmd("eval", run, "--json", cwd=tmp_path)).stdout)
    assert evaluated["mean_return"] == summary["eval_mean_return"] < 0
    bad = deeprl_cmd("train", "q-learning", "FrozenLake-v1", "--env-kwargs", "is_slippery", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("deeprl: error:") and "KEY=VALUE" in bad.stderr


# ---------------------------------------------------------------- 7. module:EnvId from the working directory
GRID = """
import gymnasium as gym


class Grid(gym.Env):
    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return 0, {}

    def step(self, action):
        self.s = min(self.s + int(action), 2)
        return self.s, float(self.s == 2), self.s == 2, False, {}


def make_grid():
    return gym.wrappers.TimeLimit(Grid(), 20)


gym.register("MyGrid-v0", entry_point=Grid, max_episode_steps=20)
"""


def test_module_env_id_and_factory_from_the_working_directory(tmp_path):
    (tmp_path / "my_envs").mkdir()
    (tmp_path / "my_envs" / "__init__.py").write_text("")
    (tmp_path / "my_envs" / "grid.py").write_text(GRID)
    for env_id, run in (("my_envs.grid:MyGrid-v0", "r1"), ("my_envs.grid:make_grid", "r2")):
        out = ok(deeprl_cmd("train", "q-learning", env_id, "--episodes", 5, "--eval-episodes", 2,
                            "--run-dir", run, "--progress", "off", cwd=tmp_path))  # fmt: skip
        assert json.loads((tmp_path / run / "summary.json").read_text())["env_id"] == env_id, out.stdout
    # a run directory's module is imported only when the user vouches for it
    refused = deeprl_cmd("eval", "r2", cwd=tmp_path)
    assert refused.returncode == 2 and "--trust-module my_envs.grid" in refused.stderr, refused.stderr
    trusted = json.loads(ok(deeprl_cmd("eval", "r2", "--json", "--trust-module", "my_envs.grid", cwd=tmp_path)).stdout)
    assert trusted["episodes"] == 2


# ---------------------------------------------------------------- 8-9. env functions in deeprl.train, --wrapper
USER_ENVS = """
import gymnasium as gym


def make_chain():
    return gym.make("FrozenLake-v1", is_slippery=False)


def plus_thousand(env):
    return gym.wrappers.TransformReward(env, lambda r: r + 1000.0)


def skip_two(env):
    return gym.wrappers.MaxAndSkipObservation(env, skip=2)


NOT_CALLABLE = 3
"""


def test_a_module_function_as_env_with_a_user_wrapper_everywhere(tmp_path, user_module):
    mod = user_module("deeprl_test_user_envs", USER_ENVS)
    result = deeprl.train(
        "q-learning",
        mod.make_chain,
        wrappers=("deeprl_test_user_envs:plus_thousand",),
        episodes=5,
        eval_episodes=2,
        run_dir=tmp_path / "r",
        progress="off",
    )
    assert result.summary["env_id"] == "deeprl_test_user_envs:make_chain"
    # the evaluator's env has the wrapper: every step pays 1000, which FrozenLake alone never does
    assert result.summary["eval_mean_return"] >= 1000
    # the env function the user handed over is trusted in this process; the wrapper, named by a string, needs
    # its module trusted (a run directory is data: it does not choose code to call)
    with pytest.raises(UsageError, match=r"trust_modules=\['deeprl_test_user_envs'\]"):
        deeprl.evaluate(result.run_dir)
    trusted = deeprl.evaluate(result.run_dir, trust_modules=("deeprl_test_user_envs",))
    assert trusted["mean_return"] == result.summary["eval_mean_return"]
    refused = deeprl_cmd("eval", result.run_dir, cwd=tmp_path)
    assert refused.returncode == 2 and "--trust-module deeprl_test_user_envs" in refused.stderr, refused.stderr
    trusted = ok(deeprl_cmd("eval", result.run_dir, "--json", "--trust-module", "deeprl_test_user_envs", cwd=tmp_path))
    assert json.loads(trusted.stdout)["mean_return"] == result.summary["eval_mean_return"]


def test_a_wrapper_handed_over_as_a_function_is_trusted_in_this_process(tmp_path, user_module):
    mod = user_module("deeprl_test_user_envs", USER_ENVS)
    result = deeprl.train("q-learning", "FrozenLake-v1", wrappers=(mod.plus_thousand,), episodes=2, eval_episodes=1,
                          run_dir=tmp_path / "r", progress="off")  # fmt: skip
    assert deeprl.evaluate(result.run_dir)["mean_return"] == result.summary["eval_mean_return"] >= 1000


def test_a_lambda_as_env_works_in_this_process_only(tmp_path):
    result = deeprl.train(
        "q-learning",
        lambda: gym.make("FrozenLake-v1", is_slippery=False),
        episodes=5,
        eval_episodes=2,
        run_dir=tmp_path / "r",
        progress="off",
    )
    env_id = result.summary["env_id"]
    assert env_id.startswith("deeprl-local/")
    assert deeprl.evaluate(result.run_dir)["episodes"] == 2
    out = deeprl_cmd("eval", result.run_dir, cwd=tmp_path)
    assert out.returncode == 2 and "another process cannot make it again" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    with pytest.raises(UsageError, match="function of no arguments"):
        deeprl.train("q-learning", gym.make("FrozenLake-v1"), episodes=1)
    gym.registry.pop(env_id)


def test_env_functions_take_no_arguments_and_builtins_are_never_envs(tmp_path, user_module):
    """A 'module:function' id in a config.json someone sent you, for a module that is imported anyway (os),
    must not become a call with arguments the file chooses: env functions get none, and a builtin is no env."""
    for env_id in ("os:system", "os:fork", "sys:exit"):
        with pytest.raises(UsageError, match="not a registered env id nor a function"):
            env_spec(env_id)
        assert env_id not in gym.registry
    user_module("deeprl_test_user_envs", USER_ENVS)
    maker = EnvMaker("deeprl_test_user_envs:make_chain", {"is_slippery": True})
    with pytest.raises(UsageError, match="takes no arguments"):
        maker.make()
    with pytest.raises(UsageError, match="takes no arguments"):
        deeprl.train("q-learning", "deeprl_test_user_envs:make_chain", env_kwargs={"x": 1}, episodes=1,
                     run_dir=tmp_path / "r")  # fmt: skip
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("wrapper", "message"),
    [
        ("no_colon", "not of the form 'module:callable'"),
        ("deeprl.wrappers:nothing_here", "has no attribute 'nothing_here'"),
        ("deeprl.wrappers:OBS_KEY", "not callable"),
        ("deeprl_no_such_module_xyz:f", "could not import"),
    ],
)
def test_a_bad_wrapper_fails_before_any_file_is_written(tmp_path, wrapper, message):
    with pytest.raises(UsageError, match=message):
        deeprl.train("q-learning", "FrozenLake-v1", wrappers=(wrapper,), episodes=1, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_wrappers_go_after_preprocessing_and_the_time_limit_counts_agent_steps(user_module):
    user_module("deeprl_test_user_envs", USER_ENVS)
    # MountainCar's own limit is 200 env steps; 150 agent steps of 2 env steps each go past it
    env = EnvMaker("MountainCar-v0", {}, ("deeprl_test_user_envs:skip_two",), max_episode_steps=150).make(seed=0)
    for step in range(1, 151):
        _, _, terminated, truncated, _ = env.step(1)  # no push: never at the flag
        assert not terminated and truncated == (step == 150), step
    assert isinstance(env, gym.wrappers.TimeLimit)  # outermost
    env.close()


# ---------------------------------------------------------------- 10-11. deeprl.wrappers, masks
def test_car_racing_wrapper_gives_stacked_gray_64x64_frames():
    pytest.importorskip("Box2D")
    env = EnvMaker("CarRacing-v3", wrappers=("deeprl.wrappers:car_racing",)).make(seed=0)
    try:
        assert env.observation_space == gym.spaces.Box(0, 255, (4, 64, 64), np.uint8)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (4, 64, 64) and obs.dtype == np.uint8
    finally:
        env.close()


def _legal(obs_mask: np.ndarray, actions: np.ndarray) -> bool:
    return bool(np.all(obs_mask[np.arange(len(actions)), actions] == 1))


def test_taxi_info_masks_join_the_observation_in_single_vector_and_eval_envs():
    maker = env_maker(RunOptions(env_id="Taxi-v4"))
    env = maker.make()
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert set(env.observation_space.spaces) == {OBS_KEY, MASK_KEY}
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs[MASK_KEY], info["action_mask"])
    obs, *_, info = env.step(int(np.flatnonzero(obs[MASK_KEY])[0]))
    np.testing.assert_array_equal(obs[MASK_KEY], info["action_mask"])
    env.close()
    venv = maker.make_vec(3)
    obs, info = venv.reset(seed=0)
    assert obs[MASK_KEY].shape == (3, 6) and obs[OBS_KEY].shape == (3,)
    for _ in range(30):  # autoresets included: the batch stays a Dict of arrays
        obs, *_, info = venv.step(np.array([np.flatnonzero(m)[0] for m in obs[MASK_KEY]]))
        np.testing.assert_array_equal(obs[MASK_KEY], np.stack(info["action_mask"]))
    venv.close()
    # the evaluator made from the run's recipe hands the policy the masks too
    seen = []

    def policy(obs):
        actions = np.array([np.flatnonzero(m)[0] for m in obs[MASK_KEY]])
        seen.append(_legal(obs[MASK_KEY], actions))
        return actions

    evaluator = Evaluator(maker, episodes=2, seed=0)
    evaluator(policy)
    evaluator.close()
    assert seen and all(seen)
    assert evaluator.maker.max_episode_steps is None  # Taxi's own 200-step limit, no EVAL_STEP_CAP
    assert isinstance(EnvMaker("Taxi-v4").make().observation_space, gym.spaces.Discrete)  # by id: as gym.make


def test_masks_are_dropped_for_algorithms_that_cannot_take_them(tmp_path):
    maker = env_maker(RunOptions(env_id="Taxi-v4"))
    env, fitted = fit_mask_to_algorithm(maker, tabular_support, lambda m: m.make())
    assert not fitted.action_mask and env.observation_space == gym.spaces.Discrete(500)
    env.close()
    env, kept = fit_mask_to_algorithm(maker, lambda obs, act: None, lambda m: m.make())
    assert kept is maker and isinstance(env.observation_space, gym.spaces.Dict)
    env.close()
    # tabular methods on Taxi train, evaluate and load on the env's own observations, as before
    result = deeprl.train("q-learning", "Taxi-v4", episodes=3, eval_episodes=2, run_dir=tmp_path / "r", progress="off")
    agent = deeprl.load(result.run_dir)
    assert agent.observation_space == gym.spaces.Discrete(500) and not agent.maker.action_mask
    assert isinstance(agent.act(0), int)


def test_an_algorithm_that_takes_masks_trains_evaluates_and_loads_with_them(tmp_path):
    result = deeprl.train("dqn", "Taxi-v4", total_steps=200, eval_episodes=2, run_dir=tmp_path / "r", progress="off")
    agent = deeprl.load(result.run_dir)
    assert set(agent.observation_space.spaces) == {OBS_KEY, MASK_KEY} and agent.maker.action_mask
    assert agent.act(0, np.array([0, 0, 0, 1, 0, 0])) == 3  # the only legal action, whatever the Q-values
    assert deeprl.evaluate(agent)["mean_return"] == result.summary["eval_mean_return"]


class _FirstLegal:
    """A stand-in policy: the first allowed action of each row's mask."""

    def policy(self, obs):
        return np.array([int(np.flatnonzero(m)[0]) for m in obs[MASK_KEY]])


def test_agent_act_takes_the_raw_observation_and_the_info_mask():
    space = InfoActionMask(gym.make("Taxi-v4")).observation_space
    run = RunOptions(env_id="Taxi-v4")
    agent = Agent(_FirstLegal(), "test", "Taxi-v4", None, run, space, gym.spaces.Discrete(6), maker=env_maker(run))
    mask = np.array([0, 0, 1, 1, 0, 0], dtype=np.int8)
    assert agent.act(314, mask) == 2
    assert agent.act({OBS_KEY: 314, MASK_KEY: mask}) == 2  # an observation of the agent's own env
    with pytest.raises(UsageError, match=r"info\['action_mask'\]"):
        agent.act(314)
    plain = Agent(_FirstLegal(), "test", "CartPole-v1", None, run, gym.spaces.Discrete(5), gym.spaces.Discrete(6))
    with pytest.raises(UsageError, match="no action mask"):
        plain.act(0, mask)


def test_eval_step_cap_still_applies_to_envs_without_a_limit():
    evaluator = Evaluator(EnvMaker("FrozenLake-v1", max_episode_steps=None), episodes=1, seed=0)
    assert evaluator.maker.max_episode_steps is None  # FrozenLake-v1 has a 100-step limit of its own
    evaluator.close()
    gym.register("deeprl-test/Endless-v0", entry_point=lambda: gym.make("FrozenLake-v1").unwrapped)
    try:
        evaluator = Evaluator("deeprl-test/Endless-v0", episodes=1, seed=0)
        assert evaluator.maker.max_episode_steps == EVAL_STEP_CAP
        evaluator.close()
    finally:
        gym.registry.pop("deeprl-test/Endless-v0")


# ---------------------------------------------------------------- 12. a received run directory names only data
PLANTED = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
"""


@pytest.fixture
def finished_run(tmp_path, monkeypatch):
    """A finished q-learning run on FrozenLake-v1 with its resume state (signing key under tmp_path)."""
    monkeypatch.setenv("DEEPRL_HOME", str(tmp_path / "home"))
    result = deeprl.train(
        "q-learning", "FrozenLake-v1", episodes=3, eval_episodes=1, run_dir=tmp_path / "run", progress="off"
    )
    return result.run_dir


def _edit_run(run_dir: Path, top_env_id: str | None = None, **run_changes) -> None:
    """Change the run options (and the top-level env_id) of config.json and of every resume state's header
    alike (resume compares the two)."""
    paths = [run_dir / "config.json", *sorted((run_dir / "resume").glob("*/state.json"))]
    assert len(paths) >= 2
    for path in paths:
        record = json.loads(path.read_text())
        record["run"].update(run_changes)
        if top_env_id is not None:
            record["env_id"] = top_env_id
        path.write_text(json.dumps(record))


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A module `deeprl_test_planted_<tag>` on sys.path that writes a marker file when imported."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []

    def plant(tag: str) -> tuple[str, Path]:
        name, marker = f"deeprl_test_planted_{tag}", tmp_path / f"imported_{tag}"
        (tmp_path / f"{name}.py").write_text(PLANTED.format(marker=str(marker)))
        made.append(name)
        return name, marker

    yield plant
    for name in made:
        sys.modules.pop(name, None)


def test_resume_refuses_a_wrappers_string_without_importing_its_module(finished_run, planted):
    module, marker = planted("wrapper")
    _edit_run(finished_run, wrappers=f"{module}:x")  # a bare string, not a list
    with pytest.raises(UsageError, match="wrappers"):
        deeprl.resume(finished_run, total_steps=10**6)
    assert not marker.exists() and module not in sys.modules


def test_resume_refuses_a_run_env_id_other_than_the_top_level_one(finished_run, planted):
    module, marker = planted("env")
    _edit_run(finished_run, env_id=f"{module}:Env-v0")  # run.env_id only; the top-level stays FrozenLake-v1
    for call in (lambda: deeprl.resume(finished_run, total_steps=10**6), lambda: deeprl.load(finished_run)):
        with pytest.raises(UsageError, match="env_id"):
            call()
    assert not marker.exists() and module not in sys.modules


def test_train_resume_on_the_cli_refuses_a_planted_wrapper_with_exit_2(finished_run, planted, tmp_path):
    module, marker = planted("cli")
    _edit_run(finished_run, wrappers=f"{module}:x")
    out = deeprl_cmd("train", "--resume", finished_run, "--total-steps", 10**6, cwd=tmp_path, pythonpath=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("deeprl: error:"), out.stderr
    assert not marker.exists()


def test_a_run_directory_cannot_name_a_bound_method_of_an_imported_module(finished_run):
    """`os:environ.clear` reaches a bound method of an object of a module that is imported anyway: deeprl
    must never call it (it would empty this process's environment)."""
    _edit_run(finished_run, top_env_id="os:environ.clear", env_id="os:environ.clear")
    before = dict(os.environ)
    try:
        with pytest.raises(UsageError, match="os:environ.clear"):
            deeprl.load(finished_run)
        env_spec("os:environ.clear")  # registered in this process already (deeprl plot does look the id up)
        with pytest.raises(UsageError, match="os:environ.clear"):
            deeprl.load(finished_run)
        cleared = os.environ != before
    finally:
        os.environ.update(before)
        gym.registry.pop("os:environ.clear", None)
    assert not cleared


@pytest.mark.parametrize("wrapper", ["builtins:input", "builtins:exit", "os:getcwd"])
def test_a_run_directory_cannot_name_a_builtin_as_its_wrapper(finished_run, wrapper):
    _edit_run(finished_run, wrappers=[wrapper])
    with pytest.raises(UsageError, match=wrapper):
        deeprl.load(finished_run)  # never called: input would block on stdin, exit would end the process


BOUND = """
import gymnasium as gym


class Factory:
    def make(self):
        return gym.make("FrozenLake-v1")


make = Factory().make  # a bound method


def wrap(env):
    return env
"""

REEXPORT = """
from deeprl_test_grid_home import Grid  # defined elsewhere


def make():
    import gymnasium as gym

    return gym.make("FrozenLake-v1")
"""


def test_a_trusted_module_names_only_its_own_functions_and_env_classes(finished_run, user_module):
    user_module("deeprl_test_bound", BOUND)
    user_module("deeprl_test_grid_home", GRID)
    user_module("deeprl_test_reexport", REEXPORT)
    for env_id, trusted, message in (
        ("deeprl_test_reexport:make", None, "trust_modules"),  # imported, but not trusted
        ("deeprl_test_bound:make", "deeprl_test_bound", "method"),
        ("deeprl_test_bound:Factory.make", "deeprl_test_bound", "dotted"),
        ("deeprl_test_reexport:Grid", "deeprl_test_reexport", "deeprl_test_grid_home:Grid"),  # where it is defined
    ):
        _edit_run(finished_run, top_env_id=env_id, env_id=env_id)
        with pytest.raises(UsageError, match=re.escape(message)):
            deeprl.load(finished_run, trust_modules=(trusted,) if trusted else ())
        assert env_id not in gym.registry
    # the module's own function, trusted: loads
    _edit_run(finished_run, top_env_id="deeprl_test_reexport:make", env_id="deeprl_test_reexport:make")
    _edit_run(finished_run, wrappers=["deeprl_test_bound:wrap"])
    agent = deeprl.load(finished_run, trust_modules=("deeprl_test_reexport", "deeprl_test_bound"))
    assert agent.maker.wrappers == ("deeprl_test_bound:wrap",)
    gym.registry.pop("deeprl_test_reexport:make", None)


# ---------------------------------------------------------------- 13. plausible mistakes get a UsageError
@pytest.mark.parametrize(
    ("env_id", "kwargs", "named"),
    [
        ("LunarLander-v3", {"contnuous": True}, "'continuous'"),  # a typo: the close match
        ("Taxi-v4", {"is_raining": True}, "is_rainy"),
        ("FrozenLake-v1", {"map_name": "9x9"}, "map_name"),
    ],
)
def test_env_kwargs_an_env_refuses_are_a_usage_error_with_its_parameters(env_id, kwargs, named):
    if env_id.startswith("LunarLander"):
        pytest.importorskip("Box2D")
    with pytest.raises(UsageError) as info:
        EnvMaker(env_id, kwargs).make()
    message = str(info.value)
    assert all(key in message for key in kwargs) and named in message, message
    assert "--env-kwargs" in message, message


def test_env_kwargs_error_on_the_cli_is_deeprls_error(tmp_path):
    out = deeprl_cmd("train", "ppo", "FrozenLake-v1", "--env-kwargs", "map_name=9x9", "--total-steps", 100,
                     "--run-dir", tmp_path / "r", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2 and out.stderr.startswith("deeprl: error:"), out.stderr
    assert "9x9" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists()


class OwnMaskEnv(gym.Env):
    """A PettingZoo-style env: its own Dict observation with an `action_mask` key, no 'obs' key."""

    def __init__(self, multi: bool = False):
        self.action_space = gym.spaces.MultiDiscrete([2, 3]) if multi else gym.spaces.Discrete(3)
        n = 5 if multi else 3
        self.observation_space = gym.spaces.Dict(
            {"observation": gym.spaces.Box(-1, 1, (2,), np.float32), MASK_KEY: gym.spaces.MultiBinary(n)}
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


@pytest.mark.parametrize(("algo", "multi"), [("dqn", True), ("sac", False), ("q-learning", False)])
def test_an_env_with_its_own_mask_key_gets_the_algorithms_space_error(tmp_path, algo, multi):
    with pytest.raises(UsageError) as info:
        deeprl.train(algo, lambda: OwnMaskEnv(multi), total_steps=10, run_dir=tmp_path / "r", progress="off")
    assert "can" in str(info.value) and not (tmp_path / "r").exists(), info.value


def test_an_algorithm_that_cannot_honour_an_info_mask_says_so(tmp_path, capsys):
    deeprl.train("q-learning", "Taxi-v4", episodes=2, eval_episodes=1, run_dir=tmp_path / "r", progress="off")
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "action mask" in notes[0] and "masked actions" in notes[0], err
    assert "dqn" in notes[0] and "ppo" in notes[0], notes[0]
    # an algorithm that takes masks: no note
    deeprl.train("dqn", "Taxi-v4", total_steps=50, eval_episodes=1, run_dir=tmp_path / "r2", progress="off")
    assert "note:" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env_id", "wrapper"),
    [("FrozenLake-v1", "gymnasium.wrappers:ClipReward"), ("CartPole-v1", "deeprl.wrappers:car_racing")],
)
def test_a_wrapper_that_fails_on_the_env_is_a_usage_error(tmp_path, env_id, wrapper):
    algo = "q-learning" if env_id == "FrozenLake-v1" else "ppo"
    with pytest.raises(UsageError, match=re.escape(f"--wrapper {wrapper} failed on {env_id}")):
        deeprl.train(algo, env_id, wrappers=(wrapper,), total_steps=100, run_dir=tmp_path / "r", progress="off")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 14. no argument silently ignored
def test_act_refuses_a_second_mask_and_evaluate_refuses_best_for_an_agent():
    space = InfoActionMask(gym.make("Taxi-v4")).observation_space
    run = RunOptions(env_id="Taxi-v4")
    agent = Agent(_FirstLegal(), "test", "Taxi-v4", None, run, space, gym.spaces.Discrete(6), maker=env_maker(run))
    mask = np.array([0, 0, 1, 1, 0, 0], dtype=np.int8)
    with pytest.raises(UsageError, match="once"):
        agent.act({OBS_KEY: 314, MASK_KEY: mask}, mask)
    with pytest.raises(UsageError, match=r"deeprl.load\(run_dir, best=True\)"):
        deeprl.evaluate(agent, best=True)
