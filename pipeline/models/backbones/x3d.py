"""X3D-M (Feichtenhofer, CVPR 2020) in PySlowFast's `X3D` layout.

Config as PySlowFast's `X3D_M.yaml`: DIM_C1 12, WIDTH_FACTOR 2.0, DEPTH_FACTOR 2.2, BOTTLENECK_FACTOR
2.25, DIM_C5 2048, channel-wise 3x3x3, SE (ratio 1/16) on every other block, swish after the
depthwise conv. Parameter names follow PySlowFast (`s1.pathway0_stem.conv_xy`, `s2.pathway0_res0.
branch2.a/b/se/c`, `head.conv_5`, `head.lin_5`, `head.projection`). Measured: 4.73 GMACs at
16x224x224, 6.18 GMACs at 16x256x256, 3.79 M parameters with 400 classes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.models.backbones.i3d import ResBlock, ResStage, VideoModelStem, init_weights

PUBLISHED_WIDTH = 24  # stem and res2 width (DIM_C1 12 x WIDTH_FACTOR 2); res3-5 double it each time
PUBLISHED_C5 = 2048  # DIM_C5: width of the head's lin_5
BOTTLENECK_FACTOR = 2.25
# Blocks per stage: ceil(DEPTH_FACTOR 2.2 x (1, 2, 5, 3)).
STAGE_DEPTHS = tuple(math.ceil(2.2 * d) for d in (1, 2, 5, 3))  # (3, 5, 11, 7)
STEM_TEMPORAL_KERNEL = 5
SE_RATIO = 0.0625


class X3DStem(nn.Module):
    """Spatial 1x3x3 conv (stride 2 in space), then a depthwise Tx1x1 temporal conv, BN, ReLU.

        (3, T, H, W) -> conv_xy 1x3x3 s(1,2,2) -> (C, T, H/2, W/2)
                     -> conv 5x1x1, groups=C   -> (C, T, H/2, W/2) -> bn -> relu
    """

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel: int):
        super().__init__()
        self.conv_xy = nn.Conv3d(in_channels, out_channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
                                 bias=False)
        self.conv = nn.Conv3d(out_channels, out_channels, (temporal_kernel, 1, 1),
                              padding=(temporal_kernel // 2, 0, 0), groups=out_channels, bias=False)
        self.bn = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(self.conv_xy(x))))


def _round_se_width(width: float, divisor: int = 8) -> int:
    """PySlowFast's SE._round_width: nearest multiple of 8, at least 8, not below 90% of `width`."""
    out = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * width else out


class SE(nn.Module):
    """Squeeze-and-excitation: GAP -> fc1 (1x1x1) -> ReLU -> fc2 (1x1x1) -> sigmoid, times the input.

        x (C, T, H, W) -> avg_pool -> (C, 1, 1, 1) -> fc1 -> (C_se, 1, 1, 1) -> fc2 -> (C, 1, 1, 1) -> x * gate
    """

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        hidden = _round_se_width(channels * ratio)
        self.avg_pool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc1 = nn.Conv3d(channels, hidden, 1, bias=True)
        self.fc1_act = nn.ReLU()
        self.fc2 = nn.Conv3d(hidden, channels, 1, bias=True)
        self.fc2_sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2_sig(self.fc2(self.fc1_act(self.fc1(self.avg_pool(x)))))  # (B, C, 1, 1, 1)
        return x * gate


