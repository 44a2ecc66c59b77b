"""Writes quickstart.ipynb and walkthrough.ipynb (without outputs). Edit here, then run:

    .venv/bin/python notebooks/make_notebooks.py

tests/test_notebooks.py executes every notebook in this folder with DEEPRL_NOTEBOOK_QUICK=1, which
shrinks the training budgets (via `budget(full, quick)`) so the whole folder runs in a few minutes.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = '''import os
import deeprl

QUICK = bool(os.environ.get("DEEPRL_NOTEBOOK_QUICK"))  # the tests run every notebook with tiny budgets


def budget(full, quick):
    """Training budget: `full` when you run the notebook, `quick` when the tests do."""
    return quick if QUICK else full


os.makedirs("runs", exist_ok=True)'''


def quickstart() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("""# deeprl quickstart: train, plot, watch

To open it: `pip install -e '.[notebook]'` in the clone, then `jupyter notebook notebooks/` (or open it
in VS Code or JupyterLab). No display and no `xvfb-run` are needed: Gymnasium renders frames as arrays
(`render_mode="rgb_array"`), and deeprl turns them into inline videos. On a laptop CPU the whole
notebook takes a minute or two."""),
        new_code_cell(SETUP),
        new_markdown_cell("""## 1. Train

`deeprl.train(algo, env_id, **flags)` runs exactly what `deeprl train ALGO ENV_ID --flag value` runs and
writes a run directory (config, metrics.csv, summary.json, the policy and a resume state). Tabular Q-learning on the
cliff world of Sutton & Barto (Example 6.6) trains in a fraction of a second; three seeds of it and
one of Sarsa, to compare them."""),
        new_code_cell("""import shutil

runs = {}
for seed in range(3):
    shutil.rmtree(f"runs/nb-cliff-q{seed}", ignore_errors=True)
    runs[f"q{seed}"] = deeprl.train("q-learning", "CliffWalking-v1", seed=seed, run_dir=f"runs/nb-cliff-q{seed}",
                                    progress="off")
shutil.rmtree("runs/nb-cliff-sarsa", ignore_errors=True)
runs["sarsa"] = deeprl.train("sarsa", "CliffWalking-v1", seed=0, run_dir="runs/nb-cliff-sarsa", progress="off")
for name, result in runs.items():
    print(name, result)"""),
        new_markdown_cell("""## 2. Plot

Return against env steps and against training wall time. Runs of the same config are one curve:
the mean over seeds with a min-max band; dots are the periodic deterministic evaluations. Sarsa's
*online* return is better than Q-learning's (it learns the safe path, away from the cliff edge), while
Q-learning's greedy policy takes the optimal edge path (-13) — the book's point."""),
        new_code_cell("""deeprl.plot([r.run_dir for r in runs.values()], threshold=-13)"""),
        new_markdown_cell("""## 3. Watch

`deeprl.show` plays the trained agent and returns an inline HTML5 video (`format="gif"` for a GIF).
The return so far is written on every frame."""),
        new_code_cell("""deeprl.show(runs["q0"].run_dir, episodes=1)"""),
        new_markdown_cell("""`live=True` draws the episode step by step in place instead (the notes' `show_state`, without
matplotlib redraws or a virtual display):"""),
        new_code_cell("""deeprl.show(runs["sarsa"].run_dir, live=True, fps=8)"""),
        new_markdown_cell("""## 4. A deep RL agent: PPO on CartPole

The same three calls for PPO (the preset for CartPole-v1 comes from rl-baselines3-zoo). With the full
budget it usually reaches the threshold of 475 in well under a minute; `stop_when_solved` stops at the
first evaluation that does."""),
        new_code_cell("""shutil.rmtree("runs/nb-ppo-cartpole", ignore_errors=True)
ppo = deeprl.train("ppo", "CartPole-v1", seed=0, total_steps=budget(100_000, 2_048), eval_every=budget(10_000, 1_024),
                   stop_when_solved=True, run_dir="runs/nb-ppo-cartpole", progress="off")
print(ppo)
deeprl.plot(ppo.run_dir)"""),
        new_code_cell("""deeprl.show(ppo.run_dir, max_steps=budget(500, 100))"""),
        new_markdown_cell("""From a terminal, the same things:

```bash
deeprl train ppo CartPole-v1 --run-dir runs/ppo --video-every 20000   # videos/step_XXXXXXX.mp4 while it trains
deeprl render runs/ppo --out ppo.gif --episodes 2
deeprl plot runs/ppo --out curves.png
tensorboard --logdir runs        # after training with --tensorboard
```"""),
    ]
    return new_notebook(
        cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )


def walkthrough() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("""# The notes, section by section

