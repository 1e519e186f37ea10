"""Efficiency loss (METHOD.md section 5): zero for misclassified samples, reaches the gates."""

import torch
from torch import nn

from pipeline.models.vared import VaredModel
from pipeline.train.losses import efficiency_loss, total_loss


def _model():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(),
                             nn.Conv3d(8, 8, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 4))
    return VaredModel(backbone, include=lambda n, m: n == "3").train()


def test_efficiency_loss_only_on_correct_samples_and_reaches_gates():
    model = _model()
    out = model(torch.randn(4, 3, 4, 8, 8))
    pred = out.logits.argmax(dim=1)
    wrong = (pred + 1) % 4
    assert efficiency_loss(out, wrong).item() == 0.0
    loss = efficiency_loss(out, pred)
    assert loss.item() > 0
    torch.testing.assert_close(loss, (out.expected_ratio ** 2).mean())
    loss.backward()
    gate = model.backbone[3].gate
    assert gate.fc2.bias.grad is not None and gate.fc2.bias.grad.abs().sum() > 0
    labels = torch.stack([pred[0], wrong[1], pred[2], wrong[3]])
    torch.testing.assert_close(efficiency_loss(out, labels), (out.expected_ratio[[0, 2]] ** 2).sum() / 4)


def test_total_loss_combines_terms():
    model = _model()
    out = model(torch.randn(4, 3, 4, 8, 8))
    labels = out.logits.argmax(dim=1)
    loss, loss_acc, loss_eff = total_loss(out, labels, 0.5)
    torch.testing.assert_close(loss, loss_acc + 0.5 * loss_eff)
    torch.testing.assert_close(loss_acc, nn.functional.cross_entropy(out.logits, labels))


def test_linear_efficiency_loss_prices_every_clip_alike_and_squared_presses_costly_clips():
    """d L_e / d E_b: 1 / B for every correctly classified clip with the linear form, 2 E_b / B with
    the paper's squared form (the costlier clip pressed harder); a bad form names the valid ones."""
    import pytest

    model = _model()
    out = model(torch.randn(4, 3, 4, 8, 8))
    labels = out.logits.argmax(dim=1)
    ratio = out.expected_ratio.detach().clone().requires_grad_(True)
    for form, expected in (("linear", torch.full((4,), 0.25)), ("squared", 2 * ratio.detach() / 4)):
        out.expected_ratio = ratio
        (grad,) = torch.autograd.grad(efficiency_loss(out, labels, form), ratio)
        torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(efficiency_loss(out, labels, "linear"), ratio.mean())
    with pytest.raises(ValueError, match="squared"):
        efficiency_loss(out, labels, "cubic")
