"""The VA-RED² model: a backbone whose chosen convs are dynamic, returning logits together with
the gate decisions, the per-clip cost of the executed policy and the differentiable expected cost
ratio that the efficiency loss needs (METHOD.md sections 4-6)."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from pipeline.models.budget import NORM_ROWS, TABLE_POINTS, norm_size
from pipeline.models.convert import (clear_policy, convert_to_dynamic, dynamic_layers, force_policy,
                                     set_execution)
from pipeline.models.cost import static_macs
from pipeline.models.output import VaredOutput
from pipeline.models.gate import GATE_NORMS

DYNAMIC_CHOICES = ("both", "temporal", "channel", "none")
# Key parts of the parameters a conversion adds (allowed missing from a static checkpoint).
_ADDED_PARTS = ("gate", "channel_ops", "temporal_op")


# How training mixes a layer's variants (see DynamicConvBase._mix).
GATE_TRAININGS = ("straight_through", "soft")


class VaredModel(nn.Module):
    """`backbone` with its residual-block convs made dynamic (`dynamic="none"`: the static model
    behind the same interface). Backbone checkpoint keys are `backbone.` + the original key."""

    def __init__(self, backbone: nn.Module, *, dynamic: str = "both", search_space: int = 2,
                 gate_hidden_min: int = 16, include: Callable[[str, nn.Module], bool] | None = None,
                 gate_training: str = "straight_through", gate_norm: str = "running",
                 gate_input: str = "pool") -> None:
        super().__init__()
        if dynamic not in DYNAMIC_CHOICES:
            raise ValueError(f"dynamic={dynamic!r} is not valid; choose one of {DYNAMIC_CHOICES}")
        if gate_training not in GATE_TRAININGS:
            raise ValueError(f"gate_training={gate_training!r} is not valid; choose one of {GATE_TRAININGS}")
        if gate_norm not in GATE_NORMS:
            raise ValueError(f"gate_norm={gate_norm!r} is not valid; choose one of {GATE_NORMS}")
        self.backbone = backbone
        self.dynamic = dynamic
        self.search_space = search_space
        if dynamic != "none":
            convert_to_dynamic(backbone, mode=dynamic, search_space=search_space, include=include,
                               gate_hidden_min=gate_hidden_min, gate_input=gate_input)
            for _, layer in dynamic_layers(backbone):
                layer.gate_training = gate_training
                layer.gate.norm = gate_norm
        self._static_macs: dict[tuple[int, ...], int] = {}
        # (offset, mean cost ratio) rows of the budget calibration (pipeline/models/budget.py); zeros =
        # not calibrated. A buffer, so a checkpoint and the served model carry it.
        self.register_buffer("budget_table", torch.zeros(TABLE_POINTS, 2))
        if dynamic != "none":
            # The backbone's BatchNorm statistics per budget (pipeline/models/budget.py); zeros = none.
            self.register_buffer("budget_norms", torch.zeros(NORM_ROWS, norm_size(self)))

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False):
        # The budget calibration's buffers: absent from checkpoints saved before the budget knob (or
        # before per-budget statistics), another shape when calibrated on another grid.
        for name in ("budget_table", "budget_norms"):
            if not hasattr(self, name):
                continue
            if name not in state_dict:
                state_dict = {**state_dict, name: torch.zeros_like(getattr(self, name))}
            elif state_dict[name].shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(state_dict[name]))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def static_macs(self, input_shape: tuple[int, ...]) -> int:
        """Per-clip MACs of the static backbone for one input of shape (C, T, H, W), cached. The first
        call per shape runs the backbone on the meta device (an enclosing FlopCounterMode sees it)."""
        key = tuple(input_shape)
        if key not in self._static_macs:
            self._static_macs[key] = static_macs(self.backbone, key)
        return self._static_macs[key]

    def forward(self, x: Tensor) -> VaredOutput:
        if x.dim() != 5:
            raise ValueError(f"VaredModel expects a 5D clip batch (B, C, T, H, W); got shape {tuple(x.shape)}")
        layers = [layer for _, layer in dynamic_layers(self.backbone)]
        for layer in layers:
            layer.record = None
        static = self.static_macs(tuple(x.shape[1:]))
        logits = self.backbone(x)
        records = [layer.record for layer in layers]
        for layer in layers:
            layer.record = None  # the records travel in the output only
        if any(r is None for r in records):
            raise RuntimeError("a dynamic layer did not run in the backbone's forward")
        batch = x.shape[0]
        macs = torch.full((batch,), static, dtype=torch.long, device=x.device)
        expected = logits.new_ones(batch)
        if records:
            # Python ints: no host sync per forward (and meta-safe, so static_macs can run this model).
            macs = macs - sum(r.full_macs for r in records) + torch.stack([r.macs for r in records]).sum(dim=0)
            full = torch.tensor([r.full_macs for r in records], dtype=logits.dtype, device=x.device)
            weights = full / full.sum()  # (L,)
            expected = (weights[:, None] * torch.stack([r.expected_ratio for r in records])).sum(dim=0)
        # Each layer's distortion weighted by its share of the cost, as L_e weights its savings: every
        # layer then trades computation for distortion at the same rate, and the clip decides.
        distortion = None
        if records and any(r.distortion is not None for r in records):
            distortion = sum(w * r.distortion for w, r in zip(weights.tolist(), records) if r.distortion is not None)
        return VaredOutput(logits=logits, records=records, macs=macs, expected_ratio=expected,
                           distortion=distortion)

    def set_execution(self, execution: str) -> None:
        set_execution(self.backbone, execution)

    def force_policy(self, channel_index: int | None, temporal_index: int | None) -> None:
        force_policy(self.backbone, channel_index, temporal_index)

    def clear_policy(self) -> None:
        clear_policy(self.backbone)

    def load_backbone_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True):
        """Load a static backbone checkpoint (keys with or without the `backbone.` prefix): its keys
        must all match (when strict), while the gate and cheap-op parameters may be missing."""
        if any(k.startswith("backbone.") for k in state_dict):  # a whole model's state: its backbone part
            state_dict = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
        result = self.backbone.load_state_dict(state_dict, strict=False)
        missing = [k for k in result.missing_keys if not any(p in k.split(".") for p in _ADDED_PARTS)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"backbone checkpoint mismatch: missing {missing}, "
                               f"unexpected {result.unexpected_keys}")
        return result
