"""--compile (deeprl.compiling): the compiled update equals the eager one to float tolerance for SAC, TD3, DDPG and
PPO, the checkpoint is the eager one's (loads either way), bad input fails before any file is written, and the
`deeprl` command (which skips torch._dynamo's import, deeprl.process) trains and resumes with it.

Correctness only, never timings (benchmarks/compile_speed.py measures). The first compilation of each algorithm
costs inductor 5-30 s on 2 cores from an empty cache (/tmp/torchinductor_$USER keeps its kernels for the next run);
the budgets here are tiny so that little else does."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import torch

import deeprl
from deeprl.driver import build_config
from deeprl.envs import make_vec_env
from deeprl.errors import UsageError

# Small networks and minibatches; the CLI test below uses the same SAC settings, so inductor's cache serves it.
OFF_POLICY = dict(hidden=(32, 32), batch_size=32, learning_starts=200, train_freq=2, gradient_steps=2)
SAC_FLAGS = ["--hidden", "32", "32", "--batch-size", "32", "--learning-starts", "200", "--train-freq", "2"]
SAC_FLAGS += ["--gradient-steps", "2"]
ON_POLICY = dict(hidden=(32, 32), n_envs=4, n_steps=32, minibatch_size=64, n_epochs=2)
NETWORKS = ("actor", "critic", "actor_target", "critic_target", "model")


def _agent(algo: str):
    env_id = "CartPole-v1" if algo == "ppo" else "Pendulum-v1"
    spec, config, opts = build_config(algo, env_id, **(ON_POLICY if algo == "ppo" else OFF_POLICY))
    torch.manual_seed(3)  # the networks' initial weights
    return spec.load()(config, make_vec_env(env_id, opts.n_envs), seed=3, device="cpu")


def _weights(agent) -> dict[str, torch.Tensor]:
    state = agent.state_dict()
    return {f"{net}.{k}": v for net in NETWORKS if net in state for k, v in state[net].items()}


# TD3 and DDPG compile as SAC does (their losses; acting only on a GPU): marked slow, for inductor's first compilation
# of each (10-15 s on 2 cores from an empty cache)
SLOW = pytest.mark.slow


@pytest.mark.parametrize("algo", ["sac", pytest.param("td3", marks=SLOW), pytest.param("ddpg", marks=SLOW), "ppo"])
def test_compiled_update_equals_the_eager_one(algo):
    """From the same state, a round of updates (PPO: one batch of rollout and update, its acting compiled too) gives
    the eager parameters and losses to float tolerance; the compiled agent's checkpoint has the eager one's keys
    and loads the eager state."""
    from torch._dynamo.utils import counters

    eager, compiled = _agent(algo), _agent(algo)
    if algo != "ppo":  # fill the replay buffers (uniform actions) up to learning_starts
        eager.learn(200)
        compiled.learn(200)
    torch._dynamo.reset()  # no compiled code kept from earlier tests: this one must compile its own graphs
    graphs = counters["stats"]["unique_graphs"]
    compiled.compile()
    steps = 128 if algo == "ppo" else 16  # PPO: one batch of 4 envs x 32 steps; the others: 8 rounds of 2 updates
    eager.learn(steps)
    compiled.learn(steps)
    assert counters["stats"]["unique_graphs"] > graphs  # the compiled path ran (and was not the eager one)
    assert _weights(compiled).keys() == _weights(eager).keys()
    for name, value in _weights(eager).items():
        torch.testing.assert_close(_weights(compiled)[name], value, atol=1e-5, rtol=1e-5, msg=name)
    losses = (lambda a: a.last_metrics) if algo == "ppo" else (lambda a: a.losses)
    torch.testing.assert_close(torch.tensor(losses(compiled)), torch.tensor(losses(eager)), atol=1e-4, rtol=1e-4)
    # a checkpoint of either loads into the other (the state dicts are the modules' own)
    compiled.load_state_dict(copy.deepcopy(eager.state_dict()))  # as from a file: no tensor shared
    for name, value in _weights(eager).items():
        torch.testing.assert_close(_weights(compiled)[name], value, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("algo", "env_id", "options", "message"),
    [
        ("a2c", "CartPole-v1", {}, "--compile is for ddpg, td3, sac, ppo; a2c has no compiled update"),
        ("dqn", "CartPole-v1", {}, "--compile is for .*; dqn has no compiled update"),
        ("sac", "Pendulum-v1", {"backend": "ray"}, "--compile is for runs on the local backend"),
        ("sac", "Pendulum-v1", {"compile": "yes"}, "compile must be True or False, got 'yes'"),
    ],
)
def test_bad_compile_input_fails_before_any_file(tmp_path, algo, env_id, options, message):
    options = {"compile": True, **options}
    with pytest.raises(UsageError, match=message):
        deeprl.train(algo, env_id, total_steps=100, run_dir=tmp_path / "run", progress="off", **options)
    assert list(tmp_path.iterdir()) == []


def test_command_line_compiles_and_resumes_without_compile(tmp_path):
    """`deeprl train ... --compile` in the command's own process (torch._dynamo's import skipped there until a run
    compiles: deeprl.process.restore_dynamo_wrappers), then `--resume ... --compile False` on its checkpoint."""
    run = tmp_path / "run"
    train = [sys.executable, "-m", "deeprl", "train", "sac", "Pendulum-v1", "--compile", *SAC_FLAGS]
    train += ["--total-steps", "300", "--eval-every", "300", "--eval-episodes", "1", "--run-dir", str(run)]
    done = subprocess.run(train + ["--progress", "off"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "config.json").read_text())["run"]["compile"] is True
    resume = [sys.executable, "-m", "deeprl", "train", "--resume", str(run), "--total-steps", "400"]
    done = subprocess.run(resume + ["--compile", "False"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "config.json").read_text())["run"]["compile"] is False
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 400


def test_restore_dynamo_wrappers_puts_torchs_own_back():
    """What the command's process changed in torch.optim to skip torch._dynamo (deeprl.process) is undone for a run
    that compiles: Adam's own step wrapper (hooked, as an optimizer made meanwhile hooked it) and no cached
    stand-ins for torch._dynamo.disable."""
    code = """
        import torch
        from torch.optim.optimizer import Optimizer
        from deeprl import process

        pristine = vars(torch.optim.Adam)["step"]
        process.claim_process()
        process.skip_dynamo_import()
        assert vars(torch.optim.Adam)["step"] is not pristine
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # hooks the patched step for profiling
        process.restore_dynamo_wrappers()
        step = vars(torch.optim.Adam)["step"]
        assert step.__wrapped__ is pristine and step.hooked
        assert all(not hasattr(getattr(Optimizer, n).__wrapped__, "__dynamo_disable") for n in process._OPTIMIZER_METHODS)
        print("ok")
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
