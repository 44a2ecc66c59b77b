#!/usr/bin/env python
"""The whole process, as a user meets it: `deeprl train ppo CartPole-v1` from the shell prompt to the prompt
again (interpreter start, imports, run directory, training, evaluations, exit), against a tiny Stable-Baselines3
script doing the same, and how long `deeprl list` / `deeprl --help` take to answer.

Each run is a fresh process, timed from the parent (fork/exec to exit, like `time CMD`), one at a time; deeprl
and SB3 alternate per seed so that load on a shared machine hits both alike. Medians over the seeds.

  deeprl: `deeprl train ppo CartPole-v1 --stop-when-solved --seed S` (its preset: 32 envs, an evaluation of 10
          deterministic episodes every 5k env steps, stop at the first mean >= 475, 100k budget), run in a
          temporary working directory (the default runs/ goes there).
  SB3:    `python benchmarks/whole_process.py --sb3-child S`: imports SB3 (not deeprl), trains rl-baselines3-zoo's
          PPO CartPole-v1 preset (8 envs, n_steps 32, batch 256, 20 epochs, γ 0.98, λ 0.8, lr and clip linear from
          1e-3 and 0.2, ent 0) with an EvalCallback every 5k env steps (10 deterministic episodes) and
          StopTrainingOnRewardThreshold(475), 100k budget; one torch thread, as deeprl's default for vectors.

    python benchmarks/whole_process.py --seeds 5 --first-seed 100
    python benchmarks/whole_process.py --cli-only          # just `deeprl list` / `--help` / `train --help`
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THRESHOLD = 475.0
BUDGET = 100_000
EVAL_EVERY = 5_000
CLI_COMMANDS = (["list"], ["--help"], ["train", "--help"], ["train", "ppo", "CartPole-v1", "--help"])


def sb3_child(seed: int) -> None:
    """The SB3 side, run as its own process: only what a user of SB3 would import."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    n_envs = 8
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 10_000)
    lin = lambda start: lambda progress: progress * start  # noqa: E731 - the zoo's lin_ schedule
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lin(1e-3),
        clip_range=lin(0.2),
        seed=seed,
        device="cpu",
    )
    stop = StopTrainingOnRewardThreshold(reward_threshold=THRESHOLD, verbose=0)
    # eval_freq counts calls of the callback, one per step of all n_envs envs
    evaluation = EvalCallback(
        eval_env, callback_on_new_best=stop, n_eval_episodes=10, eval_freq=EVAL_EVERY // n_envs, deterministic=True
    )
    model.learn(BUDGET, callback=evaluation)
    if evaluation.best_mean_reward >= THRESHOLD:
        print(f"solved at {model.num_timesteps:,} env steps")
    else:
        print(f"not solved in {model.num_timesteps:,} env steps")


def timed(cmd: list[str], cwd: str | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def solved_steps(stdout: str) -> int | None:
    m = re.search(r"solved at ([\d,]+) env steps", stdout)
    return int(m.group(1).replace(",", "")) if m else None


def cli_times(deeprl: str, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for args in CLI_COMMANDS:
            times.setdefault(" ".join(args), []).append(timed([deeprl, *args])[0])
    return {name: statistics.median(ts) for name, ts in times.items()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--no-sb3", action="store_true", help="deeprl only")
    parser.add_argument("--cli-only", action="store_true", help="only the list/--help timings")
    parser.add_argument("--sb3-child", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_child is not None:
        sb3_child(args.sb3_child)
        return
    deeprl = str(Path(sys.executable).parent / "deeprl")
    cli = cli_times(deeprl, 5)
    print("| command | median wall s (5 runs) |\n|---|---|")
    for name, t in cli.items():
        print(f"| `deeprl {name}` | {t:.2f} |")
    if args.cli_only:
        return
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    rows: dict[str, list[tuple[float, int | None]]] = {"deeprl": [], "sb3": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            wall, out = timed([deeprl, "train", "ppo", "CartPole-v1", "--stop-when-solved", "--seed", str(seed)], tmp)
            rows["deeprl"].append((wall, solved_steps(out)))
            print(f"seed {seed} deeprl: {wall:.2f} s, solved at {rows['deeprl'][-1][1]}", file=sys.stderr, flush=True)
            if not args.no_sb3:
                wall, out = timed([sys.executable, __file__, "--sb3-child", str(seed)], tmp)
                rows["sb3"].append((wall, solved_steps(out)))
                print(f"seed {seed} sb3:    {wall:.2f} s, solved at {rows['sb3'][-1][1]}", file=sys.stderr, flush=True)
    import torch  # only for the machine line, after the timed runs

    print(
        f"\nPPO CartPole-v1, whole process, seeds {seeds.start}-{seeds.stop - 1}; machine: {os.cpu_count()} cores, "
        f"{cpu_model()}, Python {platform.python_version()}, torch {torch.__version__}\n"
    )
    print("| library | solved | median env steps to solve | median wall s, whole process | each run (s) |")
    print("|---|---|---|---|---|")
    medians = {}
    for lib, results in rows.items():
        if not results:
            continue
        walls = [w for w, _ in results]
        steps = [s for _, s in results if s is not None]
        medians[lib] = statistics.median(walls)
        each = ", ".join(f"{w:.2f}" for w in walls)
        med_steps = f"{statistics.median(steps):,.0f}" if steps else "—"
        print(f"| {lib} | {len(steps)}/{len(results)} | {med_steps} | {medians[lib]:.2f} | {each} |")
    if "sb3" in medians:
        print(f"\nratio deeprl/SB3 (median wall): {medians['deeprl'] / medians['sb3']:.2f}")


if __name__ == "__main__":
    main()
