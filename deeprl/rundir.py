"""The run directory, format 2: its files, their formats, and metrics.csv. Imports no algorithm.

    DIR/config.json          format, algo, env id, seed, the resolved config and run options, versions
    DIR/metrics.csv          a row per finished training episode (kind=train) and per evaluation (kind=eval)
    DIR/summary.json         final evaluation, solved-at figures, budget used
    DIR/policy.safetensors   the policy artefact: what eval, render, load, plot and export read
    DIR/resume/LATEST        names the newest complete resume state, DIR/resume/<env steps>-<tag>/:
        state.json           the structure of the state (numbers, strings, lists) and the names of its arrays
        tensors.safetensors  tensors and small arrays (weights, optimizer moments, RNG states)
        arrays/*.npy         each large array (a replay buffer's) streamed to its own file, memory-mapped on load
        env.pkl, env.sig     the env mid-episode, pickled, with an HMAC under this user's key (below)

Nothing in a run directory is read with pickle except env.pkl, and that only by `--resume` and only when
its signature proves this user wrote it on this machine (`~/.config/deeprl/snapshot.key`): a shared run
directory is data, and evaluating or resuming one never runs code from it. A snapshot that fails the check
is skipped with a note; the run resumes with fresh episodes.

Every file is written atomically (temp file, fsync, rename) with the umask's permissions; a resume state
is written whole into a new directory before LATEST points at it, so a kill, a full disk or a crash at any
moment leaves the previous one intact. Temp files a killed write left behind are removed at the next save.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import hmac
import json
import math
import mmap
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from deeprl._version import __version__
from deeprl.errors import UsageError

FORMAT = 2
CONFIG, METRICS, SUMMARY, POLICY, RESUME = "config.json", "metrics.csv", "summary.json", "policy.safetensors", "resume"
BEST_POLICY = "policy_best.safetensors"  # the policy of the best evaluation so far (same format as POLICY)
LATEST, STATE, TENSORS, ENV, ENV_SIG = "LATEST", "state.json", "tensors.safetensors", "env.pkl", "env.sig"
BASE_COLUMNS = ("kind", "env_steps", "episodes", "wall_time_s", "episode_return", "episode_length", "eval_std_return")
LARGE_ARRAY_BYTES = 1 << 20  # arrays from 1 MiB up get their own .npy file (streamed, memory-mapped on load)


# ---------------------------------------------------------------- atomic files
def current_umask() -> int:
    """The process umask (read by setting it and back: the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write via a temp file in the same directory, fsync, then rename over `path`.

    A kill at any moment leaves either the old file or the new one, never a torn one. The file gets
    the permissions a plain open() would (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(path, None) from None
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=2, default=str), mode="w")


