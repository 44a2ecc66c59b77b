"""The algorithm registry: each algorithm's name, config, the spaces it handles, and the error that
names the alternatives when it cannot handle an env's spaces. Importing it imports no algorithm:
`AlgoSpec.load()` imports the implementation when a run needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from deeprl.config import (
    A2CConfig,
    A3CConfig,
    DDPGConfig,
    DQNConfig,
    PPOConfig,
    PQNConfig,
    ReinforceConfig,
    RunOptions,
    SACConfig,
    TabularConfig,
    TD3Config,
    split_options,
)
from deeprl.errors import UsageError, did_you_mean


def _is_discrete(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Discrete)


def describe_space(space: gym.Space) -> str:
    """A short name for a space: 'Box(4,) float32', 'Discrete(2)', 'Tuple(Discrete(32), ...)'."""
    if isinstance(space, gym.spaces.Box):
        return f"Box{space.shape} {space.dtype}"
    if isinstance(space, gym.spaces.Tuple):
        return f"Tuple({', '.join(describe_space(s) for s in space.spaces)})"
    if isinstance(space, gym.spaces.Dict):
        return f"Dict({', '.join(f'{k}: {describe_space(s)}' for k, s in space.spaces.items())})"
    return str(space)


def tabular_support(obs_space: gym.Space, action_space: gym.Space) -> str | None:
    """None if tabular methods can run on these spaces, else what is wrong."""
    obs_ok = _is_discrete(obs_space) or (
        isinstance(obs_space, gym.spaces.Tuple) and all(_is_discrete(s) for s in obs_space.spaces)
    )
    if not obs_ok:
        return f"observations must be Discrete (or a Tuple of Discrete); this env has {describe_space(obs_space)}"
    if not _is_discrete(action_space):
        return f"actions must be Discrete; this env has {describe_space(action_space)}"
    return None


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    summary: str
    config_cls: type
    impl: str  # "module:Class", imported only when the algorithm runs
    support: Callable[[gym.Space, gym.Space], str | None]
    observation_spaces: str  # for `deeprl list` and error messages
    action_spaces: str
    default_budget: dict[str, int]
    aliases: tuple[str, ...] = ()
    vectorized: bool = False  # collects from n_envs parallel envs

    def load(self) -> type:
        module, cls = self.impl.split(":")
        return getattr(importlib.import_module(module), cls)


def continuous_support(obs_space: gym.Space, action_space: gym.Space) -> str | None:
    """None if DDPG/TD3/SAC can run on these spaces: bounded Box actions; observations as for the policy-gradient
    methods (every space deeprl.nets.make_encoder takes: Box vectors or images, Discrete, MultiDiscrete,
    MultiBinary, a Dict of those), but no action mask, which only means something for discrete actions."""
    if not isinstance(action_space, gym.spaces.Box):
        return (
            f"DDPG, TD3 and SAC need continuous (Box) actions; this env has {describe_space(action_space)}. "
            "For discrete actions use dqn or ppo"
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        return "the Box action space must be bounded (finite low and high), the actor's tanh maps onto it"
    from deeprl.spaces import MASK_KEY, has_mask  # imports torch: not at `deeprl list`

    if has_mask(obs_space):
        return (
            f"the observation's {MASK_KEY!r} key masks discrete actions, and DDPG, TD3 and SAC act in a continuous "
            f"Box ({describe_space(action_space)}): drop the key, or use dqn or ppo for discrete actions"
        )
    return policy_gradient_support(obs_space, action_space)  # the observation checks (Box actions pass there)


_CONTINUOUS = dict(
    support=continuous_support,
    observation_spaces="Box (vector or images), Discrete, MultiDiscrete, MultiBinary, Dict of those",
    action_spaces="Box (bounded)",
    default_budget={"total_steps": 100_000},
    vectorized=True,
)


def dqn_support(obs_space: gym.Space, action_space: gym.Space) -> str | None:
    """None if DQN can run on these spaces: Discrete actions; observations as for the policy-gradient methods
    (every space deeprl.nets.make_encoder takes: Box vectors or images in either layout, Discrete,
    MultiDiscrete, MultiBinary, a Dict of those), with an optional `action_mask` key of one entry per action."""
    if not _is_discrete(action_space):
        return (
            f"DQN picks argmax_a q(s, a) over a finite set of actions, which needs Discrete actions; "
            f"this env has {describe_space(action_space)}"
        )
    return policy_gradient_support(obs_space, action_space)  # the observation and mask checks


_ENCODABLE = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
_PG_ACTIONS = (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary, gym.spaces.Box)


def policy_gradient_support(obs_space: gym.Space, action_space: gym.Space) -> str | None:
    """None if REINFORCE, PPO and A2C can run on these spaces: observations a Box (vector, or images in
    either layout), Discrete or MultiDiscrete (one-hot), MultiBinary, or a Dict of those (SB3's
    MultiInputPolicy), whose optional `action_mask` key masks Discrete, MultiDiscrete or MultiBinary
    actions; actions Discrete, MultiDiscrete, MultiBinary (categorical per component) or Box (Gaussian)."""
    from deeprl.spaces import MASK_KEY, feature_keys, has_mask, mask_size  # imports torch: not at `deeprl list`

    allowed_obs = "a Box (a vector, or uint8/bool images), Discrete, MultiDiscrete, MultiBinary, or a Dict of those"
    if isinstance(obs_space, gym.spaces.Dict):
        keys = feature_keys(obs_space)
        odd = [key for key in keys if not isinstance(obs_space[key], _ENCODABLE)]
        if odd:
            return (
                f"observations must be {allowed_obs}; the Dict key {odd[0]!r} holds "
                f"{describe_space(obs_space[odd[0]])} (flatten or drop it with a gymnasium observation wrapper)"
            )
        if not keys:
            return f"the Dict observation holds only the action mask {MASK_KEY!r}: nothing for the policy to see"
    elif not isinstance(obs_space, _ENCODABLE):
        return f"observations must be {allowed_obs}; this env has {describe_space(obs_space)}"
    if not isinstance(action_space, _PG_ACTIONS):
        return (
            f"actions must be Discrete, MultiDiscrete, MultiBinary or Box; this env has {describe_space(action_space)}"
        )
    if has_mask(obs_space):
        size = mask_size(action_space)
        if size is None:
            return (
                f"the observation's {MASK_KEY!r} key masks actions, which needs discrete actions (Discrete, "
                f"MultiDiscrete or MultiBinary); this env has {describe_space(action_space)}"
            )
        mask = obs_space[MASK_KEY]
        if not isinstance(mask, (gym.spaces.Box, gym.spaces.MultiBinary)) or tuple(mask.shape) != (size,):
            return (
                f"the {MASK_KEY!r} key must be a MultiBinary({size}) or a Box of shape ({size},) for "
                f"{describe_space(action_space)} (MultiDiscrete: the per-component masks concatenated); "
                f"this env has {describe_space(mask)}"
            )
    return None


_POLICY_GRADIENT = dict(
    support=policy_gradient_support,
    observation_spaces="Box (vector or images), Discrete, MultiDiscrete, MultiBinary, Dict of those (+action_mask)",
    action_spaces="Discrete, MultiDiscrete, MultiBinary, Box",
    vectorized=True,
)


def a3c_support(obs_space: gym.Space, action_space: gym.Space) -> str | None:
    """None if A3C can run on these spaces: the policy-gradient family's (`policy_gradient_support`). Its
    workers store their rollouts as the vector-env methods do (deeprl.spaces.obs_storage: uint8 frames as
    bytes, a Dict one tensor per key) and act through the same ActorCritic, action masks included."""
    return policy_gradient_support(obs_space, action_space)


_TABULAR = dict(
    config_cls=TabularConfig,
    support=tabular_support,
    observation_spaces="Discrete, Tuple(Discrete...)",
    action_spaces="Discrete",
    default_budget={"episodes": 5_000},
)

ALGOS: dict[str, AlgoSpec] = {
    spec.name: spec
    for spec in [
        AlgoSpec(
            "sarsa",
            "Sarsa(0): on-policy TD control, target R + γQ(S',A')",
            impl="deeprl.algos.tabular:Sarsa",
            **_TABULAR,
        ),
        AlgoSpec(
            "expected-sarsa",
            "Expected Sarsa: target R + γ Σ π(a|S')Q(S',a)",
            impl="deeprl.algos.tabular:ExpectedSarsa",
            **_TABULAR,
        ),
        AlgoSpec(
            "q-learning",
            "Sarsamax / Q-learning: off-policy TD control, target R + γ max Q(S',a)",
            impl="deeprl.algos.tabular:QLearning",
            aliases=("sarsamax", "qlearning"),
            **_TABULAR,
        ),
        AlgoSpec(
            "mc",
            "First-visit Monte Carlo control (constant-α), the notes' contrast to TD",
            impl="deeprl.algos.tabular:MonteCarlo",
            aliases=("monte-carlo",),
            **_TABULAR,
        ),
        AlgoSpec(
            "ddpg",
            "DDPG: deterministic actor-critic, target y = r + γQ'(s', μ'(s')), OU/Gaussian noise",
            config_cls=DDPGConfig,
            impl="deeprl.algos.ddpg:DDPG",
            **_CONTINUOUS,
        ),
        AlgoSpec(
            "td3",
            "TD3: DDPG with clipped double Q, target policy smoothing, delayed actor updates",
            config_cls=TD3Config,
            impl="deeprl.algos.td3:TD3",
            **_CONTINUOUS,
        ),
        AlgoSpec(
            "sac",
            "SAC: squashed Gaussian policy, twin soft Q critics, automatic entropy tuning",
            config_cls=SACConfig,
            impl="deeprl.algos.sac:SAC",
            **_CONTINUOUS,
        ),
        AlgoSpec(
            "dqn",
            "DQN: replay + target network, target r + γ max_a q(s',a;w⁻); --double --dueling --prioritized --n-step",
            config_cls=DQNConfig,
            impl="deeprl.algos.dqn:DQN",
            support=dqn_support,
            observation_spaces="Box (vector or images), Discrete, MultiDiscrete, MultiBinary, Dict of those (+action_mask)",
            action_spaces="Discrete",
            default_budget={"total_steps": 100_000},
            vectorized=True,
        ),
        AlgoSpec(
            "pqn",
            "PQN: parallel envs, no replay or target net, LayerNorm Q-network, Q(λ) returns over each rollout",
            config_cls=PQNConfig,
            impl="deeprl.algos.pqn:PQN",
            support=dqn_support,
            observation_spaces="Box (vector or images), Discrete, MultiDiscrete, MultiBinary, Dict of those (+action_mask)",
            action_spaces="Discrete",
            default_budget={"total_steps": 500_000},
            vectorized=True,
        ),
        AlgoSpec(
            "a3c",
            "A3C: asynchronous n-step advantage actor-critic, --workers processes, Hogwild updates",
            config_cls=A3CConfig,
            impl="deeprl.algos.a3c:A3C",
            support=a3c_support,
            observation_spaces=_POLICY_GRADIENT["observation_spaces"],
            action_spaces=_POLICY_GRADIENT["action_spaces"],
            default_budget={"total_steps": 500_000},
        ),
        AlgoSpec(
            "reinforce",
            "REINFORCE: ∇ log π · R over m parallel trajectories; --future-rewards "
            "--normalize-rewards --baseline, --reuse K through the IS surrogate",
            config_cls=ReinforceConfig,
            impl="deeprl.algos.reinforce:Reinforce",
            default_budget={"total_steps": 300_000},
            **_POLICY_GRADIENT,
        ),
        AlgoSpec(
            "ppo",
            "PPO: clipped surrogate, K epochs of minibatches, GAE(λ)",
            config_cls=PPOConfig,
            impl="deeprl.algos.ppo:PPO",
            default_budget={"total_steps": 1_000_000},
            **_POLICY_GRADIENT,
        ),
        AlgoSpec(
            "a2c",
            "A2C: synchronous n-step advantage actor-critic on vector envs",
            config_cls=A2CConfig,
            impl="deeprl.algos.a2c:A2C",
            default_budget={"total_steps": 1_000_000},
            **_POLICY_GRADIENT,
        ),
    ]
}

_ALIASES = {alias: spec.name for spec in ALGOS.values() for alias in spec.aliases}


def get_algo(name: str) -> AlgoSpec:
    """The spec for an algorithm name or alias; a UsageError listing close matches otherwise."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key in ALGOS:
        return ALGOS[key]
    names = list(ALGOS) + list(_ALIASES)
    raise UsageError(
        f"Unknown algorithm {name!r}.{did_you_mean(name, names)} "
        f"Available: {', '.join(ALGOS)} (aliases: {', '.join(f'{a}={n}' for a, n in _ALIASES.items())}). "
        "`deeprl list` shows what each handles."
    )


