"""Cost accounting in MACs (multiply-accumulates, as fvcore and the paper count "FLOPs"; not 2x):
conv MACs = C_out * prod(out spatial) * C_in / groups * prod(kernel), linear MACs = in * out; biases,
BatchNorm, pooling and activations are not counted (METHOD.md section 6). Dynamic layers report the
per-choice cost of what they execute (`DynamicConvBase.variant_macs`)."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from pipeline.models.convert import dynamic_layers
from pipeline.models.dynamic_conv import DynamicConvBase

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def conv_macs(conv: nn.Module, output_shape: tuple[int, ...]) -> int:
    """Per-sample MACs of an nn.ConvNd (or dynamic layer at full cost) producing `output_shape` (B, C, ...)."""
    return (conv.out_channels * math.prod(output_shape[2:]) * (conv.in_channels // conv.groups)
            * math.prod(conv.kernel_size))


def linear_macs(linear: nn.Linear, output_shape: tuple[int, ...]) -> int:
    """Per-sample MACs of an nn.Linear (leading dims other than the batch count as positions)."""
    return linear.in_features * linear.out_features * math.prod(output_shape[1:-1])


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` on the meta device, without copying any parameter data."""
    memo = {}
    for t in list(model.parameters()) + list(model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    for _, layer in dynamic_layers(model):  # a record may hold non-leaf tensors, which cannot be copied
        memo[id(layer.record)] = None
    meta = copy.deepcopy(model, memo)
    # Hooks are copied too: a copy made while an outer `static_macs` runs (VaredModel.forward asks for
    # its static cost) would carry the outer counting hooks and count every layer twice.
    for module in meta.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    return meta


@torch.no_grad()
def static_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Per-clip MACs of every Conv/Linear of `model` for one input of shape (C, T, H, W) (or (C, H, W)),
    dynamic layers at their full static cost (their gates and cheap ops not counted). Runs on the
    meta device, so no real compute happens."""
    meta = _meta_copy(model).eval()
    total = 0

    def count(module, _inputs, output):
        nonlocal total
        shape = tuple(output.shape)
        total += linear_macs(module, shape) if isinstance(module, nn.Linear) else conv_macs(module, shape)

    dynamic_prefixes = tuple(name + "." for name, _ in dynamic_layers(meta))
    for name, module in meta.named_modules():
        inside_dynamic = name.startswith(dynamic_prefixes)
        if isinstance(module, DynamicConvBase):
            module.execution, module.forced = "hard", (0, 0)  # the full conv, no data-dependent argmax
        if isinstance(module, (*_CONVS, nn.Linear, DynamicConvBase)) and not inside_dynamic:
            module.register_forward_hook(count)
    meta(torch.empty((1, *input_shape), device="meta"))
    return total


def param_count(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def gflops_summary(per_clip_macs: Tensor | list[int]) -> dict[str, float]:
    """{'avg', 'max', 'min'} of per-clip MACs, in GMACs (the "GFLOPs" of the paper)."""
    macs = torch.as_tensor(per_clip_macs, dtype=torch.float64)
    if macs.numel() == 0:
        raise ValueError("gflops_summary needs at least one clip")
    return {"avg": macs.mean().item() / 1e9, "max": macs.max().item() / 1e9, "min": macs.min().item() / 1e9}


def dynamic_layer_macs(layer: DynamicConvBase, input_shape: tuple[int, ...], channel_index: int,
                       temporal_index: int) -> int:
    """Per-sample MACs of one dynamic layer running variant (r_i, R_j) on an input of `input_shape`
    (B, C, ...): reduced conv + channel cheap op + temporal cheap op as executed + gate FCs."""
    return layer.variant_macs(tuple(input_shape), channel_index, temporal_index)
