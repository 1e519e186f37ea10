"""I3D-R50 (inflated 3D ResNet-50) in PySlowFast's layout (`ResNet` with `MODEL.ARCH: i3d`).

Parameter names follow PySlowFast (`s1.pathway0_stem.conv`, `s2.pathway0_res0.branch1`,
`s2.pathway0_res0.branch2.a/b/c`, `head.projection`), single pathway, tensors in and out instead of
PySlowFast's lists. Temporal kernels as PySlowFast's "i3d" basis with `NUM_BLOCK_TEMP_KERNEL`
[[3], [4], [6], [3]]: stem 5, res2 [3,3,3], res3 [3,1,3,1], res4 [3,1,3,1,3,1], res5 [1,3,1], and a
temporal max-pool (2x1x1) after res2 (the "i3d" variant; "i3d_nopool" has none). Measured: 56.82
GMACs at 16x224x224 (the published 56.8 G; without the pool it would be 89.8 G), 28.04 M parameters
with 400 classes.
"""

from __future__ import annotations

import torch
from torch import nn

PUBLISHED_WIDTH = 64  # PySlowFast's RESNET.WIDTH_PER_GROUP; stage outputs are 4x, 8x, 16x, 32x it
STAGE_DEPTHS = (3, 4, 6, 3)  # ResNet-50
# Temporal kernel of branch2.a in each block: the "i3d" basis repeated over the stage's blocks.
STAGE_TEMPORAL_KERNELS = ((3, 3, 3), (3, 1, 3, 1), (3, 1, 3, 1, 3, 1), (1, 3, 1))
STEM_TEMPORAL_KERNEL = 5


