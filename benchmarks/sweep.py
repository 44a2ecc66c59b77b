#!/usr/bin/env python
"""Steps and training seconds to solve, per seed, for one algorithm/env and preset overrides: the
tool the presets were tuned with. Each seed trains with --stop-when-solved; an unsolved seed shows
as None and counts as +inf in the median. Seconds exclude evaluation (the run's solved_at_wall_s).

    .venv/bin/python benchmarks/sweep.py ppo CartPole-v1 --seeds 10 n_epochs=4 learning_rate=5e-3
    .venv/bin/python benchmarks/sweep.py ddpg Pendulum-v1 --seeds 5 --first-seed 5 batch_size=64

Overrides are config or run-option names with underscores, values as Python literals.
"""

from __future__ import annotations

import argparse
import ast
import math
import statistics
import tempfile

import deeprl


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise SystemExit(f"overrides look like name=value (e.g. learning_rate=5e-3), got {text!r}")
    name, raw = text.split("=", 1)
    try:
        return name, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return name, raw  # a bare word: a string choice such as noise=ou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("algo")
    parser.add_argument("env_id")
    parser.add_argument("overrides", nargs="*", help="name=value")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_intermixed_args()
    overrides = dict(parse_override(o) for o in args.overrides)
    steps, seconds = [], []
    with tempfile.TemporaryDirectory(prefix="deeprl-sweep-") as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            s = deeprl.train(args.algo, args.env_id, seed=seed, run_dir=f"{tmp}/{seed}", progress="off",
                             stop_when_solved=True, **overrides).summary
            steps.append(s["solved_at_env_steps"])
            seconds.append(s["solved_at_wall_s"])
    median = statistics.median(math.inf if x is None else x for x in seconds)
    print(f"{args.algo} {args.env_id} {overrides or '(preset)'} seeds {args.first_seed}..{args.first_seed + args.seeds - 1}")
    print(f"  steps to solve: {steps}")
    print(f"  seconds:        {[None if x is None else round(x, 1) for x in seconds]}")
    print(f"  median {median:.2f} s, solved {sum(x is not None for x in steps)}/{len(steps)}")


if __name__ == "__main__":
    main()