class X3DTransform(nn.Module):
    """Residual branch of an X3D block: expand, depthwise 3x3x3, (SE), swish, project.

        x (C_in, T, H, W)
          -> a: Conv3d 1x1x1                       -> (inner, T, H, W)     -> a_bn -> a_relu
          -> b: Conv3d 3x3x3 s(1,s,s) groups=inner -> (inner, T, H/s, W/s) -> b_bn
          -> se (blocks 0, 2, 4, ... of a stage)  -> b_relu (swish)
          -> c: Conv3d 1x1x1                       -> (C_out, T, H/s, W/s) -> c_bn
    """

    def __init__(self, in_channels: int, out_channels: int, inner_channels: int, stride: int, use_se: bool,
                 temporal_kernel: int = 3):
        super().__init__()
        self.a = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.a_bn = nn.BatchNorm3d(inner_channels)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = nn.Conv3d(inner_channels, inner_channels, (temporal_kernel, 3, 3), stride=(1, stride, stride),
                           padding=(temporal_kernel // 2, 1, 1), groups=inner_channels, bias=False)
        self.b_bn = nn.BatchNorm3d(inner_channels)
        self.se = SE(inner_channels, SE_RATIO) if use_se else None
        self.b_relu = nn.SiLU()  # swish; parameter-free, so PySlowFast's Swish module maps onto it
        self.c = nn.Conv3d(inner_channels, out_channels, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(out_channels)
        self.c_bn.transform_final_bn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_bn(self.b(x))
        if self.se is not None:
            x = self.se(x)
        x = self.b_relu(x)
        return self.c_bn(self.c(x))


class X3DHead(nn.Module):
    """conv_5 (1x1x1) -> BN -> ReLU -> GAP -> lin_5 (1x1x1, no BN) -> ReLU -> (dropout) -> projection.

        (C, T, H, W) -> conv_5 -> (inner, T, H, W) -> avg_pool -> (inner, 1, 1, 1)
                     -> lin_5 -> (C5, 1, 1, 1) -> projection -> (num_classes,)   logits, no softmax
    """

    def __init__(self, in_channels: int, inner_channels: int, c5_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.conv_5 = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.conv_5_bn = nn.BatchNorm3d(inner_channels)
        self.conv_5_relu = nn.ReLU(inplace=True)
        self.avg_pool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.lin_5 = nn.Conv3d(inner_channels, c5_channels, 1, bias=False)
        self.lin_5_relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(c5_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_5_relu(self.conv_5_bn(self.conv_5(x)))  # (B, inner, T, H, W)
        x = self.lin_5_relu(self.lin_5(self.avg_pool(x)))  # (B, C5, 1, 1, 1)
        return self.projection(self.dropout(x.flatten(1)))  # (B, num_classes)


class X3D(nn.Module):
    """X3D-M. Input (B, 3, T, H, W) -> logits (B, num_classes); time is never strided.

    Feature maps: s1 (w, T, H/2, W/2) -> s2 (w, T, H/4) -> s3 (2w, T, H/8) -> s4 (4w, T, H/16)
    -> s5 (8w, T, H/32) -> head.
    """

    def __init__(self, *, width: int, c5_channels: int, num_classes: int, dropout: float,
                 zero_init_final_bn: bool):
        super().__init__()
        self.s1 = VideoModelStem(X3DStem(3, width, STEM_TEMPORAL_KERNEL))
        in_channels = width
        for stage, depth in enumerate(STAGE_DEPTHS):
            out = width * 2**stage
            inner = int(BOTTLENECK_FACTOR * out)
            blocks = []
            for i in range(depth):
                stride = 2 if i == 0 else 1
                block_in = in_channels if i == 0 else out
                transform = X3DTransform(block_in, out, inner, stride, use_se=i % 2 == 0)
                blocks.append(ResBlock(block_in, out, stride, transform))
            self.add_module(f"s{stage + 2}", ResStage(blocks))
            in_channels = out
        self.head = X3DHead(in_channels, inner, c5_channels, num_classes, dropout)
        init_weights(self, zero_init_final_bn=zero_init_final_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s1(x)  # (B, w, T, H/2, W/2)
        x = self.s2(x)  # (B, w, T, H/4, W/4)
        x = self.s3(x)  # (B, 2w, T, H/8, W/8)
        x = self.s4(x)  # (B, 4w, T, H/16, W/16)
        x = self.s5(x)  # (B, 8w, T, H/32, W/32)
        return self.head(x)  # (B, num_classes)


def build_x3d_m(*, num_classes: int = 400, base_width: int = 0, dropout: float = 0.0,
                zero_init_final_bn: bool = True) -> X3D:
    """X3D-M; `base_width=0` gives the published widths (stem and res2 24, then 48, 96, 192; head 432, 2048).

    A positive `base_width` w gives stage widths (w, w, 2w, 4w, 8w) for stem and res2-5, inner widths
    int(2.25 x out), and the head's lin_5 scaled by w / 24 (at least 1).
    """
    if base_width < 0:
        raise ValueError(f"base_width={base_width} must be 0 (published) or positive")
    width = base_width or PUBLISHED_WIDTH
    c5 = max(1, round(PUBLISHED_C5 * width / PUBLISHED_WIDTH))
    return X3D(width=width, c5_channels=c5, num_classes=num_classes, dropout=dropout,
               zero_init_final_bn=zero_init_final_bn)
