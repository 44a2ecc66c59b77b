"""Many seeds as Ray tasks (`deeprl train ... --seeds 0-3 --backend ray --ray-address ADDR`;
deeprl.backends.ray_seeds) on tests/conftest.py's two-node loopback cluster: each task trains its seed with the
local backend in a temporary directory and returns the directory, which lands under the parent as `--seeds`
writes it on this machine. Q-learning on FrozenLake-v1 as in tests/test_seeds.py (about a second a seed)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import read_metrics, read_summary

from deeprl.cli import main

pytest.importorskip("rliable.library")
pytestmark = pytest.mark.filterwarnings("ignore:random_state is deprecated:FutureWarning")  # arch 7, under rliable

FAST = (
    "--episodes", "2000", "--eval-every", "1000", "--eval-episodes", "20", "--threshold", "0.2",
    "--epsilon-decay-episodes", "1000",
)  # fmt: skip
TRAIN = ("train", "q-learning", "FrozenLake-v1", "--seeds", "0-3")


@pytest.fixture(scope="module")
def local_and_ray(tmp_path_factory, ray_cluster) -> tuple[Path, Path, str]:
    """The same four seeds, run by `--seeds` on this machine and as Ray tasks."""
    root = tmp_path_factory.mktemp("seeds")
    assert main([*TRAIN, "--jobs", "2", "--run-dir", str(root / "local"), *FAST]) == 0
    assert main([*TRAIN, "--backend", "ray", "--ray-address", ray_cluster, "--run-dir", str(root / "ray"), *FAST]) == 0
    return root / "local", root / "ray", ray_cluster


def _without_run_dir(config: dict) -> dict:
    return {**config, "run": {k: v for k, v in config["run"].items() if k != "run_dir"}, "versions": None}


def test_seeds_on_ray_equal_the_local_seeds_and_their_aggregate(local_and_ray, capsys):
    local, ray, _ = local_and_ray
    for s in range(4):
        assert read_metrics(ray / f"s{s}") == read_metrics(local / f"s{s}")
        assert read_summary(ray / f"s{s}") == read_summary(local / f"s{s}")
        configs = [json.loads((d / f"s{s}" / "config.json").read_text()) for d in (local, ray)]
        assert _without_run_dir(configs[1]) == _without_run_dir(configs[0])
        assert configs[1]["run"]["backend"] == "local"  # the seed trained locally, in its task
        # the directory's own path as this machine has it, not the task's temporary directory
        assert configs[1]["run"]["run_dir"] == str(ray / f"s{s}")
        assert json.loads((ray / f"s{s}" / "summary.json").read_text())["run_dir"] == str(ray / f"s{s}")
        assert "$ deeprl train q-learning FrozenLake-v1 --config" in (ray / "logs" / f"s{s}.log").read_text()
    assert json.loads((ray / "seeds.json").read_text()) == json.loads((local / "seeds.json").read_text())
    aggregates = [json.loads((d / "aggregate.json").read_text()) for d in (local, ray)]
    for key in ("seeds_finished", "solved", "final_eval_return", "env_steps_to_solve"):
        assert aggregates[1][key] == aggregates[0][key], key
    assert 0 < aggregates[1]["solved"]["seeds"] < 4  # the seeds differ: the comparison is not of constants


def test_rerun_on_ray_resumes_an_interrupted_seed_skips_finished_ones_and_reports_a_failing_one(
    local_and_ray, tmp_path, capsys
):
    local, ray, address = local_and_ray
    parent = tmp_path / "fl"
    shutil.copytree(ray, parent)
    (parent / "s1" / "summary.json").unlink()  # s1 looks interrupted: a resume state and no summary
    (parent / "s4").mkdir()
    (parent / "s4" / "notes.txt").write_text("not a run")  # not a run directory: seed 4 fails, the files stay
    code = main([*TRAIN[:3], "--seeds", "0-4", "--backend", "ray", "--ray-address", address, "--run-dir", str(parent), *FAST])  # fmt: skip
    assert code == 2
    out, err = capsys.readouterr()
    assert all(f"seed {s}: finished before" in out for s in (0, 2, 3))
    assert "seed 1: resuming on Ray" in out and "seed 1: finished" in out
    # resumed in its task from the files sent with it, exactly: the same rows as the uninterrupted run
    assert read_metrics(parent / "s1") == read_metrics(local / "s1")
    assert read_summary(parent / "s1") == read_summary(local / "s1")
    assert "seed 4: failed" in out and "already holds files" in out
    assert (parent / "s4" / "notes.txt").read_text() == "not a run"
    assert "1 of 5 seeds did not finish (seed 4: failed" in err
    assert json.loads((parent / "aggregate.json").read_text())["seeds_finished"] == [0, 1, 2, 3]
    # `--resume PARENT --backend ray` runs the recorded seeds on Ray: all finished but seed 4, which fails again
    (parent / "s1" / "summary.json").unlink()
    assert main(["train", "--resume", str(parent), "--backend", "ray", "--ray-address", address]) == 2
    out = capsys.readouterr().out
    assert "seed 1: resuming on Ray" in out and "seed 1: finished" in out and "seed 4: failed" in out
    assert read_metrics(parent / "s1") == read_metrics(local / "s1")


def _seed_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any("deeprl-seed-" in part for part in process.info["cmdline"] or ()):
                found.append(process)
    return found


def test_ctrl_c_stops_the_running_seeds_saved_and_starts_no_other(ray_cluster, tmp_path):
    parent = tmp_path / "pp"
    args = ["train", "ppo", "CartPole-v1", "--seeds", "0-2", "--backend", "ray", "--ray-address", ray_cluster]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deeprl", *args, "--total-steps", "10000000", "--no-stop-when-solved"]
        + ["--run-dir", str(parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # two CPUs: seeds 0 and 1 train (in temporary directories, here on this machine), seed 2 waits
        deadline = time.time() + 90
        tmp = Path(tempfile.gettempdir())
        while (
            time.time() < deadline
            and sum(any(m.stat().st_size > 200 for m in tmp.glob(f"deeprl-seed-*/s{s}/metrics.csv")) for s in range(3))
            < 2
        ):
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    trained = [s for s in range(3) if f"seed {s}: interrupted, saved" in out]
    assert len(trained) == 2, out
    for s in trained:  # each came back with its checkpoint
        assert (parent / f"s{s}" / "resume" / "LATEST").is_file() and not (parent / f"s{s}" / "summary.json").exists()
    (waiting,) = set(range(3)) - set(trained)
    assert f"seed {waiting}: not started" in out and not (parent / f"s{waiting}").exists()
    assert f"Continue with: deeprl train --resume {parent}" in err
    assert not _seed_processes()


def _archive(members: list[tuple[str, str | None, bytes | None]]) -> bytes:
    """A tar of (name, symlink target or None, file content or None: a folder)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, link, content in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("s0", None, None), ("s0/b", "a/../secret", None), ("s0/a", "..", None)], "not a file or a folder"),
        ([("s0", None, None), ("s0/link", "metrics.csv", None)], "not a file or a folder"),
        ([("s0", None, None), ("s1/x", None, b"data")], "outside s0/"),
        ([("s0", None, None), ("../escape", None, b"data")], "outside s0/"),
    ],
)
def test_a_returned_run_directory_with_links_or_stray_paths_is_refused_unwritten(tmp_path, members, message):
    from deeprl.backends.ray_seeds import install
    from deeprl.errors import UsageError

    (tmp_path / "secret").write_text("secret")
    parent = tmp_path / "parent"
    parent.mkdir()
    with pytest.raises(UsageError, match=message):
        install(parent, 0, _archive(members))
    assert sorted(p.name for p in parent.iterdir()) == []  # nothing written, the staging folder removed


def test_a_returned_run_directory_of_files_is_installed(tmp_path):
    from deeprl.backends.ray_seeds import install

    parent = tmp_path / "parent"
    parent.mkdir()
    install(parent, 0, _archive([("s0", None, None), ("s0/metrics.csv", None, b"kind\n")]))
    assert (parent / "s0" / "metrics.csv").read_text() == "kind\n"
