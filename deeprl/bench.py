"""`deeprl bench`: the benchmark protocol (docs/benchmarks.md, "Protocol"), for deeprl and, with `--vs sb3`,
for Stable-Baselines3 with its rl-baselines3-zoo presets, or with `--vs rltools`, for RLtools (C++) with its shipped
defaults on its SAC and TD3 rows, in the same invocation.

Protocol (both libraries alike):
- time-to-solve = training wall-clock seconds (evaluation excluded) until the first periodic
  evaluation whose mean return reaches the threshold; also the env steps at that evaluation;
- an evaluation is the deterministic policy on 10 episodes from the same reset seeds
  (deeprl's own `Evaluator`, used for SB3 too, so both are scored on identical starting states),
  every `eval_every` env steps of the deeprl preset;
- every env of a row, both libraries' training envs, their evaluators and the throughput trial's, is made
  from the recipe of deeprl's preset for the row (`deeprl.envs.env_maker`: its env_kwargs, wrappers and
  time limit), as `deeprl train` makes it, so a preset's wrapper or env kwargs apply to every number;
- medians over seeds, an unsolved seed counting as +inf (so a median is finite only when at
  least half the seeds solved); the two libraries alternate seed by seed, so drift in machine load
  hits both; every trial runs in a fresh subprocess.

Stable-Baselines3 is an optional benchmark dependency (`pip install -e '.[bench]'` from a clone, or `pip install stable-baselines3`), never a
runtime one: it is imported only inside the subprocess of an SB3 trial. RLtools likewise (`pip install rltools`; it
compiles its C++ interface with the system's g++ or clang++ on first use, and links OpenBLAS where `-lblas` links,
e.g. after `apt-get install libopenblas-dev`), imported only inside the subprocess of an RLtools trial.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deeprl.errors import UsageError

# (algo, env id) rows. The default set is what `deeprl bench` runs; --long adds the slow ones.
DEFAULT_ROWS: list[tuple[str, str]] = [
    ("q-learning", "FrozenLake-v1"),
    ("q-learning", "CliffWalking-v1"),
    ("dqn", "CartPole-v1"),
    ("ppo", "CartPole-v1"),
    ("a2c", "CartPole-v1"),
    ("reinforce", "CartPole-v1"),
    ("ddpg", "Pendulum-v1"),
    ("td3", "Pendulum-v1"),
    ("sac", "Pendulum-v1"),
]
LONG_ROWS: list[tuple[str, str]] = [("dqn", "LunarLander-v3"), ("ppo", "LunarLander-v3"), ("ppo", "HalfCheetah-v5")]

# Envs registered without a reward_threshold get one here: CliffWalking's optimal path along the
# cliff edge takes 13 steps of -1 (Sutton & Barto, Example 6.6).
ROW_THRESHOLDS: dict[str, float] = {"CliffWalking-v1": -13.0}

# Stable-Baselines3 hyperparameters from rl-baselines3-zoo's hyperparams/*.yml (dqn.yml, ppo.yml,
# a2c.yml, ddpg.yml, td3.yml, sac.yml). "lin_X" is the zoo's linear schedule from X to 0. The zoo
# keys LunarLander under -v2 (v3 has the same dynamics in Gymnasium 1.x); Pendulum-v0 rows of older
# files are the Pendulum-v1 values.
_OFF_POLICY_PENDULUM = dict(
    n_timesteps=20_000,
    gamma=0.98,
    buffer_size=200_000,
    learning_starts=10_000,
    noise_type="normal",
    noise_std=0.1,
    gradient_steps=-1,
    train_freq=(1, "episode"),
    learning_rate=1e-3,
    policy_kwargs=dict(net_arch=[400, 300]),
)
SB3_ZOO: dict[tuple[str, str], dict[str, Any]] = {
    ("dqn", "CartPole-v1"): dict(
        n_timesteps=50_000,
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1000,
        gamma=0.99,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        exploration_fraction=0.16,
        exploration_final_eps=0.04,
        policy_kwargs=dict(net_arch=[256, 256]),
    ),
    ("dqn", "LunarLander-v3"): dict(
        n_timesteps=100_000,
        learning_rate=6.3e-4,
        batch_size=128,
        buffer_size=50_000,
        learning_starts=0,
        gamma=0.99,
        target_update_interval=250,
        train_freq=4,
        gradient_steps=-1,
        exploration_fraction=0.12,
        exploration_final_eps=0.1,
        policy_kwargs=dict(net_arch=[256, 256]),
    ),
    ("ppo", "CartPole-v1"): dict(
        n_envs=8,
        n_timesteps=100_000,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate="lin_0.001",
        clip_range="lin_0.2",
    ),
    ("ppo", "LunarLander-v3"): dict(
        n_envs=16,
        n_timesteps=1_000_000,
        n_steps=1024,
        batch_size=64,
        gae_lambda=0.98,
        gamma=0.999,
        n_epochs=4,
        ent_coef=0.01,
    ),
    ("ppo", "HalfCheetah-v5"): dict(
        normalize=True,
        n_envs=1,
        n_timesteps=1_000_000,
        batch_size=64,
        n_steps=512,
        gamma=0.98,
        learning_rate=2.0633e-05,
        ent_coef=0.000401762,
        clip_range=0.1,
        n_epochs=20,
        gae_lambda=0.92,
        max_grad_norm=0.8,
        vf_coef=0.58096,
        policy_kwargs=dict(log_std_init=-2, ortho_init=False, net_arch=dict(pi=[256, 256], vf=[256, 256])),
    ),
    ("a2c", "CartPole-v1"): dict(n_envs=8, n_timesteps=500_000, ent_coef=0.0),
    ("ddpg", "Pendulum-v1"): _OFF_POLICY_PENDULUM,
    ("td3", "Pendulum-v1"): _OFF_POLICY_PENDULUM,
    ("sac", "Pendulum-v1"): dict(n_timesteps=20_000, learning_rate=1e-3),
}
SB3_ALGOS = {"dqn": "DQN", "ppo": "PPO", "a2c": "A2C", "ddpg": "DDPG", "td3": "TD3", "sac": "SAC"}

# RLtools (github.com/rl-tools/rl-tools, Python package `rltools`): its SAC and TD3 with the defaults of rltools.SAC and
# rltools.TD3 as its authors ship them (rltools 2.2: 64x64 ReLU MLPs, batch 100, Adam 1e-3, gamma 0.99, polyak 0.995,
# warm-up 100 steps, one update per env step; TD3 updates its actor and targets every 2nd step, explores with noise
# 0.1; SAC's alpha starts at 0.5, tuned toward entropy -|A|). Only the budget is set, to deeprl's preset's total_steps
# (STEP_LIMIT, which also sizes RLtools' replay buffer), and RLtools' own evaluation is compiled out: both libraries
# are evaluated by deeprl's Evaluator, off the clock. RLtools steps the Gymnasium env of deeprl's preset (the
# env_factory path, rescaled to actions in [-1, 1] as RLtools requires), not its built-in C++ Pendulum.
RLTOOLS_ALGOS = {"sac": "SAC", "td3": "TD3"}
RLTOOLS_ROWS = {("sac", "Pendulum-v1"), ("td3", "Pendulum-v1")}
VS_LABELS = {"sb3": "SB3", "rltools": "RLtools"}


@dataclass(frozen=True)
class Trial:
    library: str  # "deeprl", "sb3", "rltools" or "throughput"
    algo: str
    env_id: str
    seed: int
    eval_every: int
    eval_episodes: int
    threshold: float
    timeout_s: float


# ---------------------------------------------------------------- running one trial (in a subprocess)
def trial_recipe(algo: str, env_id: str, seed: int) -> tuple[Any, Any, Any, Any]:
    """(spec, config, run options, env recipe) of deeprl's preset for a row: the recipe is
    `deeprl.envs.env_maker(options)`, the env `deeprl train ALGO ENV_ID` makes (env_kwargs, wrappers,
    time limit, masks joined to the observation)."""
    from deeprl.driver import build_config
    from deeprl.envs import env_maker

    spec, config, opts = build_config(algo, env_id, seed=seed)
    return spec, config, opts, env_maker(opts)


def learning_env(spec: Any, opts: Any, maker: Any) -> Any:
    """The env an algorithm learns from, made as the driver makes it (deeprl.driver._training_env): the
    vector env of opts.n_envs copies (a single env for tabular methods) from `maker`, made again without the
    action mask when the algorithm cannot take the masked observation (`fit_mask_to_algorithm`, Taxi's Q-table)."""
    from deeprl.envs import fit_mask_to_algorithm

    if spec.vectorized:
        make = lambda m: m.make_vec(opts.n_envs, vectorization=opts.vectorization)  # noqa: E731
    else:
        make = lambda m: m.make()  # noqa: E731
    env, _ = fit_mask_to_algorithm(maker, spec.support, make, algo=spec.name, note=False)
    return env


def _deeprl_trial(t: Trial, run_root: Path) -> dict[str, Any]:
    from deeprl.driver import train

    result = train(
        t.algo,
        t.env_id,
        seed=t.seed,
        stop_when_solved=True,
        threshold=t.threshold,
        eval_every=t.eval_every,
        eval_episodes=t.eval_episodes,
        progress="off",
        run_dir=run_root / f"{t.algo}__{t.env_id.replace('/', '-')}__s{t.seed}",
    )
    s = result.summary
    return {
        "solved_at_wall_s": s["solved_at_wall_s"],
        "solved_at_env_steps": s["solved_at_env_steps"],
        "final_return": s["eval_mean_return"],
        "env_steps": s["env_steps"],
        "train_wall_s": s["train_wall_s"],
    }


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def _sb3_trial(t: Trial) -> dict[str, Any]:
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.vec_env import VecNormalize

    from deeprl.evaluation import EVAL_SEED_OFFSET, Evaluator

    hp = dict(SB3_ZOO[(t.algo, t.env_id)])
    n_envs = hp.pop("n_envs", 1)
    budget = int(hp.pop("n_timesteps"))
    normalize = hp.pop("normalize", False)
    noise_type, noise_std = hp.pop("noise_type", None), hp.pop("noise_std", None)
    for key in ("learning_rate", "clip_range"):
        if key in hp:
            hp[key] = _schedule(hp[key])
    # The env of deeprl's preset (the same id check and error as deeprl, its env_kwargs, wrappers and time
    # limit), without the action-mask key: SB3's policies take no masks (that is sb3-contrib's MaskablePPO).
    maker = dataclasses.replace(trial_recipe(t.algo, t.env_id, t.seed)[3], action_mask=False)
    venv = sb3_make_vec_env(maker, n_envs=n_envs, seed=t.seed)  # each copy is maker() (an EnvMaker is callable)
    if normalize:
        venv = VecNormalize(venv, gamma=hp.get("gamma", 0.99))
    if noise_type == "normal":
        n_act = venv.action_space.shape[0]
        hp["action_noise"] = NormalActionNoise(np.zeros(n_act), noise_std * np.ones(n_act))
    model = getattr(sb3, SB3_ALGOS[t.algo])("MlpPolicy", venv, seed=t.seed, device="cpu", verbose=0, **hp)
    evaluator = Evaluator(maker, t.eval_episodes, t.seed + EVAL_SEED_OFFSET)

    def policy(obs: np.ndarray) -> np.ndarray:
        if normalize:
            obs = venv.normalize_obs(obs)
        return model.predict(obs, deterministic=True)[0]

    class Clock(BaseCallback):
        """Periodic deterministic evaluation with the training clock paused, stop when solved."""

        def _on_training_start(self) -> None:
            self.start, self.eval_s, self.next_eval = time.perf_counter(), 0.0, t.eval_every
            self.solved: tuple[float, int] | None = None
            self.last_return = float("nan")

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            while self.next_eval <= self.num_timesteps:
                self.next_eval += t.eval_every
            paused = time.perf_counter()
            trained_s = paused - self.start - self.eval_s
            self.last_return = float(evaluator(policy).mean())
            self.eval_s += time.perf_counter() - paused
            if self.last_return >= t.threshold:
                self.solved = (trained_s, self.num_timesteps)
                return False
            return True

    clock = Clock()
    torch.manual_seed(t.seed)
    model.learn(total_timesteps=budget, callback=clock)
    train_wall = time.perf_counter() - clock.start - clock.eval_s
    if clock.solved is None:
        final = float(evaluator(policy).mean())
    else:
        final = clock.last_return
    evaluator.close()
    return {
        "solved_at_wall_s": None if clock.solved is None else round(clock.solved[0], 4),
        "solved_at_env_steps": None if clock.solved is None else clock.solved[1],
        "final_return": final,
        "env_steps": int(model.num_timesteps),
        "train_wall_s": round(train_wall, 4),
    }


def _rltools_trial(t: Trial) -> dict[str, Any]:
    """RLtools' SAC or TD3 (RLTOOLS_ALGOS) stepped in chunks of eval_every env steps through its Python API
    (`rltools.SAC(env_factory, ...)`, `State(seed).step()`, one env step and its updates per call), evaluated between
    chunks with the clock paused, as the other libraries are."""
    import gymnasium as gym

    # RLtools refuses to link MKL into a process that has imported torch (deeprl has): its OpenBLAS backend then.
    os.environ.setdefault("RL_TOOLS_DISABLE_MKL", "1")
    # One BLAS thread, as deeprl's one torch thread: on 2 shared cores OpenBLAS's default (a thread per core) made
    # RLtools' updates 2-3x slower on these small matrices (docs/benchmarks.md, "RLtools"). Read when its BLAS loads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import rltools

    from deeprl.evaluation import EVAL_SEED_OFFSET, Evaluator

    spec, config, opts, recipe = trial_recipe(t.algo, t.env_id, t.seed)
    maker = dataclasses.replace(recipe, action_mask=False)
    budget = int(opts.total_steps)

    def env_factory() -> Any:
        # RLtools takes actions in [-1, 1] and resets the env without a seed: seed it here, once per env it makes.
        env = gym.wrappers.RescaleAction(maker(), -1.0, 1.0)
        env.reset(seed=t.seed)
        env.action_space.seed(t.seed)
        return env

    build = getattr(rltools, RLTOOLS_ALGOS[t.algo])
    # Compiles the interface on first use (cached under the temp dir, per algorithm and config): off the clock.
    module = build(env_factory, interface_name="deeprl_bench", STEP_LIMIT=budget, enable_evaluation=False)
    state = module.State(t.seed)
    evaluator = Evaluator(maker, t.eval_episodes, t.seed + EVAL_SEED_OFFSET)
    low, high = (
        np.asarray(b, dtype=np.float64)
        for b in (evaluator.venv.single_action_space.low, evaluator.venv.single_action_space.high)
    )

    def policy(obs: np.ndarray) -> np.ndarray:
        acts = np.stack([state.action(np.ascontiguousarray(o, dtype=np.float32)) for o in obs])
        return low + (np.clip(acts, -1.0, 1.0) + 1.0) * 0.5 * (high - low)  # RescaleAction's map back to the env's

    steps, train_s, solved, last = 0, 0.0, None, float("nan")
    finished = False
    while steps < budget and not finished:
        start = time.perf_counter()
        for _ in range(min(t.eval_every, budget - steps)):
            finished = state.step()
            steps += 1
            if finished:
                break
        train_s += time.perf_counter() - start
        last = float(evaluator(policy).mean())
        if last >= t.threshold:
            solved = (train_s, steps)
            break
    evaluator.close()
    return {
        "solved_at_wall_s": None if solved is None else round(solved[0], 4),
        "solved_at_env_steps": None if solved is None else solved[1],
        "final_return": last,
        "env_steps": steps,
        "train_wall_s": round(train_s, 4),
    }


def _throughput_trial(t: Trial, seconds: float = 2.0) -> dict[str, Any]:
    """Env steps per second of (a) the raw vector env with random actions, the ceiling, and (b) the
    same env driven by the algorithm's batched deterministic policy (acting, no learning); each
    measured for about `seconds`. Training steps/s comes from the time-to-solve trials."""
    from deeprl.envs import seed_everything

    spec, config, opts, maker = trial_recipe(t.algo, t.env_id, t.seed)
    seed_everything(t.seed)
    # The env training uses: a vector env, or for tabular methods a single env stepped as the algorithm
    # does, one observation at a time.
    env = learning_env(spec, opts, maker)
    n_envs = opts.n_envs if spec.vectorized else 1
    env.action_space.seed(t.seed)
    algo = spec.load()(config, env, seed=t.seed, device="cpu")

    def rate(act) -> float:
        obs, _ = env.reset(seed=t.seed)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(50):
                obs, _, terminated, truncated, _ = env.step(act(obs))
                if not spec.vectorized and (terminated or truncated):
                    obs, _ = env.reset()
            steps += 50 * n_envs
        return steps / (time.perf_counter() - start)

    policy = algo.policy if spec.vectorized else (lambda obs: algo.policy(np.asarray([obs]))[0])
    # Actions drawn beforehand, so the ceiling times the env alone, not the action sampler.
    pre_drawn = [env.action_space.sample() for _ in range(64)]
    cycle = itertools.cycle(pre_drawn)
    raw = rate(lambda obs: next(cycle))
    acting = rate(policy)
    env.close()
    return {"raw_steps_per_s": raw, "acting_steps_per_s": acting, "n_envs": n_envs}


def _run_one(payload: str) -> None:
    t = Trial(**json.loads(payload))
    with tempfile.TemporaryDirectory(prefix="deeprl-bench-") as tmp:
        if t.library == "throughput":
            out = _throughput_trial(t)
        else:
            out = {
                "deeprl": lambda: _deeprl_trial(t, Path(tmp)),
                "sb3": lambda: _sb3_trial(t),
                "rltools": lambda: _rltools_trial(t),
            }[t.library]()
    print("BENCH-RESULT " + json.dumps(out), flush=True)


def run_trial(t: Trial) -> dict[str, Any]:
    """One trial in a fresh Python process (no state shared between trials or libraries)."""
    payload = json.dumps(t.__dict__)
    cmd = [sys.executable, "-m", "deeprl.bench", "--one", payload]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=t.timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {t.timeout_s:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {proc.returncode}: {tail[0][:200]}"}


# ---------------------------------------------------------------- the plan and the tables
def plan_rows(algos: tuple[str, ...], envs: tuple[str, ...], long: bool) -> list[tuple[str, str]]:
    """The (algo, env) rows to run: the default set (+ --long), filtered by --algos/--envs. An
    --algos/--envs pair outside the sets is run too, when a preset exists for it."""
    from deeprl.presets import PRESETS
    from deeprl.registry import ALGOS, get_algo

    algos = tuple(get_algo(a).name for a in algos)  # unknown names fail here, with suggestions
    rows = DEFAULT_ROWS + (LONG_ROWS if long else [])
    rows = [(a, e) for a, e in rows if (not algos or a in algos) and (not envs or e in envs)]
    for a in algos:
        for e in envs:
            if (a, e) not in rows and e in PRESETS.get(a, {}):
                rows.append((a, e))
    if (algos or envs) and not rows:
        raise UsageError(
            f"No benchmark row matches --algos {' '.join(algos) or '(all)'} --envs "
            f"{' '.join(envs) or '(all)'}. Rows: {', '.join(f'{a} {e}' for a, e in DEFAULT_ROWS + LONG_ROWS)}; "
            "any algorithm with a preset for the env also works."
        )
    missing = [a for a, _ in rows if a not in ALGOS]
    if missing:
        print(
            f"note: skipping rows of algorithms not in this version: {', '.join(sorted(set(missing)))}", file=sys.stderr
        )
    return [(a, e) for a, e in rows if a in ALGOS]


def trial_settings(algo: str, env_id: str) -> tuple[int, int, float]:
    """(eval_every, eval_episodes, threshold) from deeprl's preset and the env's threshold. Each
    library trains with its own preset's budget."""
    from deeprl.config import RunOptions
    from deeprl.envs import env_spec
    from deeprl.presets import PRESETS

    preset = PRESETS.get(algo, {}).get(env_id, {})
    spec = env_spec(env_id)
    threshold = preset.get("threshold", ROW_THRESHOLDS.get(env_id, spec.reward_threshold))
    if threshold is None:
        raise UsageError(f"{env_id} has no reward_threshold; benchmark rows need one.")
    eval_every = preset.get("eval_every", RunOptions.__dataclass_fields__["eval_every"].default)
    eval_episodes = preset.get("eval_episodes", 10)
    return int(eval_every), int(eval_episodes), float(threshold)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _fmt(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if math.isinf(x):
        return "not solved"
    return f"{x:,.{digits}f}" if digits else f"{x:,.0f}"


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds (an unsolved seed counting as +inf), and the IQM with its 95% stratified bootstrap
    interval (`deeprl.seeds.interval_estimates`, rliable) of the final return over the seeds that ran and of
    time and env steps to solve over the seeds that solved; the IQM entries are None without rliable."""
    ok = [r for r in results if "error" not in r]
    times = [r["solved_at_wall_s"] if r.get("solved_at_wall_s") is not None else math.inf for r in ok]
    steps = [r["solved_at_env_steps"] if r.get("solved_at_env_steps") is not None else math.inf for r in ok]
    speed = [r["env_steps"] / r["train_wall_s"] for r in ok if r.get("train_wall_s")]
    return {
        "n": len(results),
        "solved": sum(math.isfinite(x) for x in times),
        "errors": [r["error"] for r in results if "error" in r],
        "time": _median(times),
        "steps": _median(steps),
        "final": _median([r["final_return"] for r in ok]),
        "steps_per_s": _median(speed),
        "time_iqm": _estimates([x for x in times if math.isfinite(x)]),
        "steps_iqm": _estimates([x for x in steps if math.isfinite(x)]),
        "final_iqm": _estimates([r["final_return"] for r in ok]),
    }


def _estimates(values: list[float]) -> dict[str, Any] | None:
    from deeprl.seeds import interval_estimates

    try:
        return interval_estimates(values)
    except UsageError:  # no rliable: the medians alone (the report says how to add the IQM)
        return None


def iqm_table(rows: list[tuple[str, str]], stats: dict[tuple[str, str, str], dict[str, Any]]) -> str:
    """IQM [95% CI] of time-to-solve, env steps to solve (over the seeds that solved) and final return, a row per
    library and (algo, env)."""
    from deeprl.seeds import format_estimate

    head = [
        "algo",
        "env",
        "library",
        "solved",
        "time-to-solve s, IQM [95% CI]",
        "env steps to solve, IQM [95% CI]",
        "final return, IQM [95% CI]",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for algo, env_id in rows:
        for lib in ("deeprl", *VS_LABELS):
            d = stats.get((lib, algo, env_id))
            if d is None:
                continue
            cells = [algo, env_id, VS_LABELS.get(lib, lib), f"{d['solved']}/{d['n']}"]
            for key, digits in (("time_iqm", 2), ("steps_iqm", 0), ("final_iqm", 1)):
                cells.append(format_estimate(d.get(key), "iqm", digits))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def iqm_section(rows: list[tuple[str, str]], stats: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """The report's lines on IQMs: a sentence and iqm_table, or a line saying how to get them."""
    if any(s.get("final_iqm") is None for s in stats.values()):
        return ["IQM and 95% confidence intervals: pip install rliable (from a clone: pip install -e '.[stats]')."]
    from importlib.metadata import version

    from deeprl.seeds import REPS

    return [
        (
            f"IQM (interquartile mean) over the same seeds, [95% CI] from rliable's stratified bootstrap (rliable "
            f"{version('rliable')}, {REPS} resamples); time and env steps to solve over the seeds that solved, final "
            "return over every seed that ran."
        ),
        "",
        iqm_table(rows, stats),
    ]


def markdown_table(
    rows: list[tuple[str, str]],
    stats: dict[tuple[str, str, str], dict[str, Any]],
    vs_sb3: bool = False,
    vs: str = "none",
) -> str:
    """The medians table; with vs "sb3" (or vs_sb3) or "rltools", that library's columns and the time ratio."""
    other = "sb3" if vs_sb3 else (vs if vs in VS_LABELS else None)
    label = VS_LABELS.get(other or "", "")
    head = ["algo", "env", "solved", "time-to-solve s", "env steps to solve", "final return", "train steps/s"]
    if other:
        head += [
            f"{label} solved",
            f"{label} time-to-solve s",
            f"{label} env steps",
            f"{label} final return",
            f"{label} steps/s",
            f"time ratio deeprl/{label}",
        ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for algo, env_id in rows:
        d = stats[("deeprl", algo, env_id)]
        cells = [
            algo,
            env_id,
            f"{d['solved']}/{d['n']}",
            _fmt(d["time"]),
            _fmt(d["steps"], 0),
            _fmt(d["final"], 1),
            _fmt(d["steps_per_s"], 0),
        ]
        if other:
            s = stats.get((other, algo, env_id))
            if s is None:
                cells += [f"no {label} counterpart"] + ["—"] * 5
            else:
                ratio = d["time"] / s["time"] if math.isfinite(d["time"]) and math.isfinite(s["time"]) else float("nan")
                cells += [
                    f"{s['solved']}/{s['n']}",
                    _fmt(s["time"]),
                    _fmt(s["steps"], 0),
                    _fmt(s["final"], 1),
                    _fmt(s["steps_per_s"], 0),
                    "—" if math.isnan(ratio) else f"{ratio:.2f}",
                ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def throughput_table(
    rows: list[tuple[str, str]],
    speed: dict[tuple[str, str], dict[str, Any]],
    stats: dict[tuple[str, str, str], dict[str, Any]],
    vs_sb3: bool = False,
    vs: str = "none",
) -> str:
    other = "sb3" if vs_sb3 else (vs if vs in VS_LABELS else None)
    label = VS_LABELS.get(other or "", "")
    head = ["algo", "env", "n_envs", "raw env", "acting", "training", "training / raw"]
    if other:
        head += [f"{label} training", f"deeprl / {label}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for algo, env_id in rows:
        sp, d = speed[(algo, env_id)], stats[("deeprl", algo, env_id)]
        if "error" in sp:
            cells = [algo, env_id, "—", sp["error"], "—", _fmt(d["steps_per_s"], 0), "—"]
        else:
            cells = [
                algo,
                env_id,
                str(sp["n_envs"]),
                _fmt(sp["raw_steps_per_s"], 0),
                _fmt(sp["acting_steps_per_s"], 0),
                _fmt(d["steps_per_s"], 0),
                f"{d['steps_per_s'] / sp['raw_steps_per_s']:.1%}",
            ]
        if other:
            s = stats.get((other, algo, env_id))
            cells += (
                ["—", "—"] if s is None else [_fmt(s["steps_per_s"], 0), f"{d['steps_per_s'] / s['steps_per_s']:.1f}x"]
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_line() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import stable_baselines3

        sb3 = f", stable-baselines3 {stable_baselines3.__version__}"
    except ImportError:
        sb3 = ""
    try:
        from importlib.metadata import version

        sb3 += f", rltools {version('rltools')}"
    except ImportError:  # PackageNotFoundError is an ImportError
        pass
    import gymnasium

    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, "
        f"gymnasium {gymnasium.__version__}{sb3}"
    )


def _check_bench_args(seeds: int, first_seed: int, vs: str) -> None:
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}.")
    if first_seed < 0:
        raise UsageError(f"--first-seed must be 0 or more, got {first_seed}.")
    if vs not in ("none", "sb3", "rltools"):
        raise UsageError(f"--vs takes sb3 or rltools (or none), got {vs!r}.")
    if vs == "rltools":
        _check_rltools()
    if vs == "sb3":
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            raise UsageError(
                "--vs sb3 needs Stable-Baselines3: pip install stable-baselines3 (from a clone: pip install -e '.[bench]')."
            ) from None


def _check_rltools() -> None:
    """`--vs rltools` needs the rltools package and a C++ compiler (it compiles its interface on first use)."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("rltools") is None:
        raise UsageError(
            "--vs rltools needs RLtools: pip install rltools (it compiles C++ on first use: it needs g++ or clang++, "
            "and for its BLAS backend OpenBLAS, e.g. apt-get install -y g++ libopenblas-dev)."
        )
    if not (os.environ.get("RL_TOOLS_COMPILER") or shutil.which("g++") or shutil.which("clang++")):
        raise UsageError(
            "--vs rltools needs a C++ compiler to build RLtools' interface: install g++ or clang++ "
            "(e.g. apt-get install -y g++ libopenblas-dev), or set RL_TOOLS_COMPILER."
        )


def run_bench(
    algos: tuple[str, ...] = (),
    envs: tuple[str, ...] = (),
    seeds: int = 5,
    vs: str = "none",
    long: bool = False,
    timeout_s: float = 900.0,
    out: Path | None = None,
    log=print,
    first_seed: int = 0,
) -> str:
    """Run the benchmark on seeds first_seed .. first_seed + seeds - 1 and return the markdown report
    (also written to `out` when given)."""
    _check_bench_args(seeds, first_seed, vs)
    rows = plan_rows(algos, envs, long)
    settings = {row: trial_settings(*row) for row in rows}
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for seed in range(first_seed, first_seed + seeds):
        for algo, env_id in rows:
            libs = ["deeprl"] + (["sb3"] if vs == "sb3" and (algo, env_id) in SB3_ZOO else [])
            libs += ["rltools"] if vs == "rltools" and (algo, env_id) in RLTOOLS_ROWS else []
            if seed % 2:
                libs.reverse()  # alternate who goes first, so drift in load hits both
            for lib in libs:
                t = Trial(lib, algo, env_id, seed, *settings[(algo, env_id)], timeout_s)
                r = run_trial(t)
                results.setdefault((lib, algo, env_id), []).append(r)
                shown = r.get("error") or (
                    f"solved in {r['solved_at_wall_s']:.2f} s at {r['solved_at_env_steps']} steps"
                    if r["solved_at_wall_s"] is not None
                    else f"not solved, final return {r['final_return']:.1f}"
                )
                log(f"[{time.perf_counter() - started:7.1f} s] seed {seed} {lib:6s} {algo} {env_id}: {shown}")
    stats = {key: summarize(v) for key, v in results.items()}
    speed = {row: run_trial(Trial("throughput", *row, 0, *settings[row], timeout_s)) for row in rows}
    command = (
        "deeprl bench"
        + (f" --algos {' '.join(algos)}" if algos else "")
        + (f" --envs {' '.join(envs)}" if envs else "")
        + f" --seeds {seeds}"
        + (f" --first-seed {first_seed}" if first_seed else "")
        + (f" --vs {vs}" if vs != "none" else "")
        + (" --long" if long else "")
    )
    errors = [f"- {lib} {a} {e}: {err}" for (lib, a, e), s in stats.items() for err in s["errors"]]
    report = "\n".join(
        [
            f"Command: `{command}`  ",
            f"Machine: {machine_line()}  ",
            (
                f"Date: {time.strftime('%Y-%m-%d')}; total {time.perf_counter() - started:.0f} s; medians over {seeds} "
                f"seeds ({first_seed}..{first_seed + seeds - 1}; an unsolved seed counts as +inf)."
            ),
            "",
            markdown_table(rows, stats, vs=vs),
            "",
            *iqm_section(rows, stats),
            "",
            (
                "Throughput (env steps/s): the raw env with pre-drawn random actions is the ceiling; acting adds the "
                "batched deterministic policy; training adds learning (median over the trials above)."
            ),
            "",
            throughput_table(rows, speed, stats, vs=vs),
            *(["", "Errors:", *errors] if errors else []),
        ]
    )
    if out is not None:
        from deeprl.rundir import atomic_write

        atomic_write(Path(out), lambda f: f.write(report + "\n"), mode="w")
    return report


if __name__ == "__main__":  # the subprocess entry of one trial
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        _run_one(sys.argv[2])
    else:
        sys.exit("usage: python -m deeprl.bench --one TRIAL_JSON (use `deeprl bench` instead)")
