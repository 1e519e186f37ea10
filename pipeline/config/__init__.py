"""The typed config tree: sections, presets and strict dotted overrides shared by CLI, jobs and Tune."""

from pipeline.config.data import DataConfig
from pipeline.config.model import ModelConfig
from pipeline.config.overrides import (apply_overrides, flatten, from_dict, parse_overrides,
                                       to_dict, to_json)
from pipeline.config.preprocess import PreprocessConfig
from pipeline.config.presets import PRESETS, get_preset
from pipeline.config.root import Config
from pipeline.config.runtime import RuntimeConfig
from pipeline.config.train import TrainConfig


def load_config(preset: str = "default", overrides=()) -> Config:
    """A preset with overrides applied: what every entry point starts from."""
    return apply_overrides(get_preset(preset), overrides)


__all__ = [
    "Config", "DataConfig", "ModelConfig", "PreprocessConfig", "RuntimeConfig", "TrainConfig",
    "PRESETS", "apply_overrides", "flatten", "from_dict", "get_preset", "load_config",
    "parse_overrides", "to_dict", "to_json",
]
