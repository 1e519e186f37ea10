"""The soft modulation gate p_l of one dynamic layer (METHOD.md section 4).

`[V_t, V_c] = max(tanh(FC2(ReLU(BN(FC1(GAP(X))))) + beta), 0)`; beta is FC2's bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

HEADS = ("temporal", "channel")

# Gate values at initialisation (ours): index 0 (full compute) gets 0.7, the cheaper options
# share 0.3, so every option starts alive (> 0) and, since the raw values of one head sum to 1,
# the soft output of a freshly converted layer stays close to the static layer's output.
INIT_FULL_VALUE = 0.7
# FC2 weights start small so that the biases decide the initial gate values.
INIT_FC2_STD = 1e-3


@dataclass
class GateValues:
    """Gate values of one forward; a head that the layer lacks is None."""

    channel: Tensor | None  # (B, S)
    temporal: Tensor | None  # (B, S)


class SoftModulationGate(nn.Module):
    """Policy network of one layer: GAP over (T, H, W) -> FC1 -> BN -> ReLU -> FC2 -> max(tanh, 0).

    Hidden width max(hidden_min, C_in // 4) (ours). FC1 has no bias (ours): the BatchNorm right
    after it would cancel it. FC2's output is laid out head by head in the order of `heads`.
    """

    def __init__(self, in_channels: int, search_space: int, *,
                 heads: tuple[str, ...] = HEADS, hidden_min: int = 16) -> None:
        super().__init__()
        if not heads or any(h not in HEADS for h in heads) or len(set(heads)) != len(heads):
            raise ValueError(f"heads={heads!r} is not valid; use distinct names from {HEADS}")
        if search_space < 2:
            raise ValueError(f"search_space={search_space} is not valid; choose one of 2, 3, 4")
        self.search_space = search_space
        self.heads = tuple(heads)
        hidden = max(hidden_min, in_channels // 4)
        self.fc1 = nn.Linear(in_channels, hidden, bias=False)
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

    def forward(self, x: Tensor) -> GateValues:
        z = x.flatten(2).mean(dim=2)  # (B, C_in): GAP over (T, H, W) or (H, W)
        z = torch.relu(self.bn(self.fc1(z)))
        v = torch.relu(torch.tanh(self.fc2(z)))  # (B, S * heads): max(tanh(.), 0)
        parts = dict(zip(self.heads, v.split(self.search_space, dim=1)))
        return GateValues(channel=parts.get("channel"), temporal=parts.get("temporal"))

    def macs(self) -> int:
        """Per-sample MACs of the two FC layers (GAP, BN and activations are not counted)."""
        return self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features

