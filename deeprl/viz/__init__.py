"""Watching an agent: videos (GIF/MP4), inline notebook display, live step-by-step display, learning curves.

Notes: "Tip For Jupyter Notebooks". The notes run Jupyter under `xvfb-run` and redraw
`plt.imshow(env.render(mode='rgb_array'))` every step. Gymnasium takes `render_mode="rgb_array"` at
`gym.make` and returns frames as arrays with no display at all, so none of that is needed here:

    deeprl.render("runs/x", "cartpole.mp4")     # a file (GIF or MP4), like `deeprl render`
    deeprl.show("runs/x")                       # in a notebook: an inline HTML5 video
    deeprl.show("runs/x", live=True)            # in a notebook: the episode drawn step by step
    show_state(env, step=t)                     # the notes' helper, without xvfb
    deeprl.plot(["runs/a", "runs/b"], "curves.png")

The package, low half first:
    video.py     frames, text headers, GIF/MP4 writing, EvalVideoRecorder, headless (MuJoCo) rendering
    playback.py  render: an agent or run directory played into a file
    notebook.py  show, show_state, the live display
    plots.py     plot: learning curves of run directories

Names are loaded from their submodule on first use, so `import deeprl.viz.video` (the driver's
`--video-every`) does not load the notebook, plotting or agent code.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULE = {
    **dict.fromkeys(
        [
            "VIDEO_EXTENSIONS",
            "RENDER_STEP_CAP",
            "HOLD_S",
            "MIN_WIDTH",
            "ensure_mujoco_gl",
            "make_render_env",
            "annotate",
            "EpisodeStats",
            "play",
            "check_video_path",
            "Recording",
            "record",
            "EvalVideoRecorder",
        ],
        "video",
    ),
    **dict.fromkeys(["render"], "playback"),
    **dict.fromkeys(["Video", "LiveDisplay", "show_state", "LiveResult", "show"], "notebook"),
    **dict.fromkeys(["PLOT_EXTENSIONS", "RunCurves", "read_run", "smooth", "plot"], "plots"),
}

__all__ = sorted(_SUBMODULE)


def __getattr__(name: str) -> Any:
    if name not in _SUBMODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SUBMODULE[name]}"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULE))
