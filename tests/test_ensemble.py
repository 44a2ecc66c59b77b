"""Seed ensembles (`--seeds 0-15 --vectorize`, deeprl.ensemble): one update of seed k in the ensemble equals the
same update of seed k alone from the same state (float tolerance: a batched matmul rounds differently); the
stacked network, the per-seed Adam and gradient clipping each equal their single-seed counterparts; the CLI writes
a normal run directory per seed, resumes after an interrupt, refuses what it cannot do, and a seed that diverges
stops alone. Whole runs are compared by their distribution of results, not step by step (docs/benchmarks.md)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from deeprl.algos.ppo import PPO
from deeprl.cli import main
from deeprl.config import PPOConfig
from deeprl.ensemble import OnPolicyEnsemble, StackedAdam, clip_grad_norms, gather, scatter, stack_modules
from deeprl.nets import ActorCritic

pytest.importorskip("rliable.library")  # --seeds aggregates with rliable
pytestmark = pytest.mark.filterwarnings("ignore:random_state is deprecated:FutureWarning")


def _agents(env_id: str, cfg: PPOConfig, k: int = 3, n_envs: int = 4, first_seed: int = 10) -> list[PPO]:
    """k PPO agents, each with a full rollout collected by its own env (not yet learnt from)."""
    agents = []
    for i in range(k):
        agent = PPO(cfg, gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync"), seed=first_seed + i)
        agent.rollout.collect(agent.model, cfg.n_steps)
        agent.rollout.finish(agent.model.value)
        agents.append(agent)
    return agents


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize(
    ("env_id", "options"),
    [
        ("CartPole-v1", {}),  # one minibatch: the whole batch, in order
        ("CartPole-v1", {"minibatch_size": 16, "n_epochs": 3}),  # shuffled minibatches, a padded last one
        ("CartPole-v1", {"minibatch_size": 20, "n_epochs": 4, "value_clip": 0.2, "entropy_coef": 0.01}),
        ("Pendulum-v1", {"minibatch_size": 16, "n_epochs": 2, "normalize_obs": True, "scale_rewards": True}),
    ],
)
def test_a_seeds_update_in_the_ensemble_equals_its_update_alone(env_id: str, options: dict) -> None:
    torch.manual_seed(0)
    cfg = PPOConfig(n_steps=16, **options)
    agents = _agents(env_id, cfg)
    alone = [copy.deepcopy(agent) for agent in agents]
    metrics_alone = [agent.update() for agent in alone]
    ensemble = OnPolicyEnsemble(agents, gym.make_vec(env_id, num_envs=12, vectorization_mode="sync"))
    metrics_together = PPO.update_ensemble(ensemble)
    ensemble.scatter()
    for agent, single, m_together, m_alone in zip(agents, alone, metrics_together, metrics_alone):
        assert _max_difference(agent.model, single.model) < 1e-6
        np.testing.assert_allclose(m_together, m_alone, rtol=1e-4, atol=1e-6)
        # the optimizer state each seed's checkpoint saves: the same moments and step counts as alone
        together, by_itself = agent.optimizer.state_dict()["state"], single.optimizer.state_dict()["state"]
        for i in by_itself:
            assert float(together[i]["step"]) == float(by_itself[i]["step"])
            torch.testing.assert_close(together[i]["exp_avg_sq"], by_itself[i]["exp_avg_sq"], rtol=1e-4, atol=1e-9)
        assert agent.shuffle.get_state().equal(single.shuffle.get_state())  # the same minibatch draws


@pytest.mark.parametrize(
    "options", [{}, {"optimizer": "adam", "normalize_advantages": True, "entropy_coef": 0.01, "max_grad_norm": 0.1}]
)
def test_a2c_update_in_the_ensemble_equals_its_update_alone(options: dict) -> None:
    from deeprl.algos.a2c import A2C
    from deeprl.config import A2CConfig

    torch.manual_seed(3)
    cfg = A2CConfig(n_steps=8, **options)
    agents = []
    for i in range(3):
        agent = A2C(cfg, gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync"), seed=20 + i)
        for _ in range(3):  # a few updates first: the optimizer's state is then not zero
            agent.rollout.collect(agent.model, cfg.n_steps)
            agent.rollout.finish(agent.model.value)
            if _ < 2:
                agent.update()
                agent.rollout.clear()
        agents.append(agent)
    alone = [copy.deepcopy(agent) for agent in agents]
    metrics_alone = [agent.update() for agent in alone]
    ensemble = OnPolicyEnsemble(agents, gym.make_vec("CartPole-v1", num_envs=12, vectorization_mode="sync"))
    metrics_together = A2C.update_ensemble(ensemble)
    ensemble.scatter()
    for agent, single, m_together, m_alone in zip(agents, alone, metrics_together, metrics_alone):
        assert _max_difference(agent.model, single.model) < 1e-6
        np.testing.assert_allclose(m_together, m_alone, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_off_policy_update_in_the_ensemble_equals_its_update_alone(algo: str) -> None:
    """A round of gradient steps of DDPG, TD3 and SAC for three seeds at once (each seed's own buffer draws, noise
    and temperature) equals each seed's round alone: weights, target networks, optimizer state and losses."""
    from deeprl.ensemble import OffPolicyEnsemble
    from deeprl.registry import build_config

    spec, cfg, _ = build_config(algo, "Pendulum-v1", learning_starts=200, batch_size=32)
    agents = []
    for i in range(3):
        agent = spec.load()(cfg, gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync"), seed=5 + i)
        agent.learn(400)  # 200 uniform steps, then learning: buffers, optimizers and TD3's delay mid-way
        agents.append(agent)
    alone = [copy.deepcopy(agent) for agent in agents]
    for agent in alone:
        agent.train(7)
    ensemble = OffPolicyEnsemble(agents, gym.make_vec("Pendulum-v1", num_envs=6, vectorization_mode="sync"))
    ensemble.stacked.train(7)
    ensemble.scatter()
    losses = list(zip(*ensemble.stacked.losses))
    for k, (agent, single) in enumerate(zip(agents, alone)):
        for name in ("actor", "critic", "critic_target", "actor_target"):
            if hasattr(agent, name):
                assert _max_difference(getattr(agent, name), getattr(single, name)) < 1e-6, name
        np.testing.assert_allclose(losses[k], single.losses, rtol=1e-4)
        assert agent.updates == single.updates
        for opt in ("actor_opt", "critic_opt"):
            ours, theirs = getattr(agent, opt).state_dict()["state"], getattr(single, opt).state_dict()["state"]
            for i in theirs:
                assert float(ours[i]["step"]) == float(theirs[i]["step"])
                torch.testing.assert_close(ours[i]["exp_avg"], theirs[i]["exp_avg"], rtol=1e-4, atol=1e-7)
        if algo == "sac":
            assert abs(agent.log_alpha.item() - single.log_alpha.item()) < 1e-6
            assert agent.generator.get_state().equal(single.generator.get_state())  # the same draws, in order


def test_target_kl_stops_each_seed_at_its_own_epoch() -> None:
    """With a tiny target_kl the seeds stop after different numbers of minibatch steps; each as it would alone."""
    torch.manual_seed(1)
    cfg = PPOConfig(n_steps=16, minibatch_size=16, n_epochs=6, target_kl=4e-3, learning_rate=3e-3)
    agents = _agents("CartPole-v1", cfg, k=4)
    alone = [copy.deepcopy(agent) for agent in agents]
    for agent in alone:
        agent.update()
    ensemble = OnPolicyEnsemble(agents, gym.make_vec("CartPole-v1", num_envs=16, vectorization_mode="sync"))
    PPO.update_ensemble(ensemble)
    ensemble.scatter()
    steps = [float(a.optimizer.state_dict()["state"][0]["step"]) for a in alone]
    assert len(set(steps)) > 1, f"every seed took {steps[0]} steps: the test needs seeds that stop apart"
    assert [float(a.optimizer.state_dict()["state"][0]["step"]) for a in agents] == steps
    for agent, single in zip(agents, alone):
        assert _max_difference(agent.model, single.model) < 1e-6


def test_evaluations_side_by_side_equal_each_seeds_own() -> None:
    """The ensemble's periodic evaluations run every seed's evaluator in one loop with the stacked policy: the same
    returns as each evaluator with its agent's own policy (observation normalisation per seed included)."""
    from deeprl.config import RunOptions
    from deeprl.envs import env_maker
    from deeprl.evaluation import Evaluator, evaluate_together

    cfg = PPOConfig(n_steps=16, normalize_obs=True)
    agents = _agents("CartPole-v1", cfg)
    for agent in agents:  # untrained policies that differ, with their own observation statistics
        agent.rollout.clear()
    ensemble = OnPolicyEnsemble(agents, gym.make_vec("CartPole-v1", num_envs=12, vectorization_mode="sync"))
    maker = env_maker(RunOptions(env_id="CartPole-v1"))
    make = lambda agent: Evaluator(maker, 5, agent.seed + 10_000)  # noqa: E731
    alone = [make(agent)(agent.policy) for agent in agents]
    together = evaluate_together([make(agent) for agent in agents], ensemble.policy)
    for mine, theirs in zip(together, alone):
        np.testing.assert_array_equal(mine, theirs)
    some = evaluate_together([make(agents[0]), make(agents[2])], lambda obs: ensemble.policy_of([0, 2], obs))
    np.testing.assert_array_equal(some[1], alone[2])


def test_stacked_network_gather_scatter_and_forward() -> None:
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    models = [ActorCritic(obs_space, gym.spaces.Box(-2, 2, (2,), np.float32), (8, 8)) for _ in range(3)]
    for i, model in enumerate(models):
        with torch.no_grad():
            model.log_std.fill_(-0.5 * i)  # the state-independent σ is stacked too
    stacked = stack_modules(models)
    obs = torch.randn(3, 5, 3)
    actions = torch.randn(3, 5, 2)
    log_prob, entropy, value = stacked.evaluate(obs, actions)
    for k, model in enumerate(models):
        expected = model.evaluate(obs[k], actions[k])
        for got, want in zip((log_prob[k], entropy[k], value[k]), expected):
            torch.testing.assert_close(got, want)
    copies = [copy.deepcopy(m) for m in models]
    with torch.no_grad():
        for p in stacked.parameters():
            p.add_(1.0)
    scatter(stacked, copies)
    for model, changed in zip(models, copies):
        for p, q in zip(model.parameters(), changed.parameters()):
            torch.testing.assert_close(q, p + 1.0)
    gather(stacked, models)
    assert stacked.evaluate(obs, actions)[2].sub(value).abs().max() == 0


def test_stacking_refuses_layers_it_cannot_batch() -> None:
    with pytest.raises(ValueError, match="LayerNorm"):
        stack_modules([torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2)) for _ in range(2)])


