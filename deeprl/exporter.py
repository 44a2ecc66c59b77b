"""Export a trained policy to ONNX or TorchScript: `deeprl export RUN --format onnx --out policy.onnx`.

What is exported is the deterministic policy that `deeprl.load(RUN).act_batch` computes, from the env's own
observations to the env's own actions, so that a deployment needs neither deeprl nor Gymnasium (nor, for
ONNX, PyTorch): users of other libraries write this wrapper by hand (Stable-Baselines3 #383 and #1349,
RLlib #14429). Inside the one graph:
  - the observation normalisation with the run's saved running statistics, clipping included
    (PPO/A2C/REINFORCE with --normalize-obs), computed in float64 as deeprl computes it;
  - images as the env gives them (uint8 pixels or bool planes, either layout): the CNN scales and permutes;
  - the policy: argmax of the logits or of q (DQN, tabular Q), the Gaussian's mean (PPO/A2C/REINFORCE on
    Box actions), tanh of the actor's mean (SAC) or the deterministic actor μ(s) (TD3, DDPG);
  - the map onto the env's actions: clip or tanh-squash to [low, high] (ActorCritic.env_action), the unit
    box scaled to [low, high] (deeprl.continuous.scale_action), a MultiDiscrete's start;
  - the action mask of a Dict observation with the key `action_mask`: the argmax runs over the allowed actions.

Inputs: one per observation, batched on axis 0 (any batch size), each in the observation space's own dtype:
`obs` for an array observation; for a Dict observation one input per key, named after the key, in the space's
key order (the action mask among them, e.g. Taxi's `action_mask` and `obs`); for a Tuple (tabular runs on
Blackjack) `obs_0`, `obs_1`, ... Output: `action`, the batch of actions in the action space's dtype and shape.

The ONNX file is written by PyTorch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`,
opset 17), which needs the onnx package besides torch; the newer torch.export-based exporter (torch's default
since 2.9) would add onnxscript and onnx-ir as well. Running the file needs onnxruntime (or any ONNX runtime):
the `export` extra (`pip install -e '.[export]'`) installs both. The TorchScript file (`torch.jit.trace`) loads with
`torch.jit.load` and no deeprl; PyTorch has deprecated TorchScript (torch.jit.save and load warn) in favour
of torch.export, but still reads and writes it.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from deeprl.continuous import DeterministicActor, SquashedGaussianActor, scale_action
from deeprl.errors import UsageError
from deeprl.math.targets import masked_argmax
from deeprl.nets import ActorCritic
from deeprl.rollout import DictObsNormalizer, ObsNormalizer
from deeprl.rundir import atomic_write
from deeprl.spaces import mask_of

if TYPE_CHECKING:
    from deeprl.agent import Agent

FORMATS = ("onnx", "torchscript")
OPSET = 17  # ONNX opset of the exported graph (onnxruntime 1.14 and later run it)
OUTPUT = "action"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an exported policy: its name, dtype and shape (without the batch axis)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name} {self.dtype} (batch, {', '.join(map(str, self.shape))})".replace(", )", ")")


@dataclass(frozen=True)
class Exported:
    """What `export` wrote: the file, its format, the graph's inputs and output, and how the exported policy
    compared with `Agent.act_batch` on observations sampled from the observation space (None: not compared,
    an ONNX file without onnxruntime installed)."""

    path: Path
    format: str
    inputs: tuple[TensorSpec, ...]
    output: TensorSpec
    checked: int | None
    agreed: int | None
    max_abs_diff: float | None


# ---------------------------------------------------------------- the graph's inputs
def input_specs(space: gym.Space) -> tuple[TensorSpec, ...]:
    """The exported policy's inputs for an observation space: `obs`, one per Dict key, or `obs_i` per Tuple item."""
    if isinstance(space, gym.spaces.Dict):
        return tuple(TensorSpec(key, np.dtype(sub.dtype), tuple(sub.shape)) for key, sub in space.spaces.items())
    if isinstance(space, gym.spaces.Tuple):
        return tuple(TensorSpec(f"obs_{i}", np.dtype(sub.dtype), tuple(sub.shape)) for i, sub in enumerate(space))
    return (TensorSpec("obs", np.dtype(space.dtype), tuple(space.shape)),)


class Normalize(nn.Module):
    """deeprl.rollout.ObsNormalizer as a graph: clip((obs − μ)/σ, ±clip) in float64 with the saved μ and σ
    (numpy computes it in float64 too), then float32."""

    def __init__(self, normalizer: ObsNormalizer):
        super().__init__()
        self.clip = float(normalizer.clip)
        self.register_buffer("mean", torch.as_tensor(normalizer.mean, dtype=torch.float64))
        self.register_buffer("std", torch.as_tensor(normalizer.std, dtype=torch.float64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs.double() - self.mean) / self.std).clamp(-self.clip, self.clip).float()


