"""Watching an agent in a notebook: `show` (an inline HTML5 video or GIF, or the episode drawn step by
step), `show_state` (the notes' helper, without xvfb) and the live display under both.
"""

from __future__ import annotations

import base64
import io
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from deeprl.errors import UsageError
from deeprl.viz.playback import resolve_agent
from deeprl.viz.video import (
    EpisodeStats,
    Recording,
    annotate,
    check_positive,
    default_fps,
    make_render_env,
    play,
    record,
)


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


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
            raise UsageError(
                "The live display draws into a Jupyter notebook's output, and this is not a notebook. "
                "Write a video instead: deeprl.render(agent, 'episode.mp4') or `deeprl render RUN_DIR "
                "--out episode.mp4`."
            )
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
        raise UsageError(
            f"show_state needs an env made with render_mode='rgb_array' (this one has "
            f"{env.render_mode!r}): gymnasium.make(env_id, render_mode='rgb_array')."
        )
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
        return "; ".join(
            f"episode {i + 1}: return {e.episode_return:.2f} in {e.length} steps" for i, e in enumerate(self.episodes)
        )


def show(
    agent_or_run_dir: Any,
    env_id: str | None = None,
    *,
    episodes: int = 1,
    seed: int | None = None,
    max_steps: int | None = None,
    fps: float | None = None,
    format: str = "mp4",
    live: bool = False,
) -> Video | LiveResult:
    """Play the agent in a notebook. By default: an inline HTML5 video (`format="gif"` for an animated
    GIF). With `live=True` the frames are drawn one by one in place while the episode runs.

    `agent_or_run_dir`: a run directory, an Agent from `deeprl.load`, or a function obs -> action
    with `env_id` (e.g. `lambda obs: env.action_space.sample()` for a random agent).
    """
    if format not in ("mp4", "gif"):
        raise UsageError(f"format must be 'mp4' or 'gif', got {format!r}.")
    check_positive("episodes", episodes, "episodes=1, say")
    check_positive("fps", fps, "fps=30, say")
    act, label, env_id, max_episode_steps, default_seed = resolve_agent(agent_or_run_dir, env_id)
    seed = default_seed if seed is None else seed
    env = make_render_env(env_id, max_episode_steps=max_episode_steps)
    try:
        if live:
            display = LiveDisplay(fps or default_fps(env))
            stats: list[EpisodeStats] = []
            for frame, _ in play(
                act, env, episodes=episodes, seed=seed, max_steps=max_steps, title=f"{label} on {env_id}", stats=stats
            ):
                display.update(frame)
            return LiveResult(stats)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"episode.{format}"
            try:
                rec = record(
                    act,
                    env,
                    path,
                    episodes=episodes,
                    seed=seed,
                    fps=fps,
                    max_steps=max_steps,
                    title=f"{label} on {env_id}",
                )
            except (OSError, RuntimeError) as e:  # no usable ffmpeg: fall back to a GIF
                if format != "mp4":
                    raise
                print(f"note: MP4 encoding failed ({e}); showing a GIF instead.", file=sys.stderr)
                format, path = "gif", Path(tmp) / "episode.gif"
                rec = record(
                    act,
                    env,
                    path,
                    episodes=episodes,
                    seed=seed,
                    fps=fps,
                    max_steps=max_steps,
                    title=f"{label} on {env_id}",
                )
            return Video(path.read_bytes(), "video/mp4" if format == "mp4" else "image/gif", rec)
    finally:
        env.close()
