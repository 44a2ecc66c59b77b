"""deeprl: the deep RL notes as a library and a command-line tool (PyTorch + Gymnasium).

    import deeprl
    result = deeprl.train("q-learning", "CliffWalking-v1", seed=0)
    agent = deeprl.load(result.run_dir)
    deeprl.evaluate(agent, episodes=10)

This module only re-exports: no module of the package imports it.
"""

from deeprl._version import __version__
from deeprl.agent import Agent, evaluate, load
from deeprl.driver import RunResult, resume, train
from deeprl.errors import UsageError
from deeprl.registry import ALGOS
from deeprl.viz import plot, render, show

__all__ = ["ALGOS", "Agent", "RunResult", "UsageError", "evaluate", "load", "plot", "render", "resume", "show", "train",
           "__version__"]
