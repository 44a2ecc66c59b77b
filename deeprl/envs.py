"""The env factory: Gymnasium envs and vector envs, seeding, space encoding, env state for resume.

Everything that creates an environment goes through here, so an unknown id, a missing extra
(box2d, mujoco, atari) or a user's own `package.module:EnvId` gets the same clear error.
"""

from __future__ import annotations

import importlib
import pickle
import sys
from functools import partial
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from deeprl.errors import UsageError, did_you_mean
from deeprl.seeding import global_rng_state, seed_everything, set_global_rng_state  # noqa: F401 (re-exported)

_EXTRAS = {"box2d": "box2d", "mujoco": "mujoco", "ale_py": "atari", "Box2D": "box2d", "pygame": "classic-control"}


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`, importing `module` first for 'module:EnvId'.

    Raises a UsageError that lists close matches when the id is unknown.
    """
    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UsageError(
                f"Could not import {module!r} for env {env_id!r}: {e}. The 'module:EnvId' form imports "
                "your module (which must call gymnasium.register) before making the env; check that it "
                "is installed or on PYTHONPATH."
            ) from None
    if name in gym.registry:
        return gym.registry[name]
    if ":" not in env_id:
        # Atari ids live in ale_py, which registers them only once imported.
        try:
            importlib.import_module("ale_py")
            if name in gym.registry:
                return gym.registry[name]
        except ImportError:
            if name.startswith("ALE/"):
                raise UsageError(
                    f"{env_id} is an Atari env and needs ale-py, which is not installed. "
                    "Fix: pip install 'gymnasium[atari]' (the ROMs ship with it)."
                ) from None
    raise UsageError(
        f"Unknown environment {env_id!r}.{did_you_mean(name, gym.registry.keys())} "
        'Use a registered Gymnasium id (`python -c "import gymnasium; gymnasium.pprint_registry()"` '
        "lists them), or 'your_module:YourEnv-v0' for an env your module registers."
    )


def check_env_module_imported(env_id: str, source: str) -> None:
    """An env id read from a file ('module:EnvId' in a run directory's config.json) is made only if its
    module is already imported: importing a module runs its code, and a run directory someone sent you
    (or a file next to it, when the working directory is on sys.path) must not get to run code."""
    if ":" not in env_id:
        return
    module = env_id.split(":", 1)[0]
    if module in sys.modules:
        return
    raise UsageError(
        f"{source} names the env {env_id!r}, which needs its module {module!r} imported, and deeprl does not "
        "import modules named in a run directory (importing runs their code). If you trust that module: "
        f"pass --trust-module {module} to deeprl eval/render/plot/train --resume, or `import {module}` "
        "before deeprl.load/evaluate/resume in Python."
    )


def import_trusted_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import the modules the user named with --trust-module (their own env packages)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UsageError(f"--trust-module {module}: could not import it ({e}). Check the name.") from None


def _make(env_id: str, render_mode: str | None, max_episode_steps: int | None, **kwargs: Any) -> gym.Env:
    # Pass only what is set: a user's env whose __init__ takes no render_mode must still work.
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    atari = env_id.startswith("ALE/") and kwargs.pop("atari_preprocessing", True)
    if atari:  # the standard Atari preprocessing (deeprl/atari.py) skips frames itself
        kwargs.setdefault("frameskip", 1)
    try:
        env = gym.make(env_id, **kwargs)
        if atari:
            from deeprl.atari import wrap_atari

            env = wrap_atari(env)
        return env
    except gym.error.DependencyNotInstalled as e:
        extra = next((x for k, x in _EXTRAS.items() if k.lower() in str(e).lower()), None)
        fix = f"pip install 'gymnasium[{extra}]'" if extra else "install the package it names"
        raise UsageError(f"{env_id} needs a package that is not installed: {e}. Fix: {fix}.") from None
    except gym.error.Error as e:
        raise UsageError(f"Could not make {env_id!r}: {e}") from None


def make_env(
    env_id: str,
    *,
    seed: int | None = None,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
    **kwargs: Any,
) -> gym.Env:
    """One env. With `seed`, its first reset and its action space are seeded."""
    env_spec(env_id)
    env = _make(env_id, render_mode, max_episode_steps, **kwargs)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def make_vec_env(
    env_id: str,
    n_envs: int,
    *,
    vectorization: Literal["auto", "sync", "async"] = "auto",
    max_episode_steps: int | None = None,
    record_stats: bool = False,
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """`n_envs` copies of the env in one Gymnasium VectorEnv (autoreset mode NEXT_STEP).

    auto prefers the env's numpy-vectorized implementation (`vector_entry_point`, e.g. CartPole),
    which steps all copies in one call, and falls back to SyncVectorEnv. Seed it with
    `venv.reset(seed=s)`: copy i gets seed s + i. `record_stats` adds Gymnasium's
    RecordEpisodeStatistics (info["episode"]); deeprl's algorithms count returns themselves, and the
    wrapper costs a third of a numpy-vectorized CartPole step, so it is off unless asked for.
    """
    spec = env_spec(env_id)
    # Atari ids take the wrapped single envs (deeprl/atari.py), the same preprocessing as make_env.
    if (
        vectorization == "auto"
        and spec.vector_entry_point is not None
        and not kwargs.get("render_mode")
        and not env_id.startswith("ALE/")
    ):
        extra = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        venv = gym.make_vec(env_id, n_envs, vectorization_mode="vector_entry_point", **extra, **kwargs)
    else:
        # partial of a module-level function (not a lambda) keeps the vector env picklable for resume.
        make_one = partial(_make, env_id, kwargs.pop("render_mode", None), max_episode_steps, **kwargs)
        cls = gym.vector.AsyncVectorEnv if vectorization == "async" else gym.vector.SyncVectorEnv
        venv = cls([make_one] * n_envs, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    if record_stats:
        venv = gym.wrappers.vector.RecordEpisodeStatistics(venv)
    return venv


def autoreset_mode(venv: gym.vector.VectorEnv) -> gym.vector.AutoresetMode:
    """The vector env's autoreset mode (DESIGN.md, convention 3); NEXT_STEP when it does not say."""
    return venv.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)


def env_state(env: Any) -> bytes | None:
    """The env pickled (its position mid-episode, its np_random), or None if it cannot be pickled."""
    try:
        return pickle.dumps(env)
    except Exception:  # noqa: BLE001 - any env may refuse (open windows, subprocesses, C handles)
        return None


class ObservationIndex:
    """Maps Discrete / Tuple(Discrete...) observations to row indices of a Q-table.

    A Tuple is encoded in mixed radix: (a, b, c) -> (a * n_b + b) * n_c + c. Blackjack-v1's
    (player sum, dealer card, usable ace) becomes one of 32 * 11 * 2 = 704 rows.
    """

    def __init__(self, space: gym.Space):
        if isinstance(space, gym.spaces.Discrete):
            self.sizes = [int(space.n)]
            self.starts = [int(space.start)]
        else:
            self.sizes = [int(s.n) for s in space.spaces]
            self.starts = [int(s.start) for s in space.spaces]
        self.is_tuple = not isinstance(space, gym.spaces.Discrete)
        self.n = int(np.prod(self.sizes))

    def __call__(self, obs: Any) -> int:
        if not self.is_tuple:
            return int(obs) - self.starts[0]
        index = 0
        for value, size, start in zip(obs, self.sizes, self.starts):
            index = index * size + (int(value) - start)
        return index

    def batch(self, obs: Any) -> np.ndarray:
        """Vector-env observations (an array, or a tuple of arrays) to row indices."""
        if not self.is_tuple:
            return np.asarray(obs, dtype=np.int64) - self.starts[0]
        index = np.zeros(len(obs[0]), dtype=np.int64)
        for values, size, start in zip(obs, self.sizes, self.starts):
            index = index * size + (np.asarray(values, dtype=np.int64) - start)
        return index