def test_stacked_adam_and_clipping_equal_each_seeds_own() -> None:
    """Three seeds, five steps, a seed sitting out some of them: each seed's weights as torch's own Adam (with
    clip_grad_norm_) moves them when it steps, and unchanged when it sits out."""
    torch.manual_seed(2)
    weights = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]
    stacked = torch.nn.Parameter(torch.stack([w.detach() for w in weights]))
    adams = [torch.optim.Adam([w], lr=0.1, eps=1e-5) for w in weights]
    ours = StackedAdam([stacked], lr=0.1, betas=(0.9, 0.999), eps=1e-5, k=3)
    plans = [[True, True, True], [True, False, True], [False, False, True], [True, True, True], [True, False, False]]
    for active in plans:
        grads = torch.randn(3, 4, 3) * 3
        stacked.grad = grads.clone()
        clip_grad_norms([stacked], 1.0, 3)
        ours.step(torch.tensor(active))
        for k, (w, adam) in enumerate(zip(weights, adams)):
            if active[k]:
                w.grad = grads[k].clone()
                torch.nn.utils.clip_grad_norm_([w], 1.0)
                adam.step()
            torch.testing.assert_close(stacked[k].detach(), w.detach())
    assert ours.steps.tolist() == [4.0, 2.0, 4.0]


