"""Exploration noise for deterministic policies (DDPG, TD3): Gaussian and Ornstein-Uhlenbeck.

Both work in the actor's unit action space [-1, 1] (the env's bounds are applied after the noise,
by `deeprl.continuous.scale_action`), so `sigma` is a fraction of half the action range whatever
the env's units. Each noise keeps one row of state per env of a vector env and its own numpy
Generator (seeded with an int or a SeedSequence, e.g. `Seeds(seed).sequence("noise")`), and
`state_dict` holds both, so a resumed run draws the same noise.

Ornstein-Uhlenbeck (Uhlenbeck & Ornstein 1930; used by DDPG, Lillicrap et al. 2016, θ=0.15, σ=0.2)
is temporally correlated: x ← x + θ(μ − x)dt + σ√dt·N(0, 1). Its state belongs to one episode:
`reset(mask)` puts x back to x₀ at exactly the envs whose episode ended, and leaves the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class GaussianNoise:
    """Independent N(0, σ²) per step, env and action dimension (TD3's exploration, Fujimoto et al. 2018)."""

    def __init__(self, sigma: float, shape: tuple[int, ...], seed: int | np.random.SeedSequence | None = None):
        self.sigma, self.shape = float(sigma), tuple(shape)
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> np.ndarray:
        return self.sigma * self.rng.standard_normal(self.shape, dtype=np.float32)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Gaussian noise has no state to reset (kept so both noises are used the same way)."""

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class OrnsteinUhlenbeckNoise:
    """x ← x + θ(μ − x)dt + σ√dt·ε, ε ~ N(0, 1), one x per env (rows) and action dimension (columns).

    With dt = 1 this is the update of the DDPG paper's code and Udacity's `OUNoise`. The stationary
    standard deviation is σ/√(θ(2 − θdt)) (≈ 1.87σ for θ = 0.15): more than σ, and correlated over
    about 1/θ steps, which is what lets it explore momentum-driven tasks.
    """

    def __init__(
        self,
        sigma: float,
        shape: tuple[int, ...],
        theta: float = 0.15,
        mu: float = 0.0,
        dt: float = 1.0,
        x0: float = 0.0,
        seed: int | np.random.SeedSequence | None = None,
    ):
        self.sigma, self.theta, self.mu, self.dt, self.x0 = float(sigma), float(theta), float(mu), float(dt), float(x0)
        self.shape = tuple(shape)
        self.rng = np.random.default_rng(seed)
        self.x = np.full(self.shape, self.x0, dtype=np.float32)

    def __call__(self) -> np.ndarray:
        eps = self.rng.standard_normal(self.shape, dtype=np.float32)
        self.x += self.theta * (self.mu - self.x) * self.dt + self.sigma * np.sqrt(self.dt) * eps
        return self.x.copy()

    def reset(self, mask: np.ndarray | None = None) -> None:
        """x ← x₀ for the envs where `mask` is True (all envs when mask is None)."""
        if mask is None:
            self.x[...] = self.x0
        else:
            self.x[np.asarray(mask, dtype=bool)] = self.x0

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x[...] = state["x"]
        self.rng.bit_generator.state = state["rng"]


def make_noise(
    kind: str,
    sigma: float,
    shape: tuple[int, ...],
    *,
    theta: float = 0.15,
    seed: int | np.random.SeedSequence | None = None,
) -> GaussianNoise | OrnsteinUhlenbeckNoise:
    """The exploration noise named by `--noise` (gaussian or ou)."""
    if kind == "gaussian":
        return GaussianNoise(sigma, shape, seed=seed)
    if kind == "ou":
        return OrnsteinUhlenbeckNoise(sigma, shape, theta=theta, seed=seed)
    raise ValueError(f"noise must be 'gaussian' or 'ou', got {kind!r}")
