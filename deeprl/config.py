"""Configuration: one frozen dataclass per algorithm and the run options they share.

Field docstrings are the CLI's help text (tyro reads them), so every hyperparameter is a flag
with a default and a one-line meaning. `__post_init__` validates before any work starts and names
the flag to fix. The presets (tuned values per algorithm and env id) are in deeprl/presets.py.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from deeprl.errors import UsageError, did_you_mean
from deeprl.math.schedules import Schedule
from deeprl.trust import trust_callable


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_range(
    obj: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise a UsageError naming the flag when `obj.name` lies outside [low, high] (or is NaN)."""
    value = getattr(obj, name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{name} must be a number, got {value!r}. Pass it with {_flag(name)} N.")
    bad = isinstance(value, float) and math.isnan(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
        raise UsageError(f"{name} must be in {interval}, got {value!r}. Pass a value in that range with {_flag(name)}.")


def check_choices(obj: Any) -> None:
    """Every Literal-typed field holds one of its allowed values (the CLI checks this too, Python
    callers and old checkpoints do not go through the CLI)."""
    for name, hint in typing.get_type_hints(type(obj), include_extras=False).items():
        if typing.get_origin(hint) is Literal:
            allowed = typing.get_args(hint)
            value = getattr(obj, name)
            if value not in allowed:
                raise UsageError(
                    f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}. Pass one with {_flag(name)}."
                )


def parse_env_kwargs(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`--env-kwargs continuous=True gravity=-9.8 map_name=8x8` as a dict: each value a Python literal
    when it is one (ast.literal_eval: numbers, True/False/None, strings, tuples, lists, dicts), else the
    string itself, as the rl-baselines3-zoo reads them (never `eval`: a value is data, not code)."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise UsageError(
                f"--env-kwargs {item!r} is not KEY=VALUE with KEY a Python name. Give each keyword argument of "
                "gymnasium.make as KEY=VALUE, e.g. --env-kwargs continuous=True map_name=8x8."
            )
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            kwargs[key] = text
    return kwargs


def _env_kwargs_items(kwargs: dict[str, Any]) -> list[str]:
    return [f"{key}={value!r}" for key, value in kwargs.items()]


# `--env-kwargs K=V ...` on the command line, a dict in Python and in config.json.
_ENV_KWARGS_FLAG = tyro.constructors.PrimitiveConstructorSpec(
    nargs="*",
    metavar="KEY=VALUE",
    instance_from_str=parse_env_kwargs,
    is_instance=lambda value: isinstance(value, dict),
    str_from_instance=_env_kwargs_items,
)
_RESERVED_ENV_KWARGS = {
    "render_mode": "deeprl picks the render mode itself (rgb_array for videos)",
    "max_episode_steps": "use --max-episode-steps, which counts agent steps",
    "disable_env_checker": "deeprl keeps Gymnasium's env checker",
}


@dataclass(frozen=True)
class RunOptions:
    """What every training run shares: env, seed, budget, evaluation, checkpoints, logging."""

    # Positional on the command line (`deeprl train ALGO ENV_ID`), so it is not also a flag.
    env_id: Annotated[str, tyro.conf.Suppress]
    """Gymnasium env id (any registered id; 'my_package.module:MyEnv-v0' to import your module first; or
    'my_package.module:make_env' for a function of no arguments that returns the env)."""
    seed: int = 0
    """Seed for the env, numpy, torch and Python's random: the same seed gives the same metrics.csv."""
    run_dir: Path | None = None
    """Where the run is written (default: runs/ENV__ALGO__sSEED__TIME)."""
    total_steps: int | None = None
    """Training budget in env steps (summed over parallel envs). Give this or --episodes."""
    episodes: int | None = None
    """Training budget in finished episodes. Give this or --total-steps."""
    eval_every: int = 10_000
    """Env steps between periodic evaluations (deterministic policy)."""
    eval_episodes: int = 10
    """Episodes per evaluation; the final evaluation in summary.json uses the same number."""
    stop_when_solved: bool = False
    """Stop at the first evaluation whose mean return reaches the threshold."""
    threshold: float | None = None
    """Return that counts as solved (default: the env's reward_threshold, if it has one)."""
    checkpoint_every: int | None = None
    """Env steps between checkpoints (default: only at the end). Each write is atomic."""
    n_envs: int = 1
    """Parallel environments used for collecting experience."""
    vectorization: Literal["auto", "sync", "async"] = "auto"
    """How parallel envs run: auto (Gymnasium's numpy-vectorized env where one exists, else sync), sync or async (subprocesses)."""
    max_episode_steps: int | None = None
    """Truncate episodes after this many agent steps (default: the env's own time limit; for Atari, the game's own end)."""
    env_kwargs: Annotated[dict[str, Any], _ENV_KWARGS_FLAG] = dataclasses.field(default_factory=dict)
    """Keyword arguments for gymnasium.make, as KEY=VALUE (values read as Python literals, else strings), e.g. --env-kwargs continuous=True map_name=8x8."""
    wrappers: Annotated[tuple[str, ...], tyro.conf.arg(name="wrapper"), tyro.conf.UseAppendAction] = ()
    """Wrap every env with this module:callable (env -> env), after deeprl's own preprocessing; repeat the flag for more, applied in order."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device for networks (auto: cuda when available and useful)."""
    torch_threads: int | None = None
    """torch.set_num_threads for the run (default: 1 for vector observations, whose small networks lose more to
    thread synchronisation than they gain, up to 10x on a busy machine; torch's own default for images)."""
    compile: bool = False
    """Run the update (and the acting forward pass) through torch.compile: CUDA graphs on a GPU, C++ kernels on the CPU (needs a C++ compiler). SAC, TD3, DDPG and PPO; the first updates wait for the compilation (seconds to a minute). Off by default: on a 2-core CPU it gains little (docs/benchmarks.md, "--compile")."""
    tensorboard: bool = False
    """Also log to TensorBoard in RUN_DIR/tb (needs the tensorboard package), with Stable-Baselines3's tag names."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the wandb package; entity and mode from W&B's settings, e.g. WANDB_MODE=offline)."""
    wandb_project: str | None = None
    """The W&B project (default: W&B's own, e.g. WANDB_PROJECT)."""
    # The W&B run's id, chosen when the run starts (or WANDB_RUN_ID): config.json records it, so --resume
    # continues the same W&B run. Not a flag.
    wandb_id: Annotated[str | None, tyro.conf.Suppress] = None
    video_every: int | None = None
    """Record one deterministic evaluation episode to RUN_DIR/videos/step_N.mp4 about every N env steps, and at the end."""
    progress: Literal["auto", "on", "off"] = "auto"
    """Progress bar: auto shows it only when stderr is a terminal."""
    backend: Literal["local", "ray"] = "local"
    """Where the envs are stepped: local (this process) or ray (--workers Ray actors, each a slice of the --n-envs envs; PPO, A2C, REINFORCE, DQN, DDPG, TD3, SAC, A3C; docs/ray.md)."""
    workers: int | None = None
    """Ray workers for --backend ray, one CPU each (default: the Ray cluster's CPUs, at most --n-envs)."""
    ray_address: str | None = None
    """Join the Ray cluster at this address (what `ray start --head` prints); default: a local Ray runtime for the run (loopback only)."""

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id.strip():
            raise UsageError(f"env_id must be a Gymnasium env id such as 'CartPole-v1', got {self.env_id!r}.")
        if self.total_steps is not None and self.episodes is not None:
            raise UsageError(
                f"Give one training budget, not both: --total-steps {self.total_steps} and "
                f"--episodes {self.episodes}. Drop one of them."
            )
        for name in (
            "total_steps",
            "episodes",
            "eval_every",
            "eval_episodes",
            "checkpoint_every",
            "n_envs",
            "max_episode_steps",
            "video_every",
            "torch_threads",
            "workers",
            "seed",
        ):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise UsageError(f"{name} must be a whole number, got {value!r}. Pass it with {_flag(name)} N.")
            if name != "seed":
                check_range(self, name, 1)
        check_range(self, "seed", 0, 2**31 - 1)  # room for the eval seeds above it
        check_range(self, "threshold")  # a number, and not NaN
        if self.threshold is not None and math.isinf(self.threshold):
            raise UsageError(f"threshold must be finite, got {self.threshold}. Pass a return with --threshold X.")
        check_choices(self)
        if not isinstance(self.wandb, bool):
            raise UsageError(f"wandb must be True or False, got {self.wandb!r}. Pass --wandb to log to W&B.")
        if not isinstance(self.compile, bool):
            raise UsageError(f"compile must be True or False, got {self.compile!r}. Pass --compile to compile.")
        if self.compile and self.backend == "ray":
            raise UsageError(
                "--compile is for runs on the local backend: with --backend ray the envs and the acting live in Ray "
                "workers. Drop --compile, or --backend ray."
            )
        for name in ("wandb_project", "wandb_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or "/" in value):
                raise UsageError(f"{name} must be a name (no '/'), got {value!r}. Pass it with {_flag(name)} NAME.")
        if self.wandb_project is not None and not self.wandb:
            raise UsageError(
                f"--wandb-project {self.wandb_project} names the project of a W&B run, and W&B logging is off. "
                "Add --wandb, or drop --wandb-project."
            )
        if self.backend != "ray":
            for name in ("workers", "ray_address"):
                if getattr(self, name) is not None:
                    raise UsageError(
                        f"{_flag(name)} {getattr(self, name)} is for Ray runs, and the backend is {self.backend}. "
                        f"Add --backend ray, or drop {_flag(name)}."
                    )
        if self.ray_address is not None and (not isinstance(self.ray_address, str) or not self.ray_address.strip()):
            raise UsageError(f"ray_address must be an address such as 10.0.0.1:6379, got {self.ray_address!r}.")
        if self.run_dir is not None and not isinstance(self.run_dir, Path):
            object.__setattr__(self, "run_dir", Path(self.run_dir))
        object.__setattr__(self, "env_kwargs", check_env_kwargs(self.env_kwargs))
        object.__setattr__(self, "wrappers", check_wrappers(self.wrappers))


def check_env_kwargs(env_kwargs: Any) -> dict[str, Any]:
    """env_kwargs as config.json will hold them: training makes its env with exactly what a later
    `deeprl eval` reads back (a tuple comes back a list), and what JSON cannot hold fails now."""
    if not isinstance(env_kwargs, dict) or not all(isinstance(k, str) and k.isidentifier() for k in env_kwargs):
        raise UsageError(
            f"env_kwargs must be a dict of keyword arguments for gymnasium.make (names to values), got {env_kwargs!r}."
        )
    for key, why in _RESERVED_ENV_KWARGS.items():
        if key in env_kwargs:
            raise UsageError(f"env_kwargs cannot set {key}: {why}. Drop it from --env-kwargs.")
    try:
        return json.loads(json.dumps(env_kwargs, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise UsageError(
            f"env_kwargs {env_kwargs!r} cannot be recorded in config.json ({e}). Give values JSON can hold: numbers, "
            "strings, True/False/None, lists and dicts of them."
        ) from None


def check_wrappers(wrappers: Any) -> tuple[str, ...]:
    """Each wrapper as 'module:callable' (a module-level function given in Python becomes its name)."""
    if isinstance(wrappers, str) or callable(wrappers):
        wrappers = (wrappers,)
    if not isinstance(wrappers, (list, tuple)):
        raise UsageError(f"wrappers must be a list of 'module:callable' names, got {wrappers!r}.")
    names = []
    for wrapper in wrappers:
        if callable(wrapper) and not isinstance(wrapper, str):
            module, qualname = getattr(wrapper, "__module__", None), getattr(wrapper, "__qualname__", "")
            if not module or module == "__main__" or "<" in qualname:
                raise UsageError(
                    f"The wrapper {wrapper!r} has no importable name, and a run records its wrappers by name (so that "
                    "eval, render and resume apply them again). Define it at the top level of a module and pass it, "
                    "or its 'module:callable' name."
                )
            trust_callable(wrapper)  # handed over in Python (a file holds names only): this process may name it again
            wrapper = f"{module}:{qualname}"
        module, colon, name = wrapper.partition(":") if isinstance(wrapper, str) else ("", "", "")
        if not colon or not module or not name:
            raise UsageError(
                f"--wrapper {wrapper!r} is not of the form 'module:callable'. Name a function that takes an env and "
                "returns the wrapped env, e.g. --wrapper deeprl.wrappers:car_racing or --wrapper my_pkg.wrap:my_wrapper."
            )
        names.append(wrapper)
    return tuple(names)


@dataclass(frozen=True)
class TabularConfig:
    """Tabular TD control (Sarsa, Expected Sarsa, Sarsamax/Q-learning) and first-visit MC control."""

    alpha: float = 0.1
    """Step size α in Q(S,A) ← Q(S,A) + α (target − Q(S,A))."""
    gamma: float = 0.99
    """Discount factor γ."""
    epsilon: float = 0.1
    """ε of the ε-greedy behaviour policy; with a decaying schedule, its value in the first episode."""
    epsilon_schedule: Schedule = "constant"
    """constant: ε throughout; glie: ε/k in episode k (1/k with --epsilon 1); linear: ε to --epsilon-final."""
    epsilon_final: float = 0.0
    """Where linear decay ends, and the floor under GLIE."""
    epsilon_decay_episodes: int = 1000
    """Episodes over which linear decay goes from --epsilon to --epsilon-final."""
    q_init: float = 0.0
    """Initial value of every Q(s, a) (optimistic values explore more)."""

    def __post_init__(self) -> None:
        check_range(self, "alpha", 0.0, 1.0, low_open=True)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "epsilon", 0.0, 1.0)
        check_range(self, "epsilon_final", 0.0, 1.0)
        check_range(self, "epsilon_decay_episodes", 1)
        check_range(self, "q_init")
        check_choices(self)


@dataclass(frozen=True)
class DQNConfig:
    """DQN (Mnih et al. 2015; notes, "Experience Replay" and "Deep QRLN") with the Double, Dueling,
    prioritized-replay and n-step extensions as flags."""

    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer sizes of the Q-network's MLP (image observations use the Nature CNN instead)."""
    learning_rate: float = 1e-3
    """Adam step size for the online weights w."""
    gamma: float = 0.99
    """Discount factor γ."""
    batch_size: int = 64
    """Transitions per gradient step."""
    buffer_size: int = 100_000
    """Replay buffer capacity (transitions)."""
    learning_starts: int = 1_000
    """Env steps of uniform random actions before the first update."""
    train_freq: int = 4
    """Env steps (summed over parallel envs) between rounds of gradient steps."""
    gradient_steps: int = 1
    """Gradient steps per round."""
    target_update_interval: int = 500
    """Env steps C between target-network updates w⁻ ← τ w + (1 − τ) w⁻."""
    tau: float = 1.0
    """Polyak rate of the target update; 1 copies the weights (DQN's hard update every C steps)."""
    epsilon_start: float = 1.0
    """ε of the ε-greedy behaviour policy when learning starts."""
    epsilon_final: float = 0.05
    """ε after the decay."""
    epsilon_decay_steps: int = 10_000
    """Env steps over which ε falls linearly from --epsilon-start to --epsilon-final."""
    loss: Literal["huber", "mse"] = "huber"
    """TD-error loss: huber (the Nature DQN's error clipping) or mse (the notes' squared error)."""
    max_grad_norm: float | None = 10.0
    """Clip the gradient's global norm to this (None: no clipping)."""
    double: bool = False
    """Double DQN: the online network picks argmax_a q(s', a), the target network values it."""
    dueling: bool = False
    """Dueling heads: q(s, a) = V(s) + A(s, a) − mean_a A(s, a)."""
    prioritized: bool = False
    """Proportional prioritized replay (sum-tree), with importance-sampling weights."""
    priority_alpha: float = 0.6
    """α of prioritized replay: P(i) ∝ p_i^α (0 is uniform)."""
    priority_beta: float = 0.4
    """β of the importance-sampling weights at the start; annealed linearly to 1."""
    priority_beta_steps: int = 100_000
    """Env steps over which β rises to 1."""
    n_step: int = 1
    """n of n-step returns r_t + γ r_{t+1} + ... + γ^{n-1} r_{t+n-1} + γ^n max_a q(s_{t+n}, a; w⁻)."""
    clip_rewards: bool = False
    """Learn from sign(r) (Atari); metrics.csv and evaluations keep the real scores."""
    life_loss_terminal: bool = False
    """Atari: learn as if the episode terminated when a life is lost (the env plays on, scores stay real)."""

    def __post_init__(self) -> None:
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise UsageError(
                f"hidden must be one or more positive layer sizes, got {self.hidden!r}. "
                "Pass them with --hidden 128 128."
            )
        check_range(self, "learning_rate", 0.0, low_open=True)
        check_range(self, "gamma", 0.0, 1.0)
        for name in (
            "batch_size",
            "buffer_size",
            "train_freq",
            "gradient_steps",
            "target_update_interval",
            "epsilon_decay_steps",
            "priority_beta_steps",
            "n_step",
        ):
            check_range(self, name, 1)
        check_range(self, "n_step", 1, 255)
        check_range(self, "learning_starts", 0)
        check_range(self, "tau", 0.0, 1.0, low_open=True)
        for name in ("epsilon_start", "epsilon_final", "priority_alpha", "priority_beta"):
            check_range(self, name, 0.0, 1.0)
        check_range(self, "max_grad_norm", 0.0, low_open=True)
        check_choices(self)


@dataclass(frozen=True)
class PQNConfig:
    """PQN (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning"): Q-learning on many parallel
    envs without replay or target network; LayerNorm in the Q-network, Q(λ) returns, epochs of minibatches."""

    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer sizes of the Q-network's MLP, each Linear, LayerNorm, ReLU (images: after the CNN)."""
    layer_norm: bool = True
    """LayerNorm after each hidden Linear (the paper's regulariser that stands in for a target network)."""
    n_steps: int = 32
    """Env steps per env in each rollout (the rollout is n_steps x n_envs transitions)."""
    n_epochs: int = 4
    """Passes over each rollout."""
    minibatch_size: int = 256
    """Transitions per gradient step."""
    learning_rate: float = 3e-4
    """Adam step size."""
    anneal_steps: int | None = None
    """Anneal the learning rate linearly to 0 over this many env steps (None: constant)."""
    gamma: float = 0.99
    """Discount factor γ."""
    q_lambda: float = 0.65
    """λ of the Q(λ) returns: 0 is the one-step Q-learning target, 1 the discounted return to the rollout's end."""
    epsilon_start: float = 1.0
    """ε of the ε-greedy behaviour policy at the start."""
    epsilon_final: float = 0.05
    """ε after the decay."""
    epsilon_decay_steps: int = 10_000
    """Env steps over which ε falls linearly from --epsilon-start to --epsilon-final (ε is fixed per rollout)."""
    reward_scale: float = 1.0
    """Learn from reward_scale · r (the paper's 0.1 on CartPole); metrics.csv and evaluations keep the real returns."""
    max_grad_norm: float | None = 10.0
    """Clip the gradient's global norm to this (None: no clipping)."""

    def __post_init__(self) -> None:
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise UsageError(
                f"hidden must be one or more positive layer sizes, got {self.hidden!r}. "
                "Pass them with --hidden 128 128."
            )
        for name in ("n_steps", "n_epochs", "minibatch_size", "epsilon_decay_steps"):
            check_range(self, name, 1)
        check_range(self, "anneal_steps", 1)
        check_range(self, "learning_rate", 0.0, low_open=True)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "q_lambda", 0.0, 1.0)
        for name in ("epsilon_start", "epsilon_final"):
            check_range(self, name, 0.0, 1.0)
        check_range(self, "reward_scale", 0.0, low_open=True)
        check_range(self, "max_grad_norm", 0.0, low_open=True)
        check_choices(self)


# --- Continuous control: DDPG, TD3, SAC (issue 6) ---------------------------------------------------
@dataclass(frozen=True)
class OffPolicyConfig:
    """What DDPG, TD3 and SAC share: networks, step sizes, γ, τ and the replay schedule."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor and of each critic."""
    actor_lr: float = 1e-3
    """Adam step size of the actor (the policy)."""
    critic_lr: float = 1e-3
    """Adam step size of the critic(s)."""
    gamma: float = 0.99
    """Discount factor γ."""
    tau: float = 0.005
    """Polyak rate of the target networks: θ' ← τθ + (1 − τ)θ'."""
    batch_size: int = 256
    """Transitions per gradient step."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity (transitions)."""
    learning_starts: int = 10_000
    """Env steps of uniform random actions before learning starts."""
    train_freq: int = 1
    """Vector-env steps between rounds of gradient steps."""
    gradient_steps: int = -1
    """Gradient steps per round; -1: one per env step collected since the last round."""

    def __post_init__(self) -> None:
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise UsageError(
                f"hidden must be one or more positive layer sizes, got {self.hidden!r}. "
                "Pass them with --hidden 256 256."
            )
        check_range(self, "actor_lr", 0.0, low_open=True)
        check_range(self, "critic_lr", 0.0, low_open=True)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "tau", 0.0, 1.0, low_open=True)
        check_range(self, "batch_size", 1)
        check_range(self, "buffer_size", 1)
        check_range(self, "learning_starts", 0)
        check_range(self, "train_freq", 1)
        if self.gradient_steps != -1:
            check_range(self, "gradient_steps", 1)
        check_choices(self)


@dataclass(frozen=True)
class DDPGConfig(OffPolicyConfig):
    """DDPG (Lillicrap et al. 2016; notes, "DDPG"): deterministic actor μ(s), critic Q(s, a), target copies."""

    noise: Literal["ou", "gaussian"] = "ou"
    """Exploration noise added to μ(s): ou (Ornstein-Uhlenbeck, as in the DDPG paper) or gaussian."""
    noise_sigma: float = 0.2
    """Scale σ of the exploration noise, in units of half the action range."""
    noise_theta: float = 0.15
    """Mean reversion θ of the Ornstein-Uhlenbeck noise."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "noise_sigma", 0.0)
        check_range(self, "noise_theta", 0.0, 1.0, low_open=True)


@dataclass(frozen=True)
class TD3Config(DDPGConfig):
    """TD3 (Fujimoto et al. 2018): DDPG with clipped double Q, target policy smoothing, delayed actor updates."""

    noise: Literal["gaussian", "ou"] = "gaussian"
    """Exploration noise added to μ(s): gaussian (as in the TD3 paper) or ou."""
    noise_sigma: float = 0.1
    """Scale σ of the exploration noise, in units of half the action range."""
    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    target_policy_noise: float = 0.2
    """σ of the smoothing noise on the target action (units of half the action range)."""
    target_noise_clip: float = 0.5
    """The smoothing noise is clipped to ±this."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "policy_delay", 1)
        check_range(self, "target_policy_noise", 0.0)
        check_range(self, "target_noise_clip", 0.0)


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """SAC (Haarnoja et al. 2018): squashed Gaussian policy, twin critics, automatic entropy tuning."""

    actor_lr: float = 3e-4
    """Adam step size of the policy."""
    learning_starts: int = 5_000
    """Env steps of uniform random actions before learning starts."""
    alpha_lr: float = 1e-3
    """Adam step size of log α (automatic entropy tuning)."""
    alpha: float = 0.2
    """Entropy coefficient α (its starting value when --autotune)."""
    autotune: bool = True
    """Tune α so that the policy's entropy tracks --target-entropy."""
    target_entropy: float | None = None
    """Entropy the tuning aims for (default: −(number of action dimensions))."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "alpha_lr", 0.0, low_open=True)
        check_range(self, "alpha", 0.0, low_open=True)
        check_range(self, "target_entropy")


RUN_FIELDS = frozenset(f.name for f in dataclasses.fields(RunOptions))


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def split_options(config_cls: type, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a flat {name: value} into (run options, algorithm config); unknown names are an error."""
    algo_fields = set(field_names(config_cls))
    unknown = [k for k in values if k not in RUN_FIELDS and k not in algo_fields]
    if unknown:
        allowed = sorted(RUN_FIELDS | algo_fields)
        hint = did_you_mean(unknown[0], allowed)
        raise UsageError(
            f"Unknown option {unknown[0]!r} for {config_cls.__name__}.{hint} Allowed: {', '.join(allowed)}."
        )
    # A name both have is the algorithm's (A3C's `workers`: its worker processes, or its Ray actors)
    run = {k: v for k, v in values.items() if k in RUN_FIELDS and k not in algo_fields}
    algo = {k: v for k, v in values.items() if k in algo_fields}
    return run, algo


def to_jsonable(obj: Any) -> Any:
    """A config dataclass as plain JSON types (paths as strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    return obj


# --- Policy gradients: REINFORCE, PPO, A2C (issue 5) -------------------------------------------------
@dataclass(frozen=True)
class PolicyNetConfig:
    """The policy/value networks and input scaling that REINFORCE, PPO and A2C share (nets.ActorCritic)."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the actor's and the critic's MLP torsos (image observations use the Nature CNN)."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Activation between hidden layers."""
    shared: bool = False
    """One torso for the policy and value heads (use it with image observations: one CNN instead of two)."""
    log_std: Literal["state-independent", "state-dependent"] = "state-independent"
    """Box actions: log σ of the Gaussian policy as a free parameter, or as an output of the policy head."""
    log_std_init: float = 0.0
    """Box actions: initial log σ."""
    bound: Literal["clip", "tanh"] = "clip"
    """Box actions: reach [low, high] by clipping the Gaussian sample, or by tanh-squashing it (log-prob corrected)."""
    normalize_obs: bool = False
    """Normalise observations by running mean/std (kept in the agent's state, so evaluation uses the same statistics)."""
    scale_rewards: bool = False
    """Divide rewards by the running std of the discounted return (for learning only; reported returns are raw)."""
    learning_rate: float = 3e-4
    """Adam's (or RMSprop's) step size."""
    anneal_steps: int | None = None
    """Anneal the learning rate linearly to 0 over this many env steps (None: constant)."""
    max_grad_norm: float | None = 0.5
    """Clip the gradient's global norm to this (None: no clipping)."""

    def _check_net(self) -> None:
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise UsageError(
                f"hidden must be one or more positive layer sizes, got {self.hidden!r}. Pass them with --hidden 64 64."
            )
        check_range(self, "log_std_init", -20.0, 2.0)
        check_range(self, "learning_rate", 0.0, low_open=True)
        check_range(self, "anneal_steps", 1)
        check_range(self, "max_grad_norm", 0.0, low_open=True)


@dataclass(frozen=True)
class ReinforceConfig(PolicyNetConfig):
    """REINFORCE (Williams 1992; notes "REINFORCE" to "The surrogate function") with its noise-reduction flags."""

    n_steps: int = 500
    """Horizon H: env steps per env in each batch of m = --n-envs trajectories (an episode still running is cut there)."""
    gamma: float = 0.99
    """Discount factor γ of the returns (1 gives the notes' undiscounted sums)."""
    future_rewards: bool = True
    """Credit assignment: weight log π(a_t|s_t) by R_t^future instead of the whole trajectory's R(τ)."""
    normalize_rewards: bool = True
    """Rewards normalization: (R − μ)/σ across the batch's trajectories."""
    baseline: bool = True
    """Subtract a learned value baseline V(s_t) from the returns (and bootstrap cut trajectories with it)."""
    reuse: int = 1
    """Gradient steps per batch: with K > 1 the batch is recycled through the importance-sampling surrogate L_sur."""
    clip: float | None = None
    """With --reuse K: clip the ratio to [1 − ε, 1 + ε] as PPO does (None: the plain surrogate, which can fall off a cliff)."""
    value_coef: float = 0.5
    """Weight of the baseline's squared error in the loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    learning_rate: float = 5e-3
    """Adam's step size."""
    max_grad_norm: float | None = None
    """Clip the gradient's global norm to this (None: no clipping, the plain estimator)."""

    def __post_init__(self) -> None:
        self._check_net()
        check_range(self, "n_steps", 1)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "reuse", 1)
        check_range(self, "clip", 0.0, 1.0, low_open=True)
        check_range(self, "value_coef", 0.0)
        check_range(self, "entropy_coef", 0.0)
        check_choices(self)


@dataclass(frozen=True)
class PPOConfig(PolicyNetConfig):
    """PPO with the clipped surrogate (Schulman et al. 2017; notes "PPO"), GAE and the usual implementation details."""

    n_steps: int = 128
    """Env steps per env in each batch (the rollout is n_steps x n_envs transitions)."""
    n_epochs: int = 4
    """K: passes over each batch."""
    minibatch_size: int = 256
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor γ."""
    gae_lambda: float = 0.95
    """λ of GAE(λ): 0 is the one-step TD advantage, 1 the Monte Carlo one."""
    clip_eps: float = 0.2
    """ε of the clipped surrogate: the ratio is clipped to [1 − ε, 1 + ε]."""
    anneal_clip: bool = False
    """Anneal ε linearly to 0 with the learning rate (over --anneal-steps)."""
    value_clip: float | None = None
    """Clip the critic's change around its old values to ±this (None: plain squared error)."""
    value_coef: float = 0.5
    """Weight of the critic's loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    normalize_advantages: bool = True
    """Normalise advantages to mean 0, std 1 in each minibatch."""
    target_kl: float | None = None
    """Stop a batch's epochs early once the approximate KL to the old policy exceeds this (None: never)."""

    def __post_init__(self) -> None:
        self._check_net()
        for name in ("n_steps", "n_epochs", "minibatch_size"):
            check_range(self, name, 1)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "gae_lambda", 0.0, 1.0)
        check_range(self, "clip_eps", 0.0, 1.0, low_open=True)
        check_range(self, "value_clip", 0.0, low_open=True)
        check_range(self, "value_coef", 0.0)
        check_range(self, "entropy_coef", 0.0)
        check_range(self, "target_kl", 0.0, low_open=True)
        check_choices(self)


