"""Keep the best policy: every evaluation that beats the best so far saves policy_best.safetensors."""

import json
import shutil

from conftest import read_metrics

import deeprl
from deeprl.agent import load
from deeprl.rundir import BEST_POLICY, POLICY, load_policy

FAST_PPO = dict(total_steps=12_000, eval_every=2_000, eval_episodes=3, n_steps=64, progress="off")


def _eval_means(run_dir):
    return [(int(r["env_steps"]), float(r["episode_return"])) for r in read_metrics(run_dir) if r["kind"] == "eval"]


def test_best_policy_is_the_best_evaluation_and_reproduces_it(tmp_path):
    result = deeprl.train("ppo", "CartPole-v1", seed=1, run_dir=tmp_path / "r", **FAST_PPO)
    evals = _eval_means(tmp_path / "r")
    best_steps, best_mean = max(evals, key=lambda e: (e[1], -e[0]))  # the first evaluation to reach the max
    s = result.summary
    assert (s["best_eval_env_steps"], s["best_eval_mean_return"]) == (best_steps, best_mean)
    assert s["best_eval_mean_return"] >= s["eval_mean_return"]
    _, info = load_policy(tmp_path / "r", BEST_POLICY)
    assert info["env_steps"] == best_steps and info["eval_mean_return"] == best_mean
    # the saved file IS that policy: the same deterministic evaluation gives the same mean
    assert deeprl.evaluate(load(tmp_path / "r", BEST_POLICY))["mean_return"] == best_mean


def test_resume_rewrites_a_best_policy_written_after_the_last_checkpoint(tmp_path):
    """A killed run may have saved a best policy past its last checkpoint; --resume replaces it with the one
    the checkpoint holds, so the resumed run ends exactly as the uninterrupted one."""
    deeprl.train("ppo", "CartPole-v1", seed=2, run_dir=tmp_path / "whole", **FAST_PPO)
    deeprl.train("ppo", "CartPole-v1", seed=2, run_dir=tmp_path / "cut", **{**FAST_PPO, "total_steps": 6_000})
    # what a process killed after its checkpoint could leave behind: a best policy from another point in time
    shutil.copy(tmp_path / "whole" / POLICY, tmp_path / "cut" / BEST_POLICY)
    result = deeprl.resume(tmp_path / "cut", total_steps=12_000)
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "whole")
    whole_state, whole_info = load_policy(tmp_path / "whole", BEST_POLICY)
    cut_state, cut_info = load_policy(tmp_path / "cut", BEST_POLICY)
    assert cut_info == whole_info and result.summary["best_eval_env_steps"] == whole_info["env_steps"]
    for name, tensor in whole_state["model"].items():
        assert tensor.equal(cut_state["model"][name]), name


def test_cli_eval_and_render_take_best(tmp_path, capsys):
    from deeprl.cli import main

    result = deeprl.train("ppo", "CartPole-v1", seed=1, run_dir=tmp_path / "r", **FAST_PPO)
    assert main(["eval", str(tmp_path / "r"), "--best", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "best" and out["mean_return"] == result.summary["best_eval_mean_return"]
    assert out["policy_env_steps"] == result.summary["best_eval_env_steps"]
    assert main(["eval", str(tmp_path / "r"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_return"] == result.summary["eval_mean_return"]
    assert main(["render", str(tmp_path / "r"), "--best", "--out", str(tmp_path / "best.gif")]) == 0
    assert (tmp_path / "best.gif").stat().st_size > 0


def test_best_before_any_evaluation_is_a_clear_error(tmp_path, capsys):
    from deeprl.cli import main

    deeprl.train("ppo", "CartPole-v1", run_dir=tmp_path / "r", **FAST_PPO)
    (tmp_path / "r" / BEST_POLICY).unlink()  # as in a run killed before its first evaluation
    assert main(["eval", str(tmp_path / "r"), "--best"]) == 2
    assert "no evaluation of its run has finished yet" in capsys.readouterr().err
