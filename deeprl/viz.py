"""Watching an agent: videos (GIF/MP4), inline notebook display, live step-by-step display, learning curves.

Notes: "Tip For Jupyter Notebooks". The notes run Jupyter under `xvfb-run` and redraw
`plt.imshow(env.render(mode='rgb_array'))` every step. Gymnasium takes `render_mode="rgb_array"` at
`gym.make` and returns frames as arrays with no display at all, so none of that is needed here:

    deeprl.render("runs/x", "cartpole.mp4")     # a file (GIF or MP4), like `deeprl render`
    deeprl.show("runs/x")                       # in a notebook: an inline HTML5 video
    deeprl.show("runs/x", live=True)            # in a notebook: the episode drawn step by step
    show_state(env, step=t)                     # the notes' helper, without xvfb
    deeprl.plot(["runs/a", "runs/b"], "curves.png")

MP4 goes through imageio's ffmpeg plugin (the imageio-ffmpeg wheel carries its own ffmpeg binary);
GIF through Pillow (which imageio uses for GIF too), one palette per frame. MuJoCo envs render
through EGL or OSMesa, picked by `ensure_mujoco_gl` when no display is attached.
"""

from __future__ import annotations

import base64
import csv
import ctypes.util
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from deeprl.envs import env_spec, make_env
from deeprl.errors import UsageError

VIDEO_EXTENSIONS = (".gif", ".mp4")
PLOT_EXTENSIONS = (".png", ".pdf", ".svg")
RENDER_STEP_CAP = 1_000     # episodes of envs without a time limit stop here unless max_steps says otherwise
HOLD_S = 0.6                # the last frame of each episode stays on screen this long
MIN_WIDTH = 320             # small frames (Atari's 160 px) are enlarged so the header text fits


