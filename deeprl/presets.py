"""The preset table: per algorithm, per env id, the hyperparameters tuned for it (see docs/benchmarks.md)."""

from deeprl.config import PRESETS

__all__ = ["PRESETS"]
