"""--compile against eager (issue 18, target 5): training steps/s and the cost of a gradient step, per algorithm, with
the compilation's own time apart, and optionally Stable-Baselines3 on the same budget.

    .venv/bin/python benchmarks/compile_speed.py --out compile_cpu.json                  # the CPU rows, below
    python3 benchmarks/compile_speed.py --device cuda --rows sac:HalfCheetah-v5 td3:HalfCheetah-v5 ppo:ALE/Pong-v5 \\
        --sb3 --out compile_gpu.json                                                      # a GPU (benchmarks/gpu_compile.sh)

Each row builds two agents of deeprl's preset for the env (same seed, as `deeprl train ALGO ENV` makes them; the torch
threads as the driver sets them), fills the replay buffers (off-policy) with the preset's uniform warm-up steps, then
compiles one (`algo.compile()`, deeprl.compiling) and trains both a warm-up budget: the compiled agent's extra wall
time there is the compilation's ("compile s"), from an empty inductor cache (a fresh TORCHINDUCTOR_CACHE_DIR, as on
a first run; --warm-cache keeps the user's, where a second run finds its kernels). Then `--repeats` rounds, alternating which goes first, each trains both
`--steps` env steps (`--ppo-steps` for PPO); the table has the medians: env steps/s of training (acting and updating),
ms per gradient step (the time inside train()/update() over the gradient steps taken), and the ratio compiled/eager.
Graphs compiled during the timed rounds (a recompilation) are counted: the row says so if any were. A check after the
rounds gives the compiled agent the eager one's state and compares one round of updates (off-policy) or one
minibatch's loss (PPO): "max |diff|". With --sb3 (and stable_baselines3 importable), SB3's algorithm with the same
network sizes, batch and update schedule trains the same budget on the same env (deeprl's env recipe) and device.
A failure in a row is recorded in it (and, with --fallback-mode, the compiled agent is tried again in that mode);
`--deadline-s` stops starting new measurements after that many seconds, and the files are rewritten after every row.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeprl.bench import learning_env, machine_line, trial_recipe
from deeprl.driver import set_torch_threads
from deeprl.seeding import seed_everything

CPU_ROWS = ("sac:Pendulum-v1", "td3:Pendulum-v1", "ddpg:Pendulum-v1", "ppo:CartPole-v1")
GPU_ROWS = ("sac:HalfCheetah-v5", "td3:HalfCheetah-v5", "ppo:ALE/Pong-v5")
OFF_POLICY = ("sac", "td3", "ddpg")
START = time.perf_counter()


class Timed:
    """An agent with its update timed: seconds inside train() (off-policy) or update() (PPO), and gradient steps."""

    def __init__(self, algo: str, agent: Any):
        self.agent, self.update_s, self.grad_steps = agent, 0.0, 0
        name = "update" if algo == "ppo" else "train"
        inner = getattr(agent, name)

        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            out = inner(*args)  # both end in a host sync (the losses' .tolist()): the GPU's work is inside
            self.update_s += time.perf_counter() - start
            if algo != "ppo":
                self.grad_steps += args[0]
            return out

        setattr(agent, name, timed)
        if algo == "ppo":  # one call per gradient step
            step = agent.clip_and_step

            def counted(loss: torch.Tensor) -> None:
                self.grad_steps += 1
                step(loss)

            agent.clip_and_step = counted

    def learn(self, steps: int) -> dict[str, float]:
        """Train `steps` env steps; (wall s, env steps/s, ms per gradient step) of this call."""
        update_s, grad_steps = self.update_s, self.grad_steps
        start = time.perf_counter()
        self.agent.learn(steps)
        wall = time.perf_counter() - start
        n = self.grad_steps - grad_steps
        return {
            "wall_s": wall,
            "steps_per_s": steps / wall,
            "update_ms": 1e3 * (self.update_s - update_s) / n if n else math.nan,
        }


def build(algo: str, env_id: str, device: str, overrides: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(agent, config, env) of deeprl's preset, made as the driver makes them."""
    spec, config, opts, maker = trial_recipe(algo, env_id, seed=0)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    env = learning_env(spec, opts, maker)
    seed_everything(opts.seed)
    set_torch_threads(opts.torch_threads, env)
    return spec.load()(config, env, seed=opts.seed, device=device), config, env


