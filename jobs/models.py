"""One way to get a trained model back: `load_trained(source)` for a checkpoint (directory or
file) or an MLflow URI (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/ID/model`).

The config comes with the weights; overrides (e.g. `data.root=...`) are applied to it afterwards.
An MLflow URI is looked up in the store `runtime.tracking_uri=...` among the overrides names, else
$MLFLOW_TRACKING_URI, else sqlite:///mlruns.db (as for training).
VA-RED², static and baseline models alike: `build_model` builds whichever the config describes.
Weights are read with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pipeline.config import Config

if TYPE_CHECKING:
    import torch

    from jobs.tracking import Tracker


def store_of(overrides=()) -> Tracker:
    """The store an MLflow URI is read from: `runtime.tracking_uri` (and `runtime.base_dir`) among
    the overrides, else $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db."""
    from jobs.tracking import Tracker
    from pipeline.config import apply_overrides, parse_overrides

    items = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    runtime = {k: v for k, v in items.items() if k.startswith("runtime.")}
    return Tracker(apply_overrides(Config(), runtime).runtime)


def load_trained(source: str, overrides=(), *, tracker: Tracker | None = None) -> tuple[Config, "torch.nn.Module"]:
    """`tracker`: where an MLflow URI is looked up (default `store_of(overrides)`)."""
    from pipeline.config import apply_overrides, from_dict
    from pipeline.models import build_model
    from pipeline.train.checkpoint import load_checkpoint

    if source.startswith(("models:/", "runs:/")):
        cfg, model = (tracker or store_of(overrides)).load_model(source)
    else:
        state = load_checkpoint(source)
        cfg = from_dict(Config, state["config"])
        model = build_model(cfg.model)
        model.load_state_dict(state["model"])
    return apply_overrides(cfg, overrides), model