class Observations(nn.Module):
    """The graph's inputs -> the batch the algorithm's networks read (a tensor, or a dict of tensors for a Dict
    observation), normalised where the run normalised: the first lines of the algorithm's `policy()`, in torch."""

    def __init__(self, space: gym.Space, normalizer: ObsNormalizer | DictObsNormalizer | None, as_float: bool):
        super().__init__()
        self.keys = list(space.spaces) if isinstance(space, gym.spaces.Dict) else None
        if isinstance(normalizer, DictObsNormalizer):
            stats = normalizer.normalizers
        else:
            stats = {} if normalizer is None else {"obs": normalizer}
        names = self.keys or ["obs"]
        self.normalized = [name in stats for name in names]  # per input: through a Normalize (in order) or as it is
        self.normalizers = nn.ModuleList(Normalize(stats[name]) for name in names if name in stats)
        self.as_float = as_float  # the off-policy fast path reads float32 vectors (deeprl.continuous.obs_tensor)

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> Any:
        normalizers = iter(self.normalizers)
        obs = [next(normalizers)(x) if normalized else x for x, normalized in zip(inputs, self.normalized)]
        if self.keys is not None:
            return dict(zip(self.keys, obs))
        return obs[0].float() if self.as_float else obs[0]


# ---------------------------------------------------------------- one wrapper per kind of policy
class ActorCriticPolicy(nn.Module):
    """PPO, A2C, REINFORCE, A3C: OnPolicyAgent.policy = env_action(mode(normalised obs))."""

    def __init__(self, observations: Observations, model: ActorCritic):
        super().__init__()
        self.observations, self.model = observations, model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        obs = self.observations(inputs)
        return self.model.env_action_tensor(self.model.mode(obs))


class QPolicy(nn.Module):
    """DQN: DQN.policy = masked_argmax(q(s, ·; w), mask)."""

    def __init__(self, observations: Observations, q: nn.Module):
        super().__init__()
        self.observations, self.q = observations, q

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        obs = self.observations(inputs)
        return masked_argmax(self.q(obs), mask_of(obs))


class ActorPolicy(nn.Module):
    """SAC, TD3, DDPG: scale_action(actor's deterministic unit action, low, high), as their policy() does."""

    def __init__(self, observations: Observations, actor: nn.Module, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.observations, self.actor = observations, actor
        self.squashed = isinstance(actor, SquashedGaussianActor)
        self.register_buffer("low", torch.as_tensor(np.asarray(low, np.float32)))
        self.register_buffer("high", torch.as_tensor(np.asarray(high, np.float32)))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        obs = self.observations(inputs)
        unit = self.actor.deterministic(obs) if self.squashed else self.actor(obs)
        return scale_action(unit, self.low, self.high)


class TablePolicy(nn.Module):
    """Tabular methods: the greedy row of the Q-table, TabularAgent.policy = q[index(obs)].argmax (ties to the
    first action, as numpy's and ONNX's ArgMax break them); a Tuple observation indexes it in mixed radix."""

    def __init__(self, q: np.ndarray, sizes: list[int], starts: list[int]):
        super().__init__()
        self.register_buffer("q", torch.as_tensor(q, dtype=torch.float64))
        self.sizes, self.starts = sizes, starts

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        index = inputs[0].long() - self.starts[0]
        for values, size, start in zip(inputs[1:], self.sizes[1:], self.starts[1:]):
            index = index * size + (values.long() - start)
        return self.q[index].argmax(-1)


def policy_module(agent: Agent) -> nn.Module:
    """The wrapper that computes `agent.act_batch` in torch, for any deeprl algorithm."""
    algo, space = agent.algo, agent.observation_space
    if isinstance(getattr(algo, "model", None), ActorCritic):
        observations = Observations(space, getattr(algo, "obs_normalizer", None), as_float=False)
        return ActorCriticPolicy(observations, algo.model)
    actor = getattr(algo, "actor", None)
    if isinstance(actor, (DeterministicActor, SquashedGaussianActor)):
        observations = Observations(space, None, as_float=actor.encoder is None)
        return ActorPolicy(observations, actor, algo.low, algo.high)
    q = getattr(algo, "q", None)
    if isinstance(q, nn.Module):
        return QPolicy(Observations(space, None, as_float=False), q)
    if isinstance(q, np.ndarray) and hasattr(algo, "index"):
        return TablePolicy(q, algo.index.sizes, algo.index.starts)
    raise UsageError(f"deeprl cannot export a {agent.algo_name} policy ({type(algo).__name__}).")


# ---------------------------------------------------------------- writing and checking
def sample_observations(space: gym.Space, n: int, seed: int = 0) -> Any:
    """n observations sampled from `space`, batched as a vector env batches them (a dict of arrays for a Dict)."""
    space = copy.deepcopy(space)
    space.seed(seed)
    batch = gym.vector.utils.create_empty_array(space, n)
    return gym.vector.utils.concatenate(space, [space.sample() for _ in range(n)], batch)


def as_inputs(space: gym.Space, obs: Any) -> list[np.ndarray]:
    """A batch of observations (as `sample_observations` or a vector env gives it) as the exported graph's
    inputs, in `input_specs` order and dtypes."""
    if isinstance(space, gym.spaces.Dict):
        arrays = [obs[key] for key in space.spaces]
    elif isinstance(space, gym.spaces.Tuple):
        arrays = list(obs)
    else:
        arrays = [obs]
    return [np.ascontiguousarray(a, dtype=spec.dtype) for a, spec in zip(arrays, input_specs(space))]


def _onnx_bytes(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter warns that it is deprecated (the torch.export one needs onnxscript) and
        # that tracing converts tensors to Python values (the shapes of the spaces, which are constants here).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            buffer,
            dynamo=False,
            input_names=names,
            output_names=[OUTPUT],
            opset_version=OPSET,
            dynamic_axes={name: {0: "batch"} for name in [*names, OUTPUT]},
        )
    return buffer.getvalue()


def _torchscript_bytes(module: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.save "is deprecated"; tracing's notes on constant shapes
        torch.jit.save(torch.jit.trace(module, example, check_trace=False), buffer)
    return buffer.getvalue()


def run_exported(path: Path | str, format: str, inputs: list[np.ndarray]) -> np.ndarray | None:
    """The exported policy's actions for graph inputs (numpy); None for ONNX when onnxruntime is missing."""
    if format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load "is deprecated"
            model = torch.jit.load(str(path))
        with torch.inference_mode():
            return model(*[torch.from_numpy(x) for x in inputs]).numpy()
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {node.name: x for node, x in zip(session.get_inputs(), inputs)})[0]


def check_out_path(out: Path | str) -> Path:
    """`out` as a Path, or a UsageError when it is a directory or its directory does not exist."""
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"{str(out)!r} is a directory; pass a file name for the exported policy, e.g. policy.onnx.")
    if not out.parent.is_dir():
        raise UsageError(f"Cannot write {str(out)!r}: the directory {str(out.parent)!r} does not exist.")
    return out


