"""The low half of watching an agent: frames with a text header, GIF/MP4 writing, episodes played into
them, the `--video-every` recorder, and headless rendering.

MP4 goes through imageio's ffmpeg plugin (the imageio-ffmpeg wheel carries its own ffmpeg binary);
GIF through Pillow (which imageio uses for GIF too), one palette per frame. MuJoCo envs render
through EGL or OSMesa, picked by `ensure_mujoco_gl` when no display is attached.

It imports no agent, driver or evaluation code: the driver imports `EvalVideoRecorder` from here.
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from deeprl.atari import is_atari_spec
from deeprl.envs import EnvMaker, env_spec, has_time_limit
from deeprl.errors import UsageError
from deeprl.rundir import current_umask

VIDEO_EXTENSIONS = (".gif", ".mp4")
RENDER_STEP_CAP = 1_000  # episodes of envs without a time limit stop here unless max_steps says otherwise
HOLD_S = 0.6  # the last frame of each episode stays on screen this long
MIN_WIDTH = 320  # small frames (Atari's 160 px) are enlarged so the header text fits


# ---------------------------------------------------------------- headless rendering
def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@cache
def _gl_backend_works(backend: str) -> bool:
    """Whether MuJoCo can open an offscreen context with `backend`, tried in a child process: the
    OpenGL platform is fixed at first import, so a failed try would spoil this process."""
    code = f"from mujoco.{backend} import GLContext; c = GLContext(64, 64); c.make_current(); c.free()"
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


def make_render_env(env: str | EnvMaker, *, max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """The env made with render_mode="rgb_array", from an id (`kwargs` go to gymnasium.make) or a run's
    recipe (its kwargs, wrappers, time limit and masks), with a headless OpenGL backend for MuJoCo and a
    UsageError when the env cannot return frames.

    Atari envs render the full game screen (210x160 RGB), whatever preprocessing (84x84 grey
    frames, frame stacks) the agent's own observations go through: `render()` reaches the
    unwrapped game through any wrapper.
    """
    if isinstance(env, EnvMaker):
        maker = env if max_episode_steps is None else dataclasses.replace(env, max_episode_steps=max_episode_steps)
        if kwargs:
            maker = dataclasses.replace(maker, kwargs={**maker.kwargs, **kwargs})
    else:
        maker = EnvMaker(env, kwargs, (), max_episode_steps)
    env_id = maker.env_id
    if _uses_mujoco(env_id):
        ensure_mujoco_gl()
    if not _has_display():  # pygame (classic control, box2d, toy text) draws offscreen; no SDL display warning
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        env = maker.make(render_mode="rgb_array")
    except TypeError as e:  # a user's env whose __init__ takes no render_mode
        raise UsageError(
            f"{env_id} cannot render frames (it takes no render_mode: {e}). deeprl renders "
            "with render_mode='rgb_array'; add it to the env's metadata['render_modes']."
        ) from None
    modes = env.metadata.get("render_modes", [])
    if "rgb_array" not in modes or env.render_mode != "rgb_array":
        env.close()
        raise UsageError(
            f"{env_id} cannot render frames: its render modes are {list(modes) or 'none'}, and "
            "videos need 'rgb_array'. Evaluate it with `deeprl eval` instead."
        )
    return env


# ---------------------------------------------------------------- frames
@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    import matplotlib  # DejaVu Sans ships with matplotlib, a dependency: the same text everywhere
    from PIL import ImageFont

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
    if frame.dtype.kind == "f":  # colours in [0, 1] (MinAtar's rgb_array): uint8 would turn them all black
        frame = np.clip(frame * 255.0, 0, 255).round()
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
    out[header : header + h, :w] = frame
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    font = _font(size)
    draw.text((8, 4), title, fill=(235, 235, 235), font=font)
    draw.text((8, 8 + size), status, fill=(255, 214, 102), font=font)
    return np.asarray(image)


@dataclass
class EpisodeStats:
    episode_return: float
    length: int
    terminated: bool


def _single_actor(
    policy: Callable[[Any], np.ndarray], observation_space: gym.Space, action_space: gym.Space
) -> Callable[[Any], Any]:
    """A batched policy (numpy batch in, actions out) as a function of one observation."""
    batch = gym.vector.utils.create_empty_array(observation_space, 1)

    def act(obs: Any) -> Any:
        actions = policy(gym.vector.utils.concatenate(observation_space, [obs], batch))
        action = actions[0]
        return action.item() if isinstance(action_space, gym.spaces.Discrete) else action

    return act


def play(
    act: Callable[[Any], Any],
    env: gym.Env,
    *,
    episodes: int = 1,
    seed: int = 0,
    max_steps: int | None = None,
    title: str = "",
    stats: list[EpisodeStats] | None = None,
) -> Iterator[tuple[np.ndarray, bool]]:
    """Play `episodes` episodes (episode i from reset seed `seed + i`) and yield (annotated frame,
    episode_over) for the first frame and after every step. Finished episodes go to `stats`."""
    if max_steps is None and env.spec is not None and not has_time_limit(env.spec):
        max_steps = RENDER_STEP_CAP  # a deterministic policy can walk in circles forever; an Atari game ends by itself
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
            self.frames[0].save(
                self.path,
                format="GIF",
                save_all=True,
                append_images=self.frames[1:],
                duration=self.durations,
                loop=0,
                optimize=False,
            )
        return len(self.frames)


class _Mp4Sink:
    """Frames to H.264 MP4 through imageio-ffmpeg, streamed (no frame is kept in memory)."""

    def __init__(self, path: Path, fps: float):
        import imageio.v2 as imageio

        self.fps, self.count = fps, 0
        self.writer = imageio.get_writer(
            str(path),
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=7,
            macro_block_size=1,
            ffmpeg_log_level="error",
        )

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
        raise UsageError(
            f"Cannot write {str(out)!r}: the file must end in .gif or .mp4 (got {out.suffix or 'no extension'!r})."
        )
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


def default_fps(env: gym.Env) -> float:
    fps = env.metadata.get("render_fps") or 30
    if is_atari_spec(env.spec):
        fps = 60 / 4  # Atari games run at 60 Hz and the agent acts (we render) every 4th frame: real time
    return float(min(fps, 50))


def record(
    act: Callable[[Any], Any],
    env: gym.Env,
    out: Path,
    *,
    episodes: int = 1,
    seed: int = 0,
    fps: float | None = None,
    max_steps: int | None = None,
    title: str = "",
) -> Recording:
    """Play episodes in `env` (made with render_mode="rgb_array") and write them to `out`."""
    fps = fps or default_fps(env)
    stats: list[EpisodeStats] = []
    sink = _sink(out, fps)
    try:
        for frame, over in play(act, env, episodes=episodes, seed=seed, max_steps=max_steps, title=title, stats=stats):
            sink.add(frame, HOLD_S if over else 0.0)
    finally:
        frames = sink.close()
    return Recording(out, frames, fps, stats)


def check_positive(name: str, value: Any, flag: str) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise UsageError(f"{name} must be a positive number, got {value!r}. Pass {flag}.")


class EvalVideoRecorder:
    """`--video-every N`: one deterministic evaluation episode, written to RUN_DIR/videos/step_<env steps, 7 digits>.mp4.

    It has its own env and reset seed and calls only `policy`, so training (its env, its RNGs,
    its metrics) is the same with or without it.
    """

    def __init__(self, env: str | EnvMaker, *, seed: int, label: str, max_episode_steps: int | None = None):
        self.env = make_render_env(env, max_episode_steps=max_episode_steps)  # the run's recipe: the training env
        self.seed, self.title = seed, f"{label} on {env}"

    def __call__(self, policy: Callable[[Any], np.ndarray], env_steps: int, directory: Path) -> Recording:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        act = _single_actor(policy, self.env.observation_space, self.env.action_space)
        final = directory / f"step_{env_steps:07d}.mp4"
        # A temp file of our own (mkstemp: a fresh name, never an existing file or a link someone planted),
        # renamed into place: a kill mid-episode leaves no torn video.
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{final.stem}.", suffix=".tmp.mp4")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            rec = record(act, self.env, tmp, seed=self.seed, title=f"{self.title} at {env_steps:,} env steps")
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        rec.path = final
        return rec

    def close(self) -> None:
        self.env.close()
