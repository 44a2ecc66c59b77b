"""ReplayBuffer: ring storage, terminated vs truncated, vector envs, n-step returns at episode ends,
the sum-tree and prioritized sampling, frame-stack storage, memory accounting, exact resume."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from deeprl.buffers import ReplayBuffer, SumTree
from deeprl.errors import UsageError

VEC = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
DISCRETE = gym.spaces.Discrete(4)


def _episodes_stream(n_envs, steps, end_every, seed=0):
    """Per-step arrays for n_envs envs; obs encode (env, episode, t) so each is unique. Episodes end
    at random lengths, half terminated, half truncated. Yields (obs, a, r, next_obs, term, trunc)."""
    rng = np.random.default_rng(seed)
    t = np.zeros(n_envs, int)
    ep = np.zeros(n_envs, int)
    for _step in range(steps):
        obs = np.stack([[e, ep[e], t[e]] for e in range(n_envs)]).astype(np.float32)
        nxt = obs.copy()
        nxt[:, 2] += 1
        done = rng.random(n_envs) < 1 / end_every
        kind = rng.random(n_envs) < 0.5
        term, trunc = done & kind, done & ~kind
        yield obs, rng.integers(0, 4, n_envs), rng.normal(size=n_envs).astype(np.float32), nxt, term, trunc
        t += 1
        t[done] = 0
        ep[done] += 1


def _reference(transitions, n, gamma):
    """Naive n-step tuples keyed by the obs, computed from whole per-env episode lists."""
    ref = {}
    for env_steps in transitions.values():
        for i, (obs, a, _r, _nxt, _term, _trunc) in enumerate(env_steps):
            ret, k, ended_term = 0.0, 0, False
            for j in range(n):
                o2, _a2, r2, n2, te2, tr2 = env_steps[i + j] if i + j < len(env_steps) else (None,) * 6
                if o2 is None:
                    k = None
                    break
                ret += gamma**j * r2
                k = j + 1
                last_next = n2
                if te2 or tr2:
                    ended_term = bool(te2)
                    break
            if k is not None:
                ref[tuple(obs)] = (a, ret, tuple(last_next), ended_term, k)
    return ref


def _fill(buf, n_envs, steps, end_every=8, seed=0):
    """Add a stream to `buf`; return its episodes as lists of transitions, keyed (env, i) or
    (env, 'open') for each env's unfinished last episode."""
    episodes, current = {}, {e: [] for e in range(n_envs)}
    for obs, a, r, nxt, term, trunc in _episodes_stream(n_envs, steps, end_every, seed):
        buf.add(obs, a, r, nxt, term, trunc)
        for e in range(n_envs):
            current[e].append((obs[e], a[e], r[e], nxt[e], term[e], trunc[e]))
            if term[e] or trunc[e]:
                episodes[(e, len(episodes))] = current[e]
                current[e] = []
    episodes.update({(e, "open"): steps_e for e, steps_e in current.items()})
    return episodes


def _check_against_reference(buf, split, n, gamma, batch=512):
    ref = {}
    for key, steps in split.items():
        r = _reference({0: steps}, n, gamma)
        if key[1] == "open":  # an unfinished episode: only complete n-step windows are sampleable
            r = {k: v for k, v in r.items() if v[4] == n}
        ref.update(r)
    b = buf.sample(batch)
    assert b.obs.dtype == torch.float32 and b.actions.dtype == torch.int64 and b.steps.dtype == torch.float32
    for i in range(batch):
        key = tuple(b.obs[i].tolist())
        assert key in ref, f"sampled a transition that is not a complete one: {key}"
        a, ret, nxt, term, k = ref[key]
        assert b.actions[i].item() == a
        assert b.rewards[i].item() == pytest.approx(ret, abs=1e-5)
        assert tuple(b.next_obs[i].tolist()) == nxt
        assert b.terminated[i].item() == float(term)
        assert b.steps[i].item() == k
    return ref


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_samples_match_naive_reference_with_wraparound(n_envs, n_step):
    gamma = 0.9
    buf = ReplayBuffer(60, VEC, DISCRETE, n_envs=n_envs, n_step=n_step, gamma=gamma, seed=1)
    split = _fill(buf, n_envs, steps=200, end_every=7)  # 200 steps per env >> 20 slots per env: wrapped
    assert buf.head.min() > buf.slots
    ref = _check_against_reference(buf, split, n_step, gamma)
    # only recent transitions survive the wrap: every sampled obs is from the last `slots` frames
    assert 0 < len(buf) <= 60
    assert len(ref) > len(buf)


