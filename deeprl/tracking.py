"""Experiment trackers: TensorBoard (`--tensorboard`) and Weights & Biases (`--wandb`).

Both get the same scalars under the same keys, named as Stable-Baselines3 names them where SB3 logs the
same quantity, so that deeprl's curves sit beside SB3's (and CleanRL's) in one dashboard:

| key                          | logged                        | value                                                   |
|------------------------------|-------------------------------|---------------------------------------------------------|
| `charts/episodic_return`     | each training episode         | the episode's return (CleanRL's name)                   |
| `charts/episodic_length`     | each training episode         | its length in agent steps (CleanRL's name)              |
| `rollout/ep_rew_mean`        | each chunk of training        | mean return of the last 100 training episodes (SB3)     |
| `rollout/ep_len_mean`        | each chunk of training        | mean length of the last 100 training episodes (SB3)     |
| `rollout/exploration_rate`   | each training episode         | `epsilon` (DQN, tabular; SB3's DQN)                     |
| `eval/mean_reward`           | each evaluation               | mean return of the deterministic evaluation (SB3)       |
| `eval/std_reward`            | each evaluation               | its standard deviation (deeprl's own)                   |
| `time/fps`                   | each chunk of training        | env steps / seconds of training so far (SB3)            |
| `train/loss`                 | each training episode         | DQN's `loss` (SB3's DQN)                                |
| `train/policy_gradient_loss` | each training episode         | PPO's `policy_loss`, the clipped surrogate (SB3's PPO)  |
| `train/policy_loss`          | each training episode         | A2C's and REINFORCE's `policy_loss` (SB3's A2C)         |
| `train/value_loss`           | each training episode         | `value_loss` (SB3)                                      |
| `train/approx_kl`            | each training episode         | PPO's `approx_kl` (SB3)                                 |
| `train/clip_fraction`        | each training episode         | PPO's `clip_fraction` (SB3)                             |
| `train/actor_loss`           | each training episode         | DDPG's, TD3's and SAC's `actor_loss` (SB3)              |
| `train/critic_loss`          | each training episode         | DDPG's, TD3's and SAC's `critic_loss` (SB3)             |
| `train/ent_coef`             | each training episode         | SAC's `alpha`, the entropy temperature (SB3's SAC)      |
| `train/<name>`               | each training episode         | any other metric under deeprl's name: `entropy` (SB3's `train/entropy_loss` is its negative), A3C's `worker` |

The x axis is the env step (TensorBoard's step; W&B's `env_steps`, declared as every key's step metric, so
that a resumed run's points land where they belong). Algorithm metrics are logged with the training episode
that reports them, and only finite ones (a loss is NaN until the first update). The hyperparameters go to
TensorBoard as a markdown table (text tab, `hyperparameters`, CleanRL's tag) and to its HParams tab (in this
run, not a sub-run), and to W&B as the run's config. W&B also gets the evaluation videos of `--video-every`
(`eval/video`). SB3's `train/learning_rate` has no counterpart yet: no algorithm reports its learning rate
(the policy-gradient algorithms anneal theirs with --anneal-steps).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import string
from pathlib import Path
from typing import Any

import numpy as np

from deeprl.errors import UsageError

# deeprl's metric name -> the key SB3 logs the same quantity under (default: train/<name>).
SB3_KEYS = {"epsilon": "rollout/exploration_rate"}
SB3_KEYS_BY_ALGO = {"ppo": {"policy_loss": "train/policy_gradient_loss"}, "sac": {"alpha": "train/ent_coef"}}


def metric_keys(algo: str, metric_names: tuple[str, ...]) -> tuple[str, ...]:
    """The tracker key of each of an algorithm's metrics (the table in this module's docstring)."""
    own = SB3_KEYS_BY_ALGO.get(algo, {})
    return tuple(own.get(name) or SB3_KEYS.get(name) or f"train/{name}" for name in metric_names)


def hyperparameters(algo: str, env_id: str, config: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """One flat dict: algo, env_id, the algorithm's config, and the run options as run.<name>."""
    return {"algo": algo, "env_id": env_id, **config, **{f"run.{k}": v for k, v in run.items()}}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


