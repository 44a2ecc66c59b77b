#!/usr/bin/env python
"""What the tabular methods learn with their presets: medians over seeds.

For each (algorithm, env): the final evaluation's mean return, env steps and training seconds to
the first periodic evaluation that reaches the env's reward_threshold (when it has one), the mean
online (training) return after the first 100 episodes, and, where the env publishes its model, the
exact value of the learned greedy policy at the start state next to the optimum's (policy
evaluation with gamma = 1, i.e. the success probability on FrozenLake).

    python benchmarks/tabular_learning.py --seeds 5
"""

from __future__ import annotations

import argparse
import csv
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import deeprl
from deeprl.envs import make_env
from deeprl.oracle import policy_evaluation, tabular_model, value_iteration

PAIRS = [
    ("sarsa", "CliffWalking-v1"),
    ("expected-sarsa", "CliffWalking-v1"),
    ("q-learning", "CliffWalking-v1"),
    ("mc", "CliffWalking-v1"),
    ("q-learning", "FrozenLake-v1"),
    ("expected-sarsa", "FrozenLake-v1"),
    ("sarsa", "Taxi-v4"),
    ("q-learning", "Taxi-v4"),
]


def median_or_dash(values: list, fmt: str) -> str:
    values = [v for v in values if v is not None]
    return format(statistics.median(values), fmt) if values else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pairs", nargs="+", help="ALGO:ENV pairs (default: a fixed set of 8)")
    args = p.parse_args(argv)
    pairs = [tuple(x.split(":", 1)) for x in args.pairs] if args.pairs else PAIRS
    print(
        f"Command: `{shlex.join(getattr(sys, 'orig_argv', sys.argv))}`; medians over {args.seeds} seeds "
        "(0..n-1), presets of `deeprl list`.\n"
    )
    print(
        "| algo | env | final eval return | solved (seeds) | steps to solve | train s to solve | "
        "online return after ep. 100 | exact start value: learned / optimal |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for algo, env_id in pairs:
        evals, steps, walls, online, exact = [], [], [], [], []
        solved = 0
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                result = deeprl.train(algo, env_id, seed=seed, run_dir=Path(tmp) / "r", progress="off")
                s = result.summary
                evals.append(s["eval_mean_return"])
                solved += bool(s["solved"])
                steps.append(s["solved_at_env_steps"])
                walls.append(s["solved_at_wall_s"])
                with open(Path(tmp) / "r" / "metrics.csv", newline="") as f:
                    returns = [float(r["episode_return"]) for r in csv.DictReader(f) if r["kind"] == "train"]
                online.append(statistics.mean(returns[100:]) if len(returns) > 100 else None)
                env = make_env(env_id)
                if hasattr(env.unwrapped, "P"):
                    model = tabular_model(env)
                    start = int(env.reset(seed=0)[0])
                    learned = deeprl.load(Path(tmp) / "r").algo.q.argmax(axis=1)
                    exact.append(policy_evaluation(model, learned, 1.0)[start])
                    optimum = policy_evaluation(
                        model, value_iteration(model, 1.0 if env_id.startswith("Cliff") else 0.99)[2], 1.0
                    )[start]
        exact_cell = f"{median_or_dash(exact, '.3f')} / {optimum:.3f}" if exact else "-"
        threshold = "-" if s["reward_threshold"] is None else f"{solved}/{args.seeds}"
        print(
            f"| {algo} | {env_id} | {median_or_dash(evals, '.3f')} | {threshold} | {median_or_dash(steps, ',.0f')} | "
            f"{median_or_dash(walls, '.2f')} | {median_or_dash(online, '.2f')} | {exact_cell} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
