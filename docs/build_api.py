"""Render the API docs of every deeprl module with pdoc: `python docs/build_api.py [OUT_DIR]`
(default site/api); `make docs` runs it and tests/test_docs.py builds it in every test run."""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path

import pdoc

import deeprl


def modules() -> list[str]:
    """deeprl and each of its direct submodules (pdoc follows `__all__`, which names functions, not
    modules; a subpackage brings its own submodules)."""
    return ["deeprl"] + sorted(m.name for m in pkgutil.iter_modules(deeprl.__path__, "deeprl."))


def build(out_dir: Path) -> None:
    pdoc.render.configure(docformat="google", footer_text=f"deeprl {deeprl.__version__}")
    pdoc.pdoc(*modules(), output_directory=Path(out_dir))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("site/api")
    build(out)
    print(f"API docs written to {out}/index.html")
