"""`render`: a trained agent (a run directory, an Agent or a function obs -> action) played into a
GIF or MP4 file, like `deeprl render`; `resolve_agent`, which `show` uses too, turns any of those into
a function of one observation.

(Not named render.py: importing a submodule sets it as an attribute of the package, and a module
`deeprl.viz.render` would hide the function `deeprl.viz.render`.)

The agent code is imported inside `resolve_agent`, when a run is loaded: importing deeprl.viz for
`show_state` or the video writers loads no algorithm (nor torch).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deeprl.envs import EnvMaker
from deeprl.errors import UsageError
from deeprl.viz.video import Recording, check_positive, check_video_path, make_render_env, record


def resolve_agent(
    agent_or_run_dir: Any, env_id: str | None
) -> tuple[Callable[[Any], Any], str, str | EnvMaker, int | None, int]:
    """(act, label, env, max_episode_steps, default seed) for an Agent, a run directory or a callable.

    `env` is what `make_render_env` takes: for an agent, its run's recipe (deeprl.envs.EnvMaker: the
    env_kwargs, wrappers, time limit and action masks it was trained with; it prints as its id), unless
    `env_id` names another env; for a callable, `env_id`."""
    from deeprl.agent import Agent, load
    from deeprl.evaluation import EVAL_SEED_OFFSET

    if isinstance(agent_or_run_dir, (str, os.PathLike)):
        agent_or_run_dir = load(agent_or_run_dir)
    if isinstance(agent_or_run_dir, Agent):
        agent = agent_or_run_dir
        env: str | EnvMaker = env_id or (agent.maker if agent.maker is not None else agent.env_id)
        return agent.act, agent.algo_name, env, agent.run.max_episode_steps, agent.run.seed + EVAL_SEED_OFFSET
    if callable(agent_or_run_dir):
        if env_id is None:
            raise UsageError("A policy given as a function needs the env: pass env_id='CartPole-v1', say.")
        name = getattr(agent_or_run_dir, "__name__", "policy")
        return agent_or_run_dir, "policy" if name == "<lambda>" else name, env_id, None, 0
    raise UsageError(
        f"Expected an Agent (deeprl.load), a run directory or a function obs -> action; "
        f"got {type(agent_or_run_dir).__name__}."
    )


def render(
    agent_or_run_dir: Any,
    out: Path | str,
    env_id: str | None = None,
    *,
    episodes: int = 1,
    fps: float | None = None,
    seed: int | None = None,
    max_steps: int | None = None,
) -> Recording:
    """Write the agent playing `episodes` episodes to `out` (.gif or .mp4), each episode's return on
    its frames. By default the episodes start from the run's own evaluation seeds.

    `agent_or_run_dir`: a run directory, an Agent from `deeprl.load`, or any function obs -> action
    (then name the env with `env_id`).
    """
    out = check_video_path(out)
    check_positive("episodes", episodes, "--episodes 3, say")
    check_positive("fps", fps, "--fps 30, say")
    check_positive("max_steps", max_steps, "--max-steps 1000, say")
    if not isinstance(episodes, int):
        raise UsageError(f"episodes must be a whole number, got {episodes!r}. Pass --episodes 3, say.")
    act, label, env_id, max_episode_steps, default_seed = resolve_agent(agent_or_run_dir, env_id)
    env = make_render_env(env_id, max_episode_steps=max_episode_steps)
    try:
        return record(
            act,
            env,
            out,
            episodes=episodes,
            seed=default_seed if seed is None else seed,
            fps=fps,
            max_steps=max_steps,
            title=f"{label} on {env_id}",
        )
    finally:
        env.close()