# ---------------------------------------------------------------- the command line
FAST = [
    "--no-stop-when-solved",
    "--total-steps",
    "4096",
    "--eval-every",
    "2048",
    "--eval-episodes",
    "2",
    "--n-envs",
    "4",
    "--n-steps",
    "64",
]


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_cli_vectorize_writes_a_run_directory_per_seed(tmp_path: Path) -> None:
    parent = tmp_path / "seeds"
    assert main(["train", "ppo", "CartPole-v1", "--seeds", "3-5", "--vectorize", "--run-dir", str(parent), *FAST]) == 0
    for seed in (3, 4, 5):
        d = parent / f"s{seed}"
        summary = _read(d / "summary.json")
        assert (summary["seed"], summary["env_steps"]) == (seed, 4096)
        assert _read(d / "config.json")["run"]["seed"] == seed
        rows = (d / "metrics.csv").read_text().splitlines()
        assert sum(r.startswith("eval") for r in rows) == 2 and sum(r.startswith("train") for r in rows) > 5
        assert (d / "policy.safetensors").is_file() and (d / "resume" / "LATEST").is_file()
    returns = [_read(parent / f"s{s}" / "summary.json")["eval_mean_return"] for s in (3, 4, 5)]
    assert len(set(returns)) > 1  # three seeds, not one seed three times
    assert _read(parent / "aggregate.json")["seeds_finished"] == [3, 4, 5]
    assert main(["eval", str(parent / "s4"), "--episodes", "2"]) == 0  # a seed's directory is an ordinary run