def graphs() -> int:
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def check(algo: str, eager: Any, compiled: Any) -> float:
    """max |difference| between the compiled and the eager computation from one state (see the module's docstring)."""
    compiled.load_state_dict(copy.deepcopy(eager.state_dict()))  # a copy: optimizers load their state by reference
    if algo in OFF_POLICY:  # the same buffer, RNG streams and weights: one round of updates each
        eager.train(4)
        compiled.train(4)
        pairs = [(getattr(eager, n).state_dict(), getattr(compiled, n).state_dict()) for n in ("actor", "critic")]
        return max(float((a[k].float() - b[k].float()).abs().max()) for a, b in pairs for k in a)
    r, m = eager.rollout, 256
    rows = [x.flatten(0, 1)[:m] for x in (r.obs, r.actions, r.log_probs, r.values)]
    advantages = torch.linspace(-1.0, 1.0, len(rows[0]), device=r.values.device)
    args = (*rows, advantages, rows[3] + 0.5, 0.1, True)
    eager_out = type(compiled).minibatch_loss(compiled, *args)  # the class's eager method, the compiled agent's weights
    compiled_out = compiled.minibatch_loss(*args)
    pairs = zip((eager_out[0], *eager_out[1]), (compiled_out[0], *compiled_out[1]))
    return max(float((a - b).detach().abs().max()) for a, b in pairs)


def measure_row(algo: str, env_id: str, args: argparse.Namespace, mode: str | None) -> dict[str, Any]:
    overrides = {"learning_starts": args.learning_starts} if algo in OFF_POLICY and args.learning_starts else {}
    eager, config, env = build(algo, env_id, args.device, overrides)
    compiled, _, _ = build(algo, env_id, args.device, overrides)
    e, c = Timed(algo, eager), Timed(algo, compiled)
    if algo in OFF_POLICY:  # uniform warm-up actions, no updates: not part of either clock
        eager.learn(config.learning_starts)
        compiled.learn(config.learning_starts)
    compiled.compile(mode=mode)
    warm = args.warmup if algo in OFF_POLICY else args.ppo_warmup
    compile_wall = c.learn(warm)["wall_s"]
    eager_wall = e.learn(warm)["wall_s"]
    before = graphs()
    rounds: dict[str, list[dict[str, float]]] = {"eager": [], "compiled": []}
    steps = args.steps if algo in OFF_POLICY else args.ppo_steps
    for r in range(args.repeats):
        order = (("eager", e), ("compiled", c)) if r % 2 == 0 else (("compiled", c), ("eager", e))
        for name, timed in order:
            rounds[name].append(timed.learn(steps))
    recompiled = graphs() - before
    row: dict[str, Any] = {
        "compile_s": round(compile_wall - eager_wall, 2),
        "graphs_compiled_while_timed": recompiled,
        "rounds": rounds,
    }
    for name, values in rounds.items():
        row[name] = {key: statistics.median(v[key] for v in values) for key in ("steps_per_s", "update_ms")}
    row["speedup"] = row["compiled"]["steps_per_s"] / row["eager"]["steps_per_s"]
    row["update_speedup"] = row["eager"]["update_ms"] / row["compiled"]["update_ms"]
    try:
        row["max_abs_diff"] = check(algo, eager, compiled)
    except Exception as err:  # the check is a report, not the measurement
        row["max_abs_diff"] = f"check failed: {err!r}"[:300]
    env.close()
    return row


