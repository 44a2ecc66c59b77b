#!/usr/bin/env python
"""Many seeds for the price of one? `deeprl train ALGO ENV --seeds A-B --vectorize` (one batched ensemble in one
process, deeprl.ensemble) against one seed alone, and against the same seeds run one process after another
(`--seeds A-B --jobs 1`) and two at a time (`--jobs 2`).

Every command is a fresh process timed from here (like `time CMD`), on a fixed budget with --no-stop-when-solved
(the ensemble's cost does not then depend on when its slowest seed solves): the ratio is the ensemble's wall time
over the median wall time of one seed alone. Each seed writes its own run directory either way; the table also
gives the training seconds (train_wall_s of summary.json: the ensemble's is every seed's).

    python benchmarks/seed_ensembles.py --algo ppo --env CartPole-v1 --seeds 16 --first-seed 100 --total-steps 50000
    python benchmarks/seed_ensembles.py --algo sac --env Pendulum-v1 --seeds 8 --first-seed 100 --total-steps 10000
    python benchmarks/seed_ensembles.py ... --device cuda   # on a GPU machine (the networks there; envs on the CPU)

Prints a markdown table and writes --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "deeprl", *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"deeprl {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def train_seconds(parent: Path) -> float:
    """The longest train_wall_s over a --seeds parent's seeds (for the ensemble: the ensemble's)."""
    return max(json.loads(p.read_text())["train_wall_s"] for p in parent.glob("s*/summary.json"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", default="ppo")
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--total-steps", type=int, default=50_000)
    ap.add_argument("--single", type=int, default=3, help="seeds timed alone (the median is the baseline)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, nargs="*", default=[2], help="also time --seeds with --jobs J (none: skip)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    seeds = f"{args.first_seed}-{args.first_seed + args.seeds - 1}"
    common = [
        "--total-steps", str(args.total_steps), "--no-stop-when-solved", "--progress", "off", "--device", args.device
    ]  # fmt: skip
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        alone = []
        for i in range(args.single):
            run_dir = work / f"alone{i}"
            wall = timed(["train", args.algo, args.env, "--seed", str(args.first_seed + i), "--run-dir", str(run_dir),
                          *common], work)  # fmt: skip
            alone.append((wall, json.loads((run_dir / "summary.json").read_text())["train_wall_s"]))
        rows["1 seed alone (median)"] = {
            "wall_s": statistics.median(w for w, _ in alone),
            "train_s": statistics.median(t for _, t in alone),
        }
        parent = work / "vectorized"
        wall = timed(["train", args.algo, args.env, "--seeds", seeds, "--vectorize", "--run-dir", str(parent),
                      *common], work)  # fmt: skip
        rows[f"{args.seeds} seeds --vectorize"] = {"wall_s": wall, "train_s": train_seconds(parent)}
        for jobs in args.jobs:
            parent = work / f"jobs{jobs}"
            wall = timed(["train", args.algo, args.env, "--seeds", seeds, "--jobs", str(jobs), "--run-dir",
                          str(parent), *common], work)  # fmt: skip
            rows[f"{args.seeds} seeds --jobs {jobs}"] = {"wall_s": wall, "train_s": float("nan")}
    base = rows["1 seed alone (median)"]["wall_s"]
    print(f"\n{args.algo} {args.env}, {args.total_steps:,} env steps per seed, seeds {seeds}, device {args.device}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| command | wall s | x one seed | training s |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['wall_s']:.2f} | {row['wall_s'] / base:.2f} | {row['train_s']:.2f} |")
    if args.out is not None:
        record = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
