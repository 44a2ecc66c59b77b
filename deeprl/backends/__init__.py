"""Where a run's envs are stepped: in this process (the local backend: deeprl.rollout, deeprl.continuous) or
on Ray actors (`--backend ray`): `ray_runtime` starts or joins the Ray cluster and restarts lost workers,
`ray_onpolicy` collects PPO/A2C/REINFORCE batches, `ray_offpolicy` feeds DQN/DDPG/TD3/SAC's replay buffer,
`ray_a3c` runs A3C's workers, `ray_seeds` runs `--seeds` as Ray tasks. Ray is imported only by these
modules, and only for a Ray run."""

from __future__ import annotations

from typing import Any

from deeprl.errors import UsageError

# which Ray module runs each algorithm's workers
RAY_KINDS = {"ppo": "onpolicy", "a2c": "onpolicy", "reinforce": "onpolicy"}
RAY_KINDS.update(dict.fromkeys(("dqn", "ddpg", "td3", "sac"), "offpolicy"))
RAY_KINDS["a3c"] = "a3c"


def check_ray_options(algo: str, opts: Any) -> None:
    """What --backend ray cannot do, said before anything starts."""
    if algo not in RAY_KINDS:
        raise UsageError(
            f"{algo} has no Ray backend; --backend ray runs {', '.join(sorted(RAY_KINDS))}. Drop --backend ray."
        )
    if opts.episodes is not None:
        raise UsageError(
            f"--episodes {opts.episodes} counts finished episodes, where Ray workers step in rounds and cannot all "
            "stop at the same episode. Give a budget in env steps with --total-steps N."
        )
    if opts.workers is not None and opts.workers > opts.n_envs:
        raise UsageError(
            f"--workers {opts.workers} is more than --n-envs {opts.n_envs}: each worker steps a slice of the envs. "
            f"Use --n-envs {opts.workers} or more, or --workers {opts.n_envs} or fewer."
        )


def attach_ray(algo_name: str, algo: Any, opts: Any, maker: Any, snapshot: Any) -> Any:
    """Start or join Ray, start the workers, and make `algo` step its envs on them; returns the run options
    with --workers resolved (config.json records how many there were)."""
    import dataclasses

    from deeprl.backends.ray_runtime import cluster_cpus, connect, release

    kind = RAY_KINDS[algo_name]
    if opts.workers is None and kind != "a3c":  # A3C's --workers is its config's (algo.cfg.workers)
        connect(opts.ray_address, 1)
        opts = dataclasses.replace(opts, workers=max(1, min(cluster_cpus(), opts.n_envs)))
    connect(opts.ray_address, algo.cfg.workers if kind == "a3c" else opts.workers)
    try:
        if kind == "onpolicy":
            from deeprl.backends.ray_onpolicy import RayCollector

            algo.rollout.source = RayCollector(algo, opts, maker, snapshot)
        elif kind == "offpolicy":
            from deeprl.backends.ray_offpolicy import attach_offpolicy

            attach_offpolicy(algo_name, algo, opts, maker, snapshot)
        elif kind == "a3c":
            from deeprl.backends.ray_a3c import RayA3CPool

            algo.pool = RayA3CPool(opts.ray_address, algo.cfg.workers)
            algo.backend_report = algo.pool.report
    except BaseException:
        release()
        raise
    return opts


def ray_snapshot(loaded: Any) -> Any:
    """A resume state's unpickled env snapshot if it is a Ray run's (each worker's envs), else None."""
    from deeprl.backends.ray_onpolicy import RayEnvSnapshot

    return loaded if isinstance(loaded, RayEnvSnapshot) else None