def test_cli_vectorize_refuses_what_it_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = [
        (["ppo", "CartPole-v1", "--vectorize"], "give the seeds with --seeds"),
        (["reinforce", "CartPole-v1", "--seeds", "0-1", "--vectorize"], "reinforce has no ensemble update"),
        (["ppo", "CartPole-v1", "--seeds", "0-1", "--vectorize", "--episodes", "5"], "--total-steps"),
        (["ppo", "CartPole-v1", "--seeds", "0-1", "--vectorize", "--backend", "ray"], "drop --backend ray"),
        (["sac", "Pendulum-v1", "--seeds", "0-1", "--vectorize", "--compile"], "Drop one of them"),
        (["ppo", "FrozenLake-v1", "--seeds", "0-1", "--vectorize", "--total-steps", "64"], "vector observations"),
    ]
    for args, message in cases:
        run_dir = tmp_path / "x"
        assert main(["train", *args, "--run-dir", str(run_dir)]) == 2
        assert message in capsys.readouterr().err
        assert not run_dir.exists()


def test_seeds_that_diverge_stop_at_once_and_keep_their_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Seeds 1 and 2 turn NaN in the same update (the 7th, past the checkpoint at 1,024 env steps): both stop there,
    neither is evaluated or saved again (their checkpoint and policy stay the good ones), seeds 0 and 3 finish."""
    from safetensors.numpy import load_file

    real = PPO.update_ensemble

    def poisoned(ens):
        metrics = real(ens)
        if ens.agents[1].updates == 6:
            for k in (1, 2):
                metrics[k] = (float("nan"),) * len(metrics[k])
                with torch.no_grad():
                    next(ens.model.parameters())[k].fill_(float("nan"))  # the weights too, as a real divergence
        return metrics

    monkeypatch.setattr(PPO, "update_ensemble", staticmethod(poisoned))
    parent = tmp_path / "seeds"
    args = ["--seeds", "0-3", "--vectorize", "--run-dir", str(parent), "--checkpoint-every", "1024", *FAST]
    assert main(["train", "ppo", "CartPole-v1", *args]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "2 of 4 seeds did not finish" in err and "Logs are in" not in err
    for seed in (1, 2):
        assert f"seed {seed}: Training stopped: non-finite loss after update 7" in err
        assert "last good checkpoint (env step 1024)" in err
        assert not (parent / f"s{seed}" / "summary.json").exists()
        assert _read(parent / f"s{seed}" / "resume" / "LATEST")["env_steps"] == 1024
        weights = load_file(str(parent / f"s{seed}" / "policy.safetensors"))
        assert all(np.isfinite(w).all() for w in weights.values())
    for seed in (0, 3):
        assert _read(parent / f"s{seed}" / "summary.json")["env_steps"] == 4096


def test_the_ensemble_starts_fresh_episodes_whatever_a_checkpoint_held() -> None:
    """Seeds resumed from checkpoints that hold their own envs (trained alone) join an ensemble's new env: their
    partial batches (on-policy) are dropped and their collectors (off-policy) reset with it, instead of splicing
    an old episode onto a new one (or stepping an env never reset)."""
    from deeprl.ensemble import OffPolicyEnsemble
    from deeprl.registry import build_config

    cfg = PPOConfig(n_steps=16)
    agents = [PPO(cfg, gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync"), seed=s) for s in (0, 1)]
    for agent in agents:
        agent.rollout.collect(agent.model, 5)  # a partial batch from the seed's own env
    ensemble = OnPolicyEnsemble(agents, gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync"))
    assert [a.rollout.t for a in agents] == [0, 0] and all(a.rollout.next_obs is None for a in agents)
    ensemble.learn(64)
    assert [a.rollout.env_steps for a in agents] == [10 + 64, 10 + 64]  # the dropped rows were steps taken

    _, sac_cfg, _ = build_config("sac", "Pendulum-v1", learning_starts=50, batch_size=16)
    from deeprl.algos.sac import SAC

    sacs = [SAC(sac_cfg, gym.make_vec("Pendulum-v1", num_envs=1, vectorization_mode="sync"), seed=s) for s in (0, 1)]
    for agent in sacs:
        agent.learn(10)  # its collector holds its own env's observation
    OffPolicyEnsemble(sacs, gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync")).learn(60)
    assert [a.collector.env_steps for a in sacs] == [70, 70]


def test_replay_buffers_of_all_seeds_must_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import deeprl.buffers

    monkeypatch.setattr(deeprl.buffers, "available_memory", lambda: 3 * 2**30)  # 3 GiB: one buffer fits, 3 do not
    run_dir = tmp_path / "sac"
    args = ["--seeds", "0-2", "--vectorize", "--buffer-size", "50000000", "--run-dir", str(run_dir)]
    assert main(["train", "sac", "Pendulum-v1", *args]) == 2
    assert "3 seeds' replay buffers of 50,000,000 transitions each need" in " ".join(capsys.readouterr().err.split())
    assert not run_dir.exists()


def test_a_received_seeds_parent_names_no_module_it_would_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """seeds.json is data: a wrapper it names in a module not imported is refused before anything runs (a module
    next to the parent would otherwise be imported, and its code run, by the seeds' processes or the ensemble)."""
    parent = tmp_path / "seeds"
    assert main(["train", "ppo", "CartPole-v1", "--seeds", "0-1", "--run-dir", str(parent), *FAST[:3]]) == 0
    record = _read(parent / "seeds.json")
    record["run"]["wrappers"] = ["evil_wrapper_mod:wrap"]
    (parent / "seeds.json").write_text(json.dumps(record))
    (parent / "s1" / "summary.json").unlink()  # a seed left to train
    (tmp_path / "evil_wrapper_mod.py").write_text("open('PWNED', 'w').close()\ndef wrap(env):\n    return env\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for extra in ([], ["--vectorize"]):
        assert main(["train", "--resume", str(parent), *extra]) == 2
        assert "--trust-module evil_wrapper_mod" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()


def test_cli_vectorize_interrupted_then_resumed(tmp_path: Path) -> None:
    """SIGINT saves every seed at the same env step; --resume PARENT --vectorize finishes them to the budget."""
    parent = tmp_path / "seeds"
    budget = [
        "--no-stop-when-solved",
        "--total-steps",
        "30000",
        "--eval-every",
        "2048",
        "--eval-episodes",
        "2",
        "--n-envs",
        "4",
    ]
    args = ["train", "ppo", "CartPole-v1", "--seeds", "0-1", "--vectorize", "--run-dir", str(parent), *budget]
    proc = subprocess.Popen([sys.executable, "-m", "deeprl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    metrics = parent / "s1" / "metrics.csv"
    while not metrics.is_file() or "\neval," not in metrics.read_text():  # an evaluation row (the header has eval_...)
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert "deeprl train --resume" in err.decode() and "--vectorize" in err.decode()
    steps = [_read(parent / f"s{s}" / "resume" / "LATEST")["env_steps"] for s in (0, 1)]
    assert steps[0] == steps[1] and 0 < steps[0] < 30000
    assert main(["train", "--resume", str(parent), "--vectorize"]) == 0
    for s in (0, 1):
        assert _read(parent / f"s{s}" / "summary.json")["env_steps"] == 30000


def test_cli_vectorize_off_policy(tmp_path: Path) -> None:
    """SAC seeds as one ensemble: a run directory each, distinct results, the final evaluation run alone."""
    parent = tmp_path / "sac"
    args = ["--total-steps", "1200", "--learning-starts", "400", "--eval-every", "600", "--eval-episodes", "2"]
    assert main(["train", "sac", "Pendulum-v1", "--seeds", "0-1", "--vectorize", "--run-dir", str(parent), *args]) == 0
    summaries = [_read(parent / f"s{s}" / "summary.json") for s in (0, 1)]
    assert [s["env_steps"] for s in summaries] == [1200, 1200]
    assert summaries[0]["eval_mean_return"] != summaries[1]["eval_mean_return"]


@pytest.mark.slow
def test_vectorized_seeds_solve_cartpole(tmp_path: Path) -> None:
    """The preset's seeds, trained as one ensemble, solve CartPole as seeds alone do (every one of 4 held-out seeds
    within the preset's budget; alone, 20 of 20 did, docs/benchmarks.md)."""
    parent = tmp_path / "seeds"
    assert main(["train", "ppo", "CartPole-v1", "--seeds", "200-203", "--vectorize", "--run-dir", str(parent)]) == 0
    for seed in range(200, 204):
        assert _read(parent / f"s{seed}" / "summary.json")["solved"]
