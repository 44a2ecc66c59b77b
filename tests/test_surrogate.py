"""The losses of deeprl/math/surrogate.py: hand-computed values, gradients, and L^clip ≤ L_sur."""

from __future__ import annotations

import torch

from deeprl.math import (
    clipped_surrogate,
    clipped_value_loss,
    importance_ratio,
    is_surrogate,
    masked_normalize,
    reinforce_loss,
    value_loss,
)


def test_reinforce_loss_is_minus_mean_log_prob_times_return_and_its_gradient():
    log_prob = torch.log(torch.tensor([0.5, 0.25], requires_grad=True))
    returns = torch.tensor([2.0, -4.0])
    loss = reinforce_loss(log_prob, returns)
    torch.testing.assert_close(loss, -(torch.log(torch.tensor(0.5)) * 2 + torch.log(torch.tensor(0.25)) * -4) / 2)
    theta = torch.zeros(3, requires_grad=True)
    log_pi = torch.log_softmax(theta, 0)[torch.tensor([0, 2])]
    reinforce_loss(log_pi, returns).backward()
    # −ĝ = −mean_t R_t ∇ log π(a_t): ∇_θ log softmax(θ)_a = e_a − π, π uniform
    pi = torch.full((3,), 1 / 3)
    expected = -(2.0 * (torch.tensor([1.0, 0, 0]) - pi) + -4.0 * (torch.tensor([0, 0, 1.0]) - pi)) / 2
    torch.testing.assert_close(theta.grad, expected)


def test_reinforce_loss_masks_autoreset_rows():
    log_prob = torch.tensor([-1.0, -2.0, -3.0])
    assert reinforce_loss(log_prob, torch.ones(3), torch.tensor([1.0, 0.0, 1.0])).item() == 2.0


def test_importance_ratio():
    torch.testing.assert_close(
        importance_ratio(torch.log(torch.tensor([0.6])), torch.log(torch.tensor([0.3]))), torch.tensor([2.0])
    )


def test_surrogate_gradient_at_theta_equals_reinforce_gradient():
    """∇ L_sur(θ', θ) at θ' = θ is the REINFORCE gradient (the notes' "The surrogate function")."""
    returns = torch.tensor([1.0, -2.0, 3.0])
    actions = torch.tensor([0, 1, 1])
    grads = []
    for loss_fn in (lambda lp, old: reinforce_loss(lp, returns), lambda lp, old: is_surrogate(lp, old, returns)):
        theta = torch.tensor([0.3, -0.2], requires_grad=True)
        log_pi = torch.log_softmax(theta, 0)[actions]
        loss_fn(log_pi, log_pi.detach()).backward()
        grads.append(theta.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_clipped_surrogate_hand_values():
    # ratio 1.5, A = 2, ε = 0.2: min(3, 1.2*2 = 2.4) = 2.4.  ratio 0.5, A = −1: min(−0.5, 0.8*−1 = −0.8) = −0.8
    log_prob = torch.log(torch.tensor([1.5, 0.5]))
    old = torch.zeros(2)
    torch.testing.assert_close(clipped_surrogate(log_prob[:1], old[:1], torch.tensor([2.0]), 0.2), torch.tensor(-2.4))
    torch.testing.assert_close(clipped_surrogate(log_prob[1:], old[1:], torch.tensor([-1.0]), 0.2), torch.tensor(0.8))
    # inside the interval nothing is clipped
    torch.testing.assert_close(
        clipped_surrogate(torch.log(torch.tensor([1.1])), torch.zeros(1), torch.tensor([3.0]), 0.2),
        is_surrogate(torch.log(torch.tensor([1.1])), torch.zeros(1), torch.tensor([3.0])),
    )


def test_clipped_surrogate_is_never_above_the_surrogate():
    """L^clip ≤ L_sur for every ratio and advantage (as losses: −L^clip ≥ −L_sur), element by element."""
    g = torch.Generator().manual_seed(0)
    log_prob = torch.randn(500, generator=g)
    old = torch.randn(500, generator=g)
    advantages = torch.randn(500, generator=g) * 3
    for eps in (0.1, 0.2, 0.5):
        for i in range(500):
            clipped = clipped_surrogate(log_prob[i : i + 1], old[i : i + 1], advantages[i : i + 1], eps)
            plain = is_surrogate(log_prob[i : i + 1], old[i : i + 1], advantages[i : i + 1])
            assert clipped >= plain - 1e-6
        # and the clipping is active somewhere (the test would pass trivially otherwise)
        assert clipped_surrogate(log_prob, old, advantages, eps) > is_surrogate(log_prob, old, advantages)


def test_value_losses():
    v, target = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 0.0])
    torch.testing.assert_close(value_loss(v, target), torch.tensor(0.5 * (1 + 9) / 2))
    # old values 1, 1; ε = 0.5: clipped values 1, 1.5; squared errors max((1-2)², (1-2)²) = 1, max(9, 2.25) = 9
    torch.testing.assert_close(clipped_value_loss(v, torch.tensor([1.0, 1.0]), target, 0.5), torch.tensor(0.5 * 10 / 2))
    # a value moved far past its target is held by the clipped term: (1.5 − 5)² = 12.25 > (3 − 5)² = 4
    torch.testing.assert_close(
        clipped_value_loss(torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([5.0]), 0.5),
        torch.tensor(0.5 * 12.25),
    )


def test_masked_normalize_normalises_the_real_entries_only():
    x = torch.tensor([1.0, 3.0, 100.0, 5.0])
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    # real entries 1, 3, 5: mean 3, unbiased std sqrt((4 + 0 + 4) / 2) = 2
    expected = torch.tensor([-1.0, 0.0, 97.0 / 2, 1.0]) * (2 / (2 + 1e-8))
    torch.testing.assert_close(masked_normalize(x, mask)[mask > 0], expected[mask > 0])
    torch.testing.assert_close(masked_normalize(x, mask)[mask > 0], ((x - 3) / (x[mask > 0].std() + 1e-8))[mask > 0])
    one = torch.tensor([0.0, 0.0, 1.0, 0.0])
    torch.testing.assert_close(masked_normalize(x, one), x)  # fewer than two real entries: unchanged
    batched = torch.vmap(masked_normalize)(torch.stack([x, x]), torch.stack([mask, one]))
    torch.testing.assert_close(batched[1], x)