# ---------------------------------------------------------------- headless rendering
def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@lru_cache(maxsize=None)
def _gl_backend_works(backend: str) -> bool:
    """Whether MuJoCo can open an offscreen context with `backend`, tried in a child process: the
    OpenGL platform is fixed at first import, so a failed try would spoil this process."""
    code = (f"from mujoco.{backend} import GLContext; c = GLContext(64, 64); c.make_current(); c.free()")
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_mujoco_gl() -> str | None:
    """Pick an offscreen OpenGL backend for MuJoCo when none is set and no display is attached.

    MUJOCO_GL set by the user is kept. Otherwise, with no display, EGL (GPU or Mesa's software
    EGL) is tried, then OSMesa; the first that opens a context is set in MUJOCO_GL and
    PYOPENGL_PLATFORM. Returns the backend in use (None: MuJoCo's own default, with a display).
    """
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    if _has_display():
        return None
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library) and _gl_backend_works(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    raise UsageError(
        "MuJoCo needs OpenGL to render, and there is no display and neither EGL nor OSMesa works here. "
        "Fix: install one of them (Debian/Ubuntu: `apt-get install libegl1` for EGL, or "
        "`apt-get install libosmesa6` for OSMesa), then run again; or set MUJOCO_GL=egl|osmesa|glfw yourself."
    )


def _uses_mujoco(env_id: str) -> bool:
    entry = env_spec(env_id).entry_point
    name = entry if isinstance(entry, str) else f"{getattr(entry, '__module__', '')}"
    return "mujoco" in name.lower()


def make_render_env(env_id: str, *, max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """`make_env(env_id, render_mode="rgb_array")`, with a headless OpenGL backend for MuJoCo and a
    UsageError when the env cannot return frames.

    Atari envs render the full game screen (210x160 RGB), whatever preprocessing (84x84 grey
    frames, frame stacks) the agent's own observations go through: `render()` reaches the
    unwrapped game through any wrapper.
    """
    if _uses_mujoco(env_id):
        ensure_mujoco_gl()
    if not _has_display():  # pygame (classic control, box2d, toy text) draws offscreen; no SDL display warning
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        env = make_env(env_id, render_mode="rgb_array", max_episode_steps=max_episode_steps, **kwargs)
    except TypeError as e:  # a user's env whose __init__ takes no render_mode
        raise UsageError(f"{env_id} cannot render frames (it takes no render_mode: {e}). deeprl renders "
                         "with render_mode='rgb_array'; add it to the env's metadata['render_modes'].") from None
    modes = env.metadata.get("render_modes", [])
    if "rgb_array" not in modes or env.render_mode != "rgb_array":
        env.close()
        raise UsageError(f"{env_id} cannot render frames: its render modes are {list(modes) or 'none'}, and "
                         "videos need 'rgb_array'. Evaluate it with `deeprl eval` instead.")
    return env


# ---------------------------------------------------------------- frames
@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from PIL import ImageFont

    import matplotlib  # DejaVu Sans ships with matplotlib, a dependency: the same text everywhere

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size=size)


def annotate(frame: np.ndarray, title: str, status: str) -> np.ndarray:
    """The frame under a dark header with two lines of text (`title`, then `status`), even-sized
    for H.264. Small frames are enlarged (nearest neighbour) first so the text stays readable."""
    from PIL import Image, ImageDraw

    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    frame = frame[..., :3].astype(np.uint8, copy=False)
    scale = math.ceil(MIN_WIDTH / frame.shape[1]) if frame.shape[1] < MIN_WIDTH else 1
    if scale > 1:
        frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    h, w = frame.shape[:2]
    size = max(11, min(20, w // 32))
    header = 2 * size + 14
    out = np.empty((header + h + (header + h) % 2, w + w % 2, 3), dtype=np.uint8)
    out[:] = (24, 26, 32)
    out[header:header + h, :w] = frame
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    font = _font(size)
    draw.text((8, 4), title, fill=(235, 235, 235), font=font)
    draw.text((8, 8 + size), status, fill=(255, 214, 102), font=font)
    return np.asarray(image)


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class EpisodeStats:
    episode_return: float
    length: int
    terminated: bool


def _single_actor(policy: Callable[[Any], np.ndarray], observation_space: gym.Space,
                  action_space: gym.Space) -> Callable[[Any], Any]:
    """A batched policy (numpy batch in, actions out) as a function of one observation."""
    batch = gym.vector.utils.create_empty_array(observation_space, 1)

    def act(obs: Any) -> Any:
        actions = policy(gym.vector.utils.concatenate(observation_space, [obs], batch))
        action = actions[0]
        return action.item() if isinstance(action_space, gym.spaces.Discrete) else action

    return act


def _resolve(agent_or_run_dir: Any, env_id: str | None) -> tuple[Callable[[Any], Any], str, str, int | None, int]:
    """(act, label, env_id, max_episode_steps, default seed) for an Agent, a run directory or a callable."""
    from deeprl.agent import Agent, load
    from deeprl.evaluation import EVAL_SEED_OFFSET

    if isinstance(agent_or_run_dir, (str, os.PathLike)):
        agent_or_run_dir = load(agent_or_run_dir)
    if isinstance(agent_or_run_dir, Agent):
        agent = agent_or_run_dir
        return (agent.act, agent.algo_name, env_id or agent.env_id, agent.run.max_episode_steps,
                agent.run.seed + EVAL_SEED_OFFSET)
    if callable(agent_or_run_dir):
        if env_id is None:
            raise UsageError("A policy given as a function needs the env: pass env_id='CartPole-v1', say.")
        name = getattr(agent_or_run_dir, "__name__", "policy")
        return agent_or_run_dir, "policy" if name == "<lambda>" else name, env_id, None, 0
    raise UsageError(f"Expected an Agent (deeprl.load), a run directory or a function obs -> action; "
                     f"got {type(agent_or_run_dir).__name__}.")


def play(act: Callable[[Any], Any], env: gym.Env, *, episodes: int = 1, seed: int = 0,
         max_steps: int | None = None, title: str = "",
         stats: list[EpisodeStats] | None = None) -> Iterator[tuple[np.ndarray, bool]]:
    """Play `episodes` episodes (episode i from reset seed `seed + i`) and yield (annotated frame,
    episode_over) for the first frame and after every step. Finished episodes go to `stats`."""
    if max_steps is None and env.spec is not None and env.spec.max_episode_steps is None:
        max_steps = RENDER_STEP_CAP  # a deterministic policy can walk in circles forever
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, steps, over, terminated = 0.0, 0, False, False
        while True:
            status = f"episode {episode + 1}/{episodes}   step {steps}   return {total:.2f}"
            if over:
                status += "   (terminated)" if terminated else "   (time limit)"
            yield annotate(env.render(), title, status), over
            if over:
                break
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            steps += 1
            over = bool(terminated or truncated) or (max_steps is not None and steps >= max_steps)
        if stats is not None:
            stats.append(EpisodeStats(total, steps, bool(terminated)))


# ---------------------------------------------------------------- writing GIF / MP4
class _GifSink:
    """Frames to an animated GIF. Pillow would merge identical consecutive frames, so a pause is a
    longer duration on one frame, not repeated frames."""

    def __init__(self, path: Path, fps: float):
        self.path, self.frames, self.durations = path, [], []
        # GIF delays are in 1/100 s and browsers slow anything under 2/100 s down to 1/10 s.
        self.ms = max(20, int(round(1000 / fps / 10)) * 10)

    def add(self, frame: np.ndarray, hold_s: float = 0.0) -> None:
        from PIL import Image

        self.frames.append(Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.FASTOCTREE))
        self.durations.append(self.ms + int(round(hold_s * 100)) * 10)

    def close(self) -> int:
        if self.frames:
            self.frames[0].save(self.path, format="GIF", save_all=True, append_images=self.frames[1:],
                                duration=self.durations, loop=0, optimize=False)
        return len(self.frames)


class _Mp4Sink:
    """Frames to H.264 MP4 through imageio-ffmpeg, streamed (no frame is kept in memory)."""

    def __init__(self, path: Path, fps: float):
        import imageio.v2 as imageio

        self.fps, self.count = fps, 0
        self.writer = imageio.get_writer(str(path), format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                         pixelformat="yuv420p", quality=7, macro_block_size=1,
                                         ffmpeg_log_level="error")

    def add(self, frame: np.ndarray, hold_s: float = 0.0) -> None:
        for _ in range(1 + int(round(hold_s * self.fps))):
            self.writer.append_data(frame)
            self.count += 1

    def close(self) -> int:
        self.writer.close()
        return self.count


def _sink(path: Path, fps: float) -> _GifSink | _Mp4Sink:
    return _GifSink(path, fps) if path.suffix.lower() == ".gif" else _Mp4Sink(path, fps)


def check_video_path(out: Path | str) -> Path:
    out = Path(out)
    if out.suffix.lower() not in VIDEO_EXTENSIONS:
        raise UsageError(f"Cannot write {str(out)!r}: the file must end in .gif or .mp4 "
                         f"(got {out.suffix or 'no extension'!r}).")
    if out.exists() and out.is_dir():
        raise UsageError(f"{str(out)!r} is a directory; pass a file name ending in .gif or .mp4.")
    if not out.parent.exists():
        raise UsageError(f"Cannot write {str(out)!r}: the directory {str(out.parent)!r} does not exist.")
    return out


@dataclass
class Recording:
    """What `render` wrote: the file, its frame count and rate, and each episode's return."""

    path: Path
    frames: int
    fps: float
    episodes: list[EpisodeStats] = field(default_factory=list)

    @property
    def returns(self) -> list[float]:
        return [e.episode_return for e in self.episodes]

    @property
    def lengths(self) -> list[int]:
        return [e.length for e in self.episodes]


def _default_fps(env: gym.Env) -> float:
    fps = env.metadata.get("render_fps") or 30
    if env.spec is not None and env.spec.id.startswith("ALE/"):
        fps = 60 / 4  # Atari games run at 60 Hz and the agent acts (we render) every 4th frame: real time
    return float(min(fps, 50))


def record(act: Callable[[Any], Any], env: gym.Env, out: Path, *, episodes: int = 1, seed: int = 0,
           fps: float | None = None, max_steps: int | None = None, title: str = "") -> Recording:
    """Play episodes in `env` (made with render_mode="rgb_array") and write them to `out`."""
    fps = fps or _default_fps(env)
    stats: list[EpisodeStats] = []
    sink = _sink(out, fps)
    try:
        for frame, over in play(act, env, episodes=episodes, seed=seed, max_steps=max_steps, title=title,
                                stats=stats):
            sink.add(frame, HOLD_S if over else 0.0)
    finally:
        frames = sink.close()
    return Recording(out, frames, fps, stats)


def _check_positive(name: str, value: Any, flag: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
                              or (isinstance(value, float) and not math.isfinite(value))):
        raise UsageError(f"{name} must be a positive number, got {value!r}. Pass {flag}.")


def render(agent_or_run_dir: Any, out: Path | str, env_id: str | None = None, *, episodes: int = 1,
           fps: float | None = None, seed: int | None = None, max_steps: int | None = None) -> Recording:
    """Write the agent playing `episodes` episodes to `out` (.gif or .mp4), each episode's return on
    its frames. By default the episodes start from the run's own evaluation seeds.

    `agent_or_run_dir`: a run directory, an Agent from `deeprl.load`, or any function obs -> action
    (then name the env with `env_id`).
    """
    out = check_video_path(out)
    _check_positive("episodes", episodes, "--episodes 3, say")
    _check_positive("fps", fps, "--fps 30, say")
    _check_positive("max_steps", max_steps, "--max-steps 1000, say")
    if not isinstance(episodes, int):
        raise UsageError(f"episodes must be a whole number, got {episodes!r}. Pass --episodes 3, say.")
    act, label, env_id, max_episode_steps, default_seed = _resolve(agent_or_run_dir, env_id)
    env = make_render_env(env_id, max_episode_steps=max_episode_steps)
    try:
        return record(act, env, out, episodes=episodes, seed=default_seed if seed is None else seed, fps=fps,
                      max_steps=max_steps, title=f"{label} on {env_id}")
    finally:
        env.close()


class EvalVideoRecorder:
    """`--video-every N`: one deterministic evaluation episode, written to RUN_DIR/videos/step_<env steps, 7 digits>.mp4.

    It has its own env and reset seed and calls only `policy`, so training (its env, its RNGs,
    its metrics) is the same with or without it.
    """

    def __init__(self, env_id: str, *, seed: int, label: str, max_episode_steps: int | None = None):
        self.env = make_render_env(env_id, max_episode_steps=max_episode_steps)
        self.seed, self.title = seed, f"{label} on {env_id}"

    def __call__(self, policy: Callable[[Any], np.ndarray], env_steps: int, directory: Path) -> Recording:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        act = _single_actor(policy, self.env.observation_space, self.env.action_space)
        final = directory / f"step_{env_steps:07d}.mp4"
        tmp = final.with_name(f".{final.stem}.tmp.mp4")  # a kill mid-episode leaves no torn video
        rec = record(act, self.env, tmp, seed=self.seed, title=f"{self.title} at {env_steps:,} env steps")
        os.replace(tmp, final)
        rec.path = final
        return rec

    def close(self) -> None:
        self.env.close()


# ---------------------------------------------------------------- notebooks
class Video:
    """An episode as an inline HTML5 video (base64 MP4) or animated GIF; Jupyter shows it via
    `_repr_html_`. `save(path)` writes the file."""

    def __init__(self, data: bytes, mime: str, recording: Recording):
        self.data, self.mime, self.recording = data, mime, recording

    @property
    def returns(self) -> list[float]:
        return self.recording.returns

    def _caption(self) -> str:
        eps = self.recording.episodes
        parts = ", ".join(f"{e.episode_return:.2f} ({e.length} steps)" for e in eps)
        return f"return{'s' if len(eps) > 1 else ''}: {parts}"

    def _repr_html_(self) -> str:
        b64 = base64.b64encode(self.data).decode("ascii")
        src = f"data:{self.mime};base64,{b64}"
        if self.mime == "video/mp4":
            media = f'<video controls autoplay loop muted playsinline src="{src}"></video>'
        else:
            media = f'<img src="{src}"/>'
        return f"<figure style='margin:0'>{media}<figcaption>{self._caption()}</figcaption></figure>"

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_bytes(self.data)
        return path

    def __repr__(self) -> str:
        return f"Video({self.mime}, {len(self.data):,} bytes, {self.recording.frames} frames; {self._caption()})"


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LiveDisplay:
    """A frame shown in a notebook output and replaced in place on every `update`: the notes'
    `show_state` without matplotlib redraws or a virtual display."""

    def __init__(self, fps: float | None = None):
        if not _in_notebook():
            raise UsageError("The live display draws into a Jupyter notebook's output, and this is not a notebook. "
                             "Write a video instead: deeprl.render(agent, 'episode.mp4') or `deeprl render RUN_DIR "
                             "--out episode.mp4`.")
        self.handle: Any = None
        self.period = 0.0 if not fps else 1.0 / fps
        self.last = 0.0
        self.updates = 0

    def update(self, frame: np.ndarray, caption: str = "", title: str = "") -> None:
        from IPython.display import Image, display

        image = Image(data=_png(annotate(frame, title, caption) if (caption or title) else np.asarray(frame)))
        wait = self.period - (time.perf_counter() - self.last)
        if wait > 0:
            time.sleep(wait)
        if self.handle is None:
            self.handle = display(image, display_id=True)
        else:
            self.handle.update(image)
        self.last = time.perf_counter()
        self.updates += 1


_LIVE: weakref.WeakKeyDictionary[Any, LiveDisplay] = weakref.WeakKeyDictionary()  # one picture per env


def show_state(env: gym.Env, step: int = 0, info: str = "") -> None:
    """The notes' `show_state(env, step, info)` for Gymnasium: call it after each step of an env made with
    `render_mode="rgb_array"`; the picture is replaced in place in the notebook, no xvfb needed."""
    if env.render_mode != "rgb_array":
        raise UsageError(f"show_state needs an env made with render_mode='rgb_array' (this one has "
                         f"{env.render_mode!r}): gymnasium.make(env_id, render_mode='rgb_array').")
    key = env.unwrapped
    if key not in _LIVE:
        _LIVE[key] = LiveDisplay()
    _LIVE[key].update(env.render(), caption=f"step {step}" + (f" | {info}" if info else ""))


@dataclass
class LiveResult:
    """What a live `show` played: one line per episode (displayed as text under the picture)."""

    episodes: list[EpisodeStats]

    @property
    def returns(self) -> list[float]:
        return [e.episode_return for e in self.episodes]

    def __repr__(self) -> str:
        return "; ".join(f"episode {i + 1}: return {e.episode_return:.2f} in {e.length} steps"
                         for i, e in enumerate(self.episodes))


def show(agent_or_run_dir: Any, env_id: str | None = None, *, episodes: int = 1, seed: int | None = None,
         max_steps: int | None = None, fps: float | None = None, format: str = "mp4",
         live: bool = False) -> Video | LiveResult:
    """Play the agent in a notebook. By default: an inline HTML5 video (`format="gif"` for an animated
    GIF). With `live=True` the frames are drawn one by one in place while the episode runs.

    `agent_or_run_dir`: a run directory, an Agent from `deeprl.load`, or a function obs -> action
    with `env_id` (e.g. `lambda obs: env.action_space.sample()` for a random agent).
    """
    if format not in ("mp4", "gif"):
        raise UsageError(f"format must be 'mp4' or 'gif', got {format!r}.")
    _check_positive("episodes", episodes, "episodes=1, say")
    _check_positive("fps", fps, "fps=30, say")
    act, label, env_id, max_episode_steps, default_seed = _resolve(agent_or_run_dir, env_id)
    seed = default_seed if seed is None else seed
    env = make_render_env(env_id, max_episode_steps=max_episode_steps)
    try:
        if live:
            display = LiveDisplay(fps or _default_fps(env))
            stats: list[EpisodeStats] = []
            for frame, _ in play(act, env, episodes=episodes, seed=seed, max_steps=max_steps,
                                 title=f"{label} on {env_id}", stats=stats):
                display.update(frame)
            return LiveResult(stats)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"episode.{format}"
            try:
                rec = record(act, env, path, episodes=episodes, seed=seed, fps=fps, max_steps=max_steps,
                             title=f"{label} on {env_id}")
            except (OSError, RuntimeError) as e:  # no usable ffmpeg: fall back to a GIF
                if format != "mp4":
                    raise
                print(f"note: MP4 encoding failed ({e}); showing a GIF instead.", file=sys.stderr)
                format, path = "gif", Path(tmp) / "episode.gif"
                rec = record(act, env, path, episodes=episodes, seed=seed, fps=fps, max_steps=max_steps,
                             title=f"{label} on {env_id}")
            return Video(path.read_bytes(), "video/mp4" if format == "mp4" else "image/gif", rec)
    finally:
        env.close()


# ---------------------------------------------------------------- learning curves
# Run options that do not change what a run learns: runs differing only in these are seeds of one config.
_NOT_CONFIG = {"seed", "run_dir", "progress", "device", "tensorboard", "checkpoint_every", "video_every",
               "total_steps", "episodes", "stop_when_solved", "eval_every", "eval_episodes", "threshold"}


@dataclass
class RunCurves:
    run_dir: Path
    algo: str
    env_id: str
    key: str
    config: dict[str, Any]
    threshold: float | None
    train: dict[str, np.ndarray]   # env_steps, wall, ret
    eval: dict[str, np.ndarray]    # env_steps, wall, ret, std


def read_run(run_dir: Path | str) -> RunCurves:
    """The training episodes and evaluations of a run directory (finished or still running)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"Run directory {str(run_dir)!r} does not exist. Pass directories that `deeprl train` wrote.")
    metrics, config_path = run_dir / "metrics.csv", run_dir / "config.json"
    if not metrics.is_file() or not config_path.is_file():
        raise UsageError(f"{str(run_dir)!r} has no metrics.csv/config.json: it is not a deeprl run directory.")
    record = json.loads(config_path.read_text())
    train: dict[str, list[float]] = {"env_steps": [], "wall": [], "ret": []}
    evals: dict[str, list[float]] = {"env_steps": [], "wall": [], "ret": [], "std": []}
    with open(metrics, newline="") as f:
        for row in csv.DictReader(f):
            try:
                steps, wall, ret = float(row["env_steps"]), float(row["wall_time_s"]), float(row["episode_return"])
            except (TypeError, ValueError):
                continue  # a torn last line of a running or killed run
            target = train if row["kind"] == "train" else evals
            target["env_steps"].append(steps)
            target["wall"].append(wall)
            target["ret"].append(ret)
            if row["kind"] != "train":
                evals["std"].append(float(row.get("eval_std_return") or 0.0))
    if not train["ret"] and not evals["ret"]:
        raise UsageError(f"{str(run_dir)!r} has no finished episode or evaluation yet: nothing to plot.")
    summary_path = run_dir / "summary.json"
    threshold = record["run"].get("threshold")
    if threshold is None and summary_path.is_file():
        threshold = json.loads(summary_path.read_text()).get("reward_threshold")
    if threshold is None:
        try:
            threshold = env_spec(record["env_id"]).reward_threshold
        except UsageError:
            threshold = None
    config = {**{k: v for k, v in record["run"].items() if k not in _NOT_CONFIG}, **record["config"]}
    key = json.dumps([record["algo"], record["env_id"], config], sort_keys=True, default=str)
    return RunCurves(run_dir, record["algo"], record["env_id"], key, config, threshold,
                     {k: np.asarray(v, dtype=float) for k, v in train.items()},
                     {k: np.asarray(v, dtype=float) for k, v in evals.items()})


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each point (fewer at the start)."""
    if window <= 1 or len(values) == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def _band(xs: list[np.ndarray], ys: list[np.ndarray], points: int = 300) -> tuple[np.ndarray, ...]:
    """Runs' curves on one grid: mean, min and max over the runs that reach each point, and how many do."""
    top = max(x[-1] for x in xs)
    grid = np.linspace(min(x[0] for x in xs), top, points)
    stacked = np.vstack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in zip(xs, ys)])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return (grid, np.nanmean(stacked, 0), np.nanmin(stacked, 0), np.nanmax(stacked, 0),
                    np.isfinite(stacked).sum(0))


