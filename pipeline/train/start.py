"""Stage 2 of the schedule (METHOD.md section 8): a dynamic model started from a trained static one.

The static checkpoint's backbone weights load unchanged (same parameter names); then, unless
`train.calibrate_batches` is 0, the converted layers are calibrated on training clips
(`pipeline.models.calibrate.calibrate_conversion`) so that every cheaper variant starts as close to
the static layer as a depthwise cheap op can get.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from pipeline.models.calibrate import calibrate_conversion
from pipeline.models.convert import dynamic_layers

PREFIX = "backbone."


def start_from_static(model: nn.Module, state: dict, batches: Iterable, *, calibrate_batches: int,
                      device: torch.device | str = "cpu") -> dict[str, float]:
    """Load `state` (a checkpoint dict of `pipeline.train.checkpoint`) into `model`'s backbone and
    calibrate it on the clips of the first `calibrate_batches` of `batches`; returns the mean R^2 of
    the rebuilt maps per calibrated layer ({} when nothing was calibrated)."""
    model.load_backbone_state_dict({k[len(PREFIX):]: v for k, v in state["model"].items()
                                    if k.startswith(PREFIX)})
    if calibrate_batches <= 0 or not dynamic_layers(model):
        return {}

    def clips():
        for i, batch in enumerate(batches):
            if i >= calibrate_batches:
                return
            yield (batch.clips if hasattr(batch, "clips") else batch[0]).to(device)
    return calibrate_conversion(model, clips())
