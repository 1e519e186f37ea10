"""The batch every loader backend yields (DATA.md "Readers"), normalisation, and per-epoch load stats.

All three backends (PyAV, DALI, FFCV) return a `Batch`, so training and evaluation code never asks
which backend produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Kinetics mean / std on [0, 1] pixels, as used by SlowFast, X3D and pytorchvideo.
MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)


@dataclass
class Batch:
    """One batch of clips.

    clips:       float32 (B, C, T, H, W), normalised with MEAN / STD.
    labels:      int64 (B,).
    keys:        the shard sample key of each clip.
    video_index: int64 (B,), index of the video in this split (eval: average clips of one video).
    clip_index:  int64 (B,), which of the K eval clips this is (0 in training).
    valid:       bool (B,), False for padding added so every rank yields the same number of
                 batches, or for a stand-in for a corrupt video in evaluation; metrics must drop them.
    """

    clips: torch.Tensor
    labels: torch.Tensor
    keys: list[str]
    video_index: torch.Tensor
    clip_index: torch.Tensor
    valid: torch.Tensor

    def __len__(self) -> int:
        return len(self.keys)

    def to(self, device: torch.device | str, non_blocking: bool = True) -> "Batch":
        return Batch(self.clips.to(device, non_blocking=non_blocking),
                     self.labels.to(device, non_blocking=non_blocking), self.keys,
                     self.video_index.to(device), self.clip_index.to(device), self.valid.to(device))


@dataclass
class LoadStats:
    """What a loader met during one epoch; read it after iterating (`loader.stats`)."""

    num_clips: int = 0
    num_corrupt: int = 0
    corrupt_keys: list[str] = field(default_factory=list)

    def merge(self, other: "LoadStats") -> None:
        self.num_clips += other.num_clips
        self.num_corrupt += other.num_corrupt
        self.corrupt_keys.extend(other.corrupt_keys)


def normalize_uint8(clips: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, C) -> float (B, C, T, H, W) normalised with MEAN / STD."""
    mean = torch.tensor(MEAN, device=clips.device).view(1, 3, 1, 1, 1) * 255.0
    std = torch.tensor(STD, device=clips.device).view(1, 3, 1, 1, 1) * 255.0
    x = clips.permute(0, 4, 1, 2, 3).float()  # (B, C, T, H, W)
    return (x - mean) / std
