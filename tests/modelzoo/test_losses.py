"""Flow matching and the paper's flow-matching DPO loss."""
import copy
import math

import pytest
import torch

from modelzoo.builtin.losses import (
    dpo_loss_from_errors,
    flow_dpo_loss,
    flow_errors,
    flow_matching_loss,
    sample_flow_inputs,
)

pytestmark = []


class TinyFlow(torch.nn.Module):
    """A velocity model small enough to reason about: v = W x_t + b + c * cond."""

    def __init__(self, dim=3):
        super().__init__()
        self.lin = torch.nn.Linear(dim, dim)

    def velocity(self, x_t, t, cond):
        return self.lin(x_t) + cond[:, : x_t.shape[1]] * t[:, None]


def test_dpo_loss_matches_hand_computation():
    # inside = (0.2 - 0.3) - (0.5 - 0.4) = -0.2 ; -beta * inside = 2 ; -log sigmoid(2) = log(1 + e^-2)
    loss = dpo_loss_from_errors(torch.tensor(0.2), torch.tensor(0.3), torch.tensor(0.5), torch.tensor(0.4), beta=10.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)
    assert loss.item() == pytest.approx(0.126928, abs=1e-6)
    # Batched: the mean of per-pair losses.
    loss2 = dpo_loss_from_errors(torch.tensor([0.2, 0.4]), torch.tensor([0.3, 0.4]), torch.tensor([0.5, 0.4]),
                                 torch.tensor([0.4, 0.4]), beta=10.0)
    assert loss2.item() == pytest.approx(0.5 * (math.log(1 + math.exp(-2.0)) + math.log(2.0)), rel=1e-6)


def test_flow_interpolation_and_target():
    x1 = torch.tensor([[1.0, 2.0]])
    x0 = torch.tensor([[-1.0, 0.0]])
    x_t, t, v, _ = sample_flow_inputs(x1, x0, torch.tensor([0.25]))
    assert torch.allclose(x_t, torch.tensor([[-0.5, 0.5]]))  # (1 - t) x0 + t x1
    assert torch.allclose(v, torch.tensor([[2.0, 2.0]]))  # x1 - x0


def test_flow_matching_loss_value():
    torch.manual_seed(0)
    m = TinyFlow()
    x1, noise, t, cond = torch.randn(4, 3), torch.randn(4, 3), torch.rand(4), torch.randn(4, 3)
    x_t = (1 - t[:, None]) * noise + t[:, None] * x1
    expected = ((m.velocity(x_t, t, cond) - (x1 - noise)) ** 2).mean()
    assert flow_matching_loss(m, cond, x1, noise, t).item() == pytest.approx(expected.item(), rel=1e-6)


def test_dpo_equals_log2_when_policy_is_reference():
    torch.manual_seed(0)
    m = TinyFlow()
    loss, stats = flow_dpo_loss(m, copy.deepcopy(m), torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3),
                                beta=50.0)
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_dpo_uses_same_noise_and_time_and_prefers_winner():
    torch.manual_seed(1)
    model, ref = TinyFlow(), TinyFlow()
    ref.load_state_dict(model.state_dict())
    cond, xw, xl = torch.zeros(64, 3), torch.randn(64, 3) + 2.0, torch.randn(64, 3) - 2.0
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(64, 3, generator=g), torch.rand(64, generator=g)
    before_w = flow_errors(model, cond, xw, noise, t).mean().item()
    before_l = flow_errors(model, cond, xl, noise, t).mean().item()
    for _ in range(30):
        loss, stats = flow_dpo_loss(model, ref, cond, xw, xl, beta=5.0, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after_w = flow_errors(model, cond, xw, noise, t).mean().item()
    after_l = flow_errors(model, cond, xl, noise, t).mean().item()
    assert (after_w - before_w) - (after_l - before_l) < 0  # winner relatively better than loser
    assert stats["reward_accuracy"] > 0.5
