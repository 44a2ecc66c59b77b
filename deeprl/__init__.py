"""deeprl: the deep RL notes as a library and a command-line tool (PyTorch + Gymnasium).

    import deeprl
    result = deeprl.train("q-learning", "CliffWalking-v1", seed=0)
    agent = deeprl.load(result.run_dir)
    deeprl.evaluate(agent, episodes=10)
"""

__version__ = "0.1.0"

from deeprl.algos import ALGOS  # noqa: E402
from deeprl.errors import UsageError  # noqa: E402
from deeprl.run import Agent, RunResult, evaluate, load, resume, train  # noqa: E402
from deeprl.viz import plot, render, show  # noqa: E402

__all__ = ["ALGOS", "Agent", "RunResult", "UsageError", "evaluate", "load", "plot", "render", "resume", "show", "train",
           "__version__"]
