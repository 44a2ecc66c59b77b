"""Every notebook in notebooks/ runs headless, top to bottom, in a kernel of this venv (tiny budgets)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "walkthrough.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPRL_NOTEBOOK_QUICK", "1")  # budget(full, quick) picks the quick budgets
    monkeypatch.delenv("DISPLAY", raising=False)  # headless, as on a server
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("<video" in h for h in html), "no inline video"
    plots = [o for o in outputs if o.output_type == "execute_result" and "image/png" in o.get("data", {})]
    assert plots, "no learning curves shown inline"  # deeprl.plot's figure as a cell's value
    assert sys.executable  # the kernel is this interpreter (jupyter_client maps the spec's 'python' to it)
