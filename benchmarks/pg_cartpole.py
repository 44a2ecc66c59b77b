#!/usr/bin/env python
"""Time-to-solve CartPole-v1 for PPO, A2C and REINFORCE against Stable-Baselines3 (the protocol of docs/benchmarks.md).

Per seed, deeprl and SB3 run back to back in this process (alternating, so load on a shared machine
hits both alike). Both are evaluated the same way: every K env steps, the deterministic policy
plays 10 episodes (deeprl's Evaluator, the same reset seeds); the run counts as solved at the first
evaluation whose mean reaches 475, and training time excludes evaluation (SB3's clock is paused in
the callback). SB3 uses the rl-baselines3-zoo presets (hyperparams/ppo.yml and a2c.yml, CartPole-v1):
  ppo: 8 envs, n_steps 32, batch 256, 20 epochs, γ 0.98, λ 0.8, lr lin 1e-3, clip lin 0.2, ent 0
  a2c: 8 envs, SB3 defaults otherwise (n_steps 5, RMSprop lr 7e-4), ent 0
SB3 has no REINFORCE; deeprl's is reported alone.

    python benchmarks/pg_cartpole.py --seeds 5 --algos ppo a2c reinforce
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import deeprl
from deeprl.evaluation import EVAL_SEED_OFFSET, Evaluator

THRESHOLD = 475.0
BUDGET = {"ppo": 100_000, "a2c": 500_000, "reinforce": 300_000}
EVAL_EVERY = {"ppo": 5_000, "a2c": 10_000, "reinforce": 10_000}


def run_deeprl(algo: str, seed: int, tmp: Path) -> tuple[int | None, float | None]:
    s = deeprl.train(
        algo,
        "CartPole-v1",
        seed=seed,
        total_steps=BUDGET[algo],
        eval_every=EVAL_EVERY[algo],
        stop_when_solved=True,
        run_dir=tmp / f"{algo}-{seed}",
        progress="off",
    ).summary
    return s["solved_at_env_steps"], s["solved_at_wall_s"]


def run_sb3(algo: str, seed: int) -> tuple[int | None, float | None]:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    if algo == "ppo":
        lin = lambda start: lambda progress: progress * start  # noqa: E731 - SB3's lin_ schedule
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
    else:
        model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu")
    evaluator = Evaluator("CartPole-v1", 10, seed + EVAL_SEED_OFFSET)
    every = EVAL_EVERY[algo]

    class PausedEval(BaseCallback):
        def _on_training_start(self) -> None:
            self.start, self.eval_time, self.next_eval, self.solved = time.perf_counter(), 0.0, every, None

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            paused = time.perf_counter()
            mean = float(evaluator(lambda obs: model.predict(obs, deterministic=True)[0]).mean())
            self.eval_time += time.perf_counter() - paused
            self.next_eval += every
            if mean >= THRESHOLD:
                # training seconds up to this evaluation: everything since the start but the evaluations
                self.solved = (self.num_timesteps, time.perf_counter() - self.start - self.eval_time)
                return False
            return True

    callback = PausedEval()
    model.learn(BUDGET[algo], callback=callback)
    evaluator.close()
    return callback.solved if callback.solved else (None, None)


def median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--algos", nargs="+", default=["ppo", "a2c", "reinforce"])
    parser.add_argument("--no-sb3", action="store_true", help="deeprl only")
    args = parser.parse_args()
    torch.set_num_threads(1)  # both libraries: small MLPs on a few shared cores
    results: dict[tuple[str, str], list[tuple[int | None, float | None]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            for seed in range(args.seeds):
                results.setdefault((algo, "deeprl"), []).append(run_deeprl(algo, seed, Path(tmp)))
                print(f"{algo} seed {seed} deeprl: {results[(algo, 'deeprl')][-1]}", flush=True)
                if algo != "reinforce" and not args.no_sb3:
                    results.setdefault((algo, "sb3"), []).append(run_sb3(algo, seed))
                    print(f"{algo} seed {seed} sb3:    {results[(algo, 'sb3')][-1]}", flush=True)
    print(
        f"\nCartPole-v1, threshold {THRESHOLD}, {args.seeds} seeds; machine: {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}\n"
    )
    print("| algo | library | solved | median steps to solve | median train s to solve | time ratio deeprl/SB3 |")
    print("|---|---|---|---|---|---|")
    for (algo, lib), rows in results.items():
        steps, secs = median([r[0] for r in rows]), median([r[1] for r in rows])
        ratio = ""
        if lib == "deeprl" and (algo, "sb3") in results:
            sb3 = median([r[1] for r in results[(algo, "sb3")]])
            ratio = f"{secs / sb3:.2f}" if secs and sb3 else "n/a"
        solved = sum(r[0] is not None for r in rows)
        fmt = lambda x, f: "—" if x is None else f.format(x)  # noqa: E731
        print(f"| {algo} | {lib} | {solved}/{len(rows)} | {fmt(steps, '{:,.0f}')} | {fmt(secs, '{:.2f}')} | {ratio} |")


if __name__ == "__main__":
    main()