def test_terminated_and_truncated_kept_apart_one_step():
    buf = ReplayBuffer(10, VEC, DISCRETE, gamma=0.9)
    o = np.zeros((1, 3), np.float32)
    buf.add(o, [1], [1.0], o + 1, [True], [False])  # terminated
    buf.add(o + 5, [2], [2.0], o + 6, [False], [True])  # truncated: a new episode, then cut
    assert buf.terminated[0].sum() == 1 and buf.truncated[0].sum() == 1
    b = buf.sample(64)
    by_action = {int(a): (float(t), float(k)) for a, t, k in zip(b.actions, b.terminated, b.steps)}
    assert by_action == {1: (1.0, 1.0), 2: (0.0, 1.0)}


def test_n_step_hand_computed_episode_ends():
    """gamma = 0.5, n = 3. Episode A: rewards 1, 2, 4 then TERMINATED; episode B: 8, 16 TRUNCATED."""
    buf = ReplayBuffer(32, VEC, DISCRETE, n_step=3, gamma=0.5)
    obs = lambda v: np.full((1, 3), v, np.float32)
    buf.add(obs(0), [0], [1.0], obs(1), [False], [False])
    buf.add(obs(1), [0], [2.0], obs(2), [False], [False])
    assert len(buf) == 0  # no transition has 3 rewards yet and the episode has not ended
    buf.add(obs(2), [0], [4.0], obs(3), [True], [False])
    buf.add(obs(10), [1], [8.0], obs(11), [False], [False])
    buf.add(obs(11), [1], [16.0], obs(12), [False], [True])
    assert len(buf) == 5
    got = {}
    for _ in range(20):
        b = buf.sample(16)
        for i in range(16):
            got[b.obs[i, 0].item()] = (
                b.rewards[i].item(),
                b.next_obs[i, 0].item(),
                b.terminated[i].item(),
                b.steps[i].item(),
            )
    assert got == {
        0.0: (1 + 0.5 * 2 + 0.25 * 4, 3.0, 1.0, 3),  # three rewards, ends at the terminal state
        1.0: (2 + 0.5 * 4, 3.0, 1.0, 2),  # cut after two: terminated, no bootstrap
        2.0: (4.0, 3.0, 1.0, 1),
        10.0: (8 + 0.5 * 16, 12.0, 0.0, 2),  # truncated: cut, but bootstraps from s=12 with γ²
        11.0: (16.0, 12.0, 0.0, 1),
    }


def test_valid_mask_skips_autoreset_rows():
    buf = ReplayBuffer(20, VEC, DISCRETE, n_envs=2)
    o = np.array([[0, 0, 0], [1, 1, 1]], np.float32)
    buf.add(o, [0, 0], [1.0, 1.0], o + 10, [True, False], [False, False])
    # env 0's next step is the autoreset step: its obs is the terminal obs, not a transition
    buf.add(
        np.array([[10, 10, 10], [11, 11, 11]], np.float32),
        [3, 3],
        [5.0, 5.0],
        np.array([[0, 0, 7], [21, 21, 21]], np.float32),
        [False, False],
        [False, False],
        valid=np.array([False, True]),
    )
    assert len(buf) == 3
    b = buf.sample(100)
    assert 3 not in [int(a) for a, ob in zip(b.actions, b.obs) if ob[0] == 10]
    assert set(map(tuple, b.obs.tolist())) == {(0, 0, 0), (1, 1, 1), (11, 11, 11)}
    assert buf.head.tolist() == [2, 3]


def test_box_actions_and_float_storage():
    act = gym.spaces.Box(-1, 1, (2,), np.float32)
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float64)
    buf = ReplayBuffer(10, obs_space, act, n_envs=2)
    o = np.zeros((2, 3))
    buf.add(o, np.array([[0.5, -0.5], [0.25, 0.75]]), [0.0, 1.0], o + 1, [False, False], [False, False])
    assert buf.frames.dtype == np.float32
    b = buf.sample(8)
    assert b.actions.shape == (8, 2) and b.actions.dtype == torch.float32
    assert b.obs.shape == (8, 3) and b.weights.tolist() == [1.0] * 8


