"""Comparison baselines of the paper's Table 7, trained and evaluated through the same pipeline as
VA-RED²: weight-level magnitude pruning to a target GFLOPs, and CGNet-style channel gating."""

from __future__ import annotations

from pipeline.models.baselines.channel_gating import ChannelGatedConv, ChannelGatedModel
from pipeline.models.baselines.common import BaselineModel
from pipeline.models.baselines.magnitude import MagnitudePrunedModel, MaskedConv2d, MaskedConv3d, sparsity_of

BASELINES = ("magnitude", "channel_gating")


def build_baseline(cfg) -> BaselineModel:
    """The baseline model of a `pipeline.config.ModelConfig` whose `baseline` is not "none"."""
    from pipeline.models.backbones import build_backbone

    if cfg.baseline not in BASELINES:
        raise ValueError(f"baseline={cfg.baseline!r} is not valid; choose one of {BASELINES}")
    backbone = build_backbone(cfg)
    if cfg.baseline == "magnitude":
        return MagnitudePrunedModel(backbone, macs_ratio=cfg.prune_macs_ratio)
    return ChannelGatedModel(backbone, base_fraction=cfg.gating_base_fraction)


__all__ = ["BASELINES", "BaselineModel", "ChannelGatedConv", "ChannelGatedModel", "MagnitudePrunedModel",
           "MaskedConv2d", "MaskedConv3d", "build_baseline", "sparsity_of"]
