"""Time-to-solve on Pendulum-v1 for DDPG, TD3 and SAC: deeprl's presets against Stable-Baselines3 with
the rl-baselines3-zoo presets, alternating library by library within each seed, in one invocation.

Protocol (docs/benchmarks.md; both libraries alike, implemented once in deeprl.bench): deterministic evaluation
every 1000 env steps on 10 episodes of deeprl.evaluation.Evaluator (the same reset seeds for both), solved at
the first evaluation with mean return >= -200; the clock counts training only (SB3's callback pauses
it during evaluation); every trial in a fresh subprocess; an unsolved seed counts as +inf.

SB3 zoo presets (hyperparams/td3.yml and ddpg.yml, Pendulum-v1): n_timesteps 20000, learning_rate 1e-3,
gamma 0.98, buffer_size 200000, learning_starts 10000, normal noise σ 0.1, train_freq (1, episode),
gradient_steps -1, net_arch [400, 300]; sac.yml: n_timesteps 20000, learning_rate 1e-3 (defaults
otherwise). deeprl: the Pendulum-v1 presets of deeprl/presets.py ([64, 64] networks, 1000 warm-up steps).

Results are appended to --jsonl as they arrive, so a cut-short run still reports what finished.

    .venv/bin/python benchmarks/continuous_pendulum.py --seeds 5
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from deeprl.bench import Trial, machine_line, run_trial, trial_settings

ALGOS = ("ddpg", "td3", "sac")
ENV = "Pendulum-v1"


def median_inf(values: list[float | None]) -> float:
    return statistics.median([math.inf if v is None else v for v in values]) if values else math.nan


def table(results: list[dict]) -> str:
    lines = [
        "| algo | deeprl s to solve | SB3 s to solve | SB3 / deeprl | deeprl steps | SB3 steps | "
        "deeprl solved | SB3 solved |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for algo in ALGOS:
        d = [r for r in results if r["algo"] == algo and r["library"] == "deeprl"]
        s = [r for r in results if r["algo"] == algo and r["library"] == "sb3"]
        if not d and not s:
            continue
        dt, st = median_inf([r.get("solved_at_wall_s") for r in d]), median_inf([r.get("solved_at_wall_s") for r in s])
        ds, ss = (
            median_inf([r.get("solved_at_env_steps") for r in d]),
            median_inf([r.get("solved_at_env_steps") for r in s]),
        )
        ratio = st / dt if d and s and math.isfinite(dt) and dt > 0 else math.nan
        solved = lambda rs: f"{sum(r.get('solved_at_wall_s') is not None for r in rs)}/{len(rs)}"
        lines.append(
            f"| {algo} | {dt:.2f} | {st:.2f} | {ratio:.1f}x | {ds:,.0f} | {ss:,.0f} | {solved(d)} | {solved(s)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--no-sb3", action="store_true", help="deeprl only")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per trial")
    parser.add_argument("--jsonl", type=Path, default=Path("runs/continuous_pendulum.jsonl"))
    args = parser.parse_args()
    args.jsonl.parent.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    started = time.perf_counter()
    for seed in range(args.seeds):
        for algo in args.algos:
            libs = ["deeprl"] + ([] if args.no_sb3 else ["sb3"])
            if seed % 2:
                libs.reverse()  # alternate who goes first, so drift in machine load hits both
            for lib in libs:
                r = run_trial(Trial(lib, algo, ENV, seed, *trial_settings(algo, ENV), args.timeout))
                r.update(library=lib, algo=algo, seed=seed)
                results.append(r)
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps(r) + "\n")
                print(
                    f"[{time.perf_counter() - started:6.0f} s] seed {seed} {lib:6s} {algo}: "
                    f"{r.get('error') or (r['solved_at_wall_s'], r['solved_at_env_steps'], r['final_return'])}",
                    flush=True,
                )
    print(
        f"\nMachine: {machine_line()}\nMedians over {args.seeds} seeds (unsolved = inf); "
        f"total {time.perf_counter() - started:.0f} s\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
