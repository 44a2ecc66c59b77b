"""Using a trained agent: `load(RUN_DIR)` and `evaluate`. They read config.json and the policy artefact
(policy.safetensors) only, never the resume state: loading a run directory someone sent you runs no code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from deeprl._version import __version__
from deeprl.config import RunOptions
from deeprl.envs import EnvMaker, check_names_from_file, env_maker, fit_mask_to_algorithm, import_trusted_modules
from deeprl.errors import UsageError
from deeprl.evaluation import EVAL_SEED_OFFSET, Evaluator
from deeprl.registry import AlgoSpec, get_algo
from deeprl.rundir import BEST_POLICY, POLICY, load_policy, read_config
from deeprl.spaces import MASK_KEY, has_mask
from deeprl.wrappers import OBS_KEY


class Agent:
    """A trained policy loaded from a run directory: `act(obs)` for one observation, `act_batch` for many.

    `observation_space` is what the policy takes: for an env that reports its legal actions in
    `info["action_mask"]` (Taxi), a Dict of the env's observation and the mask
    (deeprl.wrappers.InfoActionMask); `act(obs, info["action_mask"])` joins them for you. `maker` is the
    env's recipe (deeprl.envs.EnvMaker): `agent.maker.make()` is the env the agent was trained on.
    """

    def __init__(
        self,
        algo: Any,
        algo_name: str,
        env_id: str,
        config: Any,
        run: RunOptions,
        observation_space: gym.Space,
        action_space: gym.Space,
        info: dict[str, Any] | None = None,
        maker: EnvMaker | None = None,
    ):
        self.algo, self.algo_name, self.env_id, self.config, self.run = algo, algo_name, env_id, config, run
        self.observation_space, self.action_space = observation_space, action_space
        self.info = info or {}  # the policy file's header: env steps when it was saved
        self.maker = maker

    def act_batch(self, obs: Any) -> np.ndarray:
        return self.algo.policy(obs)

    def act(self, obs: Any, action_mask: Any = None) -> Any:
        """The greedy action for one observation: the env's own observation, with `info["action_mask"]`
        for an env that reports one (or an observation that holds the mask already, as the env made
        from `agent.maker` returns)."""
        if has_mask(self.observation_space):
            if isinstance(obs, dict) and MASK_KEY in obs and action_mask is not None:
                raise UsageError(
                    f"agent.act got two action masks: the observation's {MASK_KEY!r} key and action_mask. Pass the "
                    "mask once: agent.act(obs) for an observation that holds it (the env made from agent.maker), "
                    "agent.act(obs, info['action_mask']) for the env's own observation."
                )
            if not (isinstance(obs, dict) and MASK_KEY in obs):
                if action_mask is None:
                    raise UsageError(
                        f"{self.env_id} reports its legal actions in info['action_mask'], and this agent's policy "
                        "takes them: pass the mask with the observation, agent.act(obs, info['action_mask'])."
                    )
                obs = {OBS_KEY: obs, MASK_KEY: np.asarray(action_mask, dtype=np.int8)}
        elif action_mask is not None:
            raise UsageError(
                f"This agent's policy takes no action mask ({self.env_id} reported none when it was trained); "
                "call agent.act(obs) without one."
            )
        batch = gym.vector.utils.create_empty_array(self.observation_space, 1)
        batch = gym.vector.utils.concatenate(self.observation_space, [obs], batch)
        action = self.algo.policy(batch)[0]
        return action.item() if isinstance(self.action_space, gym.spaces.Discrete) else action

    def __repr__(self) -> str:
        return f"Agent({self.algo_name} on {self.env_id})"


def configs_from_record(record: dict[str, Any], source: str) -> tuple[AlgoSpec, Any, RunOptions]:
    """The algorithm spec, config and run options of a config.json (or a resume state's header).

    Options this version does not know (a run from another deeprl version, or an edited file) are a
    UsageError naming them; values out of range fail the dataclasses' validation, as on the CLI.
    """
    spec = get_algo(record["algo"])
    if not isinstance(record.get("config"), dict) or not isinstance(record.get("run"), dict):
        raise UsageError(f"{source} lacks its config or run options: it was changed after deeprl wrote it.")
    # A file holds names, which the checks of the names read from a file (deeprl.envs.check_names_from_file)
    # see as they are: a bare string where a list belongs would become a wrapper they never saw.
    wrappers = record["run"].get("wrappers", [])
    if not isinstance(wrappers, (list, tuple)) or not all(isinstance(w, str) for w in wrappers):
        raise UsageError(
            f"{source} holds an invalid setting: wrappers is {wrappers!r}, not a list of 'module:callable' names. "
            "It was changed after deeprl wrote it; train again."
        )
    if record.get("env_id") != record["run"].get("env_id"):
        raise UsageError(
            f"{source} names two envs: env_id {record.get('env_id')!r} and run.env_id {record['run'].get('env_id')!r}. "
            "It was changed after deeprl wrote it; train again."
        )
    for cls, values in ((spec.config_cls, record["config"]), (RunOptions, record["run"])):
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            versions = record.get("versions")
            written_by = versions.get("deeprl", "?") if isinstance(versions, dict) else "?"
            raise UsageError(
                f"{source} was written by deeprl {written_by} with options this version ({__version__}) "
                f"does not know: {', '.join(unknown)}. Use that version of deeprl to evaluate or resume it."
            )
    run = dict(record["run"])
    if run.get("run_dir") is not None:
        if not isinstance(run["run_dir"], str):
            raise UsageError(f"{source} holds an invalid setting: run_dir is {run['run_dir']!r}, not a path.")
        run["run_dir"] = Path(run["run_dir"])
    try:
        return spec, spec.config_cls(**record["config"]), RunOptions(**run)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{source} holds an invalid setting: {e}") from None


def load(
    run_dir: Path | str, policy_file: str = POLICY, *, best: bool = False, trust_modules: tuple[str, ...] = ()
) -> Agent:
    """The trained agent of a run directory: its config.json and its policy file (weights and
    normalisation statistics, read as data). `best=True` takes the policy of the run's best evaluation
    (policy_best.safetensors) instead of the final one.

    A run directory is data: the modules it names are not imported, and its env function or wrappers
    are not called, unless you trust their modules (`trust_modules=("my_envs",)`, which imports them;
    as `--trust-module` on the command line). Registered env ids ('my_envs:MyEnv-v0') need only the
    module imported."""
    if best:
        policy_file = BEST_POLICY
    import_trusted_modules(trust_modules)
    record = read_config(run_dir)
    source = f"{str(Path(run_dir) / 'config.json')!r}"
    spec, config, run = configs_from_record(record, source)  # data only: imports and calls nothing it names
    check_names_from_file(run.env_id, source, run.wrappers)
    policy_state, info = load_policy(run_dir, policy_file)
    # The training env's recipe, made as the driver made it (masks joined when the algorithm takes them).
    env, maker = fit_mask_to_algorithm(env_maker(run), spec.support, lambda m: m.make(), algo=spec.name, note=False)
    algo = spec.load()(config, env, seed=run.seed, device="cpu")
    try:
        algo.load_policy_state(policy_state)
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise UsageError(
            f"{str(Path(run_dir) / policy_file)!r} does not fit {spec.name} with this config.json "
            f"({type(e).__name__}: {str(e)[:200]}). The files come from different runs, or were "
            "changed after deeprl wrote them."
        ) from None
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    return Agent(algo, spec.name, run.env_id, config, run, observation_space, action_space, info, maker)


def evaluate(
    agent_or_run_dir: Agent | Path | str,
    episodes: int | None = None,
    seed: int | None = None,
    *,
    best: bool = False,
    trust_modules: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Deterministic evaluation: {"mean_return", "std_return", "episodes", "returns", ...}.

    By default it repeats the run's own final evaluation (its episodes and seeds), so the mean
    matches summary.json's eval_mean_return; with `best=True` (a run directory) it evaluates the
    best policy, and the mean matches summary.json's best_eval_mean_return. `trust_modules` as for `load`.
    """
    if isinstance(agent_or_run_dir, Agent):
        if best:
            raise UsageError(
                "evaluate(agent, best=True): an Agent holds the one policy it was loaded with. Load the best one "
                "with deeprl.load(run_dir, best=True), or pass the run directory: evaluate(run_dir, best=True)."
            )
        if trust_modules:
            raise UsageError("evaluate(agent, trust_modules=...): pass trust_modules to deeprl.load instead.")
        agent = agent_or_run_dir
    else:
        agent = load(agent_or_run_dir, best=best, trust_modules=trust_modules)
    episodes = agent.run.eval_episodes if episodes is None else episodes
    seed = agent.run.seed + EVAL_SEED_OFFSET if seed is None else seed
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise UsageError(f"episodes must be a positive integer, got {episodes!r}. Pass --episodes 10, say.")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32 - episodes:
        raise UsageError(f"seed must be an integer in [0, 2**32 - episodes), got {seed!r}. Pass --seed 0, say.")
    maker = agent.maker if agent.maker is not None else env_maker(agent.run)
    evaluator = Evaluator(maker, episodes, seed)
    try:
        returns = evaluator(agent.act_batch)
    finally:
        evaluator.close()
    return {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "episodes": episodes,
        "min_return": float(returns.min()),
        "max_return": float(returns.max()),
        "algo": agent.algo_name,
        "env_id": agent.env_id,
        "seed": seed,
        "policy_env_steps": agent.info.get("env_steps"),  # when the evaluated policy was saved
        "returns": returns.tolist(),
    }
