"""One way to get a trained model back: `load_trained(source)` for a checkpoint (directory or
file) or an MLflow URI (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/ID/model`).

The config comes with the weights; overrides (e.g. `data.root=...`) are applied to it afterwards.
VA-RED², static and baseline models alike: `build_model` builds whichever the config describes.
Weights are read with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import Config

if TYPE_CHECKING:
    import torch


def load_trained(source: str, overrides=()) -> tuple[Config, "torch.nn.Module"]:
    from pipeline.config import apply_overrides, from_dict
    from pipeline.models import build_model
    from pipeline.train.checkpoint import load_checkpoint

    if source.startswith(("models:/", "runs:/")):
        from jobs import tracking

        cfg, model = tracking.load_model(source)
    else:
        state = load_checkpoint(source)
        cfg = from_dict(Config, state["config"])
        model = build_model(cfg.model)
        model.load_state_dict(state["model"])
    return apply_overrides(cfg, overrides), model
