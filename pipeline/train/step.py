"""One optimisation step of VA-RED²: soft-mode forward, L = L_a + lambda_e * L_e, backward, update.

Pure torch: the same function runs in the Ray workers, the plain-loop benchmark and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

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
               autocast_dtype: torch.dtype | None = None, grad_clip: float = 0.0) -> StepResult:
    """clips (B, C, T, H, W) normalised, labels (B,) long; model returns a VaredOutput."""
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
