"""`build_model(cfg.model)`: the model a `pipeline.config.ModelConfig` describes, VA-RED², static or
one of the comparison baselines. Beside, not inside, the model classes, so that neither the VA-RED²
model nor the baselines import each other."""

from __future__ import annotations

from pipeline.models.backbones import build_backbone
from pipeline.models.baselines import build_baseline
from pipeline.models.vared import VaredModel


def build_model(cfg) -> VaredModel:
    """The model of a `pipeline.config.ModelConfig` (the pruning / channel-gating baselines too)."""
    if getattr(cfg, "baseline", "none") != "none":
        return build_baseline(cfg)

    return VaredModel(build_backbone(cfg), dynamic=cfg.dynamic, search_space=cfg.search_space,
                      gate_hidden_min=cfg.gate_hidden_min, gate_training=cfg.gate_training,
                      gate_norm=cfg.gate_norm, gate_input=cfg.gate_input)
