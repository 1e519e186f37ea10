"""Losses of VA-RED² (METHOD.md section 5): L = L_a + lambda_e * L_e."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pipeline.models.output import VaredOutput


def efficiency_loss(output: VaredOutput, labels: Tensor) -> Tensor:
    """mean_b (mu_0 * sum_l w_l r^s_l / R^s_l)^2, mu_0 = 1 for correctly classified samples (detached):
    efficiency is only pushed on samples the model already gets right."""
    if not output.records:  # a static model has no computation to save: L_e is 0, not a constant
        return output.logits.new_zeros(())
    correct = (output.logits.detach().argmax(dim=1) == labels).to(output.expected_ratio.dtype)
    return ((correct * output.expected_ratio) ** 2).mean()


def total_loss(output: VaredOutput, labels: Tensor, lambda_e: float,
               lambda_d: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """(L, L_a, L_e) with L_a the cross-entropy of the logits."""
    loss_acc = F.cross_entropy(output.logits, labels)
    loss_eff = efficiency_loss(output, labels)
    loss = loss_acc + lambda_e * loss_eff
    if lambda_d > 0 and output.distortion is not None:
        loss = loss + lambda_d * output.distortion.mean()
    return loss, loss_acc, loss_eff