def export(
    run_or_agent: Agent | Path | str, out: Path | str, format: str = "onnx", *, best: bool = False, check: int = 256
) -> Exported:
    """Write the deterministic policy of a run directory (or a loaded Agent) to `out` as ONNX or TorchScript.

    `best=True` exports the policy of the run's best evaluation (policy_best.safetensors). The file is written
    atomically (an existing one is replaced whole). `check` observations sampled from the observation space are
    run through the written file and through `agent.act_batch`, and the result says how many actions agreed
    (ONNX: when onnxruntime is installed; 0 skips the check). See the module docstring for the graph's inputs
    and output.
    """
    from deeprl.agent import Agent, load

    if format not in FORMATS:
        raise UsageError(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    if format == "onnx":
        try:
            import onnx  # noqa: F401 - the exporter writes its graph through it
        except ImportError:
            raise UsageError(
                "Exporting to ONNX needs the onnx package (and onnxruntime to run the file): "
                "pip install onnx onnxruntime (the `export` extra: pip install -e '.[export]'). "
                "Or export with --format torchscript, which needs only torch."
            ) from None
    out = check_out_path(out)
    if isinstance(run_or_agent, Agent):
        if best:
            raise UsageError("best=True picks a run directory's best policy: pass the run directory, not an Agent.")
        agent = run_or_agent
    else:
        agent = load(run_or_agent, best=best)
    space = agent.observation_space
    module = copy.deepcopy(policy_module(agent)).eval().requires_grad_(False)  # the agent's own nets untouched
    specs = input_specs(space)
    example = tuple(torch.from_numpy(x) for x in as_inputs(space, sample_observations(space, 2)))
    with torch.no_grad():
        blob = (
            _onnx_bytes(module, example, [s.name for s in specs])
            if format == "onnx"
            else _torchscript_bytes(module, example)
        )
    atomic_write(out, lambda f: f.write(blob))
    sample_action = agent.act_batch(sample_observations(space, 1))
    output = TensorSpec(OUTPUT, sample_action.dtype, tuple(sample_action.shape[1:]))
    checked = agreed = max_abs_diff = None
    if check > 0:
        obs = sample_observations(space, check, seed=1)
        actions = run_exported(out, format, as_inputs(space, obs))
        if actions is not None:
            expected = np.asarray(agent.act_batch(obs))
            close = np.isclose(actions, expected, rtol=1e-5, atol=1e-5).reshape(check, -1).all(axis=1)
            checked, agreed = check, int(close.sum())
            max_abs_diff = float(np.abs(actions.astype(np.float64) - expected).max()) if actions.size else 0.0
    return Exported(out, format, specs, output, checked, agreed, max_abs_diff)
