"""The callables the user handed to deeprl in this process (an env function or a wrapper given to
`deeprl.train` as an object, not a name): a run directory written by this process may name them again.
Kept apart from deeprl.envs so that deeprl.config can record them without importing the env factory."""

from __future__ import annotations

from typing import Any

TRUSTED_NAMES: set[str] = set()  # 'module:qualname' of callables the user gave deeprl.train


def trust_callable(obj: Any) -> None:
    """Trust `obj`'s 'module:qualname' for this process: the user handed this very object to deeprl."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        TRUSTED_NAMES.add(f"{module}:{qualname}")
