#!/usr/bin/env python
"""Tabular throughput: training steps/s against the raw `env.step` ceiling.

For every (env, algorithm) pair this measures, in the same process and interleaved per repeat:

1. raw env steps/s: the env that training uses (`deeprl.envs.make_env`, i.e. `gymnasium.make`
   with its default wrappers), stepped with actions drawn beforehand into a list (so sampling
   costs nothing), reset on terminated/truncated. This is the ceiling: a learner steps the same
   env and does its own work on top.
2. learn() steps/s: the algorithm's own loop, `Cls(config, env, seed=s).learn(N)`, with the
   config `deeprl train` would use for that (algo, env) pair (its preset, if any).
3. train() steps/s: the whole driver, `deeprl.train(algo, env, total_steps=N, ...)` with a temp
   run directory and metrics.csv; evaluation is excluded (summary["train_wall_s"] does not count
   it, and eval_every > N leaves only the final evaluation).

Each figure is the median of --repeats runs (seed + r in repeat r). The raw ceiling is measured
once per env and repeat and shared by that env's rows. Uniform random actions give other episode
lengths (so another share of resets) than a learning ε-greedy policy; a ratio a little above 100%
can come from that, or from noise.

    python benchmarks/tabular_throughput.py --steps 30000 --repeats 5 --out /tmp/table.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import deeprl
from deeprl.driver import build_config
from deeprl.envs import make_env

ENVS = ("FrozenLake-v1", "CliffWalking-v1", "Taxi-v4", "Blackjack-v1")
ALGOS = ("sarsa", "expected-sarsa", "q-learning", "mc")


def raw_steps_per_s(env_id: str, n: int, seed: int) -> float:
    """Steps/s of env.step alone: pre-drawn actions, reset on episode end."""
    env = make_env(env_id)
    space = env.action_space
    actions = (int(space.start) + np.random.default_rng(seed).integers(int(space.n), size=n)).tolist()
    env.reset(seed=seed)
    step, reset = env.step, env.reset
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            reset()
    elapsed = time.perf_counter() - start
    env.close()
    return n / elapsed


def learn_steps_per_s(algo: str, env_id: str, n: int, seed: int) -> float:
    """Steps/s of the algorithm's own learning loop, agent.learn(n), with `deeprl train`'s config."""
    spec, config, opts = build_config(algo, env_id, total_steps=n)
    env = make_env(env_id, max_episode_steps=opts.max_episode_steps)
    agent = spec.load()(config, env, seed=seed)
    start = time.perf_counter()
    steps, _ = agent.learn(n)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def train_steps_per_s(algo: str, env_id: str, n: int, seed: int) -> float:
    """Steps/s of the full driver (metrics.csv, chunking), training wall time only."""
    with tempfile.TemporaryDirectory(prefix="deeprl-bench-") as tmp:
        result = deeprl.train(
            algo, env_id, seed=seed, total_steps=n, run_dir=Path(tmp) / "run", eval_every=10 * n, progress="off"
        )
    s = result.summary
    return s["env_steps"] / s["train_wall_s"]


def machine() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return (
        f"{cpu}, {cores} logical cores ({usable} usable), {platform.system()} {platform.machine()}; "
        f"python {platform.python_version()}, torch {torch.__version__}, gymnasium {gym.__version__}, "
        f"numpy {np.__version__}, deeprl {deeprl.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30_000, help="env steps per measurement (default 30000)")
    p.add_argument("--repeats", type=int, default=5, help="repeats per figure; medians are reported (default 5)")
    p.add_argument("--envs", nargs="+", default=list(ENVS), help=f"env ids (default: {' '.join(ENVS)})")
    p.add_argument("--algos", nargs="+", default=list(ALGOS), help=f"algorithms (default: {' '.join(ALGOS)})")
    p.add_argument("--seed", type=int, default=0, help="first seed; repeat r uses seed + r (default 0)")
    p.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = p.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        p.error("--steps and --repeats must be positive")

    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    header = [
        f"Machine: {machine()}",
        f"Command: `{command}`",
        f"Steps per measurement: {args.steps:,}; medians of {args.repeats} repeats.",
        "",
    ]
    rows = [
        "| env | algo | raw env steps/s | learn() steps/s | ratio | train() steps/s | ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    t_all = time.perf_counter()
    for env_id in args.envs:
        raw: list[float] = []
        learn: dict[str, list[float]] = {algo: [] for algo in args.algos}
        drive: dict[str, list[float]] = {algo: [] for algo in args.algos}
        warm = min(args.steps, 2_000)  # untimed: imports, first-call checks, caches
        raw_steps_per_s(env_id, warm, args.seed)
        for algo in args.algos:
            learn_steps_per_s(algo, env_id, warm, args.seed)
            train_steps_per_s(algo, env_id, warm, args.seed)
        for r in range(args.repeats):  # interleaved, so slow drift of the machine hits all figures alike
            seed = args.seed + r
            raw.append(raw_steps_per_s(env_id, args.steps, seed))
            for algo in args.algos:
                learn[algo].append(learn_steps_per_s(algo, env_id, args.steps, seed))
                drive[algo].append(train_steps_per_s(algo, env_id, args.steps, seed))
        m_raw = statistics.median(raw)
        print(f"[{time.perf_counter() - t_all:6.1f}s] {env_id} raw {[round(x) for x in raw]}", file=sys.stderr)
        for algo in args.algos:
            m_learn, m_drive = statistics.median(learn[algo]), statistics.median(drive[algo])
            rows.append(
                f"| {env_id} | {algo} | {m_raw:,.0f} | {m_learn:,.0f} | {m_learn / m_raw:.0%} | "
                f"{m_drive:,.0f} | {m_drive / m_raw:.0%} |"
            )
            print(
                f"    {algo}: learn {[round(x) for x in learn[algo]]} train {[round(x) for x in drive[algo]]}",
                file=sys.stderr,
            )
    footer = ["", f"(benchmark wall time {time.perf_counter() - t_all:.0f} s)"]
    text = "\n".join(header + rows + footer)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
