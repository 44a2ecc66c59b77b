#!/usr/bin/env python
"""Env steps per second of PPO with the local backend and with `--backend ray --workers 1, 2, 4`, on a fast env
(CartPole-v1: what Ray's per-round overhead costs), on an env made slow on purpose (benchmarks/slow_env.py: 2 ms
per step, the CPU left free) and on a real slow one (MuJoCo HalfCheetah-v5). Each configuration is its own
process (`python -m deeprl train ... --progress off`), one at a time, `--repeats` times; reported: the median
training steps/s from summary.json (evaluation and Ray's start-up excluded), the whole process's wall time, and
per round (one piece of a batch collected by every worker) what crossed to and from the workers.

    .venv/bin/python benchmarks/ray_scaling.py --repeats 3 --out /tmp/ray_scaling
    .venv/bin/python benchmarks/ray_scaling.py cartpole --repeats 5

Ray is local (no --ray-address): a runtime on this machine, started by each run. The seed (100) is not one a
preset was tuned on; `--threshold 1e9` keeps a run from stopping when solved, so every run takes its budget.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (name, algo, env, options, budget)
CASES = {
    "cartpole": ("ppo", "CartPole-v1", [], 40_960),
    "slow": ("ppo", "benchmarks.slow_env:SlowCartPole-v0", ["--n-envs", "8", "--n-steps", "64"], 4_096),
    "mujoco": ("ppo", "HalfCheetah-v5", ["--n-envs", "4", "--n-steps", "512"], 16_384),
}
BACKENDS = {
    "local": [],
    "local sync": ["--vectorization", "sync"],
    "ray 1": ["--backend", "ray", "--workers", "1"],
    "ray 2": ["--backend", "ray", "--workers", "2"],
    "ray 4": ["--backend", "ray", "--workers", "4"],
}


def run_one(case: str, backend: str, out: Path, repeat: int) -> dict:
    algo, env_id, options, budget = CASES[case]
    run_dir = out / f"{case}-{backend.replace(' ', '')}-{repeat}"
    command = [sys.executable, "-m", "deeprl", "train", algo, env_id, "--seed", "100", "--run-dir", str(run_dir)]
    command += ["--total-steps", str(budget), "--eval-every", str(budget), "--eval-episodes", "1"]
    command += ["--threshold", "1e9", "--progress", "off", *options, *BACKENDS[backend]]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    report = summary.get("backend", {})
    rounds = max(report.get("rounds", 0), 1)
    return {
        "steps_per_s": summary["steps_per_s"],
        "wall_s": wall,
        "to_workers_per_round": report.get("bytes_to_workers", 0) / rounds,
        "from_workers_per_round": report.get("bytes_from_workers", 0) / rounds,
        "rounds": report.get("rounds", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"of {', '.join(CASES)} (default: all)")
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/deeprl_ray_scaling"))
    args = parser.parse_args()
    args.cases = args.cases or list(CASES)
    if unknown := [c for c in args.cases if c not in CASES]:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; seed 100; median of {args.repeats}")
    print(
        "| env | backend | steps/s (median) | vs first row | process wall s | KB to workers / round | KB back / round |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for case in args.cases:
        results = {}
        for backend in args.backends:
            if case == "mujoco" and backend == "local sync":
                continue  # MuJoCo has no numpy-vectorized env: local is already sync
            runs = []
            for repeat in range(args.repeats):  # interleaved would be fairer under load; each run is seconds
                runs.append(run_one(case, backend, args.out, repeat))
            results[backend] = runs
            speed = statistics.median(r["steps_per_s"] for r in runs)
            first = next(iter(results.values()))  # the first backend measured (local, unless --backends says)
            base = statistics.median(r["steps_per_s"] for r in first)
            wall = statistics.median(r["wall_s"] for r in runs)
            to_kb = statistics.median(r["to_workers_per_round"] for r in runs) / 1e3
            back_kb = statistics.median(r["from_workers_per_round"] for r in runs) / 1e3
            print(
                f"| {CASES[case][1]} | {backend} | {speed:,.0f} | {speed / base:.2f} | {wall:.1f} | "
                f"{to_kb:.1f} | {back_kb:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
