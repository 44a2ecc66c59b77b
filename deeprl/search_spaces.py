"""The search spaces of `deeprl tune`: per algorithm, the hyperparameters a study samples and their ranges.

Plain data, like deeprl/presets.py. Each key is a field of the algorithm's config (deeprl.config; `n_envs` of the
run options may also be named), each value one of:

    ("float", low, high)            uniform on [low, high]; ("float", low, high, step) on a grid
    ("log_float", low, high)        log-uniform on [low, high] (low > 0)
    ("int", low, high)              an integer in [low, high]; ("int", low, high, step) on a grid
    ("log_int", low, high)          an integer, log-uniform
    ("categorical", [a, b, ...])    one of the choices (numbers, strings, booleans, None, or lists such as the
                                    layer sizes [64, 64])

The ranges follow rl-baselines3-zoo's hyperparameter samplers (rl_zoo3/hyperparams_opt.py) in spirit, renamed to
deeprl's fields: its `ent_coef` is `entropy_coef`, `clip_range` is `clip_eps`, `batch_size` (PPO) is
`minibatch_size`, `net_arch` tiny/small/medium is `hidden` [64] / [64, 64] / [256, 256], its exploration fraction
is `epsilon_decay_steps` in env steps. Learning rates stop at 1e-2 (the zoo's go to 1, where nothing learns).
Every value of every space validates against the algorithm's config (tests/test_tune.py). Fields a space does not
name keep the preset's value for the env (or the config's default), or the value given as a flag.
`deeprl tune ALGO ENV --space FILE` replaces the space with a JSON or YAML file of the same form.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SPACES"]

_GAMMA = ("categorical", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999])
_GAE_LAMBDA = ("categorical", [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0])
_MAX_GRAD_NORM = ("categorical", [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0])
_ENTROPY = ("log_float", 1e-8, 0.1)
_LR = ("log_float", 1e-5, 1e-2)
_NETS = ("categorical", [[64], [64, 64], [256, 256]])  # the zoo's tiny, small and medium
_OFF_POLICY_NETS = ("categorical", [[64, 64], [256, 256], [400, 300]])  # the zoo's small, medium and big

# PPO: the zoo's sample_ppo_params.
_PPO = {
    "learning_rate": _LR,
    "n_steps": ("categorical", [8, 16, 32, 64, 128, 256, 512, 1024, 2048]),
    # The zoo's batch_size goes down to 8; from 32 here: a rollout of 32 envs x 2048 steps in minibatches of 8 is
    # 8,192 gradient steps per epoch, hours of CPU per trial.
    "minibatch_size": ("categorical", [32, 64, 128, 256, 512]),
    "n_epochs": ("categorical", [1, 5, 10, 20]),
    "gamma": _GAMMA,
    "gae_lambda": _GAE_LAMBDA,
    "clip_eps": ("categorical", [0.1, 0.2, 0.3, 0.4]),
    "entropy_coef": _ENTROPY,
    "value_coef": ("float", 0.0, 1.0),
    "max_grad_norm": _MAX_GRAD_NORM,
    "hidden": _NETS,
    "activation": ("categorical", ["tanh", "relu"]),
}

# A2C: the zoo's sample_a2c_params (its use_rms_prop is `optimizer`).
_A2C = {
    "learning_rate": _LR,
    "n_steps": ("categorical", [8, 16, 32, 64, 128, 256, 512, 1024, 2048]),
    "gamma": _GAMMA,
    "gae_lambda": _GAE_LAMBDA,
    "normalize_advantages": ("categorical", [False, True]),
    "optimizer": ("categorical", ["rmsprop", "adam"]),
    "entropy_coef": _ENTROPY,
    "value_coef": ("float", 0.0, 1.0),
    "max_grad_norm": _MAX_GRAD_NORM,
    "hidden": _NETS,
    "activation": ("categorical", ["tanh", "relu"]),
}

# REINFORCE (no zoo sampler): the step size, the horizon, and the notes' noise-reduction switches.
_REINFORCE = {
    "learning_rate": ("log_float", 1e-4, 5e-2),
    "n_steps": ("categorical", [100, 200, 500, 1000]),
    "gamma": _GAMMA,
    "normalize_rewards": ("categorical", [False, True]),
    "baseline": ("categorical", [False, True]),
    "entropy_coef": _ENTROPY,
    "hidden": _NETS,
}

# DQN: the zoo's sample_dqn_params, plus the Double and Dueling switches.
_DQN = {
    "learning_rate": _LR,
    "gamma": _GAMMA,
    "batch_size": ("categorical", [16, 32, 64, 100, 128, 256, 512]),
    "buffer_size": ("categorical", [10_000, 50_000, 100_000, 1_000_000]),
    "epsilon_final": ("float", 0.0, 0.2),
    "epsilon_decay_steps": ("categorical", [1_000, 5_000, 10_000, 50_000, 100_000]),
    "target_update_interval": ("categorical", [1, 100, 500, 1_000, 5_000, 10_000]),
    "learning_starts": ("categorical", [0, 1_000, 5_000, 10_000, 20_000]),
    "train_freq": ("categorical", [1, 4, 8, 16, 128, 256]),
    "gradient_steps": ("categorical", [1, 2, 4, 8, 16, 32]),
    "hidden": _NETS,
    "double": ("categorical", [False, True]),
    "dueling": ("categorical", [False, True]),
}

# PQN: no zoo sampler; the knobs of Gallici et al. 2024's tables (λ, rollout length, epochs, ε decay, reward scale).
_PQN = {
    "learning_rate": _LR,
    "gamma": _GAMMA,
    "q_lambda": ("categorical", [0.0, 0.3, 0.5, 0.65, 0.8, 0.9, 0.95]),
    "n_steps": ("categorical", [8, 16, 32, 64, 128]),
    "n_epochs": ("categorical", [1, 2, 4]),
    "minibatch_size": ("categorical", [64, 128, 256, 512]),
    "epsilon_final": ("float", 0.0, 0.2),
    "epsilon_decay_steps": ("categorical", [5_000, 10_000, 20_000, 50_000, 100_000]),
    "reward_scale": ("categorical", [0.01, 0.1, 1.0]),
    "hidden": ("categorical", [[64, 64], [128, 128], [256, 256]]),
}

# SAC: the zoo's sample_sac_params (gradient_steps stays -1, one per env step collected: the zoo's
# gradient_steps = train_freq). The zoo samples one learning rate; deeprl has one per network.
_SAC = {
    "actor_lr": _LR,
    "critic_lr": _LR,
    "gamma": _GAMMA,
    "batch_size": ("categorical", [16, 32, 64, 128, 256, 512, 1024, 2048]),
    "buffer_size": ("categorical", [10_000, 100_000, 1_000_000]),
    "learning_starts": ("categorical", [0, 1_000, 10_000, 20_000]),
    "train_freq": ("categorical", [1, 4, 8, 16, 32, 64, 128, 256, 512]),
    "tau": ("categorical", [0.001, 0.005, 0.01, 0.02, 0.05, 0.08]),
    "hidden": _OFF_POLICY_NETS,
}

# TD3 and DDPG: the zoo's sample_td3_params / sample_ddpg_params (noise type and scale), plus τ.
_TD3 = {
    "actor_lr": _LR,
    "critic_lr": _LR,
    "gamma": _GAMMA,
    "batch_size": ("categorical", [16, 32, 64, 100, 128, 256, 512, 1024, 2048]),
    "buffer_size": ("categorical", [10_000, 100_000, 1_000_000]),
    "train_freq": ("categorical", [1, 4, 8, 16, 32, 64, 128, 256, 512]),
    "tau": ("categorical", [0.001, 0.005, 0.01, 0.02, 0.05, 0.08]),
    "noise": ("categorical", ["gaussian", "ou"]),
    "noise_sigma": ("float", 0.0, 1.0),
    "hidden": _OFF_POLICY_NETS,
}

# A3C: as A2C, with the paper's t_max for n_steps.
_A3C = {
    "lr": _LR,
    "t_max": ("categorical", [5, 10, 20, 50]),
    "gamma": _GAMMA,
    "entropy_coef": _ENTROPY,
    "value_coef": ("float", 0.0, 1.0),
    "optimizer": ("categorical", ["rmsprop", "adam"]),
    "hidden": _NETS,
}

# Tabular TD control and Monte Carlo (Sutton & Barto's usual ranges): step size, γ, and the ε-greedy schedule.
_TABULAR = {
    "alpha": ("log_float", 0.01, 1.0),
    "gamma": ("categorical", [0.9, 0.95, 0.99, 1.0]),
    "epsilon": ("float", 0.01, 1.0),
    "epsilon_schedule": ("categorical", ["constant", "glie", "linear"]),
    "epsilon_final": ("float", 0.0, 0.1),
}

SPACES: dict[str, dict[str, tuple[Any, ...]]] = {
    "ppo": _PPO,
    "a2c": _A2C,
    "reinforce": _REINFORCE,
    "dqn": _DQN,
    "pqn": _PQN,
    "sac": _SAC,
    "td3": _TD3,
    "ddpg": dict(_TD3),
    "a3c": _A3C,
    "sarsa": _TABULAR,
    "expected-sarsa": _TABULAR,
    "q-learning": _TABULAR,
    "mc": _TABULAR,
}
