"""Config of the network: which backbone, and how VA-RED² converts it (METHOD.md sections 2-4, 7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config.base import Section

Backbone = Literal["r2plus1d_18", "i3d_r50", "x3d_m"]
DynamicMode = Literal["both", "temporal", "channel", "none"]
# "soft": training mixes all variants by the raw gate values (the paper); "straight_through" (ours):
# the training forward runs the argmax variant, the gradient reaches the gates as in soft mode.
GateTraining = Literal["straight_through", "soft"]
# How a gate's BatchNorm normalises in training (pipeline/models/gate.py): "running" (ours) uses its
# running statistics, so a decision never depends on the other clips of a batch; "batch" is plain BN.
GateNorm = Literal["running", "batch"]
# What a gate reads of its layer's input (pipeline/models/gate.py): "pool" is GAP(X) (the paper);
# "pool_motion" (ours) adds the mean change between adjacent frames, so a gate can see which clips repeat.
GateInput = Literal["pool_motion", "pool"]
# How temporal convs pad (pipeline/models/padding.py): "replicate" (ours) repeats the edge frame, so a
# still clip stays still at every depth and its frames can be rebuilt exactly; "zeros" is nn.Conv's.
TemporalPadding = Literal["replicate", "zeros"]
Baseline = Literal["none", "magnitude", "channel_gating"]


@dataclass(frozen=True)
class ModelConfig(Section):
    NAME = "model"
    # Checkpoints from before `gate_input` / `temporal_padding` existed: "pool" gates, zero padding.
    LEGACY = {"gate_input": "pool", "temporal_padding": "zeros"}

    backbone: Backbone = "r2plus1d_18"
    num_classes: int = 400
    # Width of the first stage; the published backbones use their default (64 for R(2+1)D and
    # I3D, 24 for X3D-M). Smaller values give tiny models for tests and the demo.
    base_width: int = 0  # 0 = the backbone's published width
    # "none" builds the static backbone (baselines and stage 1 of the schedule).
    dynamic: DynamicMode = "both"
    search_space: int = 2
    gate_training: GateTraining = "straight_through"
    gate_norm: GateNorm = "running"
    gate_hidden_min: int = 16
    gate_input: GateInput = "pool_motion"
    temporal_padding: TemporalPadding = "replicate"
    dropout: float = 0.0
    # Table 7 baselines (pipeline/models/baselines), built from the static backbone in place of the
    # VA-RED² conversion (`dynamic` is then ignored): magnitude pruning to `prune_macs_ratio` of the
    # static per-clip MACs, or CGNet-style gating with `gating_base_fraction` of inputs always used.
    baseline: Baseline = "none"
    prune_macs_ratio: float = 0.7
    gating_base_fraction: float = 0.5

    def validate(self) -> None:
        self._require(self.num_classes >= 1, "num_classes", "must be at least 1")
        self._require(self.base_width >= 0, "base_width", "must be 0 (published) or positive")
        self._require(self.search_space in (2, 3, 4), "search_space", "choose one of 2, 3, 4")
        self._require(self.gate_hidden_min >= 1, "gate_hidden_min", "must be positive")
        self._require(0.0 <= self.dropout < 1.0, "dropout", "must lie in [0, 1)")
        self._require(0.0 < self.prune_macs_ratio <= 1.0, "prune_macs_ratio", "must lie in (0, 1]")
        self._require(0.0 < self.gating_base_fraction < 1.0, "gating_base_fraction", "must lie in (0, 1)")