def check_spaces(spec: AlgoSpec, env_id: str, obs_space: gym.Space, action_space: gym.Space) -> None:
    """A UsageError naming the algorithms that can handle these spaces, if `spec` cannot."""
    problem = spec.support(obs_space, action_space)
    if problem is None:
        return
    able = [s.name for s in ALGOS.values() if s.support(obs_space, action_space) is None]
    if able:
        hint = f"Algorithms that handle it: {', '.join(able)} (e.g. `deeprl train {able[0]} {env_id}`)."
    else:
        hint = (
            "No algorithm in this version of deeprl handles these spaces yet; they need function "
            "approximation (DQN for discrete actions, PPO/DDPG/SAC for continuous ones)."
        )
    raise UsageError(f"{spec.name} cannot train on {env_id}: {problem}. {hint}")


def build_config(algo: str, env_id: str, **options: Any) -> tuple[AlgoSpec, Any, RunOptions]:
    """Resolve algorithm, preset and overrides into (spec, algorithm config, run options).

    Precedence: dataclass defaults < the preset for (algo, env_id) < `options`. Validation runs in
    the dataclasses' __post_init__, so a bad value fails here, before any env is made.
    """
    from deeprl.presets import PRESETS

    spec = get_algo(algo)
    preset = PRESETS.get(spec.name, {}).get(env_id, {})
    values = {**spec.default_budget, **preset, **options}
    if "total_steps" in options or "episodes" in options:  # a budget the user names replaces the preset's
        for key in ("total_steps", "episodes"):
            if key not in options:
                values.pop(key, None)
    run_values, algo_values = split_options(spec.config_cls, values)
    return spec, spec.config_cls(**algo_values), RunOptions(env_id=env_id, **run_values)
