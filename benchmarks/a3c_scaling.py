#!/usr/bin/env python
"""A3C benchmarks: how throughput scales with --workers, how fast the pool starts, and CartPole.

    python benchmarks/a3c_scaling.py scaling --workers 1 2 4 --steps 2000 --repeats 3 --sleep-ms 1 10
    python benchmarks/a3c_scaling.py start --repeats 3
    python benchmarks/a3c_scaling.py solve --seeds 0 1 2 3 4 --workers 2 --budget 500000

scaling: training env steps/s of `A3C.learn` on CartPole-v1 made slow on purpose (every step sleeps
  --sleep-ms, as a simulator or a robot would take), for each worker count, taking turns within each
  repeat; medians over repeats. The pool's start (the first learn) is excluded. A worker spends the
  sleep waiting, not computing, so more workers than cores still add throughput, which is what the
  asynchronous method buys. Also the same on the plain CartPole-v1, where the cores are the limit.
start: seconds from the first learn() until every worker runs (has reached the step counter), fork vs spawn.
solve: `deeprl train a3c CartPole-v1 --workers N --stop-when-solved` per seed: env steps and
  training seconds to the first periodic evaluation (10 episodes) at the threshold, 475.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import gymnasium as gym
import torch

import deeprl
from deeprl.algos.a3c import A3C
from deeprl.config import A3CConfig
from deeprl.envs import make_env


class SlowCartPole(gym.Wrapper):
    """CartPole-v1 whose every step also sleeps `sleep_s` seconds."""

    def __init__(self, sleep_s: float = 0.001):
        super().__init__(gym.make("CartPole-v1"))
        self.sleep_s = sleep_s

    def step(self, action):
        time.sleep(self.sleep_s)
        return self.env.step(action)


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}; python "
        f"{platform.python_version()}, torch {torch.__version__}, gymnasium {gym.__version__}"
    )


def learn_rate(env_id: str, workers: int, steps: int, seed: int, start_method: str = "fork") -> float:
    """Env steps/s of learn(steps) once the pool runs (a short first learn starts it)."""
    torch.manual_seed(seed)
    algo = A3C(A3CConfig(workers=workers, start_method=start_method), make_env(env_id), seed=seed)
    try:
        algo.learn(workers * 20, None)
        start = time.perf_counter()
        taken, _ = algo.learn(steps, None)
        return taken / (time.perf_counter() - start)
    finally:
        algo.close()


def scaling(args: argparse.Namespace) -> None:
    rows = []
    for ms in args.sleep_ms:
        gym.register(
            f"deeprl-bench/SlowCartPole-{ms:g}ms-v1",
            entry_point=SlowCartPole,
            max_episode_steps=500,
            kwargs={"sleep_s": ms / 1000},
        )
        rows.append((f"deeprl-bench/SlowCartPole-{ms:g}ms-v1", f"CartPole-v1 + {ms:g} ms sleep per step"))
    rows.append(("CartPole-v1", "CartPole-v1"))
    rates: dict[tuple[str, int], list[float]] = {}
    for r in range(args.repeats):
        for env_id, _ in rows:
            for w in args.workers:
                rate = learn_rate(env_id, w, args.steps, seed=r)
                rates.setdefault((env_id, w), []).append(rate)
                print(f"repeat {r} {env_id} workers={w}: {rate:,.0f} steps/s", file=sys.stderr, flush=True)
    print(f"Machine: {machine()}\n")
    print("| env | " + " | ".join(f"{w} worker{'s' * (w > 1)}" for w in args.workers) + " |")
    print("|---|" + "---:|" * len(args.workers))
    for env_id, label in rows:
        base = statistics.median(rates[(env_id, args.workers[0])])
        cells = [
            f"{statistics.median(rates[(env_id, w)]):,.0f} ({statistics.median(rates[(env_id, w)]) / base:.2f}x)"
            for w in args.workers
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


def start(args: argparse.Namespace) -> None:
    times: dict[str, list[float]] = {"fork": [], "spawn": []}
    for r in range(args.repeats):
        for method, ts in times.items():
            algo = A3C(A3CConfig(workers=args.workers[0], start_method=method), make_env("CartPole-v1"), seed=r)
            t0 = time.perf_counter()
            algo.learn(args.workers[0], None)  # returns once every worker runs and waits at the step counter
            ts.append(time.perf_counter() - t0)
            algo.close()
    print(f"Machine: {machine()}\n")
    print(f"| start method | pool start with {args.workers[0]} workers (median of {args.repeats}) |\n|---|---:|")
    for method, ts in times.items():
        print(f"| {method} | {statistics.median(ts):.2f} s |")


def solve(args: argparse.Namespace) -> None:
    results = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as d:
            s = deeprl.train(
                "a3c",
                "CartPole-v1",
                workers=args.workers[0],
                total_steps=args.budget,
                eval_every=args.eval_every,
                stop_when_solved=True,
                seed=seed,
                run_dir=f"{d}/run",
                progress="off",
            ).summary
        results.append(s)
        print(
            f"seed {seed}: solved={s['solved']} at {s['solved_at_env_steps']} steps, "
            f"{s['solved_at_wall_s']} s ({s['steps_per_s']} steps/s)",
            file=sys.stderr,
            flush=True,
        )
    print(f"Machine: {machine()}\n")
    print("| seed | solved | env steps to solve | train seconds to solve | steps/s |\n|---|---|---:|---:|---:|")
    for seed, s in zip(args.seeds, results):
        print(
            f"| {seed} | {'yes' if s['solved'] else 'no'} | {s['solved_at_env_steps'] or '-'} | "
            f"{s['solved_at_wall_s'] if s['solved'] else '-'} | {s['steps_per_s']:,.0f} |"
        )
    solved = [s for s in results if s["solved"]]
    if solved:
        print(
            f"\nSolved {len(solved)}/{len(results)} within {args.budget:,} env steps; median over the solved "
            f"seeds: {statistics.median(s['solved_at_env_steps'] for s in solved):,.0f} env steps, "
            f"{statistics.median(s['solved_at_wall_s'] for s in solved):.1f} s."
        )
    else:
        print(f"\nSolved 0/{len(results)} within {args.budget:,} env steps.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("scaling", "start", "solve"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=4000, help="timed env steps per scaling measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sleep-ms", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=500_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    args = parser.parse_args()
    {"scaling": scaling, "start": start, "solve": solve}[args.what](args)


if __name__ == "__main__":
    main()