def test_minibatches_are_consecutive_slices_of_one_draw():
    """A round of n minibatches is one sample(n * batch) cut in order: the same transitions, RNG use
    and tensors as drawing them at once; prioritized replay must draw one at a time."""
    buf = ReplayBuffer(500, VEC, DISCRETE, n_envs=2, seed=3)
    for obs, a, r, nxt, term, trunc in _episodes_stream(2, 200, end_every=30):
        buf.add(obs, a, r, nxt, term, trunc)
    twin = ReplayBuffer(500, VEC, DISCRETE, n_envs=2, seed=3)
    twin.load_state_dict(buf.state_dict())
    whole = twin.sample(3 * 16)
    parts = list(buf.minibatches(3, 16))
    assert len(parts) == 3
    for k, part in enumerate(parts):
        for name, field, ref in zip(part._fields, part, whole):
            expected = ref[16 * k : 16 * (k + 1)]
            assert len(field) == 16, name
            assert np.array_equal(field, expected) if isinstance(field, np.ndarray) else torch.equal(field, expected), (
                name
            )
    prioritized = ReplayBuffer(50, VEC, DISCRETE, prioritized=True)
    with pytest.raises(RuntimeError, match="one minibatch at a time"):
        next(prioritized.minibatches(2, 4))


def test_observation_that_does_not_continue_starts_a_new_stream():
    """A caller whose obs is not the previous next_obs (no episode end) is stored correctly: the
    open n-step sums are cut there and bootstrap (like truncation)."""
    buf = ReplayBuffer(20, VEC, DISCRETE, n_step=2, gamma=0.5)
    obs = lambda v: np.full((1, 3), v, np.float32)
    buf.add(obs(0), [0], [1.0], obs(1), [False], [False])
    buf.add(obs(5), [0], [2.0], obs(6), [False], [False])
    buf.add(obs(6), [0], [4.0], obs(7), [False], [False])
    b = buf.sample(32)
    got = {b.obs[i, 0].item(): (b.rewards[i].item(), b.next_obs[i, 0].item(), b.steps[i].item()) for i in range(32)}
    assert got == {0.0: (1.0, 1.0, 1), 5.0: (2 + 0.5 * 4, 7.0, 2)}


# ---- frame stacks ---------------------------------------------------------------------------------

IMG = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def _stack_stream(n_envs, steps, seed=0):
    """Frame-stacked observations like FrameStackObservation(padding_type='reset'): the reset stack
    repeats the first frame; each frame is unique (its first pixels encode env, episode, t)."""
    rng = np.random.default_rng(seed)

    def frame(e, ep, t):
        f = np.zeros((84, 84), np.uint8)
        f[0, :3] = (e, ep % 256, t % 256)
        return f

    ep = np.zeros(n_envs, int)
    t = np.zeros(n_envs, int)
    stacks = [np.stack([frame(e, 0, 0)] * 4) for e in range(n_envs)]
    for _ in range(steps):
        obs = np.stack(stacks)
        nxt = np.stack([np.concatenate([s[1:], frame(e, ep[e], t[e] + 1)[None]]) for e, s in enumerate(stacks)])
        done = rng.random(n_envs) < 0.1
        yield obs, rng.integers(0, 4, n_envs), np.ones(n_envs, np.float32), nxt, done, np.zeros(n_envs, bool)
        t += 1
        for e in range(n_envs):
            if done[e]:
                ep[e] += 1
                t[e] = 0
                stacks[e] = np.stack([frame(e, ep[e], 0)] * 4)
            else:
                stacks[e] = nxt[e]