@dataclass(frozen=True)
class A2CConfig(PolicyNetConfig):
    """A2C: synchronous n-step advantage actor-critic on vector envs (Mnih et al. 2016; notes "A2C/A3C")."""

    n_steps: int = 5
    """n: env steps per env before each update; returns bootstrap from V of the state reached."""
    gamma: float = 0.99
    """Discount factor γ."""
    gae_lambda: float = 1.0
    """λ of GAE(λ); 1 gives the paper's n-step advantage R_t^(n) − V(s_t)."""
    value_coef: float = 0.5
    """Weight of the critic's loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """rmsprop (the paper's, α = 0.99) or adam."""
    optimizer_eps: float = 1e-5
    """ε in the optimizer's denominator."""
    normalize_advantages: bool = False
    """Normalise advantages to mean 0, std 1 in each batch."""
    learning_rate: float = 7e-4
    """The optimizer's step size."""

    def __post_init__(self) -> None:
        self._check_net()
        check_range(self, "n_steps", 1)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "gae_lambda", 0.0, 1.0)
        check_range(self, "value_coef", 0.0)
        check_range(self, "entropy_coef", 0.0)
        check_range(self, "optimizer_eps", 0.0, low_open=True)
        check_choices(self)


# --- A3C (issue 5) -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class A3CConfig:
    """A3C (Mnih et al. 2016; notes, "A2C/A3C"): asynchronous workers, n-step advantage actor-critic, Hogwild."""

    workers: int = 2
    """Worker processes (Ray actors with --backend ray), each with its own env copy, applying gradients to the shared model without locks."""
    t_max: int = 5
    """Env steps per worker update (the paper's t_max): each update uses n-step returns over them."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the actor and of the critic."""
    lr: float = 7e-4
    """Step size of the shared optimizer."""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """Shared optimizer, its statistics in shared memory: rmsprop (the paper's shared RMSProp) or adam."""
    optimizer_eps: float = 1e-5
    """ε added to the optimizer's denominator (RMSProp's or Adam's)."""
    rmsprop_alpha: float = 0.99
    """RMSProp's decay of the squared-gradient average (the paper's α)."""
    gamma: float = 0.99
    """Discount factor γ."""
    entropy_coef: float = 0.01
    """Weight β of the entropy bonus that keeps the policy exploring."""
    value_coef: float = 0.5
    """Weight of the critic's squared error in the loss."""
    max_grad_norm: float = 40.0
    """Each worker clips its gradient to this global norm before applying it."""
    start_method: Literal["fork", "spawn"] = "fork"
    """How worker processes start: fork (fast, Linux/macOS) or spawn (portable, slower to start)."""

    def __post_init__(self) -> None:
        check_range(self, "workers", 1)
        check_range(self, "t_max", 1)
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise UsageError(
                f"hidden must be one or more positive layer sizes, got {self.hidden!r}. Pass them with --hidden 64 64."
            )
        check_range(self, "lr", 0.0, low_open=True)
        check_range(self, "optimizer_eps", 0.0, low_open=True)
        check_range(self, "rmsprop_alpha", 0.0, 1.0, high_open=True)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "entropy_coef", 0.0)
        check_range(self, "value_coef", 0.0)
        check_range(self, "max_grad_norm", 0.0, low_open=True)
        check_choices(self)
