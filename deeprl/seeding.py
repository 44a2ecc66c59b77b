"""One seeding object: the run's integer seed becomes every random stream of the run, each by name.

`Seeds(seed)` derives each stream from numpy's `SeedSequence` (O'Neill's seed_seq, the way numpy itself
spawns independent children): the stream called `name`, at positions `index`, is

    SeedSequence(seed, spawn_key=(name_key(name), *index)),  name_key = the first 8 bytes of blake2b(name)

a child of SeedSequence(seed) as `.spawn()` makes them, at spawn key (name_key, *index) instead of 0, 1, .... So the
streams are independent of each other and of the global generators, a stream's numbers depend only on
(seed, name, index), and adding a new stream never shifts the others (no `seed + 1` offsets that collide
with the next run's seed, or with another stream of the same run).

The streams deeprl draws (a new one is just a new name):

| name               | index                          | what                                                   |
|--------------------|--------------------------------|--------------------------------------------------------|
| `exploration`      |                                | ε-greedy and uniform random actions (DQN, tabular, the |
|                    |                                | off-policy Collector's warm-up actions)                |
| `replay`           |                                | replay-buffer sampling                                 |
| `noise`            |                                | DDPG/TD3 exploration noise (Gaussian or OU)            |
| `policy`           |                                | SAC's reparameterisation ε (acting and training)       |
| `target_smoothing` |                                | TD3's target policy smoothing ε                        |
| `env_reset`        | env steps taken so far         | the training env's reset seed (copy i of a vector env  |
|                    | (A3C: worker rank, env steps)  | gets seed + i, Gymnasium's rule)                       |
| `worker_torch`     | worker rank, env steps         | an A3C worker's torch seed (its action sampling)       |
| `python`, `numpy`, | (none)                         | the global generators `seed_everything` seeds          |
| `torch`            |                                | (network initialisation, on-policy action sampling)    |

The evaluation envs are not here: they reset from `seed + EVAL_SEED_OFFSET + i` (deeprl/evaluation.py),
so that evaluations of runs with different seeds never share starting states.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np

INTEGER_BITS = 31  # integer() seeds fit an int32: some envs (ALE, Box2D wrappers) take no larger


def name_key(name: str) -> int:
    """The stream's spawn-key entry: the first 8 bytes of blake2b(name) (stable across runs and
    machines, unlike Python's salted hash())."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")


class Seeds:
    """The named random streams of a run with seed `seed` (see the module docstring).

    `generator(name)` → numpy Generator, `torch_generator(name, device)` → torch.Generator,
    `integer(name, *index)` → an int seed (an env's reset seed), `sequence(name, *index)` → the
    SeedSequence itself (what the building blocks that take a `seed` accept).
    """

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"a seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"Seeds({self.seed})"

    def sequence(self, name: str, *index: int) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed, spawn_key=(name_key(name), *(int(i) for i in index)))

    def generator(self, name: str, *index: int) -> np.random.Generator:
        return np.random.default_rng(self.sequence(name, *index))

    def integer(self, name: str, *index: int) -> int:
        """An int in [0, 2**31), e.g. `env.reset(seed=seeds.integer("env_reset", env_steps))`."""
        return int(self.sequence(name, *index).generate_state(1, np.uint32)[0] >> (32 - INTEGER_BITS))

    def torch_generator(self, name: str, device: Any = "cpu") -> Any:
        """A torch.Generator on `device`, seeded with the stream's 64 bits."""
        import torch  # lazily: the CLI imports the env factory (and so this module) before torch

        seed = int(self.sequence(name).generate_state(1, np.uint64)[0])
        return torch.Generator(device=device).manual_seed(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's random, numpy's global RNG and torch (CPU and CUDA) from their streams of Seeds(seed)."""
    seeds = Seeds(seed)
    random.seed(seeds.integer("python"))
    np.random.seed(seeds.integer("numpy"))
    import torch

    torch.manual_seed(seeds.integer("torch"))


def global_rng_state() -> dict[str, Any]:
    """The global generators' states (the resume state keeps them)."""
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # sampling on a GPU draws from its generator
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