def test_frame_stacks_rebuilt_exactly_across_episodes_and_wraparound():
    buf = ReplayBuffer(100, IMG, DISCRETE, n_envs=2, n_step=2, gamma=0.5)
    assert buf.K == 4 and buf.frames.shape == (2, 50, 84, 84)  # one frame per slot, not a stack
    pairs = {}
    for obs, a, r, nxt, term, trunc in _stack_stream(2, 300):
        buf.add(obs, a, r, nxt, term, trunc)
        for e in range(2):
            pairs[obs[e].tobytes()] = (nxt[e].tobytes(), bool(term[e]))
    b = buf.sample(256)
    assert b.obs.dtype == torch.uint8 and b.obs.shape == (256, 4, 84, 84)
    for i in range(256):
        o, n = b.obs[i].numpy(), b.next_obs[i].numpy()
        assert o.tobytes() in pairs, "a rebuilt stack that was never observed"
        n1, _ = pairs[o.tobytes()]
        if b.steps[i].item() == 1:  # one step (the episode ended)
            assert n.tobytes() == n1 and b.terminated[i].item() == 1.0
        else:
            n2, term2 = pairs[n1]
            assert n.tobytes() == n2 and b.terminated[i].item() == float(term2)


def test_an_explicit_frame_stack_rejects_observations_that_are_not_one_clearly():
    buf = ReplayBuffer(20, IMG, DISCRETE, frame_stack=4)
    rng = np.random.default_rng(0)
    o = rng.integers(0, 255, (1, 4, 84, 84), dtype=np.uint8)
    with pytest.raises(ValueError, match="frame_stack=1"):
        buf.add(o, [0], [0.0], rng.integers(0, 255, (1, 4, 84, 84), dtype=np.uint8), [False], [False])
    flat = ReplayBuffer(20, IMG, DISCRETE, frame_stack=1)
    flat.add(o, [0], [0.0], o[:, ::-1].copy(), [False], [False])
    assert np.array_equal(flat.sample(1).next_obs.numpy(), o[:, ::-1])


RGB = gym.spaces.Box(0, 255, (3, 16, 16), np.uint8)  # channels-first RGB: shaped like a 3-frame stack


def _rgb_stream(n_envs, steps, seed=0, gray_steps=0):
    """Channels-first RGB images (not a stack); episodes of 1 to 4 steps. For the first `gray_steps` steps
    every image is one gray level that does not change within an episode, which looks like a frame stack."""
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, (n_envs, *RGB.shape), dtype=np.uint8)
    for step in range(steps):
        if step < gray_steps:
            obs = np.repeat(obs[:, :1], 3, axis=1)
            nxt = obs.copy()
        else:
            nxt = rng.integers(0, 256, (n_envs, *RGB.shape), dtype=np.uint8)
        done = rng.random(n_envs) < 0.4
        term = done & (rng.random(n_envs) < 0.5)
        yield obs, rng.integers(0, 4, n_envs), rng.normal(size=n_envs).astype(np.float32), nxt, term, done & ~term
        reset = rng.integers(0, 256, (n_envs, *RGB.shape), dtype=np.uint8)
        obs = np.where(done[:, None, None, None], reset, nxt)


def _assert_samples_are_added_transitions(buf, pairs, n=256):
    """Every sampled (obs, next_obs) is an added (obs, its k-th successor), bit for bit."""
    b = buf.sample(n)
    for i in range(n):
        o, nxt = b.obs[i].numpy().tobytes(), b.next_obs[i].numpy().tobytes()
        assert o in pairs, "a sampled observation that was never added"
        for _ in range(int(b.steps[i])):
            o = pairs[o]
        assert nxt == o


def test_channels_first_images_that_are_not_frame_stacks_are_stored_whole():
    buf = ReplayBuffer(60, RGB, DISCRETE, n_envs=2, n_step=2, gamma=0.5)
    assert buf.K == 3 and buf.frames.shape == (2, 30, 16, 16)  # guessed from the shape alone
    pairs = {}
    for step in _rgb_stream(2, 100):
        buf.add(*step)
        for e in range(2):
            pairs[step[0][e].tobytes()] = step[3][e].tobytes()
    assert buf.K == 1 and buf.frames.shape == (2, 30, 3, 16, 16)  # the first transition said otherwise
    _assert_samples_are_added_transitions(buf, pairs)
    assert buf.nbytes(60, RGB, DISCRETE, n_envs=2, frame_stack=1) == 60 * (768 + 8 + buf._SLOT_EXTRA_BYTES)


