"""Callbacks (deeprl.callbacks): what each hook is given, stopping a run, SaveEvery, EarlyStopOnPlateau, errors."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
from conftest import read_metrics, read_summary

import deeprl
from deeprl.callbacks import CallbackError, CheckpointInfo, EpisodeInfo, EvalInfo, StepInfo
from deeprl.errors import UsageError
from deeprl.rundir import load_resume_state

# CliffWalking with short episodes: many episodes, and q-learning's runs take well under a second.
CLIFF = dict(seed=2, max_episode_steps=50, progress="off")


class Recorder(deeprl.Callback):
    """Every record, in order; on_checkpoint also checks that the checkpoint is on disk when it is called."""

    def __init__(self) -> None:
        self.records: list = []
        self.on_disk: list[bool] = []

    def on_step(self, info):
        self.records.append(info)

    def on_episode(self, info):
        self.records.append(info)

    def on_eval(self, info):
        self.records.append(info)

    def on_checkpoint(self, info):
        self.records.append(info)
        saved = load_resume_state(info.run_dir)
        self.on_disk.append(
            info.path.is_dir() and info.policy_path.is_file() and saved.state["loop"]["env_steps"] == info.env_steps
        )

    def of(self, kind: type) -> list:
        return [r for r in self.records if isinstance(r, kind)]


def test_each_hook_gets_records_that_match_metrics_csv(tmp_path):
    rec, seen = Recorder(), []
    result = deeprl.train(
        "q-learning",
        "CliffWalking-v1",
        total_steps=3200,
        eval_every=1000,
        checkpoint_every=1500,
        run_dir=tmp_path / "r",
        callbacks=[rec, seen.append],  # a plain function is given every record
        **CLIFF,
    )
    rows = read_metrics(tmp_path / "r", drop_wall=False)
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]

    episodes = rec.of(EpisodeInfo)
    assert len(episodes) == len(train) == result.summary["episodes"]
    for info, row in zip(episodes, train):
        assert info.env_steps == int(row["env_steps"]) and info.episodes == int(row["episodes"])
        assert info.episode_return == float(row["episode_return"])
        assert info.episode_length == int(row["episode_length"])
        assert info.metrics == {"epsilon": float(row["epsilon"])}
        assert f"{info.train_wall_s:.4f}" == row["wall_time_s"]
        assert info.run_dir == tmp_path / "r"

    # evaluations at 1000, 2000, 3000 and the final one at 3200 (not periodic)
    assert [(e.env_steps, e.periodic) for e in rec.of(EvalInfo)] == [
        (1000, True),
        (2000, True),
        (3000, True),
        (3200, False),
    ]
    for info, row in zip(rec.of(EvalInfo), evals):
        assert (info.env_steps, info.mean_return, info.std_return) == (
            int(row["env_steps"]),
            float(row["episode_return"]),
            float(row["eval_std_return"]),
        )
        assert info.eval_episodes == 10
    best = -math.inf
    for info in rec.of(EvalInfo):
        assert info.is_best == (info.mean_return > best)
        best = max(best, info.mean_return)
        assert info.best_mean_return == best
    assert result.summary["best_eval_mean_return"] == best

    # checkpoints at the multiples of 1500 and the last one; each on disk when on_checkpoint is called
    assert [c.env_steps for c in rec.of(CheckpointInfo)] == [1500, 3000, 3200]
    assert all(rec.on_disk)

    # one on_step per chunk: chunks end at each evaluation, checkpoint and the end of the budget
    steps = rec.of(StepInfo)
    assert [s.env_steps for s in steps] == [1000, 1500, 2000, 3000, 3200]
    assert sum(s.steps for s in steps) == 3200 and all(s.steps_per_s > 0 for s in steps)
    for s in steps:
        returns = [float(r["episode_return"]) for r in train if int(r["env_steps"]) <= s.env_steps][-100:]
        assert s.mean_recent_return == pytest.approx(np.mean(returns))
        assert s.episodes == len([r for r in train if int(r["env_steps"]) <= s.env_steps])

    # the function saw the same records as the Callback, in the same order
    assert seen == rec.records
    assert result.summary["stopped"] == "budget" and result.summary["stopped_by"] is None


def test_callbacks_that_return_none_leave_metrics_identical(tmp_path):
    """Callbacks watch; they do not change the run (nor does SaveEvery's splitting of the chunks)."""

    class Watcher(deeprl.Callback):
        def on_step(self, info):
            return True  # only False stops

        def on_episode(self, info):
            return 0

        def on_eval(self, info):
            return None

    opts = dict(total_steps=4000, eval_every=1000, **CLIFF)
    deeprl.train("q-learning", "CliffWalking-v1", run_dir=tmp_path / "plain", **opts)
    deeprl.train(
        "q-learning",
        "CliffWalking-v1",
        run_dir=tmp_path / "watched",
        callbacks=[Watcher(), lambda info: None, deeprl.SaveEvery(333)],
        **opts,
    )
    assert read_metrics(tmp_path / "watched") == read_metrics(tmp_path / "plain")
    assert read_summary(tmp_path / "watched") == read_summary(tmp_path / "plain")
    config = (tmp_path / "watched" / "config.json").read_text()
    assert "Watcher" not in config and "SaveEvery" not in config  # callbacks are not run options
    assert "callbacks" not in json.loads(config)["run"]


class StopAt(deeprl.Callback):
    def __init__(self, env_steps: int) -> None:
        self.env_steps = env_steps

    def on_eval(self, info):
        return False if info.env_steps == self.env_steps else None


def test_false_from_on_eval_stops_there_and_resume_ends_like_the_uninterrupted_run(tmp_path):
    opts = dict(eval_every=1000, **CLIFF)
    first = deeprl.train(
        "q-learning", "CliffWalking-v1", total_steps=4000, run_dir=tmp_path / "r", callbacks=[StopAt(2000)], **opts
    )
    assert first.summary["env_steps"] == 2000
    assert first.summary["stopped"] == "callback" and first.summary["stopped_by"] == "StopAt.on_eval"
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["stopped_by"] == "StopAt.on_eval"
    assert load_resume_state(tmp_path / "r").state["loop"]["env_steps"] == 2000
    # the stopping evaluation was the last periodic one: no final evaluation is added
    assert [r["env_steps"] for r in read_metrics(tmp_path / "r") if r["kind"] == "eval"] == ["1000", "2000"]

    # a larger budget, no callbacks (they are not recorded): as if the run had been given 5000 from the start
    resumed = deeprl.resume(tmp_path / "r", total_steps=5000)
    deeprl.train("q-learning", "CliffWalking-v1", total_steps=5000, run_dir=tmp_path / "whole", **opts)
    assert resumed.summary["stopped"] == "budget" and resumed.summary["stopped_by"] is None
    assert read_metrics(tmp_path / "r") == read_metrics(tmp_path / "whole")
    assert read_summary(tmp_path / "r") == read_summary(tmp_path / "whole")


def stop_after_three_episodes(info):
    return False if isinstance(info, EpisodeInfo) and info.episodes == 3 else None


def test_false_from_on_episode_stops_at_the_end_of_its_chunk_and_resume_finishes_the_budget(tmp_path):
    opts = dict(eval_every=1000, **CLIFF)
    first = deeprl.train(
        "q-learning",
        "CliffWalking-v1",
        total_steps=3000,
        run_dir=tmp_path / "r",
        callbacks=stop_after_three_episodes,  # one function, not in a list, is fine
        **opts,
    )
    # the third episode ends inside the first chunk (0 to 1000): the chunk is finished, its evaluation done
    assert first.summary["env_steps"] == 1000 and first.summary["episodes"] > 3
    assert first.summary["stopped"] == "callback" and first.summary["stopped_by"] == "stop_after_three_episodes"
    deeprl.resume(tmp_path / "r")  # on to its own budget
    deeprl.train("q-learning", "CliffWalking-v1", total_steps=3000, run_dir=tmp_path / "whole", **opts)
    assert read_metrics(tmp_path / "r") == read_metrics(tmp_path / "whole")


class Constant(gym.Env):
    """Every policy scores 5: five steps of reward 1, whatever the actions."""

    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        return 0, 1.0, self.t >= 5, False, {}


def test_early_stop_on_plateau_stops_a_run_whose_evaluations_do_not_improve(tmp_path):
    result = deeprl.train(
        "q-learning",
        lambda: Constant(),
        total_steps=1000,
        eval_every=50,
        eval_episodes=2,
        run_dir=tmp_path / "r",
        progress="off",
        callbacks=[deeprl.EarlyStopOnPlateau(patience=2)],
    )
    # evaluations at 50 (the best: 5.0), 100 and 150 (no better): stopped at the second without improvement
    assert result.summary["env_steps"] == 150
    assert result.summary["stopped"] == "callback"
    assert result.summary["stopped_by"] == "EarlyStopOnPlateau.on_eval"
    assert [float(r["episode_return"]) for r in read_metrics(tmp_path / "r") if r["kind"] == "eval"] == [5.0] * 3


def _eval(mean: float, periodic: bool = True) -> EvalInfo:
    return EvalInfo(0, 0, 0.0, None, mean, 0.0, 10, False, mean, periodic)


def test_early_stop_on_plateau_counts_evaluations_without_an_improvement_larger_than_min_delta():
    stop = deeprl.EarlyStopOnPlateau(patience=2, min_delta=0.5)
    answers = [stop.on_eval(_eval(m)) for m in (1.0, 2.0, 2.4, 2.5, 3.0)]
    # 2.0 improves on 1.0 by more than 0.5; 2.4 and 2.5 do not: the second of them stops
    assert answers == [None, None, None, False, None]
    assert deeprl.EarlyStopOnPlateau(patience=1).on_eval(_eval(1.0, periodic=False)) is None  # the final one
    stop = deeprl.EarlyStopOnPlateau(patience=3)
    assert [stop.on_eval(_eval(m)) for m in (1.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0)] == [None] * 6 + [False]


def test_save_every_writes_a_checkpoint_at_each_multiple_besides_checkpoint_every(tmp_path):
    rec = Recorder()
    deeprl.train(
        "q-learning",
        "CliffWalking-v1",
        total_steps=2500,
        eval_every=1000,
        checkpoint_every=1000,
        run_dir=tmp_path / "r",
        callbacks=[deeprl.SaveEvery(700), rec],
        **CLIFF,
    )
    assert [c.env_steps for c in rec.of(CheckpointInfo)] == [700, 1000, 1400, 2000, 2100, 2500]
    assert all(rec.on_disk)
    assert load_resume_state(tmp_path / "r").state["loop"]["env_steps"] == 2500


class Boom(deeprl.Callback):
    def on_eval(self, info):
        if info.env_steps == 2000:
            raise ValueError("my bug")


def test_a_raising_callback_stops_the_run_names_itself_and_leaves_the_last_checkpoint(tmp_path):
    opts = dict(total_steps=3000, eval_every=1000, checkpoint_every=1000, **CLIFF)
    with pytest.raises(CallbackError) as info:
        deeprl.train("q-learning", "CliffWalking-v1", run_dir=tmp_path / "r", callbacks=[Boom()], **opts)
    message = str(info.value)
    assert "Boom raised ValueError in on_eval at env step 2000: my bug" in message
    assert "The last checkpoint (env step 1000) is kept" in message
    assert isinstance(info.value.__cause__, ValueError)
    assert not (tmp_path / "r" / "summary.json").exists()
    assert load_resume_state(tmp_path / "r").state["loop"]["env_steps"] == 1000
    # the directory is unlocked and continues as a crashed run does
    deeprl.resume(tmp_path / "r")
    deeprl.train("q-learning", "CliffWalking-v1", run_dir=tmp_path / "whole", **opts)
    assert read_metrics(tmp_path / "r") == read_metrics(tmp_path / "whole")


@pytest.mark.parametrize(
    "callbacks, fragment",
    [
        ([deeprl.EarlyStopOnPlateau], "is a class; pass an instance"),
        ([3], "neither a deeprl.Callback"),
        ("on_eval", "neither a deeprl.Callback"),
    ],
)
def test_bad_callbacks_fail_before_any_file_is_written(tmp_path, callbacks, fragment):
    with pytest.raises(UsageError, match=fragment):
        deeprl.train("q-learning", "CliffWalking-v1", total_steps=100, run_dir=tmp_path / "r", callbacks=callbacks)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: deeprl.EarlyStopOnPlateau(patience=0), "patience"),
        (lambda: deeprl.EarlyStopOnPlateau(patience=2, min_delta=-1), "min_delta"),
        (lambda: deeprl.SaveEvery(0), "SaveEvery"),
        (lambda: deeprl.SaveEvery(1.5), "SaveEvery"),
    ],
)
def test_built_in_callbacks_check_their_arguments(make, fragment):
    with pytest.raises(UsageError, match=fragment):
        make()


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_save_every_and_watching_callbacks_change_no_metric_of_a_deep_algorithm(tmp_path, algo):
    """The extra chunk ends SaveEvery makes fall mid-rollout (PPO) and mid-replay schedule (DQN)."""
    opts = dict(seed=1, total_steps=3000, eval_every=1000, eval_episodes=2, progress="off", device="cpu")
    if algo == "dqn":
        opts["learning_starts"] = 300
    deeprl.train(algo, "CartPole-v1", run_dir=tmp_path / "plain", **opts)
    deeprl.train(algo, "CartPole-v1", run_dir=tmp_path / "cb", callbacks=[deeprl.SaveEvery(333), Recorder()], **opts)
    assert read_metrics(tmp_path / "cb") == read_metrics(tmp_path / "plain")
    assert read_summary(tmp_path / "cb") == read_summary(tmp_path / "plain")
