"""--compile: the update, and the acting forward pass, of SAC, TD3, DDPG and PPO through torch.compile.

LeanRL's recipe (github.com/pytorch-labs/LeanRL, CleanRL's scripts with torch.compile and CUDA graphs), kept
out of the algorithms' files: each algorithm's update reads as it does without --compile, with its pure tensor
pieces as methods of their own (its losses, from a minibatch and noise drawn beforehand, and its action sample),
and its `compile()` hands them to `compile_methods`, which replaces them on the instance with compiled versions.
What stays eager, and why:

- the backward() calls and the optimizer steps. Compiling SAC's whole update with them gave dynamo a graph break
  at every backward() and optimizer call (8 graphs) and ran slower than eager: 1.42 ms an update against 1.16 ms
  (2-core EPYC, torch 2.13, 64x64 networks, batch 128); its two losses alone compile to one graph each, whose
  backward AOTAutograd compiles too: 1.08 ms. torch's fused Adam is already one kernel a step.
- random draws: a torch.Generator cannot be traced, so each algorithm draws its noise eagerly, in the order it
  always has (the same numbers as without --compile), and passes it in.
- Python floats that change between calls (PPO's annealed clip range) go in as 0-d tensors: new data for the
  same graph, not a recompilation per value.

Modes: on CUDA "reduce-overhead", CUDA graphs (one launch replays a whole graph; shapes are static except PPO's
minibatches, whose size changes with the episodes that end: each new size is recorded once). A CUDA graph's
outputs are overwritten by its next replay, so they are cloned before they leave. On the CPU, inductor's default
mode, which builds C++ kernels and needs a C++ compiler. The modules, parameters and optimizers stay the same
objects, so a checkpoint is the eager run's, and a run resumes with or without --compile. docs/benchmarks.md
("--compile") has what it gains.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from deeprl.errors import UsageError
from deeprl.process import restore_dynamo_wrappers

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the torch.compile modes that replay CUDA graphs


def default_mode(device: torch.device | str) -> str | None:
    """CUDA graphs on a GPU; inductor's default (None) elsewhere."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else None


def compile_methods(obj: Any, names: Sequence[str], device: torch.device | str, mode: str | None = "auto") -> None:
    """Replace the methods `names` of `obj` with their torch.compile'd versions, on the instance only (the class
    keeps the eager ones). `mode`: "auto" (`default_mode` of `device`), or any torch.compile mode."""
    device = torch.device(device)
    check_compiler(device)
    restore_dynamo_wrappers()  # the `deeprl` command spared itself torch._dynamo's import (deeprl.process)
    mode = default_mode(device) if mode == "auto" else mode
    for name in names:
        setattr(obj, name, compiled(getattr(obj, name), device, mode))


def compiled(fn: Callable[..., Any], device: torch.device, mode: str | None) -> Callable[..., Any]:
    """torch.compile(fn, mode), called with float arguments as 0-d tensors on `device`; with CUDA graphs, its
    outputs cloned (the next replay overwrites the graph's own)."""
    graph = torch.compile(fn, mode=mode)
    replays = device.type == "cuda" and mode in CUDA_GRAPH_MODES

    def tensor(x: Any) -> Any:
        return torch.tensor(x, dtype=torch.float32, device=device) if type(x) is float else x

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        out = graph(*map(tensor, args), **{k: tensor(v) for k, v in kwargs.items()})
        return _cloned(out) if replays else out

    return call


def _cloned(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, tuple):
        return tuple(_cloned(x) for x in out)
    return out


def check_compiler(device: torch.device) -> None:
    """On the CPU, inductor compiles C++: a clear error now rather than at the first update."""
    if device.type != "cpu":
        return
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as e:  # torch raises its own InvalidCxxCompiler (or a RuntimeError) when it finds none
        raise UsageError(
            f"--compile on the CPU needs a C++ compiler (torch's inductor builds C++ kernels): {e}. "
            "Install one (e.g. apt-get install g++, or set CXX), or drop --compile."
        ) from None
