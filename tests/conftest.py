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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A Ray cluster on loopback with two nodes of one CPU each, started as a user would (`ray start --head`,
    `ray start --address`), and stopped at the end of the session. Yields its address."""
    import os
    import shutil
    import subprocess
    import sys

    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # token authentication on every node and in this process (Ray 2.5x's default for `ray start --head`; a
    # joining node or driver reads the same ~/.ray/auth_token)
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    head = [ray, "start", "--head", f"--port={port}", "--include-dashboard=false", *common]
    node = [ray, "start", f"--address={address}", *common]
    try:
        for command in (head, node):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                pytest.fail(f"`{' '.join(command)}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        yield address
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE")
        else:
            os.environ["RAY_AUTH_MODE"] = saved
