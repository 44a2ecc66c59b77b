"""What the `deeprl` command imports: the commands that only print (`deeprl list`, `--help`, `train --help`)
answer without torch, and a training run from the command line trains without torch._dynamo (deeprl.process)
to the same results as the library API. Each check runs in a fresh interpreter, as a user's command does."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import read_metrics, read_summary

import deeprl

PRINT_ONLY = (
    ["list"],
    ["list", "--json"],
    ["--help"],
    ["train", "--help"],
    ["train", "ppo", "--help"],
    ["train", "ppo", "CartPole-v1", "--help"],  # the preset's values shown, still no torch
    ["--version"],
)


def run_python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done


def test_printing_commands_do_not_import_torch():
    done = run_python(
        f"""
        import contextlib, io, json, sys
        from deeprl.cli import main

        imported = {{}}
        for argv in {list(PRINT_ONLY)!r}:
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    rc = main(argv)
                except SystemExit as e:  # tyro's --help exits
                    rc = e.code
            assert rc in (0, None), (argv, rc)
            imported[" ".join(argv)] = sorted(m for m in ("torch", "torch._dynamo") if m in sys.modules)
        print(json.dumps(imported))
        """
    )
    imported = json.loads(done.stdout)
    assert imported == {" ".join(argv): [] for argv in PRINT_ONLY}


def test_command_line_training_skips_dynamo_and_matches_the_api(tmp_path):
    """Train (Adam's __init__, step, zero_grad, state_dict) and resume (load_state_dict) from the command line:
    torch._dynamo is never imported, and the run writes what deeprl.train and deeprl.resume write."""
    flags = dict(total_steps=512, n_envs=4, n_steps=32, minibatch_size=64, n_epochs=2, eval_every=256)
    flags.update(eval_episodes=2, seed=3, progress="off")
    argv = ["train", "ppo", "CartPole-v1", "--run-dir", str(tmp_path / "cli")]
    for name, value in flags.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    resume = ["train", "--resume", str(tmp_path / "cli"), "--total-steps", "768"]
    done = run_python(
        f"""
        import sys
        for argv in ({argv!r}, {resume!r}):
            sys.argv = ["deeprl", *argv]
            from deeprl.cli import main

            assert main() == 0
        print("torch._dynamo" in sys.modules, "torch" in sys.modules)
        """,
        cwd=tmp_path,
    )
    assert done.stdout.split()[-2:] == ["False", "True"], done.stdout

    deeprl.train("ppo", "CartPole-v1", run_dir=tmp_path / "api", **flags)
    deeprl.resume(tmp_path / "api", total_steps=768)
    assert read_metrics(tmp_path / "cli") == read_metrics(tmp_path / "api")
    assert read_summary(tmp_path / "cli") == read_summary(tmp_path / "api")


def test_main_called_from_python_leaves_torch_alone(capsys):
    """Only the command's own process is claimed: main(argv) from Python (a test, a notebook) leaves
    torch.optim's wrappers as torch made them and registers nothing at exit."""
    import torch

    from deeprl import process
    from deeprl.cli import main

    step, zero_grad = torch.optim.Adam.step, torch.optim.Optimizer.zero_grad.__wrapped__
    assert main(["list"]) == 0
    process.skip_dynamo_import()
    assert not process._claimed
    assert torch.optim.Adam.step is step
    assert getattr(zero_grad, "__dynamo_disable", None) is not zero_grad
