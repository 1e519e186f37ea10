"""What every model of this project returns from `forward(x)`: logits plus the gate decisions and
per-clip costs (the VA-RED² model, the static model behind the same interface, the baselines)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.models.dynamic_conv import LayerRecord


@dataclass
class VaredOutput:
    logits: Tensor  # (B, K)
    records: list[LayerRecord]  # one per dynamic layer, in module order
    macs: Tensor  # (B,) int64 per-clip MACs: static layers in full + each dynamic layer's variant + gates
    expected_ratio: Tensor  # (B,) sum_l w_l r^s_l / R^s_l, w_l = C(f_l) / sum_k C(f_k); differentiable
    # (B,) sum_l w_l D_l of the layers' gate-weighted distortions (training forwards), else None
    distortion: Tensor | None = None

    @property
    def policy(self) -> Tensor:
        """(B, L, 2) long: the (channel, temporal) index each sample chose in each dynamic layer."""
        if not self.records:
            return torch.zeros(self.logits.shape[0], 0, 2, dtype=torch.long, device=self.logits.device)
        return torch.stack([torch.stack([r.channel_index, r.temporal_index], dim=1) for r in self.records], dim=1)

    @property
    def gflops(self) -> Tensor:
        """(B,) per-clip GMACs (the paper's "GFLOPs")."""
        return self.macs.double() / 1e9
