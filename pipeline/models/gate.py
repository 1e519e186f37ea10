"""The soft modulation gate p_l of one dynamic layer (METHOD.md section 4).

`[V_t, V_c] = max(tanh(FC2(ReLU(BN(FC1(GAP(X))))) + beta), 0)`; beta is FC2's bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEADS = ("temporal", "channel")
# How the gate's BatchNorm normalises in training (ours). "running": with its running statistics,
# updated from each batch but not computed on it, so a clip's decision is the same in training and
# at inference and does not depend on the other clips of a (small) batch; "batch": plain BatchNorm
# (batch statistics in training). Measured on batches of 4 clips, "batch" flipped 20-24% of the
# decisions near the boundary between training and inference.
GATE_NORMS = ("running", "batch")

# What the gate reads of its layer's input X (B, C, T, H, W) (ours). "pool": GAP(X), the paper's
# descriptor. "pool_motion": [GAP(X), GAP(|X[t+1] - X[t]|)], the per-channel mean change between
# adjacent frames beside the mean. GAP over time averages motion away: a still clip and a moving one
# with the same content pool to nearly the same vector, so a "pool" gate cannot tell which clip's
# frames repeat, the very thing temporal reduction is cheap for. Layers without a time axis (2D
# backbones), or with one frame, read zeros in the motion half.
GATE_INPUTS = ("pool", "pool_motion")

# Gate values at initialisation (ours): index 0 (full compute) gets 0.7, the cheaper options
# share 0.3, so every option starts alive (> 0) and, since the raw values of one head sum to 1,
# the soft output of a freshly converted layer stays close to the static layer's output.
INIT_FULL_VALUE = 0.7
# FC2 weights start small so that the biases decide the initial gate values.
INIT_FC2_STD = 1e-3


@dataclass
class GateValues:
    """Gate values of one forward; a head that the layer lacks is None.

    `*_probs` (ours) are the softmax of the pre-activations FC2(.) + beta: the same order as the
    values wherever one is positive, but defined and differentiable when a head's values are all
    zero (max(tanh, 0) of negative inputs), so the training terms that read them can bring a head
    back instead of leaving it dead on index 0 for good.
    """

    channel: Tensor | None  # (B, S)
    temporal: Tensor | None  # (B, S)
    channel_probs: Tensor | None = None  # (B, S), rows sum to 1
    temporal_probs: Tensor | None = None


class SoftModulationGate(nn.Module):
    """Policy network of one layer: GAP over (T, H, W) -> FC1 -> BN -> ReLU -> FC2 -> max(tanh, 0).

    Hidden width max(hidden_min, C_in // 4) (ours). FC1 has no bias (ours): the BatchNorm right
    after it would cancel it. FC2's output is laid out head by head in the order of `heads`.
    """

    def __init__(self, in_channels: int, search_space: int, *,
                 heads: tuple[str, ...] = HEADS, hidden_min: int = 16, input: str = "pool") -> None:
        super().__init__()
        if not heads or any(h not in HEADS for h in heads) or len(set(heads)) != len(heads):
            raise ValueError(f"heads={heads!r} is not valid; use distinct names from {HEADS}")
        if search_space < 2:
            raise ValueError(f"search_space={search_space} is not valid; choose one of 2, 3, 4")
        if input not in GATE_INPUTS:
            raise ValueError(f"input={input!r} is not valid; choose one of {GATE_INPUTS}")
        self.input = input
        self.search_space = search_space
        self.heads = tuple(heads)
        self.norm = "running"
        hidden = max(hidden_min, in_channels // 4)
        features = in_channels * (2 if input == "pool_motion" else 1)
        self.fc1 = nn.Linear(features, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, search_space * len(self.heads))
        self.reset_gate_parameters()

    @torch.no_grad()
    def reset_gate_parameters(self) -> None:
        nn.init.normal_(self.fc2.weight, std=INIT_FC2_STD)
        rest = (1.0 - INIT_FULL_VALUE) / (self.search_space - 1)
        start = torch.tensor([INIT_FULL_VALUE] + [rest] * (self.search_space - 1))
        self.fc2.bias.copy_(torch.atanh(start).repeat(len(self.heads)))

    @property
    def hidden_features(self) -> int:
        return self.fc1.out_features

    def features(self, x: Tensor) -> Tensor:
        """FC1's input for a layer input x (B, C_in, T, H, W) or (B, C_in, H, W): (B, C_in) GAP over
        (T, H, W) or (H, W), then for "pool_motion" the (B, C_in) mean |X[t+1] - X[t]|."""
        z = x.flatten(2).mean(dim=2)
        if self.input == "pool":
            return z
        if x.dim() == 5 and x.shape[2] > 1:
            # One temporary, made absolute in place (a second full-size temporary and its page-ins
            # cost as much as the subtraction itself); the same sum and division as .abs().mean().
            change = torch.sub(x[:, :, 1:], x[:, :, :-1])
            change = change.abs_() if not change.requires_grad else change.abs()
            motion = change.flatten(2).mean(dim=2)
        else:
            motion = torch.zeros_like(z)
        return torch.cat([z, motion], dim=1)

    def forward(self, x: Tensor) -> GateValues:
        z = self.features(x)
        z = torch.relu(self._normalize(self.fc1(z)))
        logits = self.fc2(z)  # (B, S * heads)
        v = torch.relu(torch.tanh(logits))  # max(tanh(.), 0)
        parts = dict(zip(self.heads, v.split(self.search_space, dim=1)))
        probs = dict(zip(self.heads, (p.softmax(dim=1) for p in logits.split(self.search_space, dim=1))))
        return GateValues(channel=parts.get("channel"), temporal=parts.get("temporal"),
                          channel_probs=probs.get("channel"), temporal_probs=probs.get("temporal"))

    def _normalize(self, h: Tensor) -> Tensor:
        bn = self.bn
        if self.norm == "batch" or not self.training:
            return bn(h)
        if h.shape[0] > 1 and not torch.compiler.is_compiling():
            with torch.no_grad():  # update the running statistics; a first batch sets them
                mean, var = h.mean(dim=0), h.var(dim=0)
                first = int(bn.num_batches_tracked) == 0
                m = 1.0 if first else (bn.momentum if bn.momentum is not None else 0.1)
                bn.running_mean.lerp_(mean.to(bn.running_mean), m)
                bn.running_var.lerp_(var.to(bn.running_var), m)
                bn.num_batches_tracked.add_(1)
        return F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    def macs(self) -> int:
        """Per-sample MACs of the two FC layers (GAP, BN and activations are not counted)."""
        return self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features

