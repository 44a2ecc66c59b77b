"""The run directory at Atari scale: a checkpoint of the DQN preset's full 1M-transition replay buffer
stays small in memory and on disk, and evaluating the run reads the policy artefact only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ale_py")

# Runs a deeprl command in a child process and reports its peak resident memory and the files it opened
# (Python's "open" audit event: json, numpy and the CSV writer open files through it).
WRAPPER = """
import json, resource, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and args else None)
from deeprl.cli import main
code = main(sys.argv[2:])
report = {"rc": code, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "opened": opened}
open(sys.argv[1], "w").write(json.dumps(report))
"""


def _deeprl(tmp_path: Path, *args: str) -> dict:
    report = tmp_path / "report.json"
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(report), *args], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["rc"] == 0, out.stderr[-2000:]
    return result


@pytest.mark.slow
def test_dqn_pong_checkpoint_with_the_full_buffer_stays_small_and_eval_reads_only_the_policy(tmp_path):
    run_dir = tmp_path / "pong"
    trained = _deeprl(
        tmp_path,
        "train",
        "dqn",
        "ALE/Pong-v5",
        "--total-steps",
        "3000",
        "--checkpoint-every",
        "1500",
        "--eval-episodes",
        "1",
        "--run-dir",
        str(run_dir),
        "--progress",
        "off",
    )
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["buffer_size"] == 1_000_000  # the preset's buffer, not a smaller one
    assert trained["peak_rss_mb"] < 4096, trained["peak_rss_mb"]
    resume_bytes = sum(p.stat().st_size for p in (run_dir / "resume").rglob("*") if p.is_file())
    assert resume_bytes < 200e6  # the filled part of the buffer (3000 frames of 84x84) plus networks
    assert (run_dir / "policy.safetensors").stat().st_size < 20e6

    evaluated = _deeprl(tmp_path, "eval", str(run_dir), "--episodes", "1", "--json")
    in_run_dir = {
        Path(p).resolve().relative_to(run_dir.resolve()).as_posix()
        for p in evaluated["opened"]
        if Path(p).resolve().is_relative_to(run_dir.resolve())
    }
    assert in_run_dir == {"config.json"}, in_run_dir  # the policy is opened by safetensors (Rust), unseen here
    # ...and with the resume state gone, eval gives the same score: it never needed it
    (run_dir / "resume").rename(tmp_path / "resume-elsewhere")
    again = subprocess.run(
        [sys.executable, "-m", "deeprl.cli", "eval", str(run_dir), "--episodes", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads(again.stdout)["mean_return"] == summary["eval_mean_return"]
