"""deeprl.seeding: one Seeds object turns the run's seed into independent, named random streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeprl.seeding import Seeds, name_key, seed_everything


def test_a_stream_depends_only_on_seed_name_and_index():
    a, b = Seeds(7), Seeds(7)
    np.testing.assert_array_equal(a.generator("replay").random(5), b.generator("replay").random(5))
    assert a.integer("env_reset", 0) == b.integer("env_reset", 0)
    assert a.integer("env_reset", 0) != a.integer("env_reset", 100)  # a new index, a new seed
    assert a.integer("env_reset", 0) != Seeds(8).integer("env_reset", 0)
    assert not np.array_equal(a.generator("replay").random(5), a.generator("noise").random(5))


def test_the_derivation_is_the_documented_spawn_key():
    """A stream is SeedSequence(seed, spawn_key=(blake2b-64 of its name, *index)): pinned, because changing
    it would silently change every run's trajectories (and adding a stream must change none)."""
    assert name_key("exploration") == 4118562945580247537
    expected = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(name_key("exploration"),)))
    np.testing.assert_array_equal(Seeds(0).generator("exploration").random(4), expected.random(4))
    state = np.random.SeedSequence(0, spawn_key=(name_key("env_reset"), 0)).generate_state(1, np.uint32)[0]
    assert Seeds(0).integer("env_reset", 0) == int(state) >> 1


def test_integers_fit_an_int32_seed():
    values = [Seeds(s).integer("env_reset", k) for s in range(20) for k in range(20)]
    assert all(0 <= v < 2**31 for v in values) and len(set(values)) == len(values)


def test_torch_generator_repeats_and_is_not_the_global_stream():
    a = torch.randn(4, generator=Seeds(3).torch_generator("policy"))
    b = torch.randn(4, generator=Seeds(3).torch_generator("policy"))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    seed_everything(3)  # the global torch stream (network initialisation) must not be the policy's ε
    assert not torch.equal(torch.randn(4), a)


def test_seed_everything_repeats():
    seed_everything(5)
    first = (np.random.random(), torch.rand(1).item())
    seed_everything(5)
    assert (np.random.random(), torch.rand(1).item()) == first


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_a_bad_seed_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        Seeds(bad)
