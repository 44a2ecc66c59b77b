#!/usr/bin/env python
"""Real workloads under a wall-clock budget: each run is `deeprl train ALGO ENV` with its preset, all
runs of a suite at once (one process each, one torch thread each), stopped by SIGINT at the deadline
(deeprl then finishes its chunk, saves and exits). Reported per run, from its metrics.csv: the env
steps and training seconds (evaluation excluded) at the last and at the best periodic evaluation, and
the score there (mean and std over the preset's evaluation episodes).

    .venv/bin/python benchmarks/workloads.py minatar --wall 420 --out /tmp/wl
    python3 benchmarks/workloads.py atari minatar lunar --wall 450 --out $OUT/wl   # the GPU machine

Suites: atari (PPO and DQN on ALE/Pong-v5 and ALE/Breakout-v5, device auto: the GPU where there is
one), minatar (DQN and PPO on the five MinAtar games), lunar (DQN and PPO on LunarLander-v3). The
seed (default 100) is one no preset was tuned on. The published scores these are set against are in
docs/benchmarks.md; their budgets are far larger, so the table says where each run stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MINATAR = ["Breakout", "SpaceInvaders", "Asterix", "Freeway", "Seaquest"]
SUITES: dict[str, list[tuple[str, str, list[str]]]] = {
    "atari": [("ppo", "ALE/Pong-v5", []), ("ppo", "ALE/Breakout-v5", []), ("dqn", "ALE/Pong-v5", [])],
    # CPU-sized work stays on the CPU even where a GPU is (a one-conv network is all launch latency there)
    "minatar": [(algo, f"MinAtar/{game}-v1", ["--device", "cpu"]) for algo in ("dqn", "ppo") for game in MINATAR],
    "lunar": [("dqn", "LunarLander-v3", ["--device", "cpu"]), ("ppo", "LunarLander-v3", ["--device", "cpu"])],
}


def run_suite(jobs: list[tuple[str, str, list[str]]], out: Path, wall: float, seed: int) -> list[dict]:
    procs = []
    for algo, env_id, extra in jobs:
        run_dir = out / f"{algo}-{env_id.replace('/', '-')}-s{seed}"
        cmd = [sys.executable, "-m", "deeprl", "train", algo, env_id, "--seed", str(seed), "--run-dir", str(run_dir)]
        cmd += ["--progress", "off", "--torch-threads", "1", *extra]
        log = open(out / f"{run_dir.name}.log", "w")  # noqa: SIM115 - closed below
        procs.append((algo, env_id, run_dir, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + wall
    while time.monotonic() < deadline and any(p.poll() is None for *_, p, _ in procs):
        time.sleep(1.0)
    for *_, p, _ in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # deeprl saves and exits after the chunk in progress
    rows = []
    for algo, env_id, run_dir, p, log in procs:
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()
        rows.append({"algo": algo, "env_id": env_id, "exit": p.returncode, **summarize(run_dir)})
    return rows


def summarize(run_dir: Path) -> dict:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {"evals": 0}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    evals = [r for r in rows if r["kind"] == "eval"]
    train = [r for r in rows if r["kind"] == "train"]
    result: dict = {"evals": len(evals), "episodes": len(train)}
    if train:
        last = train[-1]
        result["train_env_steps"] = int(last["env_steps"])
        result["train_wall_s"] = round(float(last["wall_time_s"]), 1)
        recent = [float(r["episode_return"]) for r in train[-20:]]
        result["train_recent_mean"] = round(sum(recent) / len(recent), 2)  # the last 20 training episodes
    if evals:
        last = evals[-1]
        best = max(evals, key=lambda r: float(r["episode_return"]))
        for name, row in (("last", last), ("best", best)):
            result[f"{name}_env_steps"] = int(row["env_steps"])
            result[f"{name}_wall_s"] = round(float(row["wall_time_s"]), 1)
            result[f"{name}_mean"] = round(float(row["episode_return"]), 2)
            result[f"{name}_std"] = round(float(row["eval_std_return"]), 2)
    return result


def table(rows: list[dict]) -> str:
    lines = [
        "| algo | env | env steps (train s) at last eval | last eval | best eval (at env steps) | "
        "last 20 training episodes | steps/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if not r.get("evals"):
            lines.append(f"| {r['algo']} | {r['env_id']} | no evaluation (exit {r['exit']}) | | | | |")
            continue
        speed = r["train_env_steps"] / max(r["train_wall_s"], 1e-9) if r.get("train_wall_s") else float("nan")
        lines.append(
            f"| {r['algo']} | {r['env_id']} | {r['last_env_steps']:,} ({r['last_wall_s']:.0f} s) | "
            f"{r['last_mean']:.2f} ± {r['last_std']:.2f} | {r['best_mean']:.2f} ({r['best_env_steps']:,}) | "
            f"{r['train_recent_mean']:.2f} | {speed:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="+", choices=sorted(SUITES))
    parser.add_argument("--wall", type=float, default=420.0, help="seconds every run of the suites gets")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [job for suite in args.suites for job in SUITES[suite]]
    print(f"{len(jobs)} runs at once for {args.wall:.0f} s on {os.cpu_count()} cores", flush=True)
    rows = run_suite(jobs, args.out, args.wall, args.seed)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
