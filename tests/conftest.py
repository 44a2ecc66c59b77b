import csv
import json
from pathlib import Path

import pytest


def read_metrics(run_dir: Path, drop_wall: bool = True) -> list[dict[str, str]]:
    """metrics.csv rows as dicts; wall-clock columns dropped (they differ between identical runs)."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if drop_wall:
        for row in rows:
            row.pop("wall_time_s")
    return rows


def read_summary(run_dir: Path, drop_wall: bool = True) -> dict:
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    if drop_wall:
        for key in ("train_wall_s", "solved_at_wall_s", "steps_per_s", "run_dir"):
            summary.pop(key, None)
    return summary


@pytest.fixture
def quiet():
    """Options that keep test runs silent."""
    return {"progress": "off"}
