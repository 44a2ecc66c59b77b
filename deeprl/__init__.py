"""deeprl: the deep RL notes as a library and a command-line tool (PyTorch + Gymnasium).

    import deeprl
    result = deeprl.train("q-learning", "CliffWalking-v1", seed=0)
    agent = deeprl.load(result.run_dir)
    deeprl.evaluate(agent, episodes=10)

This module only re-exports, lazily (PEP 562): `import deeprl.viz.video` or `deeprl list` do not pay
for torch and the driver. No module of the package imports it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deeprl._version import __version__

_EXPORTS = {
    "ALGOS": "deeprl.registry",
    "aggregate": "deeprl.seeds",
    "Agent": "deeprl.agent",
    "Callback": "deeprl.callbacks",
    "CallbackError": "deeprl.callbacks",
    "CheckpointInfo": "deeprl.callbacks",
    "EarlyStopOnPlateau": "deeprl.callbacks",
    "EpisodeInfo": "deeprl.callbacks",
    "EvalInfo": "deeprl.callbacks",
    "SaveEvery": "deeprl.callbacks",
    "StepInfo": "deeprl.callbacks",
    "evaluate": "deeprl.agent",
    "export": "deeprl.exporter",
    "load": "deeprl.agent",
    "options_from_file": "deeprl.options_file",
    "RunResult": "deeprl.driver",
    "resume": "deeprl.driver",
    "train": "deeprl.driver",
    "tune": "deeprl.tuning",
    "UsageError": "deeprl.errors",
    "plot": "deeprl.viz",
    "render": "deeprl.viz",
    "show": "deeprl.viz",
}

if TYPE_CHECKING:
    from deeprl.agent import Agent, evaluate, load
    from deeprl.callbacks import (
        Callback,
        CallbackError,
        CheckpointInfo,
        EarlyStopOnPlateau,
        EpisodeInfo,
        EvalInfo,
        SaveEvery,
        StepInfo,
    )
    from deeprl.driver import RunResult, resume, train
    from deeprl.errors import UsageError
    from deeprl.exporter import export
    from deeprl.options_file import options_from_file
    from deeprl.registry import ALGOS
    from deeprl.seeds import aggregate
    from deeprl.tuning import tune
    from deeprl.viz import plot, render, show


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deeprl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "ALGOS",
    "Agent",
    "Callback",
    "CallbackError",
    "CheckpointInfo",
    "EarlyStopOnPlateau",
    "EpisodeInfo",
    "EvalInfo",
    "RunResult",
    "SaveEvery",
    "StepInfo",
    "UsageError",
    "aggregate",
    "evaluate",
    "export",
    "load",
    "options_from_file",
    "tune",
    "plot",
    "render",
    "resume",
    "show",
    "train",
    "__version__",
]