deeprl follows a set of deep RL course notes. Each section here is one section of those notes: its
equation as the deeprl function that implements it, the method trained on a small problem, and the
result played back. Budgets are small enough for a CPU: about a minute per section (the tests run
them with tiny ones, where the deep methods do not get far). `docs/notes-map.md` names every section
and equation of the notes, the function that implements it and its test, and the errata."""),
        new_code_cell(
            SETUP
            + '''
import shutil
import numpy as np
import torch
import deeprl.math as M


def fresh(name):
    shutil.rmtree(f"runs/{name}", ignore_errors=True)
    return f"runs/{name}"'''
        ),
        new_markdown_cell("""## Temporal Difference Methods: Sarsa, Sarsamax (Q-learning), Expected Sarsa

One transition, three targets (γ = 0.9, reward −1, Q(S', ·) = [0, 2], the policy's next action A' = 0,
ε-greedy with ε = 0.1 for Expected Sarsa). Note the erratum: Sarsamax is the off-policy one."""),
        new_code_cell("""q_next = np.array([0.0, 2.0])
print("Sarsa          R + γ Q(S',A')            =", M.sarsa_target(-1.0, q_next[0], 0.9, terminated=False))
print("Sarsamax       R + γ max_a Q(S',a)       =", M.sarsamax_target(-1.0, q_next, 0.9, terminated=False))
probs = M.epsilon_greedy_probs(q_next, 0.1)
print("Expected Sarsa R + γ Σ π(a|S') Q(S',a)   =", M.expected_sarsa_target(-1.0, float(probs @ q_next), 0.9, terminated=False))
print("terminated: the target is R alone       =", M.sarsamax_target(-1.0, q_next, 0.9, terminated=True))"""),
        new_markdown_cell(
            """Sutton & Barto's cliff (Example 6.6): Sarsa learns the safe path, Q-learning the optimal edge path."""
        ),
        new_code_cell("""sarsa = deeprl.train("sarsa", "CliffWalking-v1", seed=0, run_dir=fresh("wt-sarsa"), progress="off")
qlearn = deeprl.train("q-learning", "CliffWalking-v1", seed=0, run_dir=fresh("wt-q"), progress="off")
print(sarsa, qlearn, sep="\\n")
deeprl.plot([sarsa.run_dir, qlearn.run_dir], threshold=-13)"""),
        new_code_cell("""deeprl.show(sarsa.run_dir)"""),
        new_code_cell("""deeprl.show(qlearn.run_dir)"""),
    ]
    from deeprl.registry import ALGOS

    if "dqn" in ALGOS:
        cells += [
            new_markdown_cell("""## Deep Q-Networks: experience replay and a target network

The TD target with the *target* network's weights w⁻ (erratum: w⁻ is `qnetwork_target`, not
`qnetwork_local`): y = r + γ (1 − terminated) max_a q(s', a; w⁻). A truncated episode still bootstraps."""),
            new_code_cell("""rewards = torch.tensor([1.0, 1.0]); q_next_target = torch.tensor([[0.5, 2.0], [0.5, 2.0]])
discounts = torch.tensor([0.99, 0.99]); terminated = torch.tensor([0.0, 1.0])  # 1: terminated
print(M.dqn_target(rewards, q_next_target, discounts, terminated))  # [1 + 0.99·2, 1]"""),
            new_code_cell("""dqn = deeprl.train("dqn", "CartPole-v1", seed=0, total_steps=budget(100_000, 1_500),
                   eval_every=budget(5_000, 1_000), stop_when_solved=True, run_dir=fresh("wt-dqn"), progress="off")
print(dqn)
deeprl.plot(dqn.run_dir)"""),
            new_markdown_cell("""**Solved or not?** With the budget above (the preset's 100k env steps) the run stops at the first
evaluation whose mean reaches CartPole's threshold of 475: seed 0 did at 30,000 env steps, in about 8 s
of a 2-core CPU. The tests run this notebook with 1,500 steps, where DQN has only just finished its
1,000 random warm-up steps, so there `solved=False` and a falling pole are what to expect. On another
machine or seed a run may end unsolved: DQN's greedy policy swings from one evaluation to the next, and
the run keeps the best one (`deeprl.load(dqn.run_dir, best=True)`; `deeprl eval RUN_DIR --best`)."""),
            new_code_cell("""deeprl.show(dqn.run_dir, max_steps=budget(500, 60))"""),
        ]
    if "reinforce" in ALGOS:
        cells += [
            new_markdown_cell("""## REINFORCE, credit assignment and reward normalization

The notes' "future rewards": each step is credited only with what came after it,
R_t^future = r_t + γ r_{t+1} + …, cut at the end of its episode; then normalized over the batch."""),
            new_code_cell("""rewards = torch.tensor([[1.0], [1.0], [1.0], [1.0]])            # 4 steps x 1 env
terminated = torch.tensor([[False], [True], [False], [False]])   # an episode ends after step 2
truncated = torch.zeros_like(terminated)
future = M.future_returns(rewards, terminated, truncated, gamma=1.0)
print(future.squeeze(1), M.normalize_rewards(future).squeeze(1))"""),
            new_code_cell("""reinforce = deeprl.train("reinforce", "CartPole-v1", seed=0, total_steps=budget(300_000, 2_000),
                         eval_every=budget(10_000, 2_000), stop_when_solved=True, run_dir=fresh("wt-reinforce"),
                         progress="off")
print(reinforce)
deeprl.plot(reinforce.run_dir)"""),
            new_markdown_cell("""**Solved or not?** With the preset's budget of 300k env steps the run stops at the first evaluation
that reaches 475: seed 0 did at 40,000 env steps, in about a second of training. With the tests' 2,000
steps REINFORCE makes a single update (one batch is 8 envs x 200 steps), so `solved=False` there is
expected. If your run ends unsolved, train further with `deeprl.resume(reinforce.run_dir,
total_steps=...)` or try another seed."""),
            new_code_cell("""deeprl.show(reinforce.run_dir, max_steps=budget(500, 60))"""),
        ]
    if "ppo" in ALGOS:
        cells += [
            new_markdown_cell("""## PPO: the clipped surrogate

min(ratio·A, clip(ratio, 1−ε, 1+ε)·A): once the new policy's probability ratio leaves [1−ε, 1+ε] in
the direction the advantage rewards, the gradient stops."""),
            new_code_cell("""old_log_prob = torch.log(torch.tensor([0.5, 0.5]))
log_prob = torch.log(torch.tensor([0.9, 0.3]))                    # ratios 1.8 and 0.6
advantages = torch.tensor([1.0, -1.0])
print("−L_clip =", M.clipped_surrogate(log_prob, old_log_prob, advantages, clip_eps=0.2).item())  # −(1.2 − 0.8)/2"""),
            new_code_cell("""ppo = deeprl.train("ppo", "CartPole-v1", seed=0, total_steps=budget(100_000, 2_048),
                   eval_every=budget(10_000, 1_024), stop_when_solved=True, run_dir=fresh("wt-ppo"), progress="off")
print(ppo)
deeprl.plot(ppo.run_dir)"""),
            new_code_cell("""deeprl.show(ppo.run_dir, max_steps=budget(500, 60))"""),
        ]
    if "ddpg" in ALGOS:
        cells += [
            new_markdown_cell("""## DDPG: a deterministic actor and its critic

The critic's target y = r + γ (1 − terminated) Q'(s', μ'(s')) (erratum: the notes' `(1 − dones)` must be
*terminated* only; a time limit still bootstraps). Pendulum-v1 has only time limits, so every
transition bootstraps."""),
            new_code_cell(
                """print(M.ddpg_target(torch.tensor([-1.0]), torch.tensor([-5.0]), torch.tensor([0.99]), torch.tensor([0.0])))"""
            ),
            new_code_cell("""ddpg = deeprl.train("ddpg", "Pendulum-v1", seed=0, total_steps=budget(15_000, 400),
                    eval_every=budget(5_000, 400), eval_episodes=budget(10, 1), run_dir=fresh("wt-ddpg"),
                    progress="off", **({"learning_starts": 200} if QUICK else {}))
print(ddpg)
deeprl.plot(ddpg.run_dir)"""),
            new_code_cell("""deeprl.show(ddpg.run_dir, max_steps=budget(200, 30))"""),
        ]
    cells += [
        new_markdown_cell("""## Tip for Jupyter notebooks, for Gymnasium

The notes' tip runs Jupyter under `xvfb-run` and calls `env.render(mode='rgb_array')`. In Gymnasium the
render mode is given to `gym.make`, frames come back as arrays without any display, and
`deeprl.viz.show_state` is the notes' helper rewritten that way: call it after each step and the
picture is replaced in place."""),
        new_code_cell("""import gymnasium as gym
from deeprl.viz import show_state

env = gym.make("CartPole-v1", render_mode="rgb_array")
obs, _ = env.reset(seed=0)
for t in range(budget(100, 10)):
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    show_state(env, step=t, info="random agent")
    if terminated or truncated:
        obs, _ = env.reset()
env.close()"""),
    ]
    return new_notebook(
        cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )


if __name__ == "__main__":
    nbformat.write(quickstart(), HERE / "quickstart.ipynb")
    nbformat.write(walkthrough(), HERE / "walkthrough.ipynb")
    print("wrote", HERE / "quickstart.ipynb", HERE / "walkthrough.ipynb")
