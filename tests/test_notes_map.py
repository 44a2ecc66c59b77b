"""docs/notes-map.md stays honest: every function and every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`((?:deeprl|tests)/[\w/]+\.py)::(\w+)`")


def defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def test_every_reference_in_the_notes_map_exists():
    text = (ROOT / "docs" / "notes-map.md").read_text()
    references = REFERENCE.findall(text)
    assert len(references) >= 30, "the map lost its references"
    missing = [
        f"{file}::{name}"
        for file, name in references
        if not (ROOT / file).is_file() or name not in defined_names(ROOT / file)
    ]
    assert not missing, f"docs/notes-map.md names what does not exist: {missing}"


def test_the_map_covers_every_public_math_function():
    import deeprl.math as m

    text = (ROOT / "docs" / "notes-map.md").read_text()
    unmapped = [name for name in m.__all__ if f"::{name}`" not in text]
    assert not unmapped, f"deeprl.math functions missing from docs/notes-map.md: {unmapped}"
