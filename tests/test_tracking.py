"""Experiment tracking (deeprl.tracking): TensorBoard with SB3's tag names and the hyperparameters; W&B offline."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_metrics

import deeprl
from deeprl.errors import UsageError
from deeprl.tracking import metric_keys


def test_metric_names_map_to_sb3_keys_where_sb3_logs_the_same_quantity():
    assert metric_keys("ppo", ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")) == (
        "train/policy_gradient_loss",
        "train/value_loss",
        "train/entropy",  # SB3's train/entropy_loss is the negative entropy: not the same quantity
        "train/approx_kl",
        "train/clip_fraction",
    )
    assert metric_keys("a2c", ("policy_loss", "value_loss", "entropy")) == (
        "train/policy_loss",
        "train/value_loss",
        "train/entropy",
    )
    assert metric_keys("dqn", ("epsilon", "loss")) == ("rollout/exploration_rate", "train/loss")
    assert metric_keys("sac", ("critic_loss", "actor_loss", "alpha")) == (
        "train/critic_loss",
        "train/actor_loss",
        "train/ent_coef",
    )
    assert metric_keys("a3c", ("worker",)) == ("train/worker",)


def test_tensorboard_logs_sb3_and_cleanrl_tags_and_the_hyperparameters(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    result = deeprl.train(
        "q-learning",
        "FrozenLake-v1",
        episodes=100,
        eval_every=500,
        tensorboard=True,
        run_dir=tmp_path / "r",
        progress="off",
    )
    events = EventAccumulator(str(tmp_path / "r" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {
        "charts/episodic_return",
        "charts/episodic_length",
        "rollout/ep_rew_mean",
        "rollout/ep_len_mean",
        "rollout/exploration_rate",
        "eval/mean_reward",
        "eval/std_reward",
        "time/fps",
    }
    rows = read_metrics(tmp_path / "r")
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    episodic = events.Scalars("charts/episodic_return")
    assert [(e.step, e.value) for e in episodic] == [(int(r["env_steps"]), float(r["episode_return"])) for r in train]
    assert [e.value for e in events.Scalars("charts/episodic_length")] == [float(r["episode_length"]) for r in train]
    mean_reward = events.Scalars("eval/mean_reward")
    assert [e.step for e in mean_reward] == [int(r["env_steps"]) for r in evals]
    assert [e.value for e in mean_reward] == pytest.approx([float(r["episode_return"]) for r in evals])  # float32
    # rollout/ep_rew_mean: the mean of the last 100 episodes at the end of each chunk (here: all of them)
    last = events.Scalars("rollout/ep_rew_mean")[-1]
    assert last.step == result.summary["env_steps"]
    assert last.value == pytest.approx(sum(float(r["episode_return"]) for r in train) / 100)
    fps = events.Scalars("time/fps")[-1].value
    assert fps == pytest.approx(result.summary["env_steps"] / result.summary["train_wall_s"], rel=0.01)

    # the hyperparameters: a markdown table (text tab) and the HParams tab of this run (no sub-run)
    assert [p.name for p in (tmp_path / "r" / "tb").iterdir() if p.is_dir()] == []
    table = events.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert f"|alpha|{config['config']['alpha']}|" in table
    assert "|run.seed|0|" in table and "|algo|q-learning|" in table
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["alpha"].number_value == config["config"]["alpha"]
    assert hparams["algo"].string_value == "q-learning"
    assert hparams["run.eval_every"].number_value == 500


class CrashAt(deeprl.Callback):
    def on_eval(self, info):
        if info.env_steps == 2000:
            raise RuntimeError("crash")


def test_tensorboard_after_a_crash_and_resume_holds_each_point_once(tmp_path):
    """What the crashed process logged past its checkpoint (env step 1000) is purged; the points at the
    checkpoint's own step, logged before it was written, stay."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    opts = dict(seed=2, eval_every=1000, checkpoint_every=1000, max_episode_steps=50, progress="off")
    run_dir = tmp_path / "r"
    with pytest.raises(deeprl.CallbackError):
        deeprl.train(
            "q-learning",
            "CliffWalking-v1",
            total_steps=3000,
            tensorboard=True,
            run_dir=run_dir,
            callbacks=[CrashAt()],
            **opts,
        )
    deeprl.resume(run_dir)
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    rows = read_metrics(run_dir)
    train = [(int(r["env_steps"]), float(r["episode_return"])) for r in rows if r["kind"] == "train"]
    assert [(e.step, e.value) for e in events.Scalars("charts/episodic_return")] == train
    assert [e.step for e in events.Scalars("eval/mean_reward")] == [1000, 2000, 3000]
    assert len(events.Tensors("hyperparameters/text_summary")) == 1  # written once, by the first process


