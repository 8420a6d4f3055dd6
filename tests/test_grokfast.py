"""The Grokfast filters against the formulas of Lee et al. 2024, computed by hand."""

import torch

from grokforecast.training.grokfast import EMAFilter, MAFilter

GRADIENTS = [torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5]), torch.tensor([-1.0, 4.0])]


def _filtered(grad_filter, gradients: list[torch.Tensor]) -> list[torch.Tensor]:
    parameter = torch.nn.Parameter(torch.zeros(2))
    out = []
    for g in gradients:
        parameter.grad = g.clone()
        grad_filter.apply([parameter])
        out.append(parameter.grad.clone())
    return out


def test_ema_starts_at_the_first_gradient_and_amplifies_the_average() -> None:
    alpha, lamb = 0.9, 2.0
    g1, g2, g3 = GRADIENTS
    mu1 = g1
    mu2 = alpha * mu1 + (1 - alpha) * g2
    mu3 = alpha * mu2 + (1 - alpha) * g3
    expected = [g1 + lamb * mu1, g2 + lamb * mu2, g3 + lamb * mu3]
    for got, want in zip(_filtered(EMAFilter(alpha, lamb), GRADIENTS), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_ma_waits_for_a_full_window_then_adds_the_window_mean() -> None:
    window, lamb = 2, 5.0
    g1, g2, g3 = GRADIENTS
    expected = [g1, g2 + lamb * (g1 + g2) / 2, g3 + lamb * (g2 + g3) / 2]
    for got, want in zip(_filtered(MAFilter(window, lamb), GRADIENTS), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_filter_state_round_trips() -> None:
    first = MAFilter(2, 5.0)
    _filtered(first, GRADIENTS[:2])
    second = MAFilter(2, 5.0)
    second.load_state_dict(first.state_dict())
    torch.testing.assert_close(_filtered(second, GRADIENTS[2:]), _filtered(first, GRADIENTS[2:]))
