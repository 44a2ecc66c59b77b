"""`deeprl train ALGO ENV_ID --seeds 0-31 --backend ray [--ray-address ADDR] [--jobs J]`: each seed a Ray task.

The parallelism is across seeds: each task trains one seed with the local backend, exactly as `--seeds` does
on this machine (`python -m deeprl train ALGO ENV_ID --config seeds.json --seed S --run-dir DIR` in a process
of its own, or `deeprl train --resume DIR` for an interrupted seed), in a temporary directory on whichever node
Ray runs it. The task then returns the run directory's files (a tar archive) and the seed's output, and this
process writes them under the parent directory (PARENT/sS, PARENT/logs/sS.log): no shared filesystem is needed.
The returned files are data: extracted with tarfile's "data" filter (no links out, no device files, no
absolute paths), every member under sS/, into a temporary directory next to sS and renamed into place, so a
seed's directory is either the old one or the new one. Nothing in them is unpickled or run here (a later
`--resume` reads them as any run directory is read: the env snapshot only if this user's key signed it, so a
seed that ran on another machine resumes with fresh episodes unless the nodes share ~/.config/deeprl).

What --seeds gives on this machine, it gives on Ray: the same run directories (metrics.csv equal but for wall
times: a seed is the same command), seeds.json, aggregate.json, a line per seed as it ends, a failing seed
reported without stopping the others (a seed whose node is lost too: the same command again trains it).
Each seed's task (a Ray actor that lives as long as its seed trains) holds one CPU (an A3C seed, one per A3C
worker); --jobs J keeps at most J seeds in flight, and without it every seed is submitted at once and Ray runs
as many as the cluster's CPUs hold. Ctrl-C (or SIGTERM) is passed to every running seed, which saves and returns its
directory; seeds that have not started do not start. A second signal stops them at once (their last periodic
checkpoint, if any, comes back). `deeprl train --resume PARENT --backend ray` continues the parent on Ray
(finished seeds skipped, interrupted ones resumed from the files sent with their task); without
`--backend ray`, on this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from deeprl.errors import Interrupted, SignalScope, UsageError

POLL_S = 0.5  # how often a task looks for a stop request, and the driver for finished tasks


def local_seed_options(run: Any) -> Any:
    """The run options each seed trains with: the local backend (the Ray backend fans the seeds out, it does not
    step their envs). --workers of the run options (a Ray run's workers) means nothing here."""
    if run.workers is not None:
        raise UsageError(
            f"--workers {run.workers} sets the Ray workers of one run; with --seeds and --backend ray each seed "
            "trains locally in a Ray task of its own. Drop --workers (--jobs J limits the seeds that run at once)."
        )
    return dataclasses.replace(run, backend="local", ray_address=None)


def cpus_per_seed(record: dict[str, Any]) -> int:
    """The CPUs a seed's task holds: one, or one per worker process of an A3C seed."""
    workers = record.get("config", {}).get("workers") if record.get("algo") == "a3c" else None
    return workers if isinstance(workers, int) and workers > 0 else 1


class StopFlag:
    """A Ray actor: the signals the driver received, which every running seed's task passes to its seed (a task
    that begins after one does not start its seed)."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def signal(self, signum: int) -> None:
        self.signals.append(signum)

    def received(self) -> list[int]:
        return self.signals


class SeedRunner:
    """A Ray actor that trains one seed, holding the seed's CPUs for its life: a Ray task would lend them to
    the next seed while it waits on the stop flag (Ray releases a blocked task's CPUs, not an actor's)."""

    def run(self, action: str, seed: int, record: bytes, files: bytes | None, flag: Any, cwd: str) -> dict[str, Any]:
        return train_seed(action, seed, record, files, flag, cwd)


def train_seed(action: str, seed: int, record: bytes, files: bytes | None, flag: Any, cwd: str) -> dict[str, Any]:
    """Train (or resume) one seed in a temporary directory on this node; returns its run directory as a tar
    archive, its output and its exit status (None: it did not start, a stop was asked first)."""
    import ray

    if ray.get(flag.received.remote()):
        return {"rc": None}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deeprl-seed-") as tmp:
        where = Path(tmp)
        (where / "seeds.json").write_bytes(record)
        run_dir = where / f"s{seed}"
        if files is not None:
            _extract(files, where, seed)
        if action == "resume":
            args = ["train", "--resume", str(run_dir), "--progress", "off"]
        else:
            algo_env = _algo_env(record)
            args = ["train", *algo_env, "--config", str(where / "seeds.json"), "--seed", str(seed)]
            args += ["--run-dir", str(run_dir), "--progress", "off"]
        with open(where / "log", "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "deeprl", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd if os.path.isdir(cwd) else tmp,  # the driver's, for a 'module:EnvId' in it
                start_new_session=True,  # the signals it gets are the ones passed on below
                preexec_fn=_child_setup(),
            )
            passed = 0
            while process.poll() is None:
                with contextlib.suppress(Exception):  # the driver is gone: Ray ends this task soon
                    signals = ray.get(flag.received.remote(), timeout=10)
                    for signum in signals[passed:]:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(process.pid, signum)
                    passed = len(signals)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(POLL_S)
        return {
            "rc": process.returncode,
            "files": _pack(run_dir) if run_dir.is_dir() else None,
            "log": (where / "log").read_bytes(),
            "command": shlex.join(["deeprl", *args]),
            "node": ray.util.get_node_ip_address(),
            "elapsed": time.perf_counter() - started,
        }


def _child_setup() -> Any:
    """What the seed's process does before it runs deeprl: unblock the signals Ray's worker blocks (SIGINT among
    them), so that the ones passed on arrive; and ask for SIGTERM (save and exit) when the runner's process ends,
    killed or not (Linux's PR_SET_PDEATHSIG). Resolved here: after a fork, the child must not import."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        prctl = None
    nothing: set[int] = set()
    sigterm = int(signal.SIGTERM)

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, nothing)
        if prctl is not None:
            prctl(1, sigterm)  # PR_SET_PDEATHSIG

    return setup


def _algo_env(record: bytes) -> list[str]:
    import json

    data = json.loads(record)
    return [data["algo"], data["env_id"]]


def _holds_files(path: Path) -> bool:
    return path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir())))


