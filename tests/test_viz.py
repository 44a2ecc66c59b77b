"""Watching an agent: GIF/MP4 videos, inline notebook display, learning-curve plots, --video-every, TensorBoard."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest
from conftest import read_metrics

import deeprl
from deeprl import viz
from deeprl.cli import main
from deeprl.errors import UsageError
from deeprl.registry import ALGOS
from deeprl.tracking import metric_keys
from deeprl.viz import video as viz_video  # the module whose internals a test replaces


def mp4_frames(path: Path) -> list[np.ndarray]:
    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        return [frame for frame in reader]


def gif_frames(path: Path) -> np.ndarray:
    return iio.imread(path, index=None)


@pytest.fixture(scope="module")
def cliff_runs(tmp_path_factory) -> list[Path]:
    """Three seeds of Q-learning and one Sarsa run on the cliff (tabular: a second in all)."""
    root = tmp_path_factory.mktemp("cliff")
    runs = []
    for seed in range(3):
        runs.append(
            deeprl.train(
                "q-learning",
                "CliffWalking-v1",
                seed=seed,
                run_dir=root / f"q{seed}",
                max_episode_steps=100,
                progress="off",
            ).run_dir
        )
    runs.append(
        deeprl.train(
            "sarsa", "CliffWalking-v1", seed=0, run_dir=root / "sarsa", max_episode_steps=100, progress="off"
        ).run_dir
    )
    return runs


# ---------------------------------------------------------------- videos
@pytest.mark.parametrize("ext", ["gif", "mp4"])
def test_render_writes_a_video_with_one_frame_per_step_and_the_returns(cliff_runs, tmp_path, ext):
    out = tmp_path / f"cliff.{ext}"
    rec = deeprl.render(cliff_runs[0], out, episodes=2)
    assert rec.returns == [-13.0, -13.0] and rec.lengths == [13, 13]  # the optimal path, twice
    frames = gif_frames(out) if ext == "gif" else mp4_frames(out)
    # the first frame and one per step; an MP4 holds each episode's last frame HOLD_S seconds
    expected = sum(n + 1 for n in rec.lengths)
    if ext == "mp4":
        expected += 2 * round(viz.HOLD_S * rec.fps)
    assert len(frames) == rec.frames == expected
    raw = gym.make("CliffWalking-v1", render_mode="rgb_array")
    raw.reset(seed=0)
    h, w = raw.render().shape[:2]
    assert frames[0].shape[1] == w and frames[0].shape[0] > h  # the game under a header
    # consecutive frames differ (the agent moves, the step counter and the return change)
    assert np.abs(frames[1].astype(int) - frames[2].astype(int)).sum() > 0


def test_header_shows_the_running_return():
    frame = np.full((100, 400, 3), 200, dtype=np.uint8)
    a = viz.annotate(frame, "q-learning on X", "episode 1/1   step 3   return -3.00")
    b = viz.annotate(frame, "q-learning on X", "episode 1/1   step 4   return -4.00")
    assert a.shape[0] % 2 == 0 and a.shape[1] % 2 == 0 and a.shape[0] > 100
    header = a.shape[0] - 100
    assert (a[header:] == 200).all()  # the game itself is not covered
    assert len(np.unique(a[:header].reshape(-1, 3), axis=0)) > 10  # anti-aliased text in the header
    assert (a[:header] != b[:header]).any()  # the number changed
    small = viz.annotate(np.zeros((210, 160, 3), np.uint8), "t", "s")  # Atari-sized: enlarged for the text
    assert small.shape[1] == 320


def test_render_a_function_policy_on_cartpole(tmp_path):
    rec = deeprl.render(
        lambda obs: int(obs[2] > 0), tmp_path / "cp.gif", env_id="CartPole-v1", episodes=1, seed=3, max_steps=40, fps=25
    )
    frames = gif_frames(tmp_path / "cp.gif")
    assert len(frames) == rec.frames == rec.lengths[0] + 1 and rec.lengths[0] <= 40
    assert rec.returns[0] == rec.lengths[0]  # CartPole pays 1 per step
    assert frames.shape[2] == 600


def test_render_errors_are_clear(cliff_runs, tmp_path):
    with pytest.raises(UsageError, match="must end in .gif or .mp4"):
        deeprl.render(cliff_runs[0], tmp_path / "x.avi")
    with pytest.raises(UsageError, match="does not exist"):
        deeprl.render(tmp_path / "missing", tmp_path / "x.gif")
    with pytest.raises(UsageError, match="needs the env"):
        deeprl.render(lambda obs: 0, tmp_path / "x.gif")
    with pytest.raises(UsageError, match="episodes"):
        deeprl.render(cliff_runs[0], tmp_path / "x.gif", episodes=0)


class _NoFrames(gym.Env):
    metadata = {"render_modes": []}
    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 1.0, True, False, {}


gym.register("NoFramesViz-v0", entry_point=_NoFrames, max_episode_steps=5)


def test_env_without_rgb_array_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="cannot render frames.*rgb_array"):
        deeprl.render(lambda obs: 0, tmp_path / "x.gif", env_id="NoFramesViz-v0")
    with pytest.raises(UsageError, match="cannot render frames"):
        deeprl.train("q-learning", "NoFramesViz-v0", episodes=3, video_every=1, run_dir=tmp_path / "r", progress="off")
    assert not (tmp_path / "r").exists()  # refused before any file was written


def test_cli_render_and_its_errors(cliff_runs, tmp_path, capsys):
    out = tmp_path / "c.mp4"
    assert main(["render", str(cliff_runs[0]), "--out", str(out), "--episodes", "1", "--fps", "8"]) == 0
    assert "return" in capsys.readouterr().out and len(mp4_frames(out)) == 14 + round(viz.HOLD_S * 8)
    assert main(["render", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["render", str(cliff_runs[0]), "--out", str(tmp_path / "c.webm")]) == 2
    assert ".gif or .mp4" in capsys.readouterr().err
    # a value out of range: one `deeprl: error:` line and exit status 2, like every other bad value
    assert main(["render", str(cliff_runs[0]), "--out", str(out), "--episodes", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deeprl: error:") and "--episodes" in err


def test_atari_renders_the_game_screen_not_the_network_input(tmp_path):
    pytest.importorskip("ale_py")
    env = viz.make_render_env("ALE/Pong-v5")
    obs, _ = env.reset(seed=0)
    assert env.render().shape == (210, 160, 3)  # the full game, while the agent sees its preprocessed obs
    env.close()
    rec = deeprl.render(lambda obs: 0, tmp_path / "pong.gif", env_id="ALE/Pong-v5", max_steps=5)
    frames = gif_frames(tmp_path / "pong.gif")
    assert len(frames) == 6 and frames.shape[2] == 320
    assert rec.fps == 15  # the 60 Hz game, one frame per agent step of 4 game frames: real time


def test_mujoco_renders_headless(tmp_path):
    pytest.importorskip("mujoco")
    # in a fresh process, as a user would, with MUJOCO_GL unset and no display
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    code = (
        "import deeprl, numpy as np, os; r = deeprl.render(lambda o: np.zeros(6, np.float32), 'hc.mp4', "
        "env_id='HalfCheetah-v5', max_steps=8); print(os.environ['MUJOCO_GL'], r.frames)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    backend, frames = out.stdout.split()[-2:]
    assert backend in ("egl", "osmesa")
    assert len(mp4_frames(tmp_path / "hc.mp4")) == int(frames) == 9 + round(viz.HOLD_S * 20)
    still = mp4_frames(tmp_path / "hc.mp4")[-1]
    assert still.std() > 5  # a picture, not a blank context


def test_no_gl_backend_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(viz_video, "_has_display", lambda: False)
    monkeypatch.setattr(viz_video, "_gl_backend_works", lambda backend: False)
    with pytest.raises(UsageError, match="neither EGL nor OSMesa"):
        viz_video.ensure_mujoco_gl()
    assert "MUJOCO_GL" not in os.environ


# ---------------------------------------------------------------- notebooks
def test_show_returns_an_inline_html5_video(cliff_runs):
    video = deeprl.show(cliff_runs[0])
    html = video._repr_html_()
    assert html.startswith("<figure") and "<video" in html and "data:video/mp4;base64," in html
    data = base64.b64decode(html.split("base64,")[1].split('"')[0])
    assert data[4:8] == b"ftyp" and data == video.data  # an MP4 container
    assert "-13.00 (13 steps)" in html and video.returns == [-13.0]


def test_show_gif_and_agent_object(cliff_runs, tmp_path):
    agent = deeprl.load(cliff_runs[3])
    video = deeprl.show(agent, format="gif", episodes=2)
    assert video.data[:6] == b"GIF89a" and "<img" in video._repr_html_()
    assert len(gif_frames(io.BytesIO(video.data))) == video.recording.frames
    assert video.save(tmp_path / "s.gif").stat().st_size == len(video.data)


def test_live_display_needs_a_notebook(cliff_runs):
    with pytest.raises(UsageError, match="not a notebook"):
        deeprl.show(cliff_runs[0], live=True)
    with pytest.raises(UsageError, match="render_mode='rgb_array'"):
        viz.show_state(gym.make("CartPole-v1"))


# ---------------------------------------------------------------- learning curves
def _non_background(png: Path) -> tuple[np.ndarray, int]:
    image = iio.imread(png)[..., :3]
    mask = (image < 245).any(axis=2)
    colors = len(np.unique(image[mask].reshape(-1, 3), axis=0))
    return mask, colors


def test_plot_draws_curves_spread_and_threshold(cliff_runs, tmp_path):
    out = tmp_path / "curves.png"
    fig = deeprl.plot(cliff_runs, out, threshold=-13)
    mask, colors = _non_background(out)
    assert mask.mean() > 0.05 and colors > 100  # curves, bands and text, not an empty canvas
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # Jupyter shows the returned figure inline
    axes = fig.axes
    assert [a.get_xlabel() for a in axes] == ["env steps", "training wall time (s)"]
    for ax in axes:
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [-13, -13]
        assert len(ax.collections) >= 2  # the three Q-learning seeds' min-max band and their evaluations' CI band
    labels = axes[0].get_legend_handles_labels()[1]
    assert any("q-learning, 3 seeds" in label for label in labels) and any("sarsa" in label for label in labels)
    assert any("q-learning, 3 seeds: evaluation (mean over seeds, 95% bootstrap CI)" in label for label in labels)
    # the threshold line is in the picture: a row of its grey across the left panel
    image = iio.imread(out)[..., :3].astype(int)
    grey = (np.abs(image - 64) <= 6).all(axis=2)
    assert grey.sum(axis=1).max() > 100


def test_bootstrap_mean_ci_by_hand():
    from deeprl.viz.plots import bootstrap_mean_ci

    # two seeds: a resample's mean is 0, 5 or 10 with probability 1/4, 1/2, 1/4, so the 2.5% and 97.5%
    # percentiles of 2000 resamples are the ends
    assert bootstrap_mean_ci([0.0, 10.0]) == (5.0, 0.0, 10.0)
    assert bootstrap_mean_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
    mean, lo, hi = bootstrap_mean_ci([7.0])
    assert mean == 7.0 and np.isnan(lo) and np.isnan(hi)  # one seed: no interval
    values = np.arange(20.0)
    mean, lo, hi = bootstrap_mean_ci(values)
    # the mean of 20 values with std 5.77 has a standard error of 1.29: a 95% interval about ±2.5 wide
    assert mean == 9.5 and 6.5 < lo < 7.5 and 11.5 < hi < 12.5
    assert bootstrap_mean_ci(values) == (mean, lo, hi)  # seeded: the same band every time


def test_plot_single_run_uses_the_env_threshold(tmp_path):
    run = deeprl.train(
        "q-learning",
        "FrozenLake-v1",
        seed=0,
        episodes=2000,
        eval_every=2000,
        eval_episodes=50,
        run_dir=tmp_path / "fl",
        progress="off",
    ).run_dir
    fig = deeprl.plot(run, tmp_path / "fl.png")
    dashed = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert list(dashed[0].get_ydata()) == [0.7, 0.7]  # FrozenLake-v1's reward_threshold
    mask, colors = _non_background(tmp_path / "fl.png")
    assert mask.mean() > 0.03 and colors > 50


def test_plot_errors_and_cli(cliff_runs, tmp_path, capsys):
    assert main(["plot", *map(str, cliff_runs[:2]), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert main(["plot", str(cliff_runs[0]), "--out", str(tmp_path / "p.txt")]) == 2
    assert ".png" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing"), "--out", str(tmp_path / "p.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = deeprl.train("q-learning", "FrozenLake-v1", episodes=50, run_dir=tmp_path / "fl", progress="off")
    with pytest.raises(UsageError, match="different envs"):
        deeprl.plot([cliff_runs[0], other.run_dir])


# ---------------------------------------------------------------- during training
def test_video_every_records_eval_episodes_without_changing_training(tmp_path):
    kwargs = dict(seed=2, episodes=300, eval_every=1000, max_episode_steps=50, progress="off")
    deeprl.train("q-learning", "CliffWalking-v1", run_dir=tmp_path / "plain", **kwargs)
    filmed = deeprl.train("q-learning", "CliffWalking-v1", run_dir=tmp_path / "filmed", video_every=2000, **kwargs)
    assert read_metrics(tmp_path / "plain") == read_metrics(tmp_path / "filmed")
    videos = sorted(p.name for p in (tmp_path / "filmed" / "videos").iterdir())
    steps = filmed.summary["env_steps"]
    assert videos == [f"step_{s:07d}.mp4" for s in range(2000, steps + 1, 2000)] + [f"step_{steps:07d}.mp4"]
    last = mp4_frames(tmp_path / "filmed" / "videos" / videos[-1])
    assert len(last) == 14 + round(viz.HOLD_S * 4)  # the final greedy policy walks the 13-step path
    with pytest.raises(UsageError, match="video_every"):
        deeprl.train("q-learning", "CliffWalking-v1", video_every=0, run_dir=tmp_path / "x", progress="off")


def test_video_every_survives_resume(tmp_path):
    run = tmp_path / "r"
    deeprl.train(
        "q-learning",
        "CliffWalking-v1",
        seed=1,
        total_steps=3000,
        eval_every=1000,
        video_every=1000,
        max_episode_steps=30,
        run_dir=run,
        progress="off",
    )
    deeprl.resume(run, total_steps=5000)
    names = sorted(p.name for p in (run / "videos").iterdir())
    assert names == [f"step_{s:07d}.mp4" for s in (1000, 2000, 3000, 4000, 5000)]


def _env_for(spec) -> str:
    return "CartPole-v1" if "Discrete" in spec.action_spaces else "Pendulum-v1"


# A value-based and a policy-gradient learner (the others share the same driver path; a learning
# budget of each in this file would cost minutes).
DEEP = [name for name in ("dqn", "ppo") if name in ALGOS]


@pytest.mark.parametrize("algo", DEEP)
def test_every_deep_algorithm_renders_and_logs_its_metrics_to_tensorboard(algo, tmp_path):
    """Through the shared protocol only: deeprl.load -> Agent.act for the video, metric_names for TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = ALGOS[algo]
    env_id = _env_for(spec)
    options = dict(
        seed=0,
        total_steps=1200,
        eval_every=100_000,
        eval_episodes=1,
        tensorboard=True,
        run_dir=tmp_path / "r",
        progress="off",
        device="cpu",
    )
    if algo == "dqn":
        options.update(learning_starts=200, train_freq=1)
    result = deeprl.train(algo, env_id, **options)
    rec = deeprl.render(result.run_dir, tmp_path / "v.gif", max_steps=30)
    assert len(gif_frames(tmp_path / "v.gif")) == rec.frames == rec.lengths[0] + 1
    events = EventAccumulator(str(tmp_path / "r" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    names = set(metric_keys(algo, deeprl.load(result.run_dir).algo.metric_names))  # SB3's names (deeprl.tracking)
    logged = {t for t in names if t in tags}
    assert {"charts/episodic_return", "eval/mean_reward", "time/fps"} <= tags
    # every metric the algorithm reports with a real value reaches TensorBoard, with finite values
    assert logged, (names, tags)
    for tag in logged:
        assert all(np.isfinite(e.value) for e in events.Scalars(tag))