def test_a_stack_guess_that_held_for_a_while_switches_without_losing_a_transition():
    buf = ReplayBuffer(80, RGB, DISCRETE, n_envs=2, n_step=3, gamma=0.5, prioritized=True)
    pairs, n_ready = {}, []
    for t, step in enumerate(_rgb_stream(2, 150, seed=4, gray_steps=30)):
        if t == 30:  # static gray images shift like a stack: still one frame per slot, every sample exact
            assert buf.K == 3 and len(buf) > 0
            _assert_samples_are_added_transitions(buf, pairs)
            n_ready = len(buf)
        buf.add(*step)
        if t == 30:  # rebuilt whole, with every transition it held
            assert buf.K == 1 and len(buf) >= n_ready
        for e in range(2):
            pairs[step[0][e].tobytes()] = step[3][e].tobytes()
    assert buf.tree.total == pytest.approx(buf.tree[np.arange(2 * buf.slots)].sum())
    _assert_samples_are_added_transitions(buf, pairs)


def test_switching_to_whole_images_checks_memory_first(monkeypatch):
    from deeprl import buffers

    compact = ReplayBuffer.nbytes(1_000_000, RGB, DISCRETE)
    monkeypatch.setattr(buffers, "available_memory", lambda: compact + 2**20)
    buf = ReplayBuffer(1_000_000, RGB, DISCRETE)  # fits one frame a slot, not three
    obs, a, r, nxt, term, trunc = next(_rgb_stream(1, 1))
    with pytest.raises(UsageError, match=r"needs 0\.\d+ GiB.*--buffer-size"):
        buf.add(obs, a, r, nxt, term, trunc)


def test_a_switched_buffer_resumes_into_a_fresh_one():
    make = lambda: ReplayBuffer(40, RGB, DISCRETE, n_envs=2, n_step=2, seed=5)  # noqa: E731
    stream = list(_rgb_stream(2, 80, seed=6))
    a, b = make(), make()
    for step in stream[:40]:
        a.add(*step)
    b.load_state_dict(a.state_dict())
    assert b.K == 1 and b.frames.shape == a.frames.shape
    for step in stream[40:]:
        a.add(*step)
        b.add(*step)
    for x, y in zip(a.sample(16), b.sample(16)):
        assert np.array_equal(np.asarray(x), np.asarray(y))


class _Frames(gym.Env):
    """12x12 uint8 frames, each unique (its first pixels: episode, t); episodes of 1 to 3 steps."""

    observation_space = gym.spaces.Box(0, 255, (12, 12), np.uint8)
    action_space = DISCRETE

    def _frame(self):
        f = self.np_random.integers(0, 256, (12, 12), dtype=np.uint8)
        f[0, :2] = (self.ep % 256, self.t)
        return f

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.ep, self.t = getattr(self, "ep", -1) + 1, 0
        self.length = 1 + self.ep % 3  # every third episode ends on its first step
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        return self._frame(), 1.0, self.t == self.length, False, {}


def test_gymnasium_frame_stacks_keep_one_frame_a_slot_even_when_episodes_end_at_once():
    env = gym.wrappers.FrameStackObservation(_Frames(), 4)  # padding "reset": a reset stack repeats its frame
    buf = ReplayBuffer(200, env.observation_space, DISCRETE, n_step=2, gamma=0.5)
    compact = ReplayBuffer.nbytes(200, env.observation_space, DISCRETE)
    assert compact == 200 * (144 + 8 + ReplayBuffer._SLOT_EXTRA_BYTES)
    pairs = {}
    obs, _ = env.reset(seed=0)
    for _ in range(300):
        nxt, r, term, trunc, _ = env.step(0)
        buf.add(obs[None], [0], [r], nxt[None], [term], [trunc])
        pairs[obs.tobytes()] = nxt.tobytes()
        obs = env.reset()[0] if term or trunc else nxt
    assert buf.K == 4 and buf.frames.shape == (1, 200, 12, 12)
    _assert_samples_are_added_transitions(buf, pairs)


def test_memory_for_a_million_atari_transitions():
    need = ReplayBuffer.nbytes(1_000_000, IMG, DISCRETE)
    assert need == 1_000_000 * (84 * 84 + 8 + ReplayBuffer._SLOT_EXTRA_BYTES)
    assert need < 7.2e9  # well under 10 GB: frames are not stored twice, nor four times
    assert ReplayBuffer.nbytes(1_000_000, IMG, DISCRETE, prioritized=True) < need + 40e6
    # vector observations: one float32 copy per transition, not obs and next_obs
    assert ReplayBuffer.nbytes(1000, VEC, DISCRETE) == 1000 * (12 + 8 + ReplayBuffer._SLOT_EXTRA_BYTES)