# ---------------------------------------------------------------- W&B
def wandb_records(path: Path):
    """The records of a W&B run file (run-ID.wandb): a 7-byte header, then LevelDB-log framed protobufs
    (crc32, length, type; 32 KiB blocks), each a wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, pending = 7, 32 * 1024, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending = payload if kind in (1, 2) else pending + payload  # FULL, FIRST / MIDDLE, LAST
        if kind in (1, 4):
            yield wandb_internal_pb2.Record.FromString(pending)


def read_wandb_run(path: Path) -> tuple[list[dict], dict, str]:
    """(history rows, config, run id) of an offline W&B run."""
    history, config, run_id = [], {}, None
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "run":
            run_id = record.run.run_id
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update})
    return history, config, run_id


def test_wandb_offline_logs_the_scalars_config_and_videos_and_a_resume_continues_the_same_run(tmp_path):
    pytest.importorskip("wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    env.pop("WANDB_RUN_ID", None)
    cli = [str(Path(sys.executable).parent / "deeprl"), "train"]
    run_dir = tmp_path / "r"
    args = [
        "q-learning",
        "CliffWalking-v1",
        "--total-steps",
        "1000",
        "--eval-every",
        "500",
        "--max-episode-steps",
        "20",
    ]
    args += ["--video-every", "1000", "--wandb", "--wandb-project", "deeprl-test", "--run-dir", str(run_dir)]
    out = subprocess.run(cli + args + ["--progress", "off"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    run_id = json.loads((run_dir / "config.json").read_text())["run"]["wandb_id"]
    (first,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    history, config, logged_id = read_wandb_run(first)
    assert logged_id == run_id
    assert config["algo"] == "q-learning" and config["alpha"] == 0.5 and config["run.wandb_project"] == "deeprl-test"
    keys = set().union(*history)
    assert {
        "charts/episodic_return",
        "charts/episodic_length",
        "rollout/ep_rew_mean",
        "rollout/exploration_rate",
        "eval/mean_reward",
        "eval/std_reward",
        "time/fps",
        "env_steps",
    } <= keys
    rows = read_metrics(run_dir)
    episodic = [(h["env_steps"], h["charts/episodic_return"]) for h in history if "charts/episodic_return" in h]
    assert episodic == [(int(r["env_steps"]), float(r["episode_return"])) for r in rows if r["kind"] == "train"]
    evals = [(h["env_steps"], h["eval/mean_reward"]) for h in history if "eval/mean_reward" in h]
    assert evals == [(int(r["env_steps"]), float(r["episode_return"])) for r in rows if r["kind"] == "eval"]
    videos = [h for h in history if "eval/video/path" in h]
    assert [h["env_steps"] for h in videos] == [1000] and videos[0]["eval/video/path"].endswith(".mp4")

    out = subprocess.run(
        cli + ["--resume", str(run_dir), "--total-steps", "1500", "--progress", "off"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    runs = sorted((tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(runs) == 2  # the same W&B run id, continued
    history, _, logged_id = read_wandb_run(next(p for p in runs if p != first))
    assert logged_id == run_id
    assert [h["env_steps"] for h in history if "eval/mean_reward" in h] == [1500]


def test_wandb_missing_is_a_clear_error_before_any_file_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(UsageError, match="--wandb needs the wandb package: pip install wandb"):
        deeprl.train("q-learning", "CliffWalking-v1", total_steps=100, wandb=True, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_wandb_project_without_wandb_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="Add --wandb"):
        deeprl.train("q-learning", "CliffWalking-v1", total_steps=100, wandb_project="p", run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_tensorboard_points_at_each_evaluation_video(tmp_path):
    """TensorBoard gets no frames (add_video needs moviepy) but the text tab names each mp4 at its env step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = deeprl.train(
        "q-learning", "CliffWalking-v1", episodes=60, eval_every=1_000, video_every=1_000, tensorboard=True,
        run_dir=tmp_path / "r", progress="off",
    )  # fmt: skip
    events = EventAccumulator(str(tmp_path / "r" / "tb"))
    events.Reload()
    texts = events.Tensors("eval/video/text_summary")
    assert texts, events.Tags()
    named = [t.tensor_proto.string_val[0].decode() for t in texts]
    videos = sorted(str(p) for p in (result.run_dir / "videos").glob("*.mp4"))
    assert sorted(n.strip("`") for n in named) == videos
