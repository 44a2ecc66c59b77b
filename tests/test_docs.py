"""The API docs build (pdoc renders the docstrings of the public API), so they cannot rot: a module
that fails to import or a public function without a docstring fails here."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import deeprl
import deeprl.math

_spec = importlib.util.spec_from_file_location("build_api", Path(__file__).parents[1] / "docs" / "build_api.py")
build_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_api)


def test_api_docs_build(tmp_path):
    build_api.build(tmp_path)
    index = (tmp_path / "deeprl.html").read_text()
    for name in ("train", "load", "evaluate", "resume"):
        assert f'id="{name}"' in index, name
    math_page = (tmp_path / "deeprl" / "math.html").read_text()
    for name in deeprl.math.__all__:
        assert name in math_page, name
    for module in ("driver", "agent", "rundir", "registry", "protocol"):
        assert (tmp_path / "deeprl" / f"{module}.html").exists(), module
    assert (tmp_path / "deeprl" / "algos.html").exists()


def test_public_api_has_docstrings():
    public = [getattr(deeprl, n) for n in deeprl.__all__ if not n.startswith("__")]
    public += [getattr(deeprl.math, n) for n in deeprl.math.__all__]
    missing = [
        obj.__name__ for obj in public if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj)
    ]
    assert not missing, f"public API without a docstring: {missing}"
