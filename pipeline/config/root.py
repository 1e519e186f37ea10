"""The root of the config tree: one section per concern, each handed only to its own builder."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config.base import Section
from pipeline.config.data import DataConfig
from pipeline.config.model import ModelConfig
from pipeline.config.preprocess import PreprocessConfig
from pipeline.config.runtime import RuntimeConfig
from pipeline.config.train import TrainConfig
from pipeline.config.tune import TuneConfig


@dataclass(frozen=True)
class Config(Section):
    NAME = "config"

    name: str = "default"  # the preset it came from; names runs
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