class ResNetBasicStem(nn.Module):
    """Tx7x7 conv (stride 2 in space) -> BN -> ReLU -> 1x3x3 max-pool (stride 2 in space).

        (3, T, H, W) -> conv -> (C, T, H/2, W/2) -> pool_layer -> (C, T, H/4, W/4)
    """

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, (temporal_kernel, 7, 7), stride=(1, 2, 2),
                              padding=(temporal_kernel // 2, 3, 3), bias=False)
        self.bn = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool_layer = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_layer(self.relu(self.bn(self.conv(x))))


class VideoModelStem(nn.Module):
    """PySlowFast's stem wrapper, kept only for the parameter names (`s1.pathway0_stem.*`)."""

    def __init__(self, stem: nn.Module):
        super().__init__()
        self.pathway0_stem = stem

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pathway0_stem(x)


class BottleneckTransform(nn.Module):
    """Residual branch of an I3D block: Tx1x1, 1x3x3 (stride s), 1x1x1.

        x (C_in, T, H, W)
          -> a: Conv3d Tx1x1            -> (inner, T, H, W)     -> a_bn -> a_relu
          -> b: Conv3d 1x3x3 s(1,s,s)   -> (inner, T, H/s, W/s) -> b_bn -> b_relu
          -> c: Conv3d 1x1x1            -> (C_out, T, H/s, W/s) -> c_bn
    """

    def __init__(self, in_channels: int, out_channels: int, inner_channels: int, temporal_kernel: int,
                 stride: int):
        super().__init__()
        self.a = nn.Conv3d(in_channels, inner_channels, (temporal_kernel, 1, 1),
                           padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.a_bn = nn.BatchNorm3d(inner_channels)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = nn.Conv3d(inner_channels, inner_channels, (1, 3, 3), stride=(1, stride, stride),
                           padding=(0, 1, 1), bias=False)
        self.b_bn = nn.BatchNorm3d(inner_channels)
        self.b_relu = nn.ReLU(inplace=True)
        self.c = nn.Conv3d(inner_channels, out_channels, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(out_channels)
        self.c_bn.transform_final_bn = True  # zero-initialised when zero_init_final_bn (PySlowFast)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class ResBlock(nn.Module):
    """PySlowFast residual block around any branch2 transform (used by I3D and X3D).

        x ──> branch2 (transform) ─────────────────────────────(+)──> relu
        └──> branch1 = Conv3d 1x1x1 s(1,s,s) -> branch1_bn ─────┘   (identity when shapes match)
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, branch2: nn.Module):
        super().__init__()
        if in_channels != out_channels or stride != 1:
            self.branch1 = nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = nn.BatchNorm3d(out_channels)
        else:
            self.branch1 = None
        self.branch2 = branch2
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1 is None else self.branch1_bn(self.branch1(x))
        return self.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """A stage of blocks named `pathway0_res{i}`, as PySlowFast's single-pathway ResStage."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        for i, block in enumerate(blocks):
            self.add_module(f"pathway0_res{i}", block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():
            x = block(x)
        return x


class ResNetBasicHead(nn.Module):
    """Global average pool -> (dropout) -> projection. Returns logits: no softmax."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.pathway0_avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pathway0_avgpool(x).flatten(1)  # (B, C)
        return self.projection(self.dropout(x))  # (B, num_classes)


def init_weights(model: nn.Module, *, fc_init_std: float = 0.01, zero_init_final_bn: bool = True) -> None:
    """PySlowFast's `init_weights`: MSRA fill for convs, N(0, fc_init_std) for linears, BN at 1 / 0.

    With `zero_init_final_bn` the last BN of every residual branch starts at 0, so each block
    starts as the identity.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            final = getattr(m, "transform_final_bn", False) and zero_init_final_bn
            nn.init.constant_(m.weight, 0.0 if final else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=fc_init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class I3DResNet(nn.Module):
    """I3D-R50. Input (B, 3, T, H, W) -> logits (B, num_classes).

    Feature maps: s1 (w, T, H/4, W/4) -> s2 (4w, same) -> pool (T/2) -> s3 (8w, T/2, H/8, W/8)
    -> s4 (16w, T/2, H/16, W/16) -> s5 (32w, T/2, H/32, W/32) -> head.
    """

    def __init__(self, *, width: int, num_classes: int, dropout: float, zero_init_final_bn: bool):
        super().__init__()
        self.s1 = VideoModelStem(ResNetBasicStem(3, width, STEM_TEMPORAL_KERNEL))
        in_channels = width
        for stage, (depth, kernels) in enumerate(zip(STAGE_DEPTHS, STAGE_TEMPORAL_KERNELS)):
            inner, out = width * 2**stage, width * 4 * 2**stage
            first_stride = 1 if stage == 0 else 2
            blocks = []
            for i in range(depth):
                stride = first_stride if i == 0 else 1
                block_in = in_channels if i == 0 else out
                transform = BottleneckTransform(block_in, out, inner, kernels[i], stride)
                blocks.append(ResBlock(block_in, out, stride, transform))
            self.add_module(f"s{stage + 2}", ResStage(blocks))
            if stage == 0:
                # _POOL1["i3d"]: halve time once, after res2.
                self.pathway0_pool = nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1))
            in_channels = out
        self.head = ResNetBasicHead(in_channels, num_classes, dropout)
        init_weights(self, zero_init_final_bn=zero_init_final_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s1(x)  # (B, w, T, H/4, W/4)
        x = self.s2(x)  # (B, 4w, T, H/4, W/4)
        x = self.pathway0_pool(x)  # (B, 4w, T/2, H/4, W/4)
        x = self.s3(x)  # (B, 8w, T/2, H/8, W/8)
        x = self.s4(x)  # (B, 16w, T/2, H/16, W/16)
        x = self.s5(x)  # (B, 32w, T/2, H/32, W/32)
        return self.head(x)  # (B, num_classes)


def build_i3d_r50(*, num_classes: int = 400, base_width: int = 0, dropout: float = 0.0,
                  zero_init_final_bn: bool = True) -> I3DResNet:
    """I3D-R50; `base_width=0` gives the published width 64 (stage outputs 256, 512, 1024, 2048).

    A positive `base_width` w replaces 64: stem w, stage inner widths (w, 2w, 4w, 8w) and outputs
    (4w, 8w, 16w, 32w).
    """
    if base_width < 0:
        raise ValueError(f"base_width={base_width} must be 0 (published) or positive")
    return I3DResNet(width=base_width or PUBLISHED_WIDTH, num_classes=num_classes, dropout=dropout,
                     zero_init_final_bn=zero_init_final_bn)
