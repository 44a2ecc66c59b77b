"""Time-to-solve on CartPole-v1: deeprl's DQN (default preset) against Stable-Baselines3's DQN with the
rl-baselines3-zoo preset, same evaluation protocol, alternating per seed in one invocation.

Protocol (both libraries): a deterministic evaluation every --eval-every env steps, 10 episodes on
deeprl.evaluation.Evaluator (the same env seeds for both), solved at the first evaluation with mean >= 475;
the clock counts training only (evaluation time is excluded: deeprl's driver keeps a training
clock, SB3's callback pauses it). Each trial runs in a fresh subprocess with torch on 1 thread for
both libraries (the small-network setting deeprl's preset uses; measured faster for SB3 too).

SB3 zoo preset (hyperparams/dqn.yml, CartPole-v1): n_timesteps 5e4, MlpPolicy net_arch [256, 256],
learning_rate 2.3e-3, batch_size 64, buffer_size 100000, learning_starts 1000, gamma 0.99,
target_update_interval 10, train_freq 256, gradient_steps 128, exploration_fraction 0.16,
exploration_final_eps 0.04. A run that does not solve within its budget counts as unsolved
(infinite time) in the medians.

    .venv/bin/python benchmarks/dqn_cartpole.py --seeds 5
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time

THRESHOLD = 475.0
ZOO = {
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "gamma": 0.99,
    "target_update_interval": 10,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04,
    "policy_kwargs": {"net_arch": [256, 256]},
}


def run_deeprl(seed: int, eval_every: int) -> dict:
    import deeprl

    with tempfile.TemporaryDirectory() as d:
        r = deeprl.train(
            "dqn",
            "CartPole-v1",
            seed=seed,
            run_dir=f"{d}/run",
            stop_when_solved=True,
            eval_every=eval_every,
            eval_episodes=10,
            threshold=THRESHOLD,
            progress="off",
        )
    s = r.summary
    return {
        "solved_steps": s["solved_at_env_steps"],
        "solved_s": s["solved_at_wall_s"],
        "steps": s["env_steps"],
        "train_s": s["train_wall_s"],
    }


def run_sb3(seed: int, eval_every: int) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    from deeprl.evaluation import EVAL_SEED_OFFSET, Evaluator

    torch.set_num_threads(1)
    evaluator = Evaluator("CartPole-v1", 10, seed + EVAL_SEED_OFFSET)

    class SolveClock(BaseCallback):
        """Evaluates every eval_every steps with the clock paused; stops at the first solve."""

        def __init__(self):
            super().__init__()
            self.train_s, self.solved_steps, self.solved_s = 0.0, None, None
            self.last = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every:
                return True
            self.train_s += time.perf_counter() - self.last
            returns = evaluator(lambda obs: self.model.predict(obs, deterministic=True)[0])
            self.last = time.perf_counter()
            if returns.mean() >= THRESHOLD:
                self.solved_steps, self.solved_s = self.num_timesteps, self.train_s
                return False
            return True

    clock = SolveClock()
    model = DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, verbose=0, device="cpu", **ZOO)
    clock.last = time.perf_counter()
    model.learn(total_timesteps=50_000, callback=clock)
    if clock.solved_steps is None:
        clock.train_s += time.perf_counter() - clock.last
    return {
        "solved_steps": clock.solved_steps,
        "solved_s": clock.solved_s,
        "steps": model.num_timesteps,
        "train_s": round(clock.train_s, 4),
    }


def median(xs: list[float | None]) -> float:
    return statistics.median([math.inf if x is None else x for x in xs])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--eval-every", type=int, default=2500)
    p.add_argument("--one", choices=["deeprl", "sb3"], help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps((run_deeprl if args.one == "deeprl" else run_sb3)(args.seed, args.eval_every)))
        return
    results: dict[str, list[dict]] = {"deeprl": [], "sb3": []}
    for seed in range(args.seeds):
        for lib in ("deeprl", "sb3"):  # alternating, so load on the machine hits both alike
            out = subprocess.run(
                [sys.executable, __file__, "--one", lib, "--seed", str(seed), "--eval-every", str(args.eval_every)],
                capture_output=True,
                text=True,
                check=True,
            )
            results[lib].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(lib, seed, results[lib][-1], file=sys.stderr, flush=True)
    print(
        f"| library | solved (of {args.seeds}) | median env steps to solve | median training s to solve | per seed (s) |"
    )
    print("|---|---|---|---|---|")
    for lib, name in (("deeprl", "deeprl dqn (CartPole-v1 preset)"), ("sb3", "SB3 2.x DQN (zoo preset)")):
        rs = results[lib]
        solved = sum(r["solved_steps"] is not None for r in rs)
        per_seed = ", ".join("—" if r["solved_s"] is None else f"{r['solved_s']:.1f}" for r in rs)
        print(
            f"| {name} | {solved} | {median([r['solved_steps'] for r in rs]):,.0f} | "
            f"{median([r['solved_s'] for r in rs]):.1f} | {per_seed} |"
        )
    ratio = median([r["solved_s"] for r in results["deeprl"]]) / median([r["solved_s"] for r in results["sb3"]])
    print(f"\ntime-to-solve ratio deeprl / SB3 (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
