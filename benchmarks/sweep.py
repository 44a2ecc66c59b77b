#!/usr/bin/env python
"""Steps and training seconds to solve, per seed, for one algorithm/env and preset overrides: the
tool the presets were tuned with. Each seed trains with --stop-when-solved; an unsolved seed shows
as None and counts as +inf in the median. Seconds exclude evaluation (the run's solved_at_wall_s).

    .venv/bin/python benchmarks/sweep.py ppo CartPole-v1 --seeds 10 n_epochs=4 learning_rate=5e-3
    .venv/bin/python benchmarks/sweep.py ddpg Pendulum-v1 --seeds 5 --first-seed 5 batch_size=64
    .venv/bin/python benchmarks/sweep.py ppo CartPole-v1 --seeds 20 --first-seed 10 --jobs 2 activation=relu

Overrides are config or run-option names with underscores, values as Python literals. `--jobs N`
runs N seeds at once in separate processes: the steps to solve are the same as one at a time (a
run is deterministic given its seed), the seconds are not comparable (the trials share the CPU).
"""

from __future__ import annotations

import argparse
import ast
import math
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor

import deeprl


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise SystemExit(f"overrides look like name=value (e.g. learning_rate=5e-3), got {text!r}")
    name, raw = text.split("=", 1)
    try:
        return name, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return name, raw  # a bare word: a string choice such as noise=ou


def trial(algo: str, env_id: str, seed: int, run_dir: str, overrides: dict) -> tuple[int | None, float | None]:
    s = deeprl.train(
        algo, env_id, seed=seed, run_dir=run_dir, progress="off", stop_when_solved=True, **overrides
    ).summary
    return s["solved_at_env_steps"], s["solved_at_wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("algo")
    parser.add_argument("env_id")
    parser.add_argument("overrides", nargs="*", help="name=value")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once (seconds then not comparable)")
    args = parser.parse_intermixed_args()
    overrides = dict(parse_override(o) for o in args.overrides)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with tempfile.TemporaryDirectory(prefix="deeprl-sweep-") as tmp:
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                futures = [pool.submit(trial, args.algo, args.env_id, s, f"{tmp}/{s}", overrides) for s in seeds]
                results = [f.result() for f in futures]
        else:
            results = [trial(args.algo, args.env_id, s, f"{tmp}/{s}", overrides) for s in seeds]
    steps = [r[0] for r in results]
    seconds = [r[1] for r in results]
    median = statistics.median(math.inf if x is None else x for x in seconds)
    median_steps = statistics.median(math.inf if x is None else x for x in steps)
    print(
        f"{args.algo} {args.env_id} {overrides or '(preset)'} seeds {seeds.start}..{seeds.stop - 1}"
        + (f" ({args.jobs} at once: seconds not comparable)" if args.jobs > 1 else "")
    )
    print(f"  steps to solve: {steps}")
    print(f"  seconds:        {[None if x is None else round(x, 1) for x in seconds]}")
    print(f"  median {median:.2f} s, {median_steps:.0f} steps, solved {sum(x is not None for x in steps)}/{len(steps)}")


if __name__ == "__main__":
    main()
