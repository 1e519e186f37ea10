"""A channel-gating baseline in the spirit of CGNet (Hua et al., NeurIPS 2019), for the paper's
Table 7: every gated conv always computes a partial sum from a base fraction p of its input
channels; where that partial sum (normalised) exceeds a learned per-channel threshold, the rest of
the input channels are added for that output element.

    x[:, :Cp] ─conv(w[:, :Cp])─> y_p ──BN(no affine)──> s ── s > delta ──> g (B, C_out, T, H, W) in {0, 1}
    x[:, Cp:] ─conv(w[:, Cp:])─> y_r                                          y = y_p + g * y_r

Training uses a straight-through estimator (forward: the hard g; backward: sigmoid((s - delta) / T)).
Cost (ours, as CGNet counts it): per clip, the base MACs plus the rest's MACs times the share of
output elements whose gate is on; dense PyTorch still computes y_r in full, so only GFLOPs compare.
The differentiable expected cost ratio uses the sigmoid surrogate in the same MAC-weighted form as
VA-RED²'s, so `train.lambda_e` plays the role of CGNet's sparsity target. Only groups = 1 convs
(with at least two input channels) among those VA-RED² makes dynamic are gated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pipeline.models.baselines.common import PRUNABLE, BaselineModel, output_positions
from pipeline.models.convert import default_dynamic_filter
from pipeline.models.dynamic_conv import LayerRecord
from pipeline.models.padding import check_padding_mode, conv_nd

TEMPERATURE = 1.0  # of the sigmoid surrogate of the step gate


class ChannelGatedConv(nn.Module):
    """Drop-in for an nn.Conv3d / nn.Conv2d (same `weight` / `bias` names and output shape)."""

    def __init__(self, conv: nn.Module, *, base_fraction: float) -> None:
        super().__init__()
        if not 0.0 < base_fraction < 1.0:
            raise ValueError(f"base_fraction={base_fraction} must lie in (0, 1)")
        if conv.groups != 1 or conv.in_channels < 2:
            raise ValueError("channel gating needs a groups=1 conv with at least two input channels")
        if isinstance(conv.padding, str):
            raise ValueError(f"channel gating needs explicit padding sizes, not padding={conv.padding!r}")
        self.padding_mode = check_padding_mode(conv.padding_mode)
        self.is3d = isinstance(conv, nn.Conv3d)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = (conv.kernel_size, conv.stride,
                                                                      conv.padding, conv.dilation)
        self.groups = 1
        self.base_channels = min(conv.in_channels - 1, max(1, math.ceil(base_fraction * conv.in_channels)))
        self.weight, self.bias = conv.weight, conv.bias  # shared Parameters
        bn = nn.BatchNorm3d if self.is3d else nn.BatchNorm2d
        self.gate_bn = bn(conv.out_channels, affine=False)
        self.delta = nn.Parameter(torch.zeros(conv.out_channels))  # per-channel threshold
        # (B,) hard on-share, (B,) surrogate on-share, input shape, output shape of the last forward
        self.last: tuple[Tensor, Tensor, tuple, tuple] | None = None

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return conv_nd(x, weight, bias, self.stride, self.padding, self.dilation, 1, self.padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        cp = self.base_channels
        partial = self._conv(x[:, :cp], self.weight[:, :cp], self.bias)
        rest = self._conv(x[:, cp:], self.weight[:, cp:], None)
        score = self.gate_bn(partial) - self.delta.view(1, -1, *([1] * (partial.dim() - 2)))
        hard = (score > 0).to(partial.dtype)
        soft = torch.sigmoid(score / TEMPERATURE)
        gate = hard + soft - soft.detach() if self.training else hard
        self.last = (hard.detach().flatten(1).mean(1), soft.flatten(1).mean(1), tuple(x.shape), tuple(partial.shape))
        return partial + gate * rest  # (B, C_out, ...) as the original conv

    def split_macs(self, output_positions: int) -> tuple[int, int]:
        """(base MACs, rest MACs) per sample for a given number of output positions."""
        per = self.out_channels * output_positions * math.prod(self.kernel_size)
        return per * self.base_channels, per * (self.in_channels - self.base_channels)


class ChannelGatedModel(BaselineModel):
    added_parts = ("gate_bn", "delta", "running_mean", "running_var", "num_batches_tracked")

    def __init__(self, backbone: nn.Module, *, base_fraction: float = 0.5) -> None:
        super().__init__(backbone)
        targets = [(n, m) for n, m in backbone.named_modules()
                   if type(m) in PRUNABLE and default_dynamic_filter(n, m) and m.groups == 1 and m.in_channels >= 2]
        if not targets:
            raise ValueError("channel gating found no groups=1 conv to gate in the backbone")
        for name, conv in targets:
            parent_name, _, child = name.rpartition(".")
            setattr(backbone.get_submodule(parent_name), child, ChannelGatedConv(conv, base_fraction=base_fraction))
        self.layer_names = [n for n, _ in targets]
        self._shapes: dict[tuple[int, ...], list[int]] = {}

    def gated_layers(self) -> list[tuple[str, ChannelGatedConv]]:
        return [(n, self.backbone.get_submodule(n)) for n in self.layer_names]

    def positions(self, input_shape: tuple[int, ...]) -> list[int]:
        """Output positions of each gated layer for one input (C, T, H, W), cached."""
        key = tuple(input_shape)
        if key not in self._shapes:
            pos = output_positions(self.backbone, dict(self.gated_layers()), key)
            self._shapes[key] = [pos[n] for n in self.layer_names]
        return self._shapes[key]

    def static_macs(self, input_shape: tuple[int, ...]) -> int:
        """The ungated backbone's per-clip MACs: the cost counter sees plain convs and linears only,
        so the gated layers are added at their full dense cost."""
        key = tuple(input_shape)
        if key not in self._static_macs:
            gated = sum(l.weight.numel() * p for (_, l), p in zip(self.gated_layers(), self.positions(key)))
            self._static_macs[key] = super().static_macs(key) + gated
        return self._static_macs[key]

    def before_forward(self, x: Tensor) -> None:
        # Measured before the forward: afterwards the layers hold graph tensors a copy cannot take.
        self.static_macs(tuple(x.shape[1:]))

    def clip_costs(self, x: Tensor) -> tuple[Tensor, Tensor, list[LayerRecord]]:
        shape = tuple(x.shape[1:])
        records = self.layer_records(shape)
        full = torch.tensor([r.full_macs for r in records], dtype=torch.float64, device=x.device)
        macs = self.static_macs(shape) - int(full.sum()) + torch.stack([r.macs for r in records]).sum(0)
        weights = (full / full.sum()).to(records[0].expected_ratio.dtype)
        expected = (weights[:, None] * torch.stack([r.expected_ratio for r in records])).sum(0)
        return macs, expected, records  # expected: sum_l w_l (MACs ratio of layer l), w_l = full_l / sum full

    def layer_records(self, input_shape: tuple[int, ...]) -> list[LayerRecord]:
        """One LayerRecord per gated layer for the forward just run (the efficiency loss and the
        analyses read them as they read a dynamic layer's); the layers' state is cleared."""
        records = []
        for (_, layer), positions in zip(self.gated_layers(), self.positions(input_shape)):
            base, rest = layer.split_macs(positions)
            hard, soft, in_shape, out_shape = layer.last
            zeros = torch.zeros(hard.shape[0], dtype=torch.long, device=hard.device)
            records.append(LayerRecord(
                channel_gate=None, temporal_gate=None, channel_index=zeros, temporal_index=zeros,
                input_shape=in_shape, output_shape=out_shape, macs=(base + rest * hard.double()).round().long(),
                full_macs=base + rest, expected_ratio=(base + rest * soft) / (base + rest)))
            layer.last = None
        return records
