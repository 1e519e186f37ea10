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
# Model keys that change what the static backbone computes, with the value of checkpoints saved
# before the key existed.
_BACKBONE_KEYS = {"backbone": None, "temporal_padding": "zeros"}


def check_static_matches(model_cfg, static_config: dict) -> None:
    """ValueError when the static checkpoint (its saved config dict) was trained as another backbone
    than `model_cfg` builds: its weights would load, but compute something else (for example zero
    temporal padding under `model.temporal_padding=replicate`)."""
    saved = static_config.get("model", {})
    for key, legacy in _BACKBONE_KEYS.items():
        theirs, ours = saved.get(key, legacy), getattr(model_cfg, key)
        if theirs is not None and theirs != ours:
            raise ValueError(f"train.init_from: the static model was trained with model.{key}={theirs}, "
                             f"this run has model.{key}={ours}; set model.{key}={theirs} or retrain it")


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