def _group_label(group: list[RunCurves], groups: list[list[RunCurves]]) -> str:
    label = group[0].algo
    same_algo = [g for g in groups if g[0].algo == label and g is not group]
    if same_algo:
        diffs = [f"{k}={v}" for k, v in sorted(group[0].config.items())
                 if any(g[0].config.get(k) != v for g in same_algo)]
        label += f" ({', '.join(diffs[:3])})" if diffs else ""
    n = len(group)
    return label + (f", {n} seeds" if n > 1 else "")


@lru_cache(maxsize=1)
def _curves_figure_class() -> type:  # matplotlib is imported when a plot is made, not with deeprl
    from matplotlib.figure import Figure

    class CurvesFigure(Figure):
        """A plain matplotlib Figure (no pyplot: no GUI backend, no global state) that Jupyter shows inline."""

        def _repr_png_(self) -> bytes:
            buf = io.BytesIO()
            self.savefig(buf, format="png")
            return buf.getvalue()

    return CurvesFigure


def plot(run_dirs: Sequence[Path | str] | Path | str, out: Path | str | None = None, *,
         threshold: float | None = None, smoothing: int | None = None) -> Any:
    """Learning curves of one or more runs: return against env steps and against training wall time.

    Runs of the same config (differing only in seed, budget and logging) are drawn as one curve:
    the mean over seeds with a min-max band. Training episodes are smoothed (`smoothing` episodes,
    default about 1/20 of the shortest run) over the faint raw returns of a single run; evaluations
    are dots (± the std over evaluation episodes for one run). The threshold (the env's
    reward_threshold, or `threshold`) is a dashed line. Returns the matplotlib Figure; `out`
    (.png, .pdf, .svg) also saves it.
    """
    import matplotlib

    if out is not None:
        out = Path(out)
        if out.suffix.lower() not in PLOT_EXTENSIONS:
            raise UsageError(f"Cannot write {str(out)!r}: the file must end in {', '.join(PLOT_EXTENSIONS)}.")
        if not out.parent.exists():
            raise UsageError(f"Cannot write {str(out)!r}: the directory {str(out.parent)!r} does not exist.")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise UsageError(f"threshold must be a finite number, got {threshold!r}.")
    if smoothing is not None and (isinstance(smoothing, bool) or not isinstance(smoothing, int) or smoothing < 1):
        raise UsageError(f"smoothing must be a positive number of episodes, got {smoothing!r}.")
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise UsageError("Give at least one run directory to plot.")
    runs = [read_run(d) for d in run_dirs]
    envs = sorted({r.env_id for r in runs})
    if len(envs) > 1:
        raise UsageError(f"These runs are on different envs ({', '.join(envs)}); plot each env separately.")
    groups: dict[str, list[RunCurves]] = {}
    for r in runs:
        groups.setdefault(r.key, []).append(r)
    group_list = list(groups.values())
    if threshold is None:
        threshold = next((r.threshold for r in runs if r.threshold is not None), None)
    lengths = [len(r.train["ret"]) for r in runs if len(r.train["ret"])]
    window = smoothing or max(1, min(100, (min(lengths) if lengths else 1) // 20))

    from matplotlib.ticker import EngFormatter

    fig = _curves_figure_class()(figsize=(12, 4.6), dpi=110, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colors = matplotlib.colormaps["tab10"].colors
    for color, group in zip(colors * 10, group_list):
        label = _group_label(group, group_list)
        for ax, xkey in zip(axes, ("env_steps", "wall")):
            trains = [r for r in group if len(r.train["ret"]) > 0]
            if len(trains) == 1:
                r = trains[0]
                ax.plot(r.train[xkey], r.train["ret"], color=color, alpha=0.18, lw=0.8)
                ax.plot(r.train[xkey], smooth(r.train["ret"], window), color=color, lw=2,
                        label=f"{label}: training episodes" + (f" (mean of {window})" if window > 1 else ""))
            elif trains:
                grid, mean, lo, hi, count = _band([r.train[xkey] for r in trains],
                                                  [smooth(r.train["ret"], window) for r in trains])
                ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
                every = count == len(trains)  # where a seed has stopped (solved early), the mean is of fewer runs
                ax.plot(grid, np.where(every, mean, np.nan), color=color, lw=2,
                        label=f"{label}: training episodes (mean of {window}; mean, min-max over seeds)")
                if not every.all():
                    ax.plot(grid, np.where(every, np.nan, mean), color=color, lw=1.5, alpha=0.7, ls=":",
                            label=f"{label}: mean of the seeds still running")
            evals = [r for r in group if len(r.eval["ret"]) > 0]
            if len(evals) == 1:
                r = evals[0]
                ax.errorbar(r.eval[xkey], r.eval["ret"], yerr=r.eval["std"], fmt="o-", ms=5, lw=1, capsize=3,
                            color=color, mec="white", mew=0.8, label=f"{label}: evaluation (mean ± std)")
            elif evals:
                steps = sorted(set(np.concatenate([r.eval["env_steps"] for r in evals]).tolist()))
                at = {s: [float(r.eval["ret"][r.eval["env_steps"] == s][0]) for r in evals
                          if s in set(r.eval["env_steps"].tolist())] for s in steps}
                if xkey == "env_steps":
                    xs = np.asarray(steps)
                else:  # wall time differs per seed: the mean time at which each evaluation happened
                    xs = np.asarray([np.mean([float(r.eval["wall"][r.eval["env_steps"] == s][0]) for r in evals
                                              if s in set(r.eval["env_steps"].tolist())]) for s in steps])
                mean = np.asarray([np.mean(at[s]) for s in steps])
                lo = np.asarray([np.min(at[s]) for s in steps])
                hi = np.asarray([np.max(at[s]) for s in steps])
                ax.errorbar(xs, mean, yerr=[mean - lo, hi - mean], fmt="o-", ms=5, lw=1, capsize=3, color=color,
                            mec="white", mew=0.8, label=f"{label}: evaluation (mean, min-max over seeds)")
    for ax, xlabel in zip(axes, ("env steps", "training wall time (s)")):
        if threshold is not None:
            ax.axhline(threshold, color="0.25", ls="--", lw=1.3, label=f"threshold {threshold:g}", zorder=1)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if xlabel == "env steps":
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20k, 1M
    axes[0].set_ylabel("episode return")
    n = len(runs)
    fig.suptitle(f"{envs[0]}: {', '.join(_group_label(g, group_list) for g in group_list)}"
                 + (f" ({n} runs)" if n > 1 and len(group_list) > 1 else ""), fontsize=12)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].legend(handles, labels, loc="best", fontsize=8, framealpha=0.85)
    if out is not None:
        fig.savefig(out)
    return fig
