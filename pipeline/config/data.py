"""Config of the data: where the shards are, which loader backend decodes them, how clips are sampled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config.base import Section

Backend = Literal["pyav", "dali", "ffcv"]
# FFCV training cache: "live" stores squares and draws the spatial jitter every epoch; "frozen"
# stores each clip already jittered (scale and crop drawn at write time; flip stays live).
FFCVSpatial = Literal["live", "frozen"]


@dataclass(frozen=True)
class DataConfig(Section):
    NAME = "data"

    root: str = "data/shards"  # folder holding {split}-{index:06d}.tar shards and the manifest
    train_split: str = "train"
    val_split: str = "val"
    backend: Backend = "pyav"
    num_frames: int = 16
    frame_stride: int = 2
    crop_size: int = 112
    # Training jitter: short side resized to a random value in [min, max] before a random crop.
    jitter_short_side_min: int = 128
    jitter_short_side_max: int = 160
    eval_short_side: int = 128
    flip: bool = True
    eval_clips: int = 10  # K uniformly spaced clips per video for video-1 / video-5
    batch_size: int = 8  # per worker
    eval_batch_size: int = 8
    num_workers: int = 2  # loader processes per training worker
    prefetch: int = 2
    ffcv_cache: str = ""  # path of the FFCV clip cache ("" = build next to the shards on demand)
    ffcv_clips_per_video: int = 4
    ffcv_spatial: FFCVSpatial = "live"
    seed: int = 0

    def validate(self) -> None:
        for name in ("num_frames", "frame_stride", "crop_size", "eval_clips", "batch_size",
                     "eval_batch_size", "prefetch", "ffcv_clips_per_video"):
            self._require(getattr(self, name) >= 1, name, "must be at least 1")
        self._require(self.num_workers >= 0, "num_workers", "must be 0 or more")
        self._require(self.jitter_short_side_min >= self.crop_size, "jitter_short_side_min",
                      f"must be at least crop_size={self.crop_size}")
        self._require(self.jitter_short_side_max >= self.jitter_short_side_min,
                      "jitter_short_side_max", "must be at least jitter_short_side_min")
        self._require(self.eval_short_side >= self.crop_size, "eval_short_side",
                      f"must be at least crop_size={self.crop_size}")
