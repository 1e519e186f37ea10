"""Cheap operations that rebuild what a dynamic layer did not compute (METHOD.md section 3).

Both ops are depthwise 3x3 convs applied frame by frame. On CPU, depthwise convs with a depth
multiplier > 1 (and Conv3d depthwise with a 1x3x3 kernel) fall off oneDNN's fast path and run up to
10x slower, so every op here is ONE `conv2d` with multiplier 1 over `(B, C * n, H, W)`: the frames are
folded into the channel axis (a free view of a contiguous `(B, C, n, H, W)` tensor) and the per-channel
kernel is repeated over the n frames. Where a source map must yield several maps, the source is
gathered first (one copy), never a multiplier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def depthwise_frames(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Depthwise 3x3 conv of every frame: x (B, C, n, H, W), weight (C, 3, 3), bias (C,) or None
    -> (B, C, n, H, W)."""
    b, c, n, h, w = x.shape
    kernel = weight.view(c, 1, 1, 3, 3).expand(c, n, 1, 3, 3).reshape(c * n, 1, 3, 3)
    per_frame = None if bias is None else bias.view(c, 1).expand(c, n).reshape(c * n)
    y = F.conv2d(x.reshape(b, c * n, h, w), kernel, per_frame, padding=1, groups=c * n)
    return y.view(b, c, n, h, w)


def depthwise_frames_macs(channels: int, frames: int, height: int, width: int) -> int:
    return channels * frames * height * width * 9


def _identity_kernels(*shape: int) -> Tensor:
    k = torch.zeros(*shape, 3, 3)
    k[..., 1, 1] = 1.0
    return k


class ChannelCheapOp(nn.Module):
    """GhostNet-style channel reconstruction for one ratio r: `Y = cat([Y', Phi(Y')])[:, :C_out]`.

    Y' holds the m = ceil(r * C_out) computed maps; new map q (output channel m + q) is a depthwise
    3x3 conv (with a bias) of computed map `source[q]`; only the C_out - m maps that survive the cut
    are computed. Without calibration, source[q] = q // (ceil(1/r) - 1) (each computed map yields
    ceil(1/r) - 1 new maps) and the kernels are the identity. `pipeline.models.calibrate` (ours)
    picks for each new map the computed map that predicts the original filter's output best and
    fits kernel and bias by least squares: the copy init starts the rebuilt maps on unrelated
    channels (measured correlation 0.32 with the filter they replace), the fit on close ones.
    """

    def __init__(self, out_channels: int, ratio: float) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.ratio = ratio
        self.computed = math.ceil(ratio * out_channels)  # m
        self.per_map = math.ceil(1 / ratio) - 1
        self.new = out_channels - self.computed
        # Persistent: calibration changes it, and a checkpoint must carry it.
        self.register_buffer("source", torch.arange(self.new) // self.per_map)  # (C_out - m,) long
        self.weight = nn.Parameter(_identity_kernels(self.new))  # (C_out - m, 3, 3)
        self.bias = nn.Parameter(torch.zeros(self.new))

    def forward(self, y: Tensor) -> Tensor:
        """y (B, m, n, H, W) -> (B, C_out, n, H, W)."""
        if self.new == 0:
            return y
        return torch.cat([y, self.new_maps(y)], dim=1)

    def new_maps(self, y: Tensor) -> Tensor:
        """Only the C_out - m rebuilt maps (B, C_out - m, n, H, W) of `forward`, for callers that write
        the computed and the rebuilt maps straight into a preallocated output (no concatenation)."""
        return depthwise_frames(y.index_select(1, self.source), self.weight, self.bias)

    def new_maps_3d(self, y: Tensor) -> Tensor:
        """`new_maps` as one depthwise Conv3d with a 1x3x3 kernel (the torch.compile path)."""
        return F.conv3d(y.index_select(1, self.source), self.weight.view(self.new, 1, 1, 3, 3), self.bias,
                        padding=(0, 1, 1), groups=self.new)

    def macs(self, frames: int, height: int, width: int) -> int:
        return depthwise_frames_macs(self.new, frames, height, width)

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, ratio={self.ratio}, computed={self.computed}"


class TemporalCheapOp(nn.Module):
    """Temporal reconstruction: output frame iR + k (k = 1..R-1) is Phi_k(Y'[i]), frame iR is Y'[i].

    One depthwise 3x3 kernel per channel and offset k = 1..max_factor-1, shared over i and over the
    R values of the search space, initialised to the identity (METHOD.md: before training it copies
    the nearest computed frame).
    """

    def __init__(self, channels: int, max_factor: int) -> None:
        super().__init__()
        self.channels = channels
        self.max_factor = max_factor
        self.weight = nn.Parameter(_identity_kernels(channels, max(max_factor - 1, 0)))  # (C, Rmax-1, 3, 3)

    def forward(self, y: Tensor, factor: int, out_frames: int) -> Tensor:
        """y (B, C, n, H, W) computed frames 0, R, 2R, ... -> (B, C, out_frames, H, W)."""
        if factor == 1:
            return y
        if factor > self.max_factor:
            raise ValueError(f"factor={factor} exceeds this op's max_factor={self.max_factor}")
        b, c, n, h, w = y.shape
        out = torch.cat([y.unsqueeze(3), self.new_frames(y, factor)], dim=3)  # (B, C, n, R, H, W)
        out = out.view(b, c, n * factor, h, w)
        return out if n * factor == out_frames else out[:, :, :out_frames]

    def new_frames(self, y: Tensor, factor: int, first_channel: int = 0) -> Tensor:
        """Only the rebuilt frames: y (B, c, n, H, W) -> (B, c, n, R - 1, H, W), slot k - 1 holding
        Phi_k(Y'[i]). `y` may be a block of channels first_channel .. first_channel + c - 1 (each channel
        has its own kernel), so that channel blocks can be written into an output without concatenating."""
        if factor > self.max_factor:
            raise ValueError(f"factor={factor} exceeds this op's max_factor={self.max_factor}")
        b, c, n, h, w = y.shape
        k = factor - 1
        src = y.unsqueeze(3).expand(b, c, n, k, h, w).reshape(b, c * n * k, 1, h, w)  # a view when k == 1
        weight = self.weight[first_channel:first_channel + c]
        kernel = weight[:, None, :k].expand(c, n, k, 3, 3)  # (c, n, k, 3, 3)
        new = depthwise_frames(src.view(b, c * n * k, 1, h, w), kernel.reshape(c * n * k, 3, 3))
        return new.view(b, c, n, k, h, w)

    def new_frames_3d(self, y: Tensor, factor: int) -> Tensor:
        """`new_frames` for all C channels as depthwise Conv3ds with 1x3x3 kernels, one per offset
        (the torch.compile path): y (B, C, n, H, W) -> (B, C, n, R - 1, H, W)."""
        c = y.shape[1]
        return torch.stack([F.conv3d(y, self.weight[:, k].reshape(c, 1, 1, 3, 3), padding=(0, 1, 1), groups=c)
                            for k in range(factor - 1)], dim=3)

    def macs(self, factor: int, frames: int, height: int, width: int) -> int:
        return depthwise_frames_macs(self.channels * (factor - 1), frames, height, width)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, max_factor={self.max_factor}"
