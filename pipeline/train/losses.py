"""Losses of VA-RED² (METHOD.md section 5): L = L_a + lambda_e * L_e."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pipeline.models.output import VaredOutput


# The form of L_e. "squared" (the paper): mean_b (mu_0 E_b)^2, whose pull on a clip grows with the
# clip's cost (d/dE = 2 E). "linear" (ours): mean_b mu_0 E_b, the same price per unit of compute
# for every clip. Measured on 3 seeds: the linear form does not widen the spread of per-clip cost
# and costs 1.9 points of clip-1 (benchmarks/RESULTS.md section 7), so "squared" stays the default.
EFFICIENCY_FORMS = ("squared", "linear")


def efficiency_loss(output: VaredOutput, labels: Tensor, form: str = "squared") -> Tensor:
    """mean_b (mu_0 * sum_l w_l r^s_l / R^s_l)^2 ("squared") or mean_b mu_0 * sum_l w_l r^s_l / R^s_l
    ("linear"), mu_0 = 1 for correctly classified samples (detached): efficiency is only pushed on
    samples the model already gets right."""
    if form not in EFFICIENCY_FORMS:
        raise ValueError(f"form={form!r} is not valid; choose one of {EFFICIENCY_FORMS}")
    if not output.records:  # a static model has no computation to save: L_e is 0, not a constant
        return output.logits.new_zeros(())
    correct = (output.logits.detach().argmax(dim=1) == labels).to(output.expected_ratio.dtype)
    cost = correct * output.expected_ratio
    return (cost ** 2 if form == "squared" else cost).mean()


def total_loss(output: VaredOutput, labels: Tensor, lambda_e: float,
               lambda_d: float = 0.0, efficiency_form: str = "squared") -> tuple[Tensor, Tensor, Tensor]:
    """(L, L_a, L_e) with L_a the cross-entropy of the logits."""
    loss_acc = F.cross_entropy(output.logits, labels)
    loss_eff = efficiency_loss(output, labels, efficiency_form)
    loss = loss_acc + lambda_e * loss_eff
    if lambda_d > 0 and output.distortion is not None:
        loss = loss + lambda_d * output.distortion.mean()
    return loss, loss_acc, loss_eff