def _pack(run_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(run_dir, arcname=run_dir.name)
    return buffer.getvalue()


def _extract(data: bytes, where: Path, seed: int) -> None:
    """A seed's run directory from its archive, as data: every member under sS/, files and folders only (no links,
    no devices). (The archive itself arrives through ray.get, whose transport is pickle: from the cluster's own
    workers, which run this code.)"""
    if not hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+, 3.12+
        raise UsageError("--seeds with --backend ray needs tarfile's data filter: Python 3.10.12, 3.11.4 or newer.")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        top = f"s{seed}"
        members = tar.getmembers()
        stray = [m.name for m in members if m.name != top and not m.name.startswith(top + "/")]
        if stray:
            raise UsageError(f"The files returned for seed {seed} hold {stray[0]!r}, outside {top}/: not written.")
        # a run directory holds files and folders only: a link (even one inside sS/ when it is checked) can point
        # elsewhere once sS/ is moved into place, or through a link extracted after it
        odd = [m.name for m in members if not (m.isfile() or m.isdir())]
        if odd:
            raise UsageError(
                f"The files returned for seed {seed} hold {odd[0]!r}, which is not a file or a folder: not written."
            )
        tar.extractall(where, filter="data")


def install(parent: Path, seed: int, data: bytes) -> None:
    """Write a seed's returned run directory to PARENT/sS: extracted beside it, then renamed into place."""
    from deeprl.rundir import CONFIG, SUMMARY, read_json, write_json
    from deeprl.seeds import seed_dir

    target = seed_dir(parent, seed)
    staging = Path(tempfile.mkdtemp(prefix=f".s{seed}.", dir=parent))
    try:
        _extract(data, staging, seed)
        new = staging / target.name
        if new.is_symlink() or not new.is_dir():
            raise UsageError(f"The files returned for seed {seed} hold no directory {target.name}/: not written.")
        # the run directory's own path, as this machine has it (the task trained in a temporary directory)
        if (new / CONFIG).is_file():
            config = read_json(new / CONFIG)
            if isinstance(config, dict) and isinstance(config.get("run"), dict):
                config["run"]["run_dir"] = str(target)
                write_json(new / CONFIG, config)
        if (new / SUMMARY).is_file():
            summary = read_json(new / SUMMARY)
            if isinstance(summary, dict):
                summary["run_dir"] = str(target)
                write_json(new / SUMMARY, summary)
        old = staging / "previous"
        if target.exists():
            os.rename(target, old)
        os.rename(new, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Signals(SignalScope):
    """SIGINT/SIGTERM: remembered here, passed to the running seeds by the driver's loop (not from the handler,
    which may interrupt a Ray call)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[int] = []

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = signum
        self.received.append(signum)
        if first:
            print(
                f"\n{signal.Signals(signum).name}: stopping every seed after its current chunk (each saves a checkpoint "
                "and its task returns its directory). Signal again to stop them at once.",
                file=sys.stderr,
            )


def run_seeds_on_ray(
    parent: Path, seeds: tuple[int, ...], jobs: int | None, address: str | None, log: Any = print
) -> list[Any]:
    """seeds.run_seeds on Ray: each seed trained (or resumed, or skipped) in a Ray task; returns each seed's
    outcome (seeds.SeedOutcome)."""
    from deeprl.backends.ray_runtime import connect, ray_errors, release
    from deeprl.seeds import LOGS, SEEDS_FILE, SeedOutcome, _plan, _read_summary, _result_line, read_record

    (parent / LOGS).mkdir(exist_ok=True)
    outcomes: dict[int, SeedOutcome] = {}
    pending: deque[tuple[int, str]] = deque()
    for seed in seeds:
        action, _ = _plan(parent, seed)
        target = parent / f"s{seed}"
        if action == "skip":
            summary = _read_summary(target)
            outcomes[seed] = SeedOutcome(seed, "skipped", "finished before", summary)
            log(f"seed {seed}: finished before ({_result_line(summary)}); skipped")
        elif action == "train" and _holds_files(target):
            # as a local seed fails to claim it: the returned directory would replace what is there
            message = (
                f"failed: run directory {str(target)!r} already holds files (and no resume state to continue from). "
                "Delete that directory first."
            )
            outcomes[seed] = SeedOutcome(seed, "failed", message)
            log(f"seed {seed}: {message}")
        else:
            pending.append((seed, action))
    if not pending:
        return [outcomes[s] for s in seeds]
    cpus = cpus_per_seed(read_record(parent))
    ray = connect(address, cpus)
    running: dict[Any, tuple[int, Any]] = {}  # a seed's call: the seed and its runner
    try:
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if cpus > largest:
            raise UsageError(
                f"Each seed of A3C with --workers {cpus} needs {cpus} CPUs on one node, and the largest node of the Ray "
                f"cluster has {int(largest)}. Use --workers {max(int(largest), 1)} or fewer, or add a larger node."
            )
        record = (parent / SEEDS_FILE).read_bytes()
        runner = ray.remote(num_cpus=cpus, max_restarts=0)(SeedRunner)
        flag = ray.remote(num_cpus=0)(StopFlag).remote()
        cwd = os.getcwd()
        errors = ray_errors()
        with _Signals() as stop:
            forwarded = 0
            while running or (pending and stop.signum is None):
                while pending and (jobs is None or len(running) < jobs) and stop.signum is None:
                    seed, action = pending.popleft()
                    files = _pack(parent / f"s{seed}") if action == "resume" else None
                    actor = runner.remote()  # waits for its CPUs, as a task would
                    running[actor.run.remote(action, seed, record, files, flag, cwd)] = (seed, actor)
                    log(f"seed {seed}: {'resuming' if action == 'resume' else 'training'} on Ray")
                if forwarded < len(stop.received):
                    for signum in stop.received[forwarded:]:
                        flag.signal.remote(signum)
                    forwarded = len(stop.received)
                done, _ = ray.wait(list(running), num_returns=len(running), timeout=POLL_S) if running else ([], [])
                for ref in done:
                    seed, actor = running.pop(ref)
                    outcomes[seed] = _collect(ray, ref, parent, seed, errors)
                    ray.kill(actor)  # its CPUs go to the next seed
                    log(f"seed {seed}: {outcomes[seed].message}")
            for seed, _ in pending:
                outcomes[seed] = SeedOutcome(seed, "interrupted", "not started")
    finally:
        for _, actor in running.values():  # only if this process failed: the runners stop with their seeds
            with contextlib.suppress(Exception):
                ray.kill(actor)
        release()
    if stop.signum is not None:
        raise Interrupted(stop.signum)
    return [outcomes[s] for s in seeds]


def _collect(ray: Any, ref: Any, parent: Path, seed: int, errors: tuple[type[BaseException], ...]) -> Any:
    """A finished task's seed: its directory and log written here, and its outcome."""
    from deeprl.backends.ray_runtime import _cause
    from deeprl.seeds import LOGS, SeedOutcome, _outcome

    try:
        result = ray.get(ref)
    except errors as e:
        return SeedOutcome(seed, "failed", f"failed on Ray ({_cause(e)})")
    if result["rc"] is None:
        return SeedOutcome(seed, "interrupted", "not started")
    with open(parent / LOGS / f"s{seed}.log", "ab") as out:
        out.write(f"$ {result['command']}  # on {result['node']}\n".encode())
        out.write(result["log"])
    if result["files"] is not None:
        try:
            install(parent, seed, result["files"])
        except (UsageError, OSError, tarfile.TarError) as e:
            return SeedOutcome(seed, "failed", f"its files could not be written ({type(e).__name__}: {e})")
    return _outcome(parent, seed, result["rc"], result["elapsed"])


class SeedsOnRay:
    """`deeprl train ... --seeds ... --backend ray`: the runner seeds.train_seeds calls instead of its processes."""

    def __init__(self, address: str | None):
        self.address = address

    def describe(self, jobs: int | None) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray runtime"
        at_once = f"at most {jobs} at a time" if jobs else "as many at a time as its CPUs hold"
        return f"as Ray tasks on {where}, {at_once}"

    def __call__(self, parent: Path, seeds: tuple[int, ...], jobs: int | None, log: Any) -> list:
        return run_seeds_on_ray(parent, seeds, jobs, self.address, log)
