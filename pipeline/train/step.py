"""One optimisation step of VA-RED²: soft-mode forward, L = L_a + lambda_e * L_e, backward, update.

Pure torch: the same function runs in the Ray workers, the plain-loop benchmark and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.budget import set_offset
from pipeline.models.convert import clear_policy, dynamic_layers, force_policy
from pipeline.train.losses import total_loss


@dataclass
class StepResult:
    loss: float
    loss_acc: float
    loss_eff: float
    correct: int
    count: int
    macs_sum: float  # sum over the batch of per-clip MACs of the argmax policy


def train_step(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor,
               optimizer: torch.optim.Optimizer, *, lambda_e: float, lambda_d: float = 0.0,
               efficiency_form: str = "squared", scheduler=None, scaler: torch.amp.GradScaler | None = None,
               autocast_dtype: torch.dtype | None = None, grad_clip: float = 0.0,
               sandwich_offsets: Sequence[float] | None = None) -> StepResult:
    """clips (B, C, T, H, W) normalised, labels (B,) long; model returns a VaredOutput.

    `sandwich_offsets` (a dynamic model only): after the trained policy's pass, the same clips also
    run under the full policy, the cheapest policy and the policy shifted by each of these budget
    offsets, their gradients added before the one update (`sandwich_backward`)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    device_type = clips.device.type
    with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16,
                        enabled=autocast_dtype is not None):
        output = model(clips)
        loss, loss_acc, loss_eff = total_loss(output, labels, lambda_e, lambda_d, efficiency_form)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if sandwich_offsets is not None:
        sandwich_backward(model, clips, labels, sandwich_offsets, autocast_dtype=autocast_dtype, scaler=scaler)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    with torch.no_grad():
        correct = int((output.logits.argmax(dim=1) == labels).sum())
    return StepResult(loss=float(loss.detach()), loss_acc=float(loss_acc.detach()),
                      loss_eff=float(loss_eff.detach()), correct=correct, count=int(labels.numel()),
                      macs_sum=float(output.macs.double().sum()))


def sandwich_backward(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor, offsets: Sequence[float], *,
                      autocast_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None) -> None:
    """The sandwich rule of slimmable networks, for the budget knob (ours, issue 14): add to the
    gradients already accumulated those of the full policy (every layer at full compute, learning
    from the labels), of the cheapest policy and of the policy shifted by each budget offset in
    `offsets`, the last two learning from the full policy's predictions (in-place distillation,
    KL to its detached softmax). So one set of weights is trained at both ends of the knob and in
    between, every step. The gates keep the gradients of the trained policy's pass only (they
    decide, they are not what the budget trains), and no BatchNorm running statistic moves in these
    passes: the backbone's stay those of the trained policy (the knob's calibration estimates them
    per budget), the gates' stay those of the inputs they decide on."""
    layers = [layer for _, layer in dynamic_layers(model)]
    if not layers:
        raise ValueError("sandwich_offsets needs a dynamic model: a static model has one policy")
    cheapest = layers[0].search_space - 1
    gate_params = [p for n, p in model.named_parameters() if ".gate." in n and p.requires_grad]
    gate_grads = [None if p.grad is None else p.grad.clone() for p in gate_params]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    device_type = clips.device.type

    def backward(loss: torch.Tensor) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    try:
        for m in norms:
            m.momentum = 0.0  # batch statistics normalise, running statistics stay
        with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            force_policy(model, 0, 0)
            full = model(clips).logits
            backward(F.cross_entropy(full, labels))
            teacher = full.detach().float().softmax(dim=1)
            policies = [("force", cheapest)] + [("offset", float(o)) for o in offsets]
            for kind, value in policies:
                if kind == "force":
                    force_policy(model, value, value)
                else:
                    clear_policy(model)
                    set_offset(model, value)
                student = model(clips).logits.float().log_softmax(dim=1)
                backward(F.kl_div(student, teacher, reduction="batchmean"))
    finally:
        clear_policy(model)
        set_offset(model, 0.0)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for p, g in zip(gate_params, gate_grads):
            p.grad = g


@dataclass
class EpochMeter:
    """Running sums of StepResults over an epoch (one rank); `summary()` gives the train/ metrics."""

    loss: float = 0.0
    loss_acc: float = 0.0
    loss_eff: float = 0.0
    correct: int = 0
    count: int = 0
    macs_sum: float = 0.0
    steps: int = 0

    def add(self, r: StepResult) -> None:
        self.loss += r.loss * r.count
        self.loss_acc += r.loss_acc * r.count
        self.loss_eff += r.loss_eff * r.count
        self.correct += r.correct
        self.count += r.count
        self.macs_sum += r.macs_sum
        self.steps += 1

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.loss, self.loss_acc, self.loss_eff, self.correct, self.count,
                             self.macs_sum, self.steps], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "EpochMeter":
        v = t.tolist()
        return cls(v[0], v[1], v[2], int(v[3]), int(v[4]), v[5], int(v[6]))

    def summary(self) -> dict[str, float]:
        n = max(1, self.count)
        return {"train/loss": self.loss / n, "train/loss_acc": self.loss_acc / n,
                "train/loss_eff": self.loss_eff / n, "train/top1": self.correct / n,
                "train/gflops": self.macs_sum / n / 1e9}