def sb3_rate(algo: str, env_id: str, args: argparse.Namespace) -> dict[str, Any]:
    """SB3's env steps/s on the same budget, env recipe, network sizes, batch and update schedule."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    spec, config, opts, maker = trial_recipe(algo, env_id, seed=0)
    maker = dataclasses.replace(maker, action_mask=False)  # SB3's policies take no action masks
    venv = make_vec_env(maker, n_envs=opts.n_envs, seed=0)
    set_torch_threads(opts.torch_threads, venv)
    if algo == "ppo":
        image = len(venv.observation_space.shape) == 3
        hp = dict(
            n_steps=config.n_steps,
            batch_size=config.minibatch_size,
            n_epochs=config.n_epochs,
            learning_rate=config.learning_rate,
            clip_range=config.clip_eps,
            ent_coef=config.entropy_coef,
            vf_coef=config.value_coef,
            max_grad_norm=config.max_grad_norm or 1e9,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
        )
        if not image:
            hp["policy_kwargs"] = dict(net_arch=list(config.hidden))
        model = sb3.PPO("CnnPolicy" if image else "MlpPolicy", venv, device=args.device, seed=0, **hp)
        warm, steps = args.ppo_warmup, args.ppo_steps
    else:
        learning_starts = args.learning_starts or config.learning_starts
        hp = dict(
            learning_rate=config.critic_lr,
            buffer_size=config.buffer_size,
            learning_starts=learning_starts,
            batch_size=config.batch_size,
            tau=config.tau,
            gamma=config.gamma,
            train_freq=config.train_freq,
            gradient_steps=config.gradient_steps,
            policy_kwargs=dict(net_arch=list(config.hidden)),
        )
        if algo != "sac":
            n_act = venv.action_space.shape[0]
            hp["action_noise"] = NormalActionNoise(np.zeros(n_act), config.noise_sigma * np.ones(n_act))
        model = getattr(sb3, algo.upper())("MlpPolicy", venv, device=args.device, seed=0, **hp)
        warm, steps = learning_starts + args.warmup, args.steps
    model.learn(warm)
    rates = []
    for _ in range(args.repeats):
        done, start = model.num_timesteps, time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        rates.append((model.num_timesteps - done) / (time.perf_counter() - start))
    venv.close()
    return {"steps_per_s": statistics.median(rates), "rounds": rates}


def late(args: argparse.Namespace) -> bool:
    return args.deadline_s is not None and time.perf_counter() - START > args.deadline_s


def run_row(algo: str, env_id: str, args: argparse.Namespace) -> dict[str, Any]:
    mode = None if args.mode == "default" else args.mode
    row: dict[str, Any] = {"algo": algo, "env_id": env_id, "device": args.device, "mode": args.mode}
    tries = [mode] + ([None if args.fallback_mode == "default" else args.fallback_mode] if args.fallback_mode else [])
    for i, try_mode in enumerate(tries):
        if late(args):
            row["error"] = "skipped: past --deadline-s"
            return row
        try:
            row.update(measure_row(algo, env_id, args, try_mode), mode=args.mode if i == 0 else args.fallback_mode)
            row.pop("error", None)
            break
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}"[:2000]
            traceback.print_exc()
    if args.sb3 and not late(args):
        try:
            row["sb3"] = sb3_rate(algo, env_id, args)
        except ImportError:
            row["sb3"] = None
        except Exception as err:
            row["sb3"] = {"error": f"{type(err).__name__}: {err}"[:1000]}
            traceback.print_exc()
    return row


def fmt(x: Any, digits: int = 0) -> str:
    return "—" if not isinstance(x, (int, float)) or math.isnan(x) else f"{x:,.{digits}f}"


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| algo | env | device | eager steps/s | compiled steps/s | ratio | eager ms/update | compiled ms/update "
        "| update ratio | compile s | SB3 steps/s | max abs diff |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "eager" not in row:
            lines.append(f"| {row['algo']} | {row['env_id']} | {row['device']} | {row.get('error', '?')} |||||||||")
            continue
        sb3 = row.get("sb3")
        sb3_rate_ = fmt(sb3.get("steps_per_s")) if isinstance(sb3, dict) and "steps_per_s" in sb3 else "—"
        diff = row.get("max_abs_diff")
        note = " (recompiled while timed)" if row.get("graphs_compiled_while_timed") else ""
        lines.append(
            f"| {row['algo']} | {row['env_id']} | {row['device']} ({row['mode']}) | {fmt(row['eager']['steps_per_s'])} "
            f"| {fmt(row['compiled']['steps_per_s'])}{note} | {fmt(row['speedup'], 2)} "
            f"| {fmt(row['eager']['update_ms'], 2)} | {fmt(row['compiled']['update_ms'], 2)} "
            f"| {fmt(row['update_speedup'], 2)} | {fmt(row['compile_s'], 1)} | {sb3_rate_} "
            f"| {diff if isinstance(diff, str) else f'{diff:.1e}'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        nargs="+",
        default=None,
        help=f"ALGO:ENV_ID ... (default: {' '.join(CPU_ROWS)}; with --device cuda {' '.join(GPU_ROWS)})",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--mode", default="auto", help="torch.compile mode: auto (CUDA graphs on a GPU), default, ...")
    parser.add_argument("--fallback-mode", default=None, help="if compiling in --mode fails, try this mode")
    parser.add_argument("--steps", type=int, default=2000, help="timed env steps per round, off-policy rows")
    parser.add_argument("--ppo-steps", type=int, default=8192, help="timed env steps per round, PPO rows")
    parser.add_argument("--warmup", type=int, default=400, help="env steps after learning_starts before timing")
    parser.add_argument("--ppo-warmup", type=int, default=4096, help="PPO's warm-up env steps (3+ batches)")
    parser.add_argument("--learning-starts", type=int, default=None, help="off-policy warm-up (default: preset's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sb3", action="store_true", help="also time Stable-Baselines3 (if installed)")
    parser.add_argument("--warm-cache", action="store_true", help="keep inductor's cache (default: an empty one)")
    parser.add_argument("--deadline-s", type=float, default=None, help="start no measurement after this many s")
    parser.add_argument("--out", type=Path, default=None, help="JSON file of every round (and PATH.md: the table)")
    args = parser.parse_args()
    if not args.warm_cache:  # read when inductor first compiles: set before any row
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache = tempfile.mkdtemp(prefix="deeprl-compile-speed-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    rows = args.rows or list(GPU_ROWS if args.device == "cuda" else CPU_ROWS)
    machine = machine_line()
    if args.device == "cuda":
        machine += f", GPU {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    header = (
        f"{machine}; {time.strftime('%Y-%m-%d')}; medians of {args.repeats} rounds; `{' '.join(['python', *sys.argv])}`"
    )
    results = []
    for item in rows:
        algo, env_id = item.split(":", 1)
        print(f"[{time.perf_counter() - START:6.1f} s] {algo} {env_id} ...", file=sys.stderr, flush=True)
        results.append(run_row(algo, env_id, args))
        table = markdown(results, header)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"machine": machine, "argv": sys.argv, "rows": results}, indent=1))
            args.out.with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
