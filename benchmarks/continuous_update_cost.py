"""Cost of one gradient step on Pendulum-v1: deeprl's DDPG/TD3/SAC presets against Stable-Baselines3 with
the rl-baselines3-zoo presets (SB3_ZOO in deeprl.bench), alternating in one process, so load on a shared
machine hits both alike. Both buffers hold the same 2000 random transitions' worth of data first.

This is the per-update half of time-to-solve (the other half is how many steps each needs); it is
what a loaded machine can still measure fairly when full time-to-solve runs do not fit.

    .venv/bin/python benchmarks/continuous_update_cost.py --updates 100 --rounds 3 [--threads 1]

--threads sets torch.set_num_threads for both libraries (default: torch's own, the core count); run it
with and without to see what intra-op threads do to small updates (deeprl's runs default to 1).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from deeprl.bench import SB3_ALGOS, SB3_ZOO, machine_line
from deeprl.driver import build_config
from deeprl.envs import make_vec_env

ENV = "Pendulum-v1"


def deeprl_model(algo: str):
    spec, cfg, _ = build_config(algo, ENV, learning_starts=2000)
    model = spec.load()(cfg, make_vec_env(ENV, 1), seed=0, device="cpu")
    model.learn(2000)
    return lambda n: model.train(n)


def sb3_model(algo: str):
    import stable_baselines3 as sb3
    from stable_baselines3.common.noise import NormalActionNoise

    hp = dict(SB3_ZOO[(algo, ENV)])
    for key in ("n_timesteps", "normalize", "n_envs"):
        hp.pop(key, None)
    if hp.pop("noise_type", None) == "normal":
        hp["action_noise"] = NormalActionNoise(np.zeros(1), hp.pop("noise_std") * np.ones(1))
    hp["learning_starts"] = 2000
    model = getattr(sb3, SB3_ALGOS[algo])("MlpPolicy", ENV, seed=0, device="cpu", verbose=0, **hp)
    model.learn(2000)
    return lambda n: model.train(gradient_steps=n, batch_size=model.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--algos", nargs="+", default=["ddpg", "td3", "sac"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"Machine: {machine_line()}; torch threads {torch.get_num_threads()}\n")
    print("| algo | deeprl ms/update | SB3 ms/update | SB3 / deeprl |\n|---|---|---|---|")
    for algo in args.algos:
        runners = {"deeprl": deeprl_model(algo), "sb3": sb3_model(algo)}
        times: dict[str, list[float]] = {"deeprl": [], "sb3": []}
        for r in range(args.rounds):
            for lib in ["deeprl", "sb3"] if r % 2 == 0 else ["sb3", "deeprl"]:
                start = time.perf_counter()
                runners[lib](args.updates)
                times[lib].append((time.perf_counter() - start) / args.updates * 1e3)
        d, s = statistics.median(times["deeprl"]), statistics.median(times["sb3"])
        print(f"| {algo} | {d:.2f} | {s:.2f} | {s / d:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