def test_capacity_beyond_memory_fails_before_allocation(monkeypatch):
    from deeprl import buffers

    monkeypatch.setattr(buffers, "available_memory", lambda: 8 * 2**30)
    with pytest.raises(UsageError, match=r"needs 26\.\d+ GiB.*8\.00 GiB.*--buffer-size"):
        ReplayBuffer(4_000_000, IMG, DISCRETE)
    with pytest.raises(UsageError, match="too small"):
        ReplayBuffer(4, VEC, DISCRETE, n_step=3)


# ---- sum-tree and prioritized replay --------------------------------------------------------------


def test_sum_tree_prefix_search_and_proportions():
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([1.0, 0.0, 3.0, 2.0, 4.0]))
    assert tree.total == 10.0
    assert tree.find(np.array([0.0, 0.99, 1.0, 3.99, 4.0, 5.99, 6.0, 9.99])).tolist() == [0, 0, 2, 2, 3, 3, 4, 4]
    tree.set(np.array([4]), 0.5)
    assert tree.total == 6.5
    counts = np.bincount(tree.find(np.random.default_rng(0).random(100_000) * tree.total), minlength=5)
    np.testing.assert_allclose(counts / 100_000, np.array([1, 0, 3, 2, 0.5]) / 6.5, atol=0.01)


def test_prioritized_sampling_proportions_and_weights():
    alpha = 0.5
    buf = ReplayBuffer(16, VEC, DISCRETE, prioritized=True, alpha=alpha, seed=3)
    for v in range(4):
        o = np.full((1, 3), v, np.float32)
        buf.add(o, [v], [0.0], o + 0.5, [True], [False])
    assert len(buf) == 4
    b = buf.sample(4)
    assert b.weights.tolist() == [1.0] * 4  # all at the initial max priority
    idx_by_action = {}
    for _ in range(10):
        b = buf.sample(4)
        idx_by_action.update({int(a): int(i) for a, i in zip(b.actions, b.indices)})
    priorities = np.array([1.0, 4.0, 9.0, 16.0])
    idx = np.array([idx_by_action[a] for a in range(4)])
    buf.update_priorities(idx, priorities - buf.priority_eps)
    counts = np.zeros(4)
    for _ in range(500):
        b = buf.sample(32, beta=1.0)
        np.add.at(counts, b.actions.numpy(), 1)
        w = dict(zip(b.actions.tolist(), b.weights.tolist()))
    expected = np.sqrt(priorities) / np.sqrt(priorities).sum()  # p^alpha normalised: 1,2,3,4 / 10
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.01)
    # w_i = (N P(i))^-beta / max_j w_j with beta = 1: proportional to 1/P(i)
    for a, weight in w.items():
        assert weight == pytest.approx(min(expected[list(w)]) / expected[a], rel=1e-5)
    assert buf.max_priority == pytest.approx(16.0)


def test_prioritized_overwritten_slots_leave_the_tree():
    buf = ReplayBuffer(8, VEC, DISCRETE, prioritized=True)
    for obs, a, r, nxt, term, trunc in _episodes_stream(1, 100, 5):
        buf.add(obs, a, r, nxt, term, trunc)
    leaves = buf.tree[np.arange(buf.slots)]
    assert np.array_equal(leaves > 0, buf.ready[0])
    assert buf.tree.total == pytest.approx(leaves.sum())


# ---- resume ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_round_trip_continues_identically(prioritized):
    def make():
        return ReplayBuffer(40, VEC, DISCRETE, n_envs=2, n_step=2, prioritized=prioritized, seed=7)

    stream = list(_episodes_stream(2, 120, 6, seed=2))
    a, b = make(), make()
    for step in stream[:60]:
        a.add(*step)
    a.sample(8)
    state = a.state_dict()
    b.load_state_dict(state)
    for step in stream[60:]:
        a.add(*step)
        b.add(*step)
    sa, sb = a.sample(16), b.sample(16)
    for x, y in zip(sa, sb):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert len(a) == len(b)
    with pytest.raises(ValueError, match="buffer-size"):
        ReplayBuffer(80, VEC, DISCRETE, n_envs=2).load_state_dict(state)
