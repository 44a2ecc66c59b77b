"""The env factory: Gymnasium envs and vector envs, seeding, space encoding, env state for resume.

Everything that creates an environment goes through here, so an unknown id, a missing extra
(box2d, mujoco, atari, minatar) or a user's own `package.module:EnvId` gets the same clear error.
Names read from a run directory (env id, wrappers) pass `check_names_from_file` before anything is
made: a file chooses no module to import and no code to call.

`EnvMaker` is the recipe of a run's env (id, gym.make kwargs, wrappers, time limit), built from the
run options by `env_maker`. Every consumer makes its env from it: the training env, the evaluator,
`deeprl.load`, videos, render, A3C's worker processes, `deeprl eval`; so all of them see the same
env. One env is built inside out:

1. `gymnasium.make(id, **env_kwargs)`, with the spec's own TimeLimit (none when --max-episode-steps
   replaces it, see 5);
2. deeprl's preprocessing of ALE envs, any id (deeprl/atari.py);
3. the run's `--wrapper module:callable`s, in order;
4. `InfoActionMask` (deeprl/wrappers.py) when the env reports `info["action_mask"]` and the recipe
   asks for it (a run's recipe does when its algorithm can use masks);
5. `TimeLimit(--max-episode-steps)`, outermost, so it counts agent steps: outside frame skipping
   (an Atari agent step is 4 emulator frames) and outside any skipping wrapper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
import logging
import pickle
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

from deeprl import trust
from deeprl.atari import is_atari_spec
from deeprl.errors import UsageError, did_you_mean
from deeprl.seeding import global_rng_state, seed_everything, set_global_rng_state  # noqa: F401 (re-exported)
from deeprl.trust import trust_callable

if TYPE_CHECKING:
    from deeprl.config import RunOptions

_EXTRAS = {"box2d": "box2d", "mujoco": "mujoco", "ale_py": "atari", "Box2D": "box2d", "pygame": "classic-control"}
LOCAL_NAMESPACE = "deeprl-local"  # ids of env functions that only the process that got them can make
_MAKER_ATTR = "_deeprl_env_maker"  # where an env made here keeps its recipe (pickled with it)


# ---------------------------------------------------------------- ids and specs
def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`, importing `module` first for 'module:EnvId'.

    'module:name' where `name` is not a registered id but a callable of the module (a function or an
    Env class that makes the env with no arguments) registers that callable under the id
    'module:name'. `MinAtar/...` ids import minatar, Atari ids ale_py, when they are not registered.
    Raises a UsageError that lists close matches when the id is unknown.
    """
    if env_id in gym.registry:  # every registered id, and the 'module:callable' ids registered below
        return gym.registry[env_id]
    name = env_id
    if ":" in env_id:
        module_name, name = env_id.split(":", 1)
        module = _import_env_module(module_name, env_id)
        if name in gym.registry:
            return gym.registry[name]
        factory = _attribute(module, name)
        if _is_env_function(factory):
            gym.register(id=env_id, entry_point=partial(_call_env_function, factory))
            return gym.registry[env_id]
        if factory is not None:
            raise UsageError(
                f"{env_id!r}: {module_name}.{name} is a {type(factory).__name__}, not a registered env id nor a "
                "function (or Env class) that makes an env. Name a gymnasium.register'ed id or a function of no "
                "arguments that returns a gymnasium.Env."
            )
    elif name.startswith("MinAtar/"):
        _register_minatar(env_id)
        if name in gym.registry:
            return gym.registry[name]
    elif name.startswith(f"{LOCAL_NAMESPACE}/"):
        raise UsageError(
            f"The env {env_id!r} was a Python function given to deeprl.train (a lambda, a closure or a function "
            "defined in __main__) in the process that trained this run; another process cannot make it again. "
            "Load or evaluate the run in that process, or train again with a function defined at the top level of "
            "an importable module (recorded as 'module:function') or an id your module registers with "
            "gymnasium.register."
        )
    else:
        # Atari ids live in ale_py, which registers them only once imported.
        try:
            importlib.import_module("ale_py")
            if name in gym.registry:
                return gym.registry[name]
        except ImportError:
            if name.startswith("ALE/") or name.endswith(("NoFrameskip-v4", "Deterministic-v4")):
                raise UsageError(
                    f"{env_id} is an Atari env and needs ale-py, which is not installed. "
                    "Fix: pip install 'gymnasium[atari]' opencv-python-headless (the ROMs ship with ale-py; "
                    "from a clone: pip install -e '.[atari]')."
                ) from None
    where = (
        f" Module {env_id.split(':', 1)[0]!r} registered no such id and has no function of that name."
        if ":" in env_id
        else ""
    )
    raise UsageError(
        f"Unknown environment {env_id!r}.{where}{did_you_mean(name, gym.registry.keys())} "
        'Use a registered Gymnasium id (`python -c "import gymnasium; gymnasium.pprint_registry()"` '
        "lists them), or 'your_module:YourEnv-v0' for an env your module registers."
    )


