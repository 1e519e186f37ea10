"""Optimiser, learning-rate schedule and the lambda_e warm-up ramp (METHOD.md section 8)."""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on norms, biases and gate biases: decaying beta_l would pull gates to "off";
    # nor on the cheap ops, whose kernels start at the identity or a least-squares fit, not near 0.
    # Gates (".gate." in the name) get their own learning rate, cfg.lr * cfg.gate_lr_mult.
    buckets: dict[tuple[bool, bool], list] = {(g, d): [] for g in (False, True) for d in (False, True)}
    for name, param in model.named_parameters():
        if param.requires_grad:
            cheap = ".channel_ops." in name or ".temporal_op." in name
            buckets[(".gate." in name, param.ndim > 1 and not cheap)].append(param)
    groups = [{"params": params, "weight_decay": cfg.weight_decay if decay else 0.0,
               "lr": cfg.lr * (cfg.gate_lr_mult if gate else 1.0)}
              for (gate, decay), params in buckets.items() if params]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step schedule over `cfg.epochs` epochs."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        fn = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    elif cfg.schedule == "step":
        fn = lambda step: 0.1 ** (3 * step // total)  # noqa: E731  (x0.1 at 1/3 and 2/3)
    else:
        fn = lambda step: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def lambda_e_at(cfg: TrainConfig, epoch: int, fraction: float = 0.0) -> float:
    """lambda_e ramped linearly from 0 over the warm-up epochs (`fraction` = progress within the epoch)."""
    if cfg.lambda_e_warmup_epochs <= 0:
        return cfg.lambda_e
    progress = (epoch + fraction) / cfg.lambda_e_warmup_epochs
    return cfg.lambda_e * min(1.0, progress)
