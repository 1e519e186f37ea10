"""The three video backbones as plain PyTorch (ordinary nn.Conv3d, BatchNorm3d, ReLU).

Each builder is keyword-only, `(*, num_classes=400, base_width=0, dropout=0.0) -> nn.Module`, takes
(B, 3, T, H, W) and returns logits (B, num_classes). `base_width=0` is the published width.
"""

from pipeline.models.backbones.i3d import build_i3d_r50
from pipeline.models.backbones.r2plus1d import build_r2plus1d_18
from pipeline.models.backbones.x3d import build_x3d_m

BACKBONES = {
    "r2plus1d_18": build_r2plus1d_18,
    "i3d_r50": build_i3d_r50,
    "x3d_m": build_x3d_m,
}

__all__ = ["BACKBONES", "build_i3d_r50", "build_r2plus1d_18", "build_x3d_m"]
