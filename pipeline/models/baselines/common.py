"""What the comparison baselines share with `VaredModel`: the same `forward(x) -> VaredOutput`
(logits, per-clip MACs, a differentiable expected cost ratio), `static_macs`, `set_execution` and
`load_backbone_state_dict`, so they train and evaluate through the same step, loop and evaluation."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from pipeline.models.cost import static_macs
from pipeline.models.output import VaredOutput

PRUNABLE = (nn.Conv3d, nn.Conv2d)


class BaselineModel(nn.Module):
    """A backbone whose chosen convs were swapped by a baseline; subclasses give the per-clip MACs
    and the expected cost ratio of one forward. `added_parts`: parameter / buffer names a static
    checkpoint lacks."""

    added_parts: tuple[str, ...] = ()
    dynamic = "none"

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self._static_macs: dict[tuple[int, ...], int] = {}

    def static_macs(self, input_shape: tuple[int, ...]) -> int:
        """Per-clip MACs of the unpruned, ungated backbone for one input (C, T, H, W), cached."""
        key = tuple(input_shape)
        if key not in self._static_macs:
            self._static_macs[key] = static_macs(self.backbone, key)
        return self._static_macs[key]

    def clip_costs(self, x: Tensor) -> tuple[Tensor, Tensor, list]:
        """((B,) int64 per-clip MACs, (B,) expected cost ratio, LayerRecords of the layers that decide
        per clip) of the forward just run on x."""
        raise NotImplementedError

    def before_forward(self, x: Tensor) -> None:  # e.g. prune on first use
        pass

    def forward(self, x: Tensor) -> VaredOutput:
        if x.dim() != 5:
            raise ValueError(f"{type(self).__name__} expects a 5D clip batch (B, C, T, H, W); got {tuple(x.shape)}")
        self.before_forward(x)
        logits = self.backbone(x)
        macs, expected, records = self.clip_costs(x)
        return VaredOutput(logits=logits, records=records, macs=macs, expected_ratio=expected.to(logits.dtype))

    def set_execution(self, execution: str) -> None:
        """Accepted for interface parity with VaredModel; a baseline has one execution mode."""
        if execution not in ("auto", "soft", "hard"):
            raise ValueError(f"execution={execution!r} is not valid; choose one of ('auto', 'soft', 'hard')")

    def load_backbone_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True):
        """Load a static backbone checkpoint (keys with or without `backbone.`); the baseline's own
        buffers and parameters may be missing."""
        if any(k.startswith("backbone.") for k in state_dict):  # a whole model's state: its backbone part
            state_dict = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
        result = self.backbone.load_state_dict(state_dict, strict=False)
        missing = [k for k in result.missing_keys if k.split(".")[-1] not in self.added_parts]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"backbone checkpoint mismatch: missing {missing}, unexpected {result.unexpected_keys}")
        return result


def output_positions(backbone: nn.Module, modules: Mapping[str, nn.Module], input_shape: tuple[int, ...]) -> dict[str, int]:
    """{name: prod(output spatial size)} of each module for one input (C, ...), measured on a meta
    copy of the backbone (no real compute). A conv's MACs are weight.numel() times this number."""
    import copy

    meta = copy.deepcopy(backbone).to("meta")
    sizes: dict[str, int] = {}
    handles = []
    for name, module in meta.named_modules():
        if name in modules:
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: sizes.__setitem__(name, int(torch.tensor(o.shape[2:]).prod()))))
    with torch.no_grad():
        meta(torch.empty((1, *input_shape), device="meta"))
    for h in handles:
        h.remove()
    missing = set(modules) - set(sizes)
    if missing:
        raise RuntimeError(f"layers did not run in the backbone's forward: {sorted(missing)}")
    return sizes
