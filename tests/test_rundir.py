"""The run directory, format 2 (deeprl.rundir): what a hostile file cannot do, concurrent runs, refused
resumes that change nothing, SIGTERM + --resume, permissions, stray temp files, a full disk, and the
divergence message."""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_metrics, read_summary

import deeprl
from deeprl import rundir
from deeprl.cli import main
from deeprl.errors import UsageError

CLI = [str(Path(sys.executable).parent / "deeprl")]
FROZEN = [
    "q-learning",
    "FrozenLake-v1",
    "--seed",
    "0",
    "--episodes",
    "50",
    "--eval-episodes",
    "5",
    "--checkpoint-every",
    "100",
    "--progress",
    "off",
]


@pytest.fixture(autouse=True)
def deeprl_home(tmp_path, monkeypatch):
    """Every test signs env snapshots with a key of its own, never the real ~/.config/deeprl one."""
    home = tmp_path / "deeprl-home"
    monkeypatch.setenv("DEEPRL_HOME", str(home))
    return home


# ---------------------------------------------------------------- helpers
class _Hostile:
    """Unpickling this runs open(marker, "w"): the marker file appearing means code from a file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Hostile(marker), protocol=2)


def hostile_npy(marker: Path, path: Path) -> None:
    """A real .npy file: an object array whose element unpickles to open(marker, "w")."""
    array = np.empty(1, dtype=object)
    array[0] = _Hostile(marker)
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=True)


def state_dir(run_dir: Path) -> Path:
    return run_dir / "resume" / json.loads((run_dir / "resume" / "LATEST").read_text())["state"]


def snapshot(run_dir: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file and directory under run_dir: (bytes, mtime_ns, mode)."""
    out = {}
    for path in sorted(Path(run_dir).rglob("*")):
        st = path.stat()
        out[str(path.relative_to(run_dir))] = (
            path.read_bytes() if path.is_file() else b"<dir>",
            st.st_mtime_ns,
            st.st_mode,
        )
    return out


def cli(argv: list[str], capsys) -> tuple[int, str]:
    """deeprl.cli.main in-process; any exception other than a UsageError (a traceback) propagates."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def train_frozen(run_dir: Path, algo: str = "q-learning", env_id: str = "FrozenLake-v1", **extra):
    opts = {"seed": 0, "episodes": 50, "eval_episodes": 5, "checkpoint_every": 100, "progress": "off"}
    return deeprl.train(algo, env_id, run_dir=run_dir, **{**opts, **extra})


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A finished q-learning run with a resume state; its Q table and numpy RNG state go to arrays/*.npy
    (the threshold for a large array is lowered), so every kind of file a run directory holds is there."""
    base = tmp_path_factory.mktemp("pristine")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPRL_HOME", str(base / "home"))
        mp.setattr(rundir, "LARGE_ARRAY_BYTES", 512)
        train_frozen(base / "run")
    run = base / "run"
    folder = state_dir(run)
    for name in ("config.json", "metrics.csv", "summary.json", "policy.safetensors", "resume/LATEST"):
        assert (run / name).is_file(), name
    for name in ("state.json", "tensors.safetensors", "env.pkl", "env.sig"):
        assert (folder / name).is_file(), name
    assert list((folder / "arrays").glob("*.npy")), "no array went to its own .npy file"
    return run


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


def planted_cases(run: Path) -> list[str]:
    """Every file of the run directory, relative, plus an extra checkpoint.pt."""
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    return files + ["checkpoint.pt"]


# ---------------------------------------------------------------- 1. hostile files never execute
def test_the_hostile_payload_is_live(tmp_path):
    """The payload used below does run code when unpickled: its marker not appearing means something."""
    marker = tmp_path / "marker"
    pickle.loads(hostile_pickle(marker))
    assert marker.exists()
    marker.unlink()
    hostile_npy(marker, tmp_path / "x.npy")
    np.load(tmp_path / "x.npy", allow_pickle=True)
    assert marker.exists()


READ_BY_EVAL = {"config.json", "policy.safetensors"}  # all that load/evaluate/eval/render may read


def _consume(run: Path, tmp_path: Path, capsys) -> dict[str, str]:
    """load, evaluate, `deeprl eval`, `deeprl render`: 'ok' or the UsageError text of each."""
    outcome = {}
    for name, call in (("load", lambda: deeprl.load(run)), ("evaluate", lambda: deeprl.evaluate(run, episodes=2))):
        try:
            call()
            outcome[name] = "ok"
        except UsageError as e:
            outcome[name] = f"UsageError: {e}"
    rc, err = cli(["eval", run], capsys)
    assert rc in (0, 2) and "Traceback" not in err
    outcome["cli eval"] = "ok" if rc == 0 else err
    gif = tmp_path / "x.gif"
    rc, err = cli(["render", run, "--out", gif, "--episodes", "1"], capsys)
    assert rc in (0, 2) and "Traceback" not in err
    outcome["cli render"] = "ok" if rc == 0 else err
    gif.unlink(missing_ok=True)
    return outcome