def _import_env_module(module_name: str, env_id: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(
            f"Could not import {module_name!r} for env {env_id!r}: {e}. The 'module:EnvId' form imports "
            "your module (which must call gymnasium.register, or define the function named after the colon) "
            "before making the env; check that it is installed, on PYTHONPATH, or in the working directory."
        ) from None


def _is_env_function(obj: Any) -> bool:
    """A function written in Python, or an Env class: never a builtin or another class (`os:fork` typed on
    the command line is no env). A name read from a run directory passes `check_names_from_file` first,
    which allows less (no methods, no dotted chains, trusted modules only)."""
    return inspect.isfunction(obj) or inspect.ismethod(obj) or (inspect.isclass(obj) and issubclass(obj, gym.Env))


def _call_env_function(function: Callable[..., gym.Env], **kwargs: Any) -> gym.Env:
    """Gymnasium's entry point for an env given as a function: called with no arguments, but render_mode
    when deeprl renders and the function takes it. No env_kwargs: a function named in a run directory is
    only ever called with nothing an attacker could choose (the function itself holds the settings)."""
    extra = sorted(set(kwargs) - {"render_mode"})
    if extra:
        raise UsageError(
            f"The env function {_qualified_name(function)} takes no arguments, and was given {', '.join(extra)} "
            "(--env-kwargs): set them inside the function, or register the env with gymnasium.register and pass "
            "its id with --env-kwargs."
        )
    if "render_mode" in kwargs:
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            parameters = {}
        if "render_mode" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return function(render_mode=kwargs["render_mode"])
    return function()  # without render_mode, make_render_env says the env cannot draw frames


def _qualified_name(function: Any) -> str:
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', repr(function))}"


def env_function_of(spec: gym.envs.registration.EnvSpec) -> Callable[..., gym.Env] | None:
    """The function an env id stands for ('module:function', or a function given to deeprl.train), or None."""
    entry = spec.entry_point
    if isinstance(entry, partial) and entry.func is _call_env_function:
        return entry.args[0]
    return None


def _attribute(module: Any, dotted: str) -> Any:
    """`module.a.b` for dotted = 'a.b', or None when there is no such attribute."""
    try:
        return functools.reduce(getattr, dotted.split("."), module)
    except AttributeError:
        return None


@contextlib.contextmanager
def _root_logging_silenced() -> Iterator[None]:
    """No log records while importing a module that logs on the root logger at import. minatar.gym
    calls logging.warning() when seaborn is missing (it needs seaborn only to render), on every run,
    and on a root logger without handlers that call also installs a stderr handler for good
    (logging.basicConfig); a handler of our own, for the import's duration, prevents that too."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeHandler(guard)


def _register_minatar(env_id: str) -> None:
    """MinAtar (Young & Tian 2019) registers its `MinAtar/...` ids through a Gymnasium plugin entry
    point, which Gymnasium 1.x no longer loads: import it and call its register function."""
    try:
        with _root_logging_silenced():
            minatar_gym = importlib.import_module("minatar.gym")
    except ImportError:
        raise UsageError(
            f"{env_id} is a MinAtar env and needs the minatar package, which is not installed. "
            "Fix: pip install minatar (from a clone: pip install -e '.[minatar]')."
        ) from None
    if not any(key.startswith("MinAtar/") for key in gym.registry):
        minatar_gym.register_envs()


def is_atari(env_id: str) -> bool:
    """Is `env_id` an ALE env (any id family: ALE/...-v5, ...NoFrameskip-v4, ...-v4)? Asks its registered
    spec (importing ale_py if needed); False for an id that is not registered."""
    try:
        return is_atari_spec(env_spec(env_id))
    except UsageError:
        return False


def has_time_limit(spec: gym.envs.registration.EnvSpec | None) -> bool:
    """Does an env with this spec end its episodes by itself? A TimeLimit, or an ALE env, whose
    games end at the ALE's max_num_frames_per_episode (108,000 frames; deeprl/atari.py)."""
    return spec is not None and (spec.max_episode_steps is not None or is_atari_spec(spec))


def register_env_factory(env: str | Callable[[], gym.Env]) -> str:
    """The env id for `deeprl.train(algo, env)`: an id as it is; a function of no arguments that
    returns an env, registered with Gymnasium.

    A function at the top level of an importable module is recorded as 'module:qualname', which a later
    process can make again (after importing the module, or with --trust-module). A lambda, a closure or a
    function of __main__ cannot be found again by name: it is registered under a process-local id
    ('deeprl-local/NAME-vN'), which works in this process, and a later process refuses it with a message.
    """
    if isinstance(env, str):
        return env
    if isinstance(env, gym.Env) or isinstance(env, gym.vector.VectorEnv) or not callable(env):
        raise UsageError(
            f"deeprl.train takes an env id (a string) or a function of no arguments that returns a gymnasium.Env, "
            f"got {type(env).__name__}. Pass the function that makes the env (e.g. `make_my_env`, not "
            "`make_my_env()`): deeprl makes every copy it needs (training, evaluation, videos) from it."
        )
    module, qualname = getattr(env, "__module__", None), getattr(env, "__qualname__", None)
    if (
        isinstance(module, str)
        and isinstance(qualname, str)
        and module != "__main__"
        and "<" not in qualname
        and module in sys.modules
        and _attribute(sys.modules[module], qualname) is env
    ):
        env_id = f"{module}:{qualname}"
        env_spec(env_id)  # registers it
        trust_callable(env)  # the user's own function: a run directory of this process may name it again
        return env_id
    for spec in gym.registry.values():  # the same function given again: its id from before
        if spec.namespace == LOCAL_NAMESPACE and env_function_of(spec) is env:
            return spec.id
    name = re.sub(r"[^\w.]+", "_", getattr(env, "__name__", None) or type(env).__name__).strip("_") or "env"
    version = 0
    while f"{LOCAL_NAMESPACE}/{name}-v{version}" in gym.registry:
        version += 1
    env_id = f"{LOCAL_NAMESPACE}/{name}-v{version}"
    gym.register(id=env_id, entry_point=partial(_call_env_function, env))
    return env_id


# ---------------------------------------------------------------- names read from a run directory
# A run directory someone sent you is data: the names it holds ('module:EnvId', 'module:function', wrappers)
# must not choose code to run. Modules the user vouched for (--trust-module, trust_modules=) and callables
# the user handed to deeprl in this process are trusted; deeprl's own deeprl.wrappers always is.
_TRUSTED_MODULES: set[str] = set()
_OWN_MODULES = ("deeprl.wrappers",)  # the deeprl module presets and --wrapper name


def import_trusted_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import the modules the user vouched for (--trust-module, `trust_modules=`): their own env packages,
    whose functions and Env classes a run directory may then name."""
    if isinstance(modules, str):
        modules = (modules,)
    for module in modules:
        if not isinstance(module, str) or not module:
            raise UsageError(f"trust_modules takes module names (strings), got {module!r}.")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UsageError(f"--trust-module {module}: could not import it ({e}). Check the name.") from None
        _TRUSTED_MODULES.add(module)


def _is_trusted_module(module: str) -> bool:
    """Named with --trust-module (or a submodule of one), or deeprl's own deeprl.wrappers."""
    return any(module == t or module.startswith(f"{t}.") for t in (*_TRUSTED_MODULES, *_OWN_MODULES))


def _trust_fix(modules: list[str]) -> str:
    them = "them" if len(modules) > 1 else "that module"
    return (
        f"If you trust {them}: pass --trust-module {' '.join(modules)} to deeprl eval/render/plot/train --resume, "
        f"or trust_modules={modules!r} to deeprl.load/evaluate/resume in Python."
    )


def check_names_from_file(env_id: str, source: str, wrappers: tuple[str, ...] | list[str] = ()) -> None:
    """Refuse, with a UsageError, an env id or wrapper read from a file (a run directory's config.json, a
    resume state) that would run code the user did not choose. Call it before making anything.

    - A module it names is never imported unless it is imported already or the user trusted it: importing
      runs code, and a file next to a run directory may be on sys.path.
    - A 'module:EnvId' that the (imported) module registered is made by gymnasium.make like any id.
    - Anything else it names gets called, so it must be a plain Python function or a gymnasium Env/Wrapper
      class, defined in the named module (or a submodule: not re-exported from elsewhere), named without
      dotted attribute chains, from a trusted module: never a builtin (`builtins:exit`), a bound method
      (`os:environ.clear`), or a function of whatever module happens to be imported.
    """
    if not isinstance(env_id, str) or not all(isinstance(w, str) for w in wrappers):
        raise UsageError(f"{source} holds an invalid env id or wrapper list: it was changed after deeprl wrote it.")
    named = [s.split(":", 1)[0] for s in (env_id, *wrappers) if ":" in s]
    missing = list(
        dict.fromkeys(m for m in named if m not in sys.modules and m != "deeprl" and not m.startswith("deeprl."))
    )
    if missing:
        what = f"the env {env_id!r}" if ":" in env_id and env_id.split(":", 1)[0] in missing else "its wrappers"
        raise UsageError(
            f"{source} names {what}, which needs the module{'s' if len(missing) > 1 else ''} {' '.join(missing)} "
            "imported, and deeprl does not import modules named in a run directory (importing runs their code). "
            + _trust_fix(missing)
        )
    if ":" in env_id:
        known = gym.registry.get(env_id)
        if known is not None:  # registered in this process: by the user, or after passing this check
            function = env_function_of(known)
            if function is not None:
                _check_callable(env_id, "env", source, function)
        elif env_id.split(":", 1)[1] not in gym.registry:  # not an id the module registered: a callable
            _check_callable(env_id, "env", source)
    for wrapper in wrappers:
        _check_callable(wrapper, "wrapper", source)


def _check_callable(path: str, what: str, source: str, obj: Any = None) -> None:
    """`path` ('module:name') is something deeprl may call on the word of a file (see check_names_from_file)."""
    if path in trust.TRUSTED_NAMES and (obj is None or _qualified_name(obj) == path):
        return
    module_name, _, name = path.partition(":")
    refused = f"{source} names the {what} {path!r}"
    if not module_name or not name.isidentifier():
        raise UsageError(
            f"{refused}: from a run directory deeprl takes only 'module:name' with one name defined in the module, "
            "no dotted attribute chains. Nothing was run. Train again with a function (or Env class) at the top "
            "level of your module."
        )
    if obj is None:
        module = sys.modules.get(module_name)
        if module is None:  # deeprl's own (check_names_from_file refused any other module not imported)
            try:
                module = importlib.import_module(module_name)
            except (ImportError, ValueError, TypeError) as e:
                raise UsageError(f"{refused}, and module {module_name} cannot be imported ({e}).") from None
        obj = vars(module).get(name)  # no module __getattr__, no descriptors: reading runs nothing
        if obj is None and _is_trusted_module(module_name):
            obj = getattr(module, name, None)
        if obj is None:
            raise UsageError(f"{refused}, and module {module_name} has no {name!r}. Nothing was run.")
    if not (inspect.isfunction(obj) or (inspect.isclass(obj) and issubclass(obj, gym.Env))):
        kind = "bound method" if inspect.ismethod(obj) else type(obj).__name__
        raise UsageError(
            f"{refused}, which is a {kind}: from a run directory deeprl calls only a plain Python function or a "
            "gymnasium Env/Wrapper class defined in the module it names. Nothing was run."
        )
    defined_in = getattr(obj, "__module__", None) or "?"
    if defined_in != module_name and not defined_in.startswith(f"{module_name}."):
        raise UsageError(
            f"{refused}, which module {module_name} only re-exports: it is defined in {defined_in} "
            f"({defined_in}:{obj.__qualname__}), and deeprl trusts a module's own functions and classes only. "
            f"Nothing was run. Name it where it is defined, and trust that module."
        )
    if not _is_trusted_module(module_name):
        raise UsageError(
            f"{refused}, a {'function' if inspect.isfunction(obj) else 'class'} of module {module_name}, and deeprl "
            "calls nothing a run directory names from a module you have not trusted (the file would choose the "
            f"code to run). Nothing was run. {_trust_fix([module_name])}"
        )


def resolve_wrapper(path: str) -> Callable[[gym.Env], gym.Env]:
    """The callable named by '--wrapper module:callable', or a UsageError saying what is wrong.

    Typed by the user, any callable goes; a name read from a run directory has passed
    `check_names_from_file` before it gets here."""
    module_name, colon, name = path.partition(":") if isinstance(path, str) else ("", "", "")
    fix = "Name a function of your module that takes an env and returns the wrapped env, e.g. --wrapper my_pkg.wrap:my_wrapper."
    if not colon or not module_name or not name:
        raise UsageError(f"--wrapper {path!r} is not of the form 'module:callable'. {fix}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"--wrapper {path}: could not import {module_name!r} ({e}). {fix}") from None
    wrapper = _attribute(module, name)
    if wrapper is None:
        raise UsageError(f"--wrapper {path}: module {module_name!r} has no attribute {name!r}. {fix}")
    if not callable(wrapper):
        raise UsageError(f"--wrapper {path}: {module_name}.{name} is a {type(wrapper).__name__}, not callable. {fix}")
    return wrapper


# ---------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class EnvMaker:
    """How to make one env: picklable, so that worker processes (A3C, async vector envs) and later
    processes (`deeprl eval`) make exactly the env training made. Calling it makes one env.

    `kwargs` go to gymnasium.make; `wrappers` are 'module:callable' names applied in order after deeprl's
    Atari preprocessing; `max_episode_steps` is a TimeLimit around everything, counting agent steps
    (None: the env's own limit); `action_mask` joins `info["action_mask"]` to the observation
    (deeprl.wrappers.InfoActionMask) for envs that report one. `str(maker)` is the env id.
    """

    env_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    wrappers: tuple[str, ...] = ()
    max_episode_steps: int | None = None
    action_mask: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", dict(self.kwargs))  # a copy: the recipe does not change under us
        object.__setattr__(self, "wrappers", tuple(self.wrappers))

    def __str__(self) -> str:
        return self.env_id

    @property
    def spec(self) -> gym.envs.registration.EnvSpec:
        return env_spec(self.env_id)

    @property
    def is_atari(self) -> bool:
        return is_atari_spec(self.spec)

    @property
    def has_time_limit(self) -> bool:
        """Do its episodes end by themselves (--max-episode-steps, the spec's TimeLimit, an ALE game)?"""
        return self.max_episode_steps is not None or has_time_limit(self.spec)

    def check(self) -> None:
        """Fail now, with a UsageError, on an unknown id, a wrapper that cannot be found, or env_kwargs for an
        env given as a function."""
        function = env_function_of(env_spec(self.env_id))
        if function is not None and self.kwargs:
            _call_env_function(function, **self.kwargs)  # raises: a function env takes no env_kwargs
        for wrapper in self.wrappers:
            resolve_wrapper(wrapper)

    def __call__(self) -> gym.Env:
        return self.make()

    def make(self, *, render_mode: str | None = None, seed: int | None = None) -> gym.Env:
        """One env. With `seed`, its first reset and its action space are seeded."""
        self.check()
        env = _make(self, render_mode)
        setattr(env, _MAKER_ATTR, self)
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    def make_vec(
        self,
        n_envs: int,
        *,
        vectorization: Literal["auto", "sync", "async"] = "auto",
        record_stats: bool = False,
        render_mode: str | None = None,
    ) -> gym.vector.VectorEnv:
        """`n_envs` copies in one Gymnasium VectorEnv (autoreset mode NEXT_STEP); see `make_vec_env`."""
        self.check()  # in this process: an async env's subprocess would report it less clearly
        spec = self.spec
        if (
            vectorization == "auto"
            and spec.vector_entry_point is not None
            and render_mode is None
            and not self.wrappers
            and not is_atari_spec(spec)  # Atari takes the wrapped single envs (deeprl/atari.py)
        ):
            extra = {} if self.max_episode_steps is None else {"max_episode_steps": self.max_episode_steps}
            try:
                venv = gym.make_vec(spec, n_envs, vectorization_mode="vector_entry_point", **extra, **self.kwargs)
            except UsageError:
                raise
            except Exception as e:  # noqa: BLE001 - with env_kwargs, any error may be theirs
                if not self.kwargs:
                    raise
                raise _env_kwargs_error(self, e, spec.vector_entry_point) from None
        else:
            # partial of a module-level function (not a lambda) keeps the vector env picklable for resume.
            make_one = partial(_make, self, render_mode)
            cls = gym.vector.AsyncVectorEnv if vectorization == "async" else gym.vector.SyncVectorEnv
            venv = cls([make_one] * n_envs, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
        if record_stats:
            venv = gym.wrappers.vector.RecordEpisodeStatistics(venv)
        setattr(venv, _MAKER_ATTR, self)
        return venv


def env_maker(run: RunOptions) -> EnvMaker:
    """The recipe of a run's env, from its options (config.json's "run"). Masks in `info` join the
    observation; `fit_mask_to_algorithm` drops them again for an algorithm that cannot take them."""
    return EnvMaker(run.env_id, run.env_kwargs, run.wrappers, run.max_episode_steps, action_mask=True)


def maker_of(env: Any) -> EnvMaker | None:
    """The recipe an env (or vector env) was made from here, or None for an env made elsewhere."""
    return getattr(env, _MAKER_ATTR, None)


def attach_maker(env: Any, maker: EnvMaker) -> None:
    """Record on `env` the recipe it was made from (for an env made before envs carried theirs)."""
    setattr(env, _MAKER_ATTR, maker)


def fit_mask_to_algorithm(
    maker: EnvMaker,
    support: Callable[[gym.Space, gym.Space], str | None],
    make: Callable[[EnvMaker], Any],
    *,
    algo: str | None = None,
    note: bool = True,
) -> tuple[Any, EnvMaker]:
    """`make(maker)`, and the maker it was made from: the same one, or, when the env's mask joined its
    observation and the algorithm (its `support(obs_space, action_space)`, registry.py) cannot take that
    Dict but can take the env's own observation, the env made again without the mask, and a `note:` on
    stderr saying that the algorithm will take masked actions (and which algorithms honour masks). Tabular
    methods on Taxi: a Q-table indexes Discrete states, and learns Taxi without masks (a masked action
    there costs -10 and moves nothing). Only a mask InfoActionMask joined is dropped: an env's own Dict with
    an `action_mask` key stays as it is, and the algorithm's space check says what it cannot take. `algo`
    names the algorithm in the note (default: the registered algorithms with this `support`); `note=False`
    (loading a trained run, where training already said it) keeps it quiet."""
    from deeprl.spaces import MASK_KEY, has_mask  # imports torch, which making an env alone does not need
    from deeprl.wrappers import OBS_KEY

    env = make(maker)
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    act_space = getattr(env, "single_action_space", env.action_space)
    joined = (  # InfoActionMask's Dict; an env's own Dict with an action_mask key (PettingZoo style) is not
        maker.action_mask
        and isinstance(obs_space, gym.spaces.Dict)
        and set(obs_space.spaces) == {OBS_KEY, MASK_KEY}
        and has_mask(obs_space)
    )
    if (
        not joined
        or support(obs_space, act_space) is None
        or support(obs_space[OBS_KEY], act_space) is not None  # neither: the algorithm's check says why
    ):
        return env, maker
    env.close()
    maker = dataclasses.replace(maker, action_mask=False)
    env = make(maker)
    plain_space = getattr(env, "single_observation_space", env.observation_space)
    if note and plain_space != obs_space:  # the mask was InfoActionMask's (not the env's own Dict of those keys)
        note = _mask_dropped_note(maker, algo, support, obs_space, act_space)
        print(f"note: {note}", file=sys.stderr, flush=True)
    return env, maker


def _mask_dropped_note(
    maker: EnvMaker,
    algo: str | None,
    support: Callable[[gym.Space, gym.Space], str | None],
    masked: gym.Space,
    actions: gym.Space,
) -> str:
    from deeprl.registry import ALGOS
    from deeprl.spaces import MASK_KEY

    users = [spec.name for spec in ALGOS.values() if spec.support is support]
    who = algo or ("/".join(users) if users else "this algorithm")
    able = [spec.name for spec in ALGOS.values() if spec.support(masked, actions) is None]
    others = f" Algorithms that honour masks: {', '.join(able)}." if able else ""
    return (
        f"{who} cannot honour the action mask {maker.env_id} reports in info[{MASK_KEY!r}]: learning from the env's "
        f"own observations, it will take masked actions.{others}"
    )


def _env_kwargs_error(maker: EnvMaker, error: Exception, entry_point: Any) -> UsageError:
    """The UsageError for an env that failed to make with --env-kwargs: the kwargs, the error, and the
    parameters its constructor takes (when its entry point is at hand without importing anything)."""
    given = " ".join(f"{k}={v!r}" for k, v in maker.kwargs.items())
    parameters = _entry_point_parameters(entry_point)
    takes = ""
    if parameters is not None:
        named = [p for p in parameters if not p.startswith("**")]
        takes = f" It takes: {', '.join(parameters) or 'no keyword arguments'}."
        if "**kwargs" not in parameters:
            for key in maker.kwargs:
                if key not in named:
                    takes += did_you_mean(key, named)
    return UsageError(
        f"Could not make {maker.env_id!r} with --env-kwargs {given}: {type(error).__name__}: {error}.{takes} "
        "Fix or drop the --env-kwargs."
    )


def _entry_point_parameters(entry_point: Any) -> list[str] | None:
    """The keyword parameters of an env's constructor (less those deeprl sets itself), or None."""
    target = entry_point
    if isinstance(entry_point, str):
        module_name, _, attr = entry_point.partition(":")
        module = sys.modules.get(module_name)  # imported already when gym.make tried: nothing new runs
        target = _attribute(module, attr) if module is not None and attr else None
    if target is None or not callable(target):
        return None
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [n for n in names if n not in ("render_mode", "num_envs", "max_episode_steps")]  # deeprl sets these
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        names.append("**kwargs")
    return names


def _make(maker: EnvMaker, render_mode: str | None = None) -> gym.Env:
    """One env, built inside out as the module docstring lists."""
    spec = env_spec(maker.env_id)
    kwargs = dict(maker.kwargs)
    # Pass only what is set: a user's env whose __init__ takes no render_mode must still work.
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    # `atari_preprocessing=False` (an env kwarg deeprl takes for itself) gives the raw ALE env.
    atari = is_atari_spec(spec) and kwargs.pop("atari_preprocessing", True)
    if atari:  # the standard Atari preprocessing (deeprl/atari.py) skips frames itself
        if kwargs.get("frameskip", 1) != 1:
            raise UsageError(
                f"{maker.env_id}: deeprl's Atari preprocessing skips 4 frames itself (max-pooling the last two), "
                f"so the ALE env is made with frameskip=1; drop frameskip={kwargs['frameskip']!r} from --env-kwargs."
            )
        kwargs["frameskip"] = 1
    # With --max-episode-steps, the spec's own TimeLimit (inside any frame skipping) is left out (-1)
    # and the run's goes on last, so it counts the agent's steps.
    limit = {} if maker.max_episode_steps is None else {"max_episode_steps": -1}
    try:
        env = gym.make(spec, **limit, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        extra = next((x for k, x in _EXTRAS.items() if k.lower() in str(e).lower()), None)
        fix = f"pip install 'gymnasium[{extra}]'" if extra else "install the package it names"
        raise UsageError(f"{maker.env_id} needs a package that is not installed: {e}. Fix: {fix}.") from None
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - with env_kwargs, any error may be theirs (a KeyError for a map name)
        if maker.kwargs:
            raise _env_kwargs_error(maker, e, spec.entry_point) from None
        if isinstance(e, gym.error.Error) or "must inherit from the gymnasium.Env" in str(e):
            raise UsageError(f"Could not make {maker.env_id!r}: {e}") from None  # e.g. an env function gave no env
        raise
    if atari:
        from deeprl.atari import wrap_atari

        env = wrap_atari(env)
    for path in maker.wrappers:
        wrapper = resolve_wrapper(path)
        try:
            wrapped = wrapper(env)
        except UsageError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's callable: any error is a wrong wrapper for this env
            env.close()
            raise UsageError(
                f"--wrapper {path} failed on {maker.env_id}: {type(e).__name__}: {e}. Check that it fits this env "
                f"(observation space {env.observation_space}, action space {env.action_space}) and takes only "
                "the env: a wrapper that needs settings goes inside a function of yours that passes them."
            ) from None
        if not isinstance(wrapped, gym.Env):
            raise UsageError(
                f"--wrapper {path} returned a {type(wrapped).__name__}, not a gymnasium.Env: a wrapper takes the "
                "env and returns the wrapped env (e.g. `return gymnasium.wrappers.ClipReward(env, -1, 1)`)."
            )
        env = wrapped
    if maker.action_mask:
        from deeprl.wrappers import join_info_mask

        env = join_info_mask(env)
    if maker.max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, maker.max_episode_steps)
    return env


# ---------------------------------------------------------------- by id (the functions callers know)
def _as_maker(env_id: str | EnvMaker, max_episode_steps: int | None, kwargs: dict[str, Any]) -> EnvMaker:
    if isinstance(env_id, EnvMaker):
        changes: dict[str, Any] = {"kwargs": {**env_id.kwargs, **kwargs}} if kwargs else {}
        if max_episode_steps is not None:
            changes["max_episode_steps"] = max_episode_steps
        return dataclasses.replace(env_id, **changes) if changes else env_id
    return EnvMaker(env_id, kwargs, (), max_episode_steps)


def make_env(
    env_id: str | EnvMaker,
    *,
    seed: int | None = None,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
    **kwargs: Any,
) -> gym.Env:
    """One env (`kwargs` go to gymnasium.make). With `seed`, its first reset and its action space are
    seeded. An id gets deeprl's preprocessing (Atari) but no wrappers or mask joining: pass an
    EnvMaker (`env_maker(run_options)`) for a run's env."""
    return _as_maker(env_id, max_episode_steps, kwargs).make(render_mode=render_mode, seed=seed)


def make_vec_env(
    env_id: str | EnvMaker,
    n_envs: int,
    *,
    vectorization: Literal["auto", "sync", "async"] = "auto",
    max_episode_steps: int | None = None,
    record_stats: bool = False,
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """`n_envs` copies of the env in one Gymnasium VectorEnv (autoreset mode NEXT_STEP).

    auto prefers the env's numpy-vectorized implementation (`vector_entry_point`, e.g. CartPole),
    which steps all copies in one call, and falls back to SyncVectorEnv (always, for Atari and for a
    recipe with wrappers, which wrap single envs). Seed it with `venv.reset(seed=s)`: copy i gets seed
    s + i. `record_stats` adds Gymnasium's RecordEpisodeStatistics (info["episode"]); deeprl's
    algorithms count returns themselves, and the wrapper costs a third of a numpy-vectorized CartPole
    step, so it is off unless asked for.
    """
    render_mode = kwargs.pop("render_mode", None)
    maker = _as_maker(env_id, max_episode_steps, kwargs)
    return maker.make_vec(n_envs, vectorization=vectorization, record_stats=record_stats, render_mode=render_mode)


def autoreset_mode(venv: gym.vector.VectorEnv) -> gym.vector.AutoresetMode:
    """The vector env's autoreset mode (docs/design.md, convention 3); NEXT_STEP when it does not say."""
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
