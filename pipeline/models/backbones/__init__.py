"""The three video backbones as plain PyTorch (ordinary nn.Conv3d, BatchNorm3d, ReLU).

Each builder is keyword-only, `(*, num_classes=400, base_width=0, dropout=0.0) -> nn.Module`, takes
(B, 3, T, H, W) and returns logits (B, num_classes). `base_width=0` is the published width.
`build_backbone(cfg.model)` builds the one a ModelConfig names, with its temporal padding.
"""

from torch import nn

from pipeline.models.backbones.i3d import build_i3d_r50
from pipeline.models.backbones.r2plus1d import build_r2plus1d_18
from pipeline.models.backbones.x3d import build_x3d_m
from pipeline.models.padding import check_padding_mode

BACKBONES = {
    "r2plus1d_18": build_r2plus1d_18,
    "i3d_r50": build_i3d_r50,
    "x3d_m": build_x3d_m,
}


def set_temporal_padding(backbone: nn.Module, mode: str) -> nn.Module:
    """Every Conv3d that pads in time pads with `mode` ("zeros" or "replicate"; see
    pipeline/models/padding.py). nn.Conv's padding mode applies to all its padded axes: the
    R(2+1)D and I3D temporal convs (k x 1 x 1) pad only time, X3D's 3 x 3 x 3 and I3D's 5 x 7 x 7
    stem replicate in space as well."""
    check_padding_mode(mode)
    for module in backbone.modules():
        if isinstance(module, nn.Conv3d) and module.kernel_size[0] > 1 and module.padding[0] > 0:
            module.padding_mode = mode
    return backbone


def build_backbone(cfg) -> nn.Module:
    """The backbone of a `pipeline.config.ModelConfig`: `backbone`, `num_classes`, `base_width`,
    `dropout`, `temporal_padding`."""
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"backbone={cfg.backbone!r} is not valid; choose one of {sorted(BACKBONES)}")
    backbone = BACKBONES[cfg.backbone](num_classes=cfg.num_classes, base_width=cfg.base_width,
                                       dropout=cfg.dropout)
    return set_temporal_padding(backbone, cfg.temporal_padding)


__all__ = ["BACKBONES", "build_backbone", "build_i3d_r50", "build_r2plus1d_18", "build_x3d_m",
           "set_temporal_padding"]
