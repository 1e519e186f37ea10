"""How a conv pads: "zeros" (nn.Conv's default) or "replicate" (the edge frame repeated), and the
functional conv that every dynamic or baseline layer runs, so that it pads as its static conv did.

Why replicate in time (ours; `model.temporal_padding`): with zero padding a clip of identical frames
stops being one after the first temporal conv, since its end frames see zeros; at the depths where
T_out is 4 or 2, every frame is an end frame. A temporally reduced layer then cannot rebuild even a
still clip exactly, and the gate learns that temporal reduction costs accuracy everywhere. With the
edge frame repeated, a still clip stays still through the whole network, and rebuilding its frames
from their neighbours is exact at every depth.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

PADDING_MODES = ("zeros", "replicate")


def check_padding_mode(mode: str) -> str:
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode={mode!r} is not supported; choose one of {PADDING_MODES}")
    return mode


def conv_nd(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int = 1,
            padding_mode: str = "zeros") -> Tensor:
    """F.conv3d / F.conv2d (by `weight`'s rank) padding like an nn.Conv with `padding_mode`."""
    conv = F.conv3d if weight.dim() == 5 else F.conv2d
    if padding_mode != "zeros" and any(padding):
        x = F.pad(x, [p for p in reversed(padding) for _ in range(2)], mode=padding_mode)
        padding = (0,) * len(padding)
    return conv(x, weight, bias, stride, padding, dilation, groups)