def test_hostile_files_never_run_on_load_evaluate_eval_or_render(pristine, tmp_path, capsys):
    marker = tmp_path / "marker"
    payload = hostile_pickle(marker)
    cases = planted_cases(pristine)
    assert "checkpoint.pt" in cases and any(c.endswith("env.pkl") for c in cases)
    for i, rel in enumerate(cases):
        run = copy_run(pristine, tmp_path / f"run{i}")
        (run / rel).write_bytes(payload)
        outcome = _consume(run, tmp_path, capsys)
        assert not marker.exists(), f"planting {rel}: unpickled by {outcome}"
        if rel in READ_BY_EVAL:
            assert all(v != "ok" for v in outcome.values()), (rel, outcome)
            assert all("deeprl: error:" in v or v.startswith("UsageError") for v in outcome.values()), outcome
        else:  # eval, render and load read config.json and the policy only: the rest does not matter
            assert all(v == "ok" for v in outcome.values()), (rel, outcome)
        shutil.rmtree(run)


def test_hostile_npy_and_torch_files_and_a_validly_signed_env_pkl_never_run_on_eval(
    pristine, tmp_path, capsys, deeprl_home
):
    """A real .npy holding a pickled object array; a torch.save'd checkpoint.pt; env.pkl signed with THIS
    user's key (only --resume may unpickle it): eval, render and load read none of them."""
    marker = tmp_path / "marker"
    run = copy_run(pristine, tmp_path / "run")
    folder = state_dir(run)
    for npy in (folder / "arrays").glob("*.npy"):
        hostile_npy(marker, npy)
    torch.save({"model": _Hostile(marker)}, run / "checkpoint.pt")
    blob = hostile_pickle(marker)
    (folder / "env.pkl").write_bytes(blob)
    (folder / "env.sig").write_text(hmac.new(rundir.snapshot_key(), blob, hashlib.sha256).hexdigest())
    outcome = _consume(run, tmp_path, capsys)
    assert not marker.exists()
    assert all(v == "ok" for v in outcome.values()), outcome

    # a format-1 looking directory (no policy.safetensors) with a torch-pickled checkpoint.pt
    (run / "policy.safetensors").unlink()
    outcome = _consume(run, tmp_path, capsys)
    assert not marker.exists()
    assert all("format 1" in v for v in outcome.values()), outcome


def test_hostile_npy_is_refused_on_resume(pristine, tmp_path, capsys):
    marker = tmp_path / "marker"
    run = copy_run(pristine, tmp_path / "run")
    for npy in (state_dir(run) / "arrays").glob("*.npy"):
        hostile_npy(marker, npy)
    rc, err = cli(["train", "--resume", run, "--progress", "off"], capsys)
    assert not marker.exists()
    assert rc == 2 and "resume state" in err and "unreadable" in err, err


def test_hostile_files_never_run_on_resume(pristine, tmp_path, capsys):
    """`deeprl train --resume` over each planted file: a clean error (exit 2) or a resume that does not
    unpickle it (env.pkl whose signature no longer matches); never the payload, never a traceback."""
    marker = tmp_path / "marker"
    payload = hostile_pickle(marker)
    failures = []
    for i, rel in enumerate(planted_cases(pristine)):
        run = copy_run(pristine, tmp_path / f"run{i}")
        (run / rel).write_bytes(payload)
        try:
            rc, err = cli(["train", "--resume", run, "--progress", "off"], capsys)
        except Exception as e:  # noqa: BLE001 - a traceback for the user: collected, reported below
            failures.append(f"{rel}: {type(e).__name__}: {e}")
            continue
        finally:
            assert not marker.exists(), f"planting {rel}: --resume unpickled it"
        if rc not in (0, 2) or (rc == 2 and "deeprl: error:" not in err):
            failures.append(f"{rel}: exit {rc}: {err}")
        if rel.endswith(("env.pkl", "env.sig")) and (rc != 0 or "not loaded" not in err):
            failures.append(f"{rel}: expected a resume with a note that the snapshot was not loaded: {rc} {err}")
    assert not failures, "\n".join(failures)