def read_json(path: Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(
            f"{str(path)!r} is unreadable ({type(e).__name__}: {str(e)[:200]}). It was changed "
            "after deeprl wrote it (deeprl writes every file atomically); restore it or train again."
        ) from None


class DiskFullError(UsageError):
    """No space left while writing a file; the previous checkpoint is intact."""

    def __init__(self, path: Path, need: int | None):
        free = shutil.disk_usage(Path(path).parent).free if Path(path).parent.exists() else 0
        needed = f" about {need / 2**20:,.1f} MiB were needed and" if need else ""
        super().__init__(
            f"No space left on the device while writing {str(path)!r}:{needed} "
            f"{free / 2**20:,.1f} MiB are free. The last good checkpoint (if any) is intact; free some "
            "space and continue with `deeprl train --resume DIR`."
        )


def remove_stray_temp_files(run_dir: Path) -> None:
    """Temp files and half-written resume states a killed write left behind (they can be gigabytes)."""
    resume = _resume_dir(run_dir)
    for tmp in list(run_dir.glob(".*.tmp")) + list(resume.glob(".*.tmp")):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    if resume.is_dir():
        keep = _latest_name(resume)
        for entry in resume.iterdir():
            if entry.is_dir() and not entry.is_symlink() and entry.name != keep:
                shutil.rmtree(entry, ignore_errors=True)


# ---------------------------------------------------------------- claiming a run directory
def default_run_dir(algo: str, env_id: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_env = env_id.replace("/", "-").replace(":", "-")
    return Path("runs") / f"{safe_env}__{algo}__s{seed}__{stamp}"


def claim_run_dir(run_dir: Path | None, algo: str, env_id: str, seed: int) -> Path:
    """Create the run directory and make it this process's, atomically.

    A default name is claimed with an exclusive mkdir, retried with a suffix (-2, -3...), so N runs
    started in the same second get N directories. A directory the user names may exist if it is empty;
    it is claimed by the exclusive creation of its config.json, so two runs never share it.
    """
    if run_dir is None:
        base = default_run_dir(algo, env_id, seed)
        _mkdir_parents(base.parent)
        for n in range(1, 10_000):
            candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            except OSError as e:
                raise _unwritable(candidate, e) from None
            _claim_file(candidate)
            return candidate
        raise UsageError(f"Could not find a free run directory name next to {str(base)!r}; pass --run-dir.")
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--run-dir {str(run_dir)!r} is a file. Pass a directory (new or empty).")
    _mkdir_parents(run_dir)
    if any(run_dir.iterdir()):
        raise UsageError(already_holds_files(run_dir))
    _claim_file(run_dir)
    return run_dir


LOCK = ".lock"


def lock_run_dir(run_dir: Path, busy: str | None = None) -> Any:
    """Hold an exclusive lock on the run directory for the life of the run (flock: the kernel drops it when
    the process ends, however it ends), so a `--resume` of a directory whose run is still going is refused
    instead of two processes writing one directory. Returns the open lock file; close it to release.
    `busy` replaces the refusal's advice (after "in use by another deeprl process (pid N)")."""
    import fcntl

    f = open(Path(run_dir) / LOCK, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        advice = busy or (
            "its run is still going. Wait for it to finish (or stop it with Ctrl-C / SIGTERM, which saves), then resume."
        )
        raise UsageError(f"{str(run_dir)!r} is in use by another deeprl process (pid {holder}): {advice}") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def already_holds_files(run_dir: Path) -> str:
    if (run_dir / RESUME / LATEST).is_file():
        return (
            f"Run directory {str(run_dir)!r} already holds a run. Continue it with "
            f"`deeprl train --resume {run_dir}`, or pass another --run-dir."
        )
    return (
        f"Run directory {str(run_dir)!r} already holds files (and no resume state to continue from). "
        "Pass another --run-dir, or delete that directory first."
    )


def _mkdir_parents(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(path, e) from None


def _claim_file(run_dir: Path) -> None:
    try:
        fd = os.open(run_dir / CONFIG, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        raise UsageError(f"Another run claimed {str(run_dir)!r} first. Pass another --run-dir.") from None
    except OSError as e:
        raise _unwritable(run_dir, e) from None
    os.close(fd)


def _unwritable(path: Path, e: OSError) -> UsageError:
    return UsageError(f"Cannot write the run directory {str(path)!r}: {e.strerror}. Pass a --run-dir you can write to.")


def check_no_links(run_dir: Path) -> None:
    """For --resume: the entries a run writes into must be plain files and directories of the run directory;
    a symbolic link planted in a received run directory would make the run write (or read) elsewhere."""
    for name in (CONFIG, METRICS, SUMMARY, POLICY, BEST_POLICY, RESUME, "videos", "tb"):
        if (Path(run_dir) / name).is_symlink():
            raise UsageError(
                f"{str(Path(run_dir) / name)!r} is a symbolic link; the files and directories of a run directory "
                "must be its own. Replace the link with what it points to, then resume."
            )


def check_writable(run_dir: Path) -> None:
    """For --resume: a read-only run directory fails here, before anything is trained."""
    for path in (run_dir, run_dir / RESUME):
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(
                f"Cannot resume {str(run_dir)!r}: {str(path)!r} is read-only. Make it writable "
                "(chmod u+w), or copy the run directory somewhere you can write and resume the copy."
            )


# ---------------------------------------------------------------- reading a run directory
def read_config(run_dir: Path | str) -> dict[str, Any]:
    """config.json of a format-2 run directory, or a UsageError saying what the path is instead."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(
            f"{str(run_dir)!r} is a file, not a run directory. Pass the directory that "
            "`deeprl train` wrote (it holds config.json and policy.safetensors)."
        )
    if not run_dir.is_dir():
        raise UsageError(
            f"Run directory {str(run_dir)!r} does not exist. Pass the directory a `deeprl train` run "
            "wrote (it holds config.json, metrics.csv, summary.json and policy.safetensors)."
        )
    if (run_dir / "checkpoint.pt").exists() and not (run_dir / POLICY).exists():
        raise UsageError(
            f"{str(run_dir)!r} is a run directory of format 1 (a pickled checkpoint.pt), which this "
            f"deeprl ({__version__}, run-directory format {FORMAT}) does not read: format 1 could run "
            "code when loaded. Train it again with this version."
        )
    if not (run_dir / CONFIG).is_file():
        raise UsageError(f"{str(run_dir)!r} has no {CONFIG}: it is not a deeprl run directory.")
    config = read_json(run_dir / CONFIG)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format", 1) if isinstance(config, dict) else "?"
        raise UsageError(
            f"{str(run_dir / CONFIG)!r} is of run-directory format {found}; this deeprl ({__version__}) "
            f"reads format {FORMAT}. Use the deeprl version that wrote it, or train again."
        )
    for key, kind in (("algo", str), ("env_id", str), ("config", dict), ("run", dict)):
        if not isinstance(config.get(key), kind):
            raise UsageError(f"{str(run_dir / CONFIG)!r} lacks {key!r}: it was changed after deeprl wrote it.")
    return config


def versions() -> dict[str, str]:
    import gymnasium as gym
    import torch

    return {
        "deeprl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------- state trees without pickle
class _Encoder:
    """Turns a state tree (dicts, lists, tuples, numbers, strings, tensors, arrays) into JSON plus
    named arrays: tensors and small arrays for one safetensors file, large arrays for .npy files."""

    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}
        self.large: dict[str, np.ndarray] = {}

    def _unique(self, path: str) -> str:
        """Names join keys with dots, so {"a.b": x} and {"a": {"b": y}} would meet: the second gets a suffix."""
        return path if path not in self.tensors else f"{path}#{len(self.tensors)}"

    def __call__(self, obj: Any, path: str) -> Any:
        import torch

        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):  # np.float64 too: repr(float(x)) is 'nan', where repr(x) is 'np.float64(nan)'
            return obj if math.isfinite(obj) else {"__float__": repr(float(obj))}
        if isinstance(obj, np.generic):  # kept a numpy scalar: state code calls numpy methods on it
            return {"__npscalar__": self(obj.item(), path), "dtype": obj.dtype.str}
        if isinstance(obj, torch.Tensor):
            path = self._unique(path)
            self.tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
            return {"__tensor__": path}
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise TypeError(f"state entry {path!r} is an object array; state must be plain data")
            if obj.nbytes >= LARGE_ARRAY_BYTES:
                name = f"{len(self.large):03d}.npy"
                self.large[name] = obj
                return {"__npy__": name}
            import torch

            path = self._unique(path)
            self.tensors[path] = torch.from_numpy(np.ascontiguousarray(obj).copy())
            return {"__ndarray__": path, "dtype": obj.dtype.str}
        if isinstance(obj, tuple):
            return {"__tuple__": [self(v, f"{path}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self(v, f"{path}.{k}") for k, v in obj.items()}
            return {
                "__items__": [[self(k, f"{path}.k{i}"), self(v, f"{path}.{i}")] for i, (k, v) in enumerate(obj.items())]
            }
        raise TypeError(
            f"state entry {path!r} is a {type(obj).__name__}; state must be plain data "
            "(dicts, lists, tuples, numbers, strings, tensors, numpy arrays)"
        )


def _decode(obj: Any, tensors: dict[str, Any], arrays_dir: Path | None) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, arrays_dir) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy().astype(np.dtype(obj["dtype"]), copy=False)
    if "__npy__" in obj:
        name = obj["__npy__"]
        if arrays_dir is None or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"bad array file name {name!r}")
        return np.load(arrays_dir / name, mmap_mode="r", allow_pickle=False)
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__npscalar__" in obj:
        dtype = np.dtype(obj["dtype"])
        if dtype.hasobject:
            raise ValueError(f"object dtype {obj['dtype']!r}")
        return dtype.type(_decode(obj["__npscalar__"], tensors, arrays_dir))
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors, arrays_dir) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, tensors, arrays_dir): _decode(v, tensors, arrays_dir) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors, arrays_dir) for k, v in obj.items()}


def _load_tensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    return tensors, metadata


def copy_released(dst: np.ndarray, src: np.ndarray, chunk_bytes: int = 64 << 20) -> None:
    """dst[...] = src in slices of about chunk_bytes (along axis 1, the slot axis of a replay buffer's arrays);
    when src is memory-mapped from a .npy file, its pages are released after each slice. Loading a replay
    buffer then costs the buffer and one slice, not the buffer twice (mapped pages count as resident)."""
    if dst.shape != src.shape:
        raise ValueError(f"array of shape {src.shape}, expected {dst.shape}")
    axis = 1 if dst.ndim >= 2 else 0
    per_index = max(1, src.nbytes // max(1, src.shape[axis]))
    step = max(1, chunk_bytes // per_index)
    mapped = getattr(src, "_mmap", None)  # np.memmap's mapping (None for a plain array)
    for start in range(0, src.shape[axis], step):
        index = (slice(None),) * axis + (slice(start, start + step),)
        dst[index] = src[index]
        if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)


# ---------------------------------------------------------------- the policy artefact
def save_policy(run_dir: Path, policy_state: dict[str, Any], info: dict[str, Any], name: str = POLICY) -> None:
    """The policy (weights, normalisation statistics) as one safetensors file: tensors plus a JSON
    header, a format that holds data only. `info` (algo, env id, env steps) goes into the header."""
    from safetensors.torch import save

    encode = _Encoder()
    structure = encode(policy_state, "policy")
    if encode.large:  # every array of a policy goes into the one file
        import torch

        for i, (_key, array) in enumerate(encode.large.items()):
            encode.tensors[f"large.{i}"] = torch.from_numpy(np.ascontiguousarray(array).copy())
        structure = _inline_large(
            structure,
            {k: f"large.{i}" for i, k in enumerate(encode.large)},
            {k: a.dtype.str for k, a in encode.large.items()},
        )
    metadata = {"format": str(FORMAT), "structure": json.dumps(structure), "info": json.dumps(info, default=str)}
    blob = save(encode.tensors, metadata=metadata)
    atomic_write(run_dir / name, lambda f: f.write(blob))


def _inline_large(obj: Any, keys: dict[str, str], dtypes: dict[str, str]) -> Any:
    if isinstance(obj, list):
        return [_inline_large(v, keys, dtypes) for v in obj]
    if isinstance(obj, dict):
        if "__npy__" in obj:
            return {"__ndarray__": keys[obj["__npy__"]], "dtype": dtypes[obj["__npy__"]]}
        return {k: _inline_large(v, keys, dtypes) for k, v in obj.items()}
    return obj


def load_policy(run_dir: Path | str, name: str = POLICY) -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy state, info) of a run directory's policy file; a UsageError if it is missing or damaged."""
    path = Path(run_dir) / name
    if not path.is_file() and name == BEST_POLICY:
        raise UsageError(
            f"{str(run_dir)!r} has no {name}: no evaluation of its run has finished yet (each evaluation that "
            "beats the best so far saves it). Use the final policy (drop --best), or train with a smaller --eval-every."
        )
    if not path.is_file():
        raise UsageError(
            f"{str(run_dir)!r} has no {name}: its run stopped before saving a policy (the first "
            "checkpoint or the end of training saves it). Train again, with --checkpoint-every N "
            "to save along the way."
        )
    try:
        tensors, metadata = _load_tensors(path)
        if metadata.get("format") != str(FORMAT):
            raise ValueError(f"format {metadata.get('format')!r}, expected {FORMAT}")
        return _decode(json.loads(metadata["structure"]), tensors, None), json.loads(metadata.get("info", "{}"))
    except Exception as e:  # noqa: BLE001 - safetensors and json raise many kinds for a damaged file
        raise UsageError(
            f"{str(path)!r} is not a readable deeprl policy ({type(e).__name__}: {str(e)[:200]}). "
            "It was changed after deeprl wrote it; train again."
        ) from None


# ---------------------------------------------------------------- the resume state
@dataclass(frozen=True)
class ResumeState:
    """A loaded resume state: its header (format, algo, env id...), the state tree, and the env snapshot
    (the pickled bytes, only when signed by this user's key; None otherwise)."""

    header: dict[str, Any]
    state: dict[str, Any]
    env_snapshot: bytes | None
    env_note: str | None


def save_resume_state(run_dir: Path, header: dict[str, Any], state: dict[str, Any], env_snapshot: bytes | None) -> None:
    """Write the resume state into a new directory, then point LATEST at it, then delete the old one.

    Large arrays stream to .npy files (np.save writes a view in chunks: peak memory stays near the
    arrays themselves); everything else goes into one safetensors file and state.json.
    """
    from safetensors.torch import save

    resume = _resume_dir(run_dir)
    resume.mkdir(exist_ok=True)
    encode = _Encoder()
    structure = encode(state, "state")
    need = (
        sum(t.numel() * t.element_size() for t in encode.tensors.values())
        + sum(a.nbytes for a in encode.large.values())
        + len(env_snapshot or b"")
    )
    name = f"{int(header.get('env_steps', 0)):012d}-{uuid.uuid4().hex[:8]}"
    tmp = resume / f".{name}.tmp"
    try:
        (tmp / "arrays").mkdir(parents=True)
        # To bytes (the small tensors), then our own write: a full disk is an OSError (ENOSPC), which
        # safetensors' save_file would turn into a SafetensorError.
        _write_bytes(tmp / TENSORS, save(encode.tensors))
        for file, array in encode.large.items():
            with open(tmp / "arrays" / file, "wb") as f:
                np.save(f, array, allow_pickle=False)
        if env_snapshot is not None and (key := snapshot_key()) is not None:
            (tmp / ENV).write_bytes(env_snapshot)
            (tmp / ENV_SIG).write_text(hmac.new(key, env_snapshot, hashlib.sha256).hexdigest())
        with open(tmp / STATE, "w") as f:
            json.dump({**header, "format": FORMAT, "structure": structure}, f)
        for path in [*tmp.rglob("*"), tmp]:
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~current_umask())
        fsync_dir(tmp / "arrays")
        os.rename(tmp, resume / name)
        fsync_dir(resume)
        write_json(resume / LATEST, {"state": name, "env_steps": header.get("env_steps")})
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(tmp, need) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    remove_stray_temp_files(run_dir)


def _resume_dir(run_dir: Path) -> Path:
    resume = Path(run_dir) / RESUME
    if resume.is_symlink():  # a resume/ pointing elsewhere would make saves and clean-ups act outside the run
        raise UsageError(
            f"{str(resume)!r} is a symbolic link; a run directory's resume/ must be a plain directory inside it. "
            "Replace the link with the directory it points to."
        )
    return resume


def _write_bytes(path: Path, blob: bytes) -> None:
    with open(path, "wb") as f:
        f.write(blob)


def _latest_name(resume: Path) -> str | None:
    try:
        name = json.loads((resume / LATEST).read_text())["state"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and "/" not in name and not name.startswith(".") else None


def load_resume_state(run_dir: Path | str) -> ResumeState:
    """The newest complete resume state, validated as data; the env snapshot only if this user signed it."""
    run_dir = Path(run_dir)
    name = _latest_name(_resume_dir(run_dir))
    if name is None:
        raise UsageError(
            f"{str(run_dir)!r} has no resume state: its run stopped before its first checkpoint, "
            "so there is nothing to continue. Delete the directory (or pick another --run-dir) and "
            "train again; --checkpoint-every N saves along the way."
        )
    folder = run_dir / RESUME / name
    try:
        with open(folder / STATE) as f:
            header = json.load(f)
        tensors, _ = _load_tensors(folder / TENSORS)
        state = _decode(header.pop("structure"), tensors, folder / "arrays")
    except Exception as e:  # noqa: BLE001
        raise UsageError(
            f"The resume state in {str(folder)!r} is unreadable ({type(e).__name__}: {str(e)[:200]}). "
            "It was changed after deeprl wrote it; restore it or train again."
        ) from None
    snapshot, note = None, None
    if (folder / ENV).is_file():
        blob = (folder / ENV).read_bytes()
        sig = (folder / ENV_SIG).read_bytes().strip() if (folder / ENV_SIG).is_file() else b""
        key = snapshot_key()
        if key is not None and hmac.compare_digest(hmac.new(key, blob, hashlib.sha256).hexdigest().encode(), sig):
            snapshot = blob
        else:
            note = (
                "its env snapshot was not written by this user on this machine (or was changed), and "
                "unpickling it could run code: it is not loaded"
            )
    return ResumeState(header, state, snapshot, note)


KEY_BYTES = 32


def snapshot_key() -> bytes | None:
    """This user's secret for signing env snapshots, created on first use (0600); None if it cannot be.

    The key is written whole to a temp file and then linked into place, so a crash or a full disk never
    leaves a short (guessable) key; a key file of the wrong size or readable by others is not used.
    """
    home = Path(
        os.environ.get("DEEPRL_HOME") or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "deeprl"
    )
    path = home / "snapshot.key"
    if not path.exists():
        try:
            home.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=home, prefix=".snapshot.key.", suffix=".tmp")  # mode 0600
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(os.urandom(KEY_BYTES))
                    f.flush()
                    os.fsync(f.fileno())
                os.link(tmp, path)  # fails if another run linked its key first: then that one is the key
            except FileExistsError:
                pass
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError:
            return None
    try:
        info = path.stat()
        key = path.read_bytes()
    except OSError:
        return None
    if len(key) != KEY_BYTES or info.st_mode & 0o077 or info.st_uid != os.getuid():
        return None
    return key


# ---------------------------------------------------------------- metrics
class MetricsLog:
    """metrics.csv (fixed columns, one row per episode or evaluation), mirrored to the trackers
    (`deeprl.tracking`: TensorBoard, W&B), which also get the per-chunk scalars and the videos."""

    def __init__(
        self, run_dir: Path, extra_columns: tuple[str, ...], keep_rows: int | None, trackers: tuple[Any, ...] = ()
    ):
        self.columns = BASE_COLUMNS + tuple(extra_columns)
        self.path = run_dir / METRICS
        self.trackers: tuple[Any, ...] = tuple(trackers)  # each with episode, evaluation, chunk, video, flush, close
        if keep_rows is None or not self.path.exists():
            atomic_write(self.path, lambda f: csv.writer(f).writerow(self.columns), mode="w")
            self.rows = 0
        else:  # resume: drop the rows written after the checkpoint (and any torn last line)
            try:
                with open(self.path, newline="") as f:
                    lines = list(csv.reader(f))[: keep_rows + 1]
            except (UnicodeDecodeError, csv.Error):
                lines = []
            if len(lines) - 1 < keep_rows or (lines and tuple(lines[0]) != self.columns):
                raise UsageError(
                    f"{self.path} holds {len(lines) - 1} rows but the checkpoint covers {keep_rows} "
                    "(or its columns differ): the file was changed after deeprl wrote it. "
                    "Restore it, or train again."
                )
            atomic_write(self.path, lambda f: csv.writer(f).writerows(lines), mode="w")
            self.rows = keep_rows
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)

    def _disk_full(self, e: OSError) -> BaseException:
        return DiskFullError(self.path, None) if e.errno in (errno.ENOSPC, errno.EDQUOT) else e

    def write(
        self,
        kind: str,
        env_steps: int,
        episodes: int,
        wall: float,
        ret: float,
        length: float | str = "",
        std: float | str = "",
        extras: tuple = (),
    ) -> None:
        try:
            self.writer.writerow(
                [kind, env_steps, episodes, f"{wall:.4f}", _fmt(ret), _fmt(length), _fmt(std), *map(_fmt, extras)]
            )
        except OSError as e:
            raise self._disk_full(e) from None
        self.rows += 1
        for tracker in self.trackers:
            if kind == "train":
                tracker.episode(env_steps, ret, length, extras)
            else:
                tracker.evaluation(env_steps, ret, std)

    def chunk(self, env_steps: int, scalars: dict[str, float]) -> None:
        """Scalars logged once per chunk of training (rollout/ep_rew_mean, time/fps): trackers only."""
        for tracker in self.trackers:
            tracker.chunk(env_steps, scalars)

    def video(self, env_steps: int, path: Path) -> None:
        for tracker in self.trackers:
            tracker.video(env_steps, path)

    def flush(self) -> None:
        """To disk, not only to the OS: a checkpoint written next must never cover rows a crash loses."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as e:
            raise self._disk_full(e) from None
        for tracker in self.trackers:
            tracker.flush()

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as e:  # on a full disk the error that stopped the run has been raised already
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
        finally:
            for tracker in self.trackers:
                tracker.close()


def _fmt(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return repr(float(x)) if math.isfinite(x) else str(float(x))
    return x