class TensorBoardTracker:
    """RUN_DIR/tb. `purge_step` (a resume) drops the events a killed process logged past its checkpoint."""

    def __init__(
        self,
        run_dir: Path,
        keys: tuple[str, ...],
        hparams: dict[str, Any],
        purge_step: int | None = None,
        metric_dict_keys: tuple[str, ...] = ("eval/mean_reward", "rollout/ep_rew_mean"),
    ):
        from torch.utils.tensorboard import SummaryWriter

        self.keys = keys
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)
        if purge_step is None:  # once per run: a resume keeps the first process's (at step 0, never purged)
            self._write_hparams(hparams, metric_dict_keys)

    def _write_hparams(self, hparams: dict[str, Any], metric_keys: tuple[str, ...]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        rows = "\n".join(f"|{k}|{json.dumps(v) if not isinstance(v, str) else v}|" for k, v in hparams.items())
        self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{rows}")
        # The HParams tab, in this run (SummaryWriter.add_hparams would write a sub-run holding only the final
        # metrics): its metrics are this run's own scalars.
        simple = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in hparams.items()}
        for summary in hparams_summaries(simple, dict.fromkeys(metric_keys, 0.0)):
            self.writer.file_writer.add_summary(summary)

    def episode(self, env_steps: int, episode_return: float, episode_length: Any, extras: tuple) -> None:
        self.writer.add_scalar("charts/episodic_return", episode_return, env_steps)
        if _finite(episode_length):
            self.writer.add_scalar("charts/episodic_length", episode_length, env_steps)
        for key, value in zip(self.keys, extras):
            if _finite(value):
                self.writer.add_scalar(key, value, env_steps)

    def evaluation(self, env_steps: int, mean: float, std: float) -> None:
        self.writer.add_scalar("eval/mean_reward", mean, env_steps)
        self.writer.add_scalar("eval/std_reward", std, env_steps)

    def chunk(self, env_steps: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, env_steps)

    def video(self, env_steps: int, path: Path) -> None:
        # TensorBoard's add_video needs the frames and moviepy; the text tab points at the mp4 instead
        self.writer.add_text("eval/video", f"`{path}`", env_steps)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def check_wandb() -> None:
    """--wandb without the wandb package: a UsageError before any file is written."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise UsageError(
            "--wandb needs the wandb package: pip install wandb. "
            "Or drop --wandb; --tensorboard logs the same scalars locally."
        ) from None


def new_wandb_id() -> str:
    """A W&B run id: WANDB_RUN_ID if set, else 8 random letters and digits (from `secrets`: the seeded RNGs
    of the run are not touched)."""
    chosen = os.environ.get("WANDB_RUN_ID")
    if chosen:
        return chosen
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class WandbTracker:
    """One W&B run per deeprl run: the id is recorded in config.json's run options (`wandb_id`), so a resume
    continues the same W&B run (`resume="allow"`). Entity, mode (online/offline), base URL and the local
    directory come from W&B's own settings and environment variables (WANDB_ENTITY, WANDB_MODE, WANDB_DIR...)."""

    def __init__(self, run_id: str, project: str | None, name: str, hparams: dict[str, Any], keys: tuple[str, ...]):
        import wandb

        self.wandb, self.keys = wandb, keys
        try:
            self.run = wandb.init(
                project=project,
                id=run_id,
                resume="allow",
                name=name,
                config={k: v if not isinstance(v, Path) else str(v) for k, v in hparams.items()},
            )
        except Exception as e:  # noqa: BLE001 (no network, no login: say what to do)
            raise UsageError(
                f"W&B could not start its run ({type(e).__name__}: {str(e)[:300]}). Log in with `wandb login`, or "
                "set WANDB_MODE=offline to log locally and `wandb sync` later, or drop --wandb."
            ) from None
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")

    def _log(self, env_steps: int, values: dict[str, Any]) -> None:
        self.run.log({**values, "env_steps": env_steps})

    def episode(self, env_steps: int, episode_return: float, episode_length: Any, extras: tuple) -> None:
        values = {"charts/episodic_return": float(episode_return)}
        if _finite(episode_length):
            values["charts/episodic_length"] = episode_length
        values.update({key: float(v) for key, v in zip(self.keys, extras) if _finite(v)})
        self._log(env_steps, values)

    def evaluation(self, env_steps: int, mean: float, std: float) -> None:
        self._log(env_steps, {"eval/mean_reward": mean, "eval/std_reward": std})

    def chunk(self, env_steps: int, scalars: dict[str, float]) -> None:
        self._log(env_steps, scalars)

    def video(self, env_steps: int, path: Path) -> None:
        self._log(env_steps, {"eval/video": self.wandb.Video(str(path), format="mp4")})

    def flush(self) -> None:
        """Nothing to do: W&B streams each logged point on its own (a resume's points are placed by env_steps)."""

    def close(self) -> None:
        self.run.finish()