def _other_key_signature(blob: bytes) -> str:
    return hmac.new(os.urandom(32), blob, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("signature", ["missing", "wrong", "another user's key"])
def test_resume_never_unpickles_an_env_pkl_this_user_did_not_sign(pristine, tmp_path, capsys, signature):
    marker = tmp_path / "marker"
    run = copy_run(pristine, tmp_path / "run")
    folder = state_dir(run)
    blob = hostile_pickle(marker)
    (folder / "env.pkl").write_bytes(blob)
    if signature == "missing":
        (folder / "env.sig").unlink()
    elif signature == "wrong":
        (folder / "env.sig").write_text("0" * 64)
    else:
        (folder / "env.sig").write_text(_other_key_signature(blob))
    rundir.snapshot_key()  # this user has a key of their own, different from the one that signed
    rc, err = cli(["train", "--resume", run, "--progress", "off"], capsys)
    assert not marker.exists()
    assert rc == 0, err
    assert "not loaded" in err and "fresh episodes" in err, err


# ---------------------------------------------------------------- 2. concurrent runs
def test_four_concurrent_runs_without_run_dir_get_four_directories(tmp_path):
    args = CLI + [
        "train",
        "q-learning",
        "FrozenLake-v1",
        "--seed",
        "0",
        "--episodes",
        "200",
        "--eval-episodes",
        "10",
        "--progress",
        "off",
    ]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    dirs = sorted((tmp_path / "runs").iterdir())
    assert len(dirs) == 4, dirs
    for d in dirs:
        assert (d / "config.json").is_file() and (d / "policy.safetensors").is_file(), d
        config = json.loads((d / "config.json").read_text())
        assert config["format"] == 2
        # each directory's config matches its own checkpoint, and holds one run's rows, not a merge of several
        header = rundir.load_resume_state(d).header
        assert (header["algo"], header["env_id"], header["seed"]) == (config["algo"], config["env_id"], 0)
        in_cwd = [(tmp_path / x["run"]["run_dir"]).resolve() for x in (header, config)]  # paths relative to cwd
        assert in_cwd == [d.resolve(), d.resolve()]
        assert read_metrics(d) == read_metrics(dirs[0])  # the same seed: the same results, row for row
        assert len([r for r in read_metrics(d) if r["kind"] == "train"]) == 200
    printed = [re.search(r"saved to (.+)", out).group(1).strip() for out, _ in outs]
    assert len(set(printed)) == 4, printed
    assert sorted((tmp_path / p).resolve() for p in printed) == [d.resolve() for d in dirs]


def test_default_names_in_the_same_second_are_claimed_once_each(tmp_path, monkeypatch):
    """Runs started in the same second (same timestamp) each get a directory of their own."""

    class FixedClock:
        @staticmethod
        def now():
            return datetime(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(rundir, "datetime", FixedClock)
    monkeypatch.chdir(tmp_path)
    claimed, errors = [], []
    barrier = threading.Barrier(6)

    def claim():
        barrier.wait()
        try:
            claimed.append(rundir.claim_run_dir(None, "q-learning", "FrozenLake-v1", 0))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(claimed)) == 6
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(p.name for p in claimed)
    assert all((p / "config.json").is_file() for p in claimed)


def test_two_runs_on_the_same_empty_run_dir_one_wins(tmp_path):
    run = tmp_path / "shared"
    run.mkdir()
    args = CLI + [
        "train",
        "q-learning",
        "FrozenLake-v1",
        "--seed",
        "0",
        "--episodes",
        "200",
        "--eval-episodes",
        "10",
        "--progress",
        "off",
        "--run-dir",
        str(run),
    ]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser_err = outs[[p.returncode for p in procs].index(2)][1]
    assert "deeprl: error:" in loser_err and str(run) in loser_err and "Traceback" not in loser_err
    assert "--run-dir" in loser_err or "--resume" in loser_err
    assert (run / "summary.json").is_file() and (run / "policy.safetensors").is_file()
    assert len([r for r in read_metrics(run) if r["kind"] == "train"]) == 200  # one run's rows, not two


# ---------------------------------------------------------------- 3. refused resumes change nothing
@pytest.fixture(scope="module")
def q_and_sarsa(tmp_path_factory):
    base = tmp_path_factory.mktemp("pair")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPRL_HOME", str(base / "home"))
        train_frozen(base / "q")
        train_frozen(base / "sarsa", algo="sarsa")
        train_frozen(base / "cliff", env_id="CliffWalking-v1", episodes=5)
    return base


def _assert_refused_and_unchanged(target: Path, capsys, *fragments: str) -> str:
    before = snapshot(target)
    time.sleep(0.01)  # a rewrite would show in mtime_ns
    rc, err = cli(["train", "--resume", target, "--progress", "off"], capsys)
    assert rc == 2, err
    assert "deeprl: error:" in err
    for fragment in fragments:
        assert fragment in err, err
    assert snapshot(target) == before, "a refused --resume changed the run directory"
    return err


@pytest.mark.parametrize("source, what", [("sarsa", "algo"), ("cliff", "env_id")])
def test_a_resume_state_of_another_run_is_refused_and_changes_nothing(q_and_sarsa, tmp_path, capsys, source, what):
    target = copy_run(q_and_sarsa / "q", tmp_path / "target")
    shutil.rmtree(target / "resume")
    shutil.copytree(q_and_sarsa / source / "resume", target / "resume", copy_function=shutil.copy2)
    err = _assert_refused_and_unchanged(target, capsys, what, "Nothing was changed")
    assert f"{what}: config.json has" in err


def test_a_resume_state_of_format_1_is_refused_and_changes_nothing(q_and_sarsa, tmp_path, capsys):
    target = copy_run(q_and_sarsa / "q", tmp_path / "target")
    path = state_dir(target) / "state.json"
    state = json.loads(path.read_text())
    state["format"] = 1
    path.write_text(json.dumps(state))
    _assert_refused_and_unchanged(target, capsys, "format", "Nothing was changed")


# ---------------------------------------------------------------- 4. SIGTERM, then --resume
DQN = [
    "dqn",
    "CartPole-v1",
    "--seed",
    "3",
    "--total-steps",
    "3000",
    "--learning-starts",
    "100",
    "--buffer-size",
    "2000",
    "--eval-every",
    "1000",
    "--eval-episodes",
    "3",
    "--checkpoint-every",
    "500",
    "--progress",
    "off",
]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_then_resume_ends_like_the_uninterrupted_run(tmp_path, signum, code):
    """SIGTERM (timeout, docker stop, Slurm) and SIGINT (Ctrl-C) both save and exit; --resume is exact."""
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    train = CLI + ["train", *DQN]
    # the uninterrupted run alongside (two cores): same results whatever the timing
    uninterrupted = subprocess.Popen(
        train + ["--run-dir", str(whole)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc = subprocess.Popen(
        train + ["--run-dir", str(stopped)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (stopped / "resume" / "LATEST").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.002)
    assert proc.poll() is None, "the run finished before it could be stopped: raise its budget"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "saved at env step" in err, err
    assert not (stopped / "summary.json").exists()
    saved = rundir.load_resume_state(stopped)
    steps = saved.state["loop"]["env_steps"]
    assert 500 <= steps < 3000, steps  # 8 vector envs: a chunk ends on the next multiple of 8 (504)
    assert saved.env_snapshot is not None  # signed by this user (same DEEPRL_HOME): the episode goes on

    _, err = uninterrupted.communicate(timeout=120)
    assert uninterrupted.returncode == 0, err
    resumed = subprocess.run(
        CLI + ["train", "--resume", str(stopped)], capture_output=True, text=True, timeout=120, check=False
    )
    assert resumed.returncode == 0, resumed.stderr

    assert read_summary(stopped) == read_summary(whole)
    assert read_metrics(stopped) == read_metrics(whole)
    from safetensors.torch import load_file

    a, b = load_file(str(whole / "policy.safetensors")), load_file(str(stopped / "policy.safetensors"))
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ---------------------------------------------------------------- 5. smaller contract points
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_files_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        train_frozen(tmp_path / "r")
    finally:
        os.umask(old)
    run = tmp_path / "r"
    for name in ("config.json", "policy.safetensors", "metrics.csv", "summary.json", "resume/LATEST"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    for path in (run / "resume").rglob("*"):
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert path.stat().st_mode & 0o777 == want, (path, oct(path.stat().st_mode))


def test_files_honour_the_umask_of_a_cli_process(tmp_path):
    subprocess.run(
        CLI + ["train", *FROZEN, "--run-dir", str(tmp_path / "r")],
        check=True,
        capture_output=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert (tmp_path / "r" / "config.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "r" / "policy.safetensors").stat().st_mode & 0o777 == 0o644


def test_resume_removes_stray_temp_files_and_directories(pristine, tmp_path, capsys):
    run = copy_run(pristine, tmp_path / "run")
    (run / ".policy.safetensors.XYZ.tmp").write_bytes(b"half a policy")
    stray = run / "resume" / ".000000000001-abc.tmp"
    (stray / "arrays").mkdir(parents=True)
    (stray / "tensors.safetensors").write_bytes(b"half a state")
    rc, err = cli(["train", "--resume", run, "--progress", "off"], capsys)
    assert rc == 0, err
    assert not (run / ".policy.safetensors.XYZ.tmp").exists()
    assert not stray.exists()
    assert not list(run.rglob("*.tmp"))


def test_a_resume_dir_that_is_a_symlink_is_refused_and_nothing_outside_is_touched(pristine, tmp_path, capsys):
    """A received run directory whose resume/ links elsewhere must not make resume write or delete there."""
    run = copy_run(pristine, tmp_path / "run")
    outside = tmp_path / "outside"
    (run / "resume").rename(outside)
    (outside / ".keep-me.tmp").write_text("not deeprl's")
    (outside / "someone-elses-dir").mkdir()
    (run / "resume").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    rc, err = cli(["train", "--resume", run, "--progress", "off"], capsys)
    assert rc == 2 and "symbolic link" in err, err
    assert snapshot(outside) == before and (outside / "someone-elses-dir").is_dir()


def test_resume_without_a_resume_state_says_to_delete_or_pick_another_directory(pristine, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.csv"):
        shutil.copy2(pristine / name, run / name)
    before = snapshot(run)
    rc, err = cli(["train", "--resume", run, "--progress", "off"], capsys)
    assert rc == 2
    assert "no resume state" in err and "Delete" in err and "another" in err, err
    assert "--resume" not in err, err
    assert snapshot(run) == before


def test_a_format_1_directory_is_a_clear_error_on_eval_and_resume(pristine, tmp_path, capsys):
    marker = tmp_path / "marker"
    run = tmp_path / "old"
    run.mkdir()
    config = json.loads((pristine / "config.json").read_text())
    del config["format"]
    (run / "config.json").write_text(json.dumps(config))
    torch.save({"model": _Hostile(marker)}, run / "checkpoint.pt")
    for argv in (["eval", run], ["train", "--resume", run], ["render", run, "--out", tmp_path / "x.gif"]):
        rc, err = cli(argv, capsys)
        assert rc == 2 and "format 1" in err, (argv, err)
    with pytest.raises(UsageError, match="format 1"):
        deeprl.load(run)
    assert not marker.exists()
    # config.json of format 1 next to a policy file: still named as format 1, not a KeyError
    (run / "checkpoint.pt").unlink()
    shutil.copy2(pristine / "policy.safetensors", run / "policy.safetensors")
    for argv in (["eval", run], ["train", "--resume", run]):
        rc, err = cli(argv, capsys)
        assert rc == 2 and "format 1" in err, (argv, err)


def test_a_read_only_run_directory_refuses_resume_before_writing(pristine, tmp_path, capsys, monkeypatch):
    run = copy_run(pristine, tmp_path / "run")
    (run / ".policy.safetensors.XYZ.tmp").write_bytes(b"stray")  # a resume would delete it first thing
    before = snapshot(run)
    if os.geteuid() == 0:  # root writes through chmod 0o555: make os.access say what it would for a user
        real_access = os.access
        inside = str(run.resolve())
        monkeypatch.setattr(
            os,
            "access",
            lambda path, mode, *a, **k: (
                False
                if str(Path(path).resolve()).startswith(inside) and mode & os.W_OK
                else real_access(path, mode, *a, **k)
            ),
        )
        rc, err = cli(["train", "--resume", run, "--progress", "off"], capsys)
    else:
        for path in (run / "resume", run):
            path.chmod(0o555)
        try:
            before = snapshot(run)
            rc, err = cli(["train", "--resume", run, "--progress", "off"], capsys)
        finally:
            for path in (run, run / "resume"):
                path.chmod(0o755)
    assert rc == 2, err
    assert "read-only" in err, err
    assert snapshot(run) == before


@pytest.mark.parametrize("failing", ["tensors write", "numpy save"])
def test_a_full_disk_keeps_the_previous_resume_state_and_resume_works(tmp_path, failing):
    states_seen: list[str] = []

    def full_disk_at_the_second_state(real, folder_of):
        def fake(*args, **kwargs):
            folder = folder_of(*args, **kwargs)
            if folder not in states_seen:
                states_seen.append(folder)
            if len(states_seen) >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return fake

    run = tmp_path / "r"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rundir, "LARGE_ARRAY_BYTES", 512)  # so that np.save writes arrays/*.npy
        if failing == "tensors write":
            mp.setattr(
                rundir,
                "_write_bytes",
                full_disk_at_the_second_state(rundir._write_bytes, lambda path, blob: str(Path(path).parent)),
            )
        else:
            mp.setattr(
                np,
                "save",
                full_disk_at_the_second_state(np.save, lambda file, *a, **k: str(Path(file.name).parent.parent)),
            )
        with pytest.raises(UsageError, match="No space left") as info:
            train_frozen(run, episodes=100)
    assert "--resume" in str(info.value)
    assert len(states_seen) == 2
    latest = json.loads((run / "resume" / "LATEST").read_text())
    assert latest["env_steps"] == 100, latest
    folder = run / "resume" / latest["state"]
    for name in ("state.json", "tensors.safetensors", "env.pkl", "env.sig"):
        assert (folder / name).is_file(), name
    assert list((folder / "arrays").glob("*.npy"))
    assert sorted(p.name for p in (run / "resume").iterdir()) == sorted(["LATEST", latest["state"]])
    assert not list(run.rglob("*.tmp")), list(run.rglob("*"))
    saved = rundir.load_resume_state(run)
    assert saved.state["loop"]["env_steps"] == 100 and saved.env_snapshot is not None

    whole = train_frozen(tmp_path / "whole", episodes=100)
    resumed = deeprl.resume(run)
    assert resumed.summary["episodes"] == 100
    assert read_summary(run) == read_summary(whole.run_dir)
    assert read_metrics(run) == read_metrics(whole.run_dir)


# ---------------------------------------------------------------- 6. the divergence message
def _env_steps_named(message: str) -> list[int]:
    return [int(n) for n in re.findall(r"env step (\d+)", message)]


def test_dqn_divergence_mid_chunk_names_the_real_env_step(tmp_path, monkeypatch):
    """The loss turns NaN inside the first chunk (0..3000, no evaluation or checkpoint before it): the
    message must name the step where it happened, not the chunk's start (env step 0)."""
    import deeprl.algos.dqn as dqn_module

    nan_target = lambda rewards, *args, **kwargs: torch.full_like(rewards, float("nan"))
    monkeypatch.setattr(dqn_module, "dqn_target", nan_target)
    monkeypatch.setattr(dqn_module, "double_dqn_target", nan_target)
    with pytest.raises(UsageError) as info:
        deeprl.train(
            "dqn",
            "CartPole-v1",
            seed=0,
            total_steps=3000,
            learning_starts=100,
            buffer_size=2000,
            eval_every=100_000,
            run_dir=tmp_path / "r",
            progress="off",
        )
    message = str(info.value)
    assert "nan" in message
    assert not re.search(r"env step 0\b", message), message
    steps = _env_steps_named(message)
    assert steps and all(100 < s < 3000 for s in steps), message
    assert not (tmp_path / "r" / "summary.json").exists()


def test_ppo_divergence_names_the_env_step_it_stopped_at(tmp_path, monkeypatch):
    """PPO's second update (env step 2 x n_steps x n_envs, inside the first chunk) returns NaN losses;
    the message names that env step, and neither 0 nor a step it never reached."""
    from deeprl.algos.ppo import PPO
    from deeprl.driver import build_config

    real_update = PPO.update

    def update(self):
        metrics = real_update(self)
        return tuple(float("nan") for _ in metrics) if self.updates >= 1 else metrics

    monkeypatch.setattr(PPO, "update", update)
    _, config, run = build_config("ppo", "CartPole-v1", n_steps=32)
    diverged_at = 2 * config.n_steps * run.n_envs
    with pytest.raises(UsageError) as info:
        deeprl.train(
            "ppo",
            "CartPole-v1",
            seed=0,
            total_steps=4096,
            n_steps=32,
            eval_every=100_000,
            run_dir=tmp_path / "r",
            progress="off",
        )
    message = str(info.value)
    assert not re.search(r"env step 0\b", message), message
    assert diverged_at in _env_steps_named(message), f"the message does not name env step {diverged_at}: {message}"


# ---------------------------------------------------------------- 7. the review's findings, each pinned
def test_a_module_named_in_config_json_is_never_imported_by_load_eval_or_resume(pristine, tmp_path):
    """With the working directory on sys.path (python -c, Jupyter), a `module:EnvId` in a received config.json
    would import a module shipped next to it: deeprl refuses unless the user imported or trusted it."""
    shared = copy_run(pristine, tmp_path / "shared_run")
    marker = tmp_path / "PWNED"
    (shared / "payload.py").write_text(
        f"open({str(marker)!r}, 'w').write('code from the run directory ran')\n"
        "import gymnasium\n"
        "gymnasium.register('X-v0', entry_point='gymnasium.envs.toy_text:FrozenLakeEnv')\n"
    )
    config = json.loads((shared / "config.json").read_text())
    config["env_id"] = config["run"]["env_id"] = "shared_run.payload:X-v0"
    (shared / "config.json").write_text(json.dumps(config))
    script = (
        "import deeprl, sys\n"
        "for call in (lambda: deeprl.load('shared_run'), lambda: deeprl.resume('shared_run')):\n"
        "    try:\n"
        "        call()\n"
        "    except deeprl.UsageError as e:\n"
        "        assert 'does not import modules named in a run directory' in str(e), e\n"
        "    else:\n"
        "        sys.exit('not refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for command in (["eval", "shared_run"], ["plot", "shared_run", "--out", "p.png"]):
        out = subprocess.run([*CLI, *command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in out.stderr, out.stderr
    assert not marker.exists()
    # the user can vouch for their own module: then it is imported and used
    out = subprocess.run(
        [*CLI, "eval", "shared_run", "--episodes", "2", "--trust-module", "shared_run.payload"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert marker.exists()


def test_resume_does_not_write_through_a_planted_video_link(tmp_path, capsys):
    run = tmp_path / "vid"
    opts = dict(seed=0, total_steps=2000, checkpoint_every=1000, video_every=1000, max_episode_steps=50)
    deeprl.train("q-learning", "CliffWalking-v1", run_dir=run, progress="off", **opts)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious user data")
    (run / "videos" / ".step_0003000.tmp.mp4").symlink_to(victim)  # the temp name of the next video
    rc, err = cli(["train", "--resume", run, "--total-steps", 4000, "--progress", "off"], capsys)
    assert rc == 0, err
    assert victim.read_text() == "precious user data"
    assert (run / "videos" / "step_0004000.mp4").is_file()
    # and a videos/ that is itself a link is refused before anything runs
    shutil.move(run / "videos", tmp_path / "elsewhere")
    (run / "videos").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    before = snapshot(tmp_path / "elsewhere")
    rc, err = cli(["train", "--resume", run, "--total-steps", 6000, "--progress", "off"], capsys)
    assert rc == 2 and "symbolic link" in err, err
    assert snapshot(tmp_path / "elsewhere") == before


def test_resume_is_exact_with_reward_scaling_and_observation_normalisation(tmp_path):
    """The running statistics hold numpy scalars: they must come back as numpy scalars, not floats."""
    opts = dict(seed=1, eval_every=1024, eval_episodes=2, progress="off", n_envs=4, n_steps=64, stop_when_solved=False)
    extra = dict(scale_rewards=True, normalize_obs=True)
    whole = deeprl.train("ppo", "CartPole-v1", total_steps=3072, run_dir=tmp_path / "whole", **opts, **extra)
    deeprl.train("ppo", "CartPole-v1", total_steps=1536, run_dir=tmp_path / "part", **opts, **extra)
    resumed = deeprl.resume(tmp_path / "part", total_steps=3072)
    assert read_summary(resumed.run_dir) == read_summary(whole.run_dir)
    assert read_metrics(resumed.run_dir) == read_metrics(whole.run_dir)


def test_an_empty_or_short_key_is_never_used_to_trust_a_snapshot(pristine, tmp_path, deeprl_home, capsys):
    deeprl_home.mkdir(parents=True, exist_ok=True)
    (deeprl_home / "snapshot.key").write_bytes(b"")
    os.chmod(deeprl_home / "snapshot.key", 0o600)
    assert rundir.snapshot_key() is None
    run = copy_run(pristine, tmp_path / "run")
    marker = tmp_path / "marker"
    blob = hostile_pickle(marker)
    (state_dir(run) / "env.pkl").write_bytes(blob)
    (state_dir(run) / "env.sig").write_text(hmac.new(b"", blob, hashlib.sha256).hexdigest())
    rc, err = cli(["train", "--resume", run, "--episodes", 60, "--progress", "off"], capsys)
    assert rc == 0, err
    assert "not loaded" in err and not marker.exists()


@pytest.mark.parametrize(
    "damage",
    ["loop removed", "structure not a dict", "counters cut short", "q table missing", "loop env_steps a string"],
)
def test_a_damaged_resume_state_is_a_clean_refusal_that_changes_nothing(pristine, tmp_path, capsys, damage):
    run = copy_run(pristine, tmp_path / "run")
    path = state_dir(run) / "state.json"
    state = json.loads(path.read_text())
    tree = state["structure"]
    if damage == "loop removed":
        del tree["loop"]
    elif damage == "structure not a dict":
        state["structure"] = [1]
    elif damage == "counters cut short":
        tree["algo"]["env_steps"] = {"__tuple__": [1]}
    elif damage == "q table missing":
        del tree["algo"]["q"]
    else:
        tree["loop"]["env_steps"] = "x"
    path.write_text(json.dumps(state))
    before = snapshot(run)
    rc, err = cli(["train", "--resume", run, "--episodes", 60, "--progress", "off"], capsys)
    assert rc == 2, err
    assert "Traceback" not in err
    assert snapshot(run) == before


@pytest.mark.parametrize(
    "edit",
    [
        {"run": {"run_dir": 5}},
        {"run": {"max_episode_steps": 1.5}},
        {"versions": "x", "config": {"unknown_option": 1}},
        {"config": 5},
    ],
)
def test_a_damaged_config_json_is_a_clean_error_on_eval_and_plot(pristine, tmp_path, capsys, edit):
    run = copy_run(pristine, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    for key, value in edit.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and isinstance(config[key], dict) else value
    (run / "config.json").write_text(json.dumps(config))
    for command in (["eval", run, "--episodes", 1], ["plot", run, "--out", tmp_path / "p.png"]):
        rc, err = cli(command, capsys)
        assert rc in (0, 2), err  # a plot may not need the damaged field; eval does
    rc, err = cli(["eval", run, "--episodes", 1], capsys)
    assert rc == 2 and "deeprl: error:" in err, err


def test_a_damaged_policy_is_a_clean_error(pristine, tmp_path, capsys):
    from safetensors.torch import save_file

    run = copy_run(pristine, tmp_path / "run")
    save_file(
        {"policy.q": torch.zeros(3)},
        str(run / "policy.safetensors"),
        metadata={
            "format": "2",
            "structure": json.dumps({"q": {"__ndarray__": "policy.q", "dtype": "<f8"}}),
            "info": "{}",
        },
    )
    rc, err = cli(["eval", run, "--episodes", 1], capsys)
    assert rc == 2 and "does not fit" in err, err


def test_a_run_that_cannot_start_leaves_no_directory(tmp_path):
    with pytest.raises(UsageError, match="buffer"):
        deeprl.train("dqn", "CartPole-v1", buffer_size=10**11, run_dir=tmp_path / "big", progress="off")
    assert not (tmp_path / "big").exists()


def test_tensor_names_that_meet_after_joining_keys_stay_apart(tmp_path):
    state = {"a.b": torch.tensor(1.0), "a": {"b": torch.tensor(2.0)}, "n": np.float32(0.5), "k": {3: (np.int64(4),)}}
    rundir.save_policy(tmp_path, state, {})
    loaded, _ = rundir.load_policy(tmp_path)
    assert float(loaded["a.b"]) == 1.0 and float(loaded["a"]["b"]) == 2.0
    assert type(loaded["n"]) is np.float32 and loaded["n"] == np.float32(0.5)
    assert type(loaded["k"][3][0]) is np.int64


def test_copy_released_copies_a_memory_mapped_array_in_slices(tmp_path):
    src = np.random.default_rng(0).integers(0, 255, size=(3, 1000, 84), dtype=np.uint8)
    np.save(tmp_path / "a.npy", src)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    dst = np.zeros((3, 1000, 84), np.uint8)
    rundir.copy_released(dst, mapped, chunk_bytes=10_000)  # 40 slices
    assert np.array_equal(dst, src)
    with pytest.raises(ValueError, match="shape"):
        rundir.copy_released(np.zeros((3, 999, 84), np.uint8), mapped)


def test_a_run_still_going_cannot_be_resumed_at_the_same_time(tmp_path, capsys):
    run = tmp_path / "busy"
    args = [*CLI, "train", "q-learning", "FrozenLake-v1", "--episodes", "10000000", "--checkpoint-every", "1000"]
    proc = subprocess.Popen(
        [*args, "--eval-every", "100000000", "--run-dir", str(run), "--progress", "off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not (run / "resume" / "LATEST").exists() and time.time() < deadline:
            time.sleep(0.05)
        rc, err = cli(["train", "--resume", run, "--progress", "off"], capsys)
        assert rc == 2 and "in use by another deeprl process" in err and str(proc.pid) in err, err
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    # the lock went with the process: the run resumes now
    saved = rundir.load_resume_state(run).state["loop"]
    result = deeprl.resume(run, episodes=saved["episodes"] + 10, progress="off")
    assert result.summary["episodes"] == saved["episodes"] + 10


def test_non_finite_numpy_floats_survive_a_resume_state(tmp_path):
    """A numpy float64 that became NaN or inf (a running statistic after a divergence) is written so that it reads
    back: repr(np.float64(nan)) is 'np.float64(nan)', which float() cannot read; the state holds 'nan'."""
    run = tmp_path / "r"
    run.mkdir()
    state = {"stats": {"mean": np.float64("nan"), "var": np.float64("inf"), "count": float("-inf"), "ok": 1.5}}
    rundir.save_resume_state(run, {"format": rundir.FORMAT, "env_steps": 0}, state, None)
    stats = rundir.load_resume_state(run).state["stats"]
    assert np.isnan(stats["mean"]) and stats["var"] == np.inf and stats["count"] == -np.inf and stats["ok"] == 1.5
