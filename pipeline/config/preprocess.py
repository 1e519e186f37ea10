"""Config of the preprocessing: annotations and videos in, WebDataset shards out (DATA.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config.base import Section

AnnotationFormat = Literal["kinetics", "mini_kinetics", "moments", "csv"]
Codec = Literal["h264", "vp9", "mjpeg", "copy"]
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]


@dataclass(frozen=True)
class PreprocessConfig(Section):
    NAME = "preprocess"

    format: AnnotationFormat = "kinetics"
    annotations: str = ""  # CSV (or folder for Moments in Time) describing the videos
    videos: str = ""  # folder of video files (flat or per-class)
    subset: str = ""  # mini_kinetics: the list of YouTube ids / video names of this split
    class_index: str = ""  # optional class order (`label,index` or one name per line); else sorted
    output: str = "data/shards"
    split: str = "train"
    codec: Codec = "h264"
    short_side: int = 128
    fps: float = 15.0
    keyframe_interval: int = 8
    crf: int = 23
    x264_preset: X264Preset = "veryfast"  # speed/size trade-off of the h264 encoder
    min_frames: int = 16  # shorter videos are reported as too_short
    max_shard_samples: int = 256
    # Planned from source file sizes before any transcoding, so the shard plan (and the output) does
    # not depend on worker timing; outputs are normally smaller than their sources.
    max_shard_bytes: int = 256 * 1024 * 1024
    num_workers: int = 2  # Ray tasks at a time

    def validate(self) -> None:
        self._require(bool(self.split) and all(c.isalnum() or c in "_-" for c in self.split),
                      "split", "must be a non-empty name of letters, digits, '_' or '-'")
        self._require(self.short_side >= 16, "short_side", "must be at least 16")
        self._require(self.fps > 0, "fps", "must be positive")
        self._require(self.keyframe_interval >= 1, "keyframe_interval", "must be at least 1")
        self._require(0 <= self.crf <= 63, "crf", "must lie in [0, 63]")
        self._require(self.min_frames >= 1, "min_frames", "must be at least 1")
        self._require(self.max_shard_samples >= 1, "max_shard_samples", "must be at least 1")
        self._require(self.max_shard_bytes >= 1024, "max_shard_bytes", "must be at least 1024")
        self._require(self.num_workers >= 1, "num_workers", "must be at least 1")
