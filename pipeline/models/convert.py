"""Model surgery: swap chosen nn.Conv3d / nn.Conv2d modules of any nn.Module tree for dynamic ones
(METHOD.md section 7), plus model-wide switches for execution mode and forced policies."""

from __future__ import annotations

import warnings
from typing import Callable

from torch import nn

from pipeline.models.dynamic_conv import DynamicConv2d, DynamicConv3d, DynamicConvBase

# Layers METHOD.md section 7 keeps static: the stem, 1x1x1 shortcut projections and the classifier
# / head (a name part containing one of these, e.g. `pathway0_stem`), and squeeze-excitation blocks
# (a name part equal to `se`).
STATIC_NAME_PARTS = ("stem", "downsample", "branch1", "shortcut", "head", "fc", "projection")


def default_dynamic_filter(name: str, module: nn.Module) -> bool:
    """Convs inside residual blocks: every conv whose dotted name has no static marker."""
    parts = name.split(".")
    return "se" not in parts and not any(key in part for part in parts for key in STATIC_NAME_PARTS)


def convert_to_dynamic(model: nn.Module, *, mode: str = "both", search_space: int = 2,
                       include: Callable[[str, nn.Module], bool] | None = None,
                       gate_hidden_min: int = 16, gate_input: str = "pool") -> dict[str, nn.Module]:
    """Replace matching convs of `model` in place; returns {qualified name: original module}.

    nn.Conv3d -> DynamicConv3d(mode); nn.Conv2d -> channel-only DynamicConv2d (skipped when
    mode == "temporal"). Idempotent: dynamic layers are never converted again. The new layers share
    the originals' weight and bias Parameters.
    """
    include = include or default_dynamic_filter
    targets = []
    for name, module in model.named_modules():
        if isinstance(module, DynamicConvBase) or not include(name, module):
            continue
        if type(module) is nn.Conv3d or (type(module) is nn.Conv2d and mode != "temporal"):
            targets.append((name, module))
    replaced: dict[str, nn.Module] = {}
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if isinstance(module, nn.Conv3d):
            layer = DynamicConv3d.from_conv(module, mode=mode, search_space=search_space,
                                            gate_hidden_min=gate_hidden_min, gate_input=gate_input)
        else:
            layer = DynamicConv2d.from_conv(module, search_space=search_space, gate_hidden_min=gate_hidden_min,
                                            gate_input=gate_input)
        layer.train(module.training)
        setattr(parent, child, layer)
        replaced[name] = module
    if not replaced:
        warnings.warn("convert_to_dynamic: no convolution matched; the model is unchanged", stacklevel=2)
    return replaced


def dynamic_layers(model: nn.Module) -> list[tuple[str, DynamicConvBase]]:
    """The dynamic layers of `model`, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DynamicConvBase)]


def set_execution(model: nn.Module, execution: str) -> None:
    """"soft", "hard" or "auto" (soft in training mode, hard in eval mode) for every dynamic layer."""
    for _, layer in dynamic_layers(model):
        layer.execution = execution


def force_policy(model: nn.Module, channel_index: int | None, temporal_index: int | None) -> None:
    """Force variant (r_i, R_j) in every dynamic layer; None leaves that axis to the gate."""
    for _, layer in dynamic_layers(model):
        layer.forced = (channel_index, temporal_index)


def clear_policy(model: nn.Module) -> None:
    for _, layer in dynamic_layers(model):
        layer.forced = None
