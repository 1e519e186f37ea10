"""R(2+1)D-18 (Tran et al., CVPR 2018) in exactly torchvision's `VideoResNet` layout.

Module tree, parameter names and initialisation follow `torchvision.models.video.r2plus1d_18`, so a
torchvision checkpoint loads with `load_state_dict(..., strict=True)`. Measured: 40.52 GMACs at
16x112x112 and 31.51 M parameters with 400 classes (torchvision lists 40.52 GFLOPS, 31.5 M).
"""

from __future__ import annotations

import torch
from torch import nn

PUBLISHED_WIDTH = 64  # width of layer1; layer2-4 double it each time
PUBLISHED_STEM_MID = 45  # channels between the stem's (1x7x7) and (3x1x1) convs


def _midplanes(inplanes: int, planes: int) -> int:
    """Width between the spatial and the temporal conv of a (2+1)D unit.

    Chosen (as in the paper and torchvision) so the (2+1)D pair has about the parameter count of
    the full 3x3x3 conv it replaces.
    """
    return max(1, (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes))


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 conv factorised into a spatial 1x3x3 and a temporal 3x1x1 conv.

        x (C_in, T, H, W)
          -> Conv3d 1x3x3, stride (1, s, s)  -> (mid, T, H/s, W/s)
          -> BN -> ReLU
          -> Conv3d 3x1x1, stride (s, 1, 1)  -> (C_out, T/s, H/s, W/s)

    Children are indexed 0..3 as in torchvision (`conv1.0.0.weight`, `conv1.0.3.weight`).
    """

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, padding: int = 1):
        super().__init__(
            nn.Conv3d(in_planes, midplanes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                      padding=(0, padding, padding), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, kernel_size=(3, 1, 1), stride=(stride, 1, 1),
                      padding=(padding, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    """Residual block of two (2+1)D units.

        x ──> conv1 = [Conv2Plus1D(stride s) -> BN -> ReLU] ──> conv2 = [Conv2Plus1D -> BN] ──(+)──> ReLU
        └──────────── downsample = [Conv3d 1x1x1 stride (s,s,s) -> BN]  (or identity) ───────┘
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        midplanes = _midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(inplanes, planes, midplanes, stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))  # (B, planes, T/s, H/s, W/s)
        return self.relu(out + residual)


class R2Plus1dStem(nn.Sequential):
    """(2+1)D stem: 1x7x7 spatial conv (stride 2 in space) then 3x1x1 temporal conv.

        (3, T, H, W) -> Conv3d 1x7x7 s(1,2,2) -> (mid, T, H/2, W/2) -> BN -> ReLU
                     -> Conv3d 3x1x1          -> (width, T, H/2, W/2) -> BN -> ReLU
    """

    def __init__(self, mid_channels: int = PUBLISHED_STEM_MID, out_channels: int = PUBLISHED_WIDTH):
        super().__init__(
            nn.Conv3d(3, mid_channels, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_channels, out_channels, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0),
                      bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )


class VideoResNet(nn.Module):
    """torchvision's VideoResNet specialised to R(2+1)D-18: stem, four stages of two BasicBlocks, GAP, fc.

    Input (B, 3, T, H, W) -> logits (B, num_classes); layer2-4 halve T, H and W.
    """

    def __init__(self, *, widths: tuple[int, int, int, int], stem_mid: int, num_classes: int, dropout: float):
        super().__init__()
        self.inplanes = widths[0]
        self.stem = R2Plus1dStem(stem_mid, widths[0])
        self.layer1 = self._make_layer(widths[0], 2, stride=1)
        self.layer2 = self._make_layer(widths[1], 2, stride=2)
        self.layer3 = self._make_layer(widths[2], 2, stride=2)
        self.layer4 = self._make_layer(widths[3], 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        # Not in torchvision; parameter-free, so the state_dict is unchanged.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)
        self._initialize_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            # Conv2Plus1D.get_downsample_stride: the shortcut strides time as well as space.
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * BasicBlock.expansion, kernel_size=1,
                          stride=(stride, stride, stride), bias=False),
                nn.BatchNorm3d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w, T, H/2, W/2)
        x = self.layer1(x)  # (B, w, T, H/2, W/2)
        x = self.layer2(x)  # (B, 2w, T/2, H/4, W/4)
        x = self.layer3(x)  # (B, 4w, T/4, H/8, W/8)
        x = self.layer4(x)  # (B, 8w, T/8, H/16, W/16)
        x = self.avgpool(x).flatten(1)  # (B, 8w)
        return self.fc(self.dropout(x))  # (B, num_classes)


def build_r2plus1d_18(*, num_classes: int = 400, base_width: int = 0, dropout: float = 0.0) -> VideoResNet:
    """R(2+1)D-18; `base_width=0` gives the published widths (64, 128, 256, 512; stem mid 45).

    A positive `base_width` w gives stage widths (w, 2w, 4w, 8w) and a stem mid width scaled by
    w / 64 (at least 1): tiny models for tests and the demo.
    """
    if base_width < 0:
        raise ValueError(f"base_width={base_width} must be 0 (published) or positive")
    w = base_width or PUBLISHED_WIDTH
    stem_mid = max(1, round(PUBLISHED_STEM_MID * w / PUBLISHED_WIDTH))
    return VideoResNet(widths=(w, 2 * w, 4 * w, 8 * w), stem_mid=stem_mid, num_classes=num_classes,
                       dropout=dropout)
