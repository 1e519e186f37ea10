"""Which frames and which crop a clip uses: the one place every backend takes its sampling rules from.

Temporal: a clip is T frames at frame stride s, spanning (T - 1) * s + 1 frames.
- training: one clip per video at a uniformly random start;
- evaluation: K clips whose starts are the centres of K equal segments of the valid start range,
  so clip K // 2 is the centre clip (exactly for odd K) used by clip-1 accuracy.
Padding rule for short videos (fewer frames than the span): the clip starts at frame 0 and every
index past the end repeats the last frame ("edge" padding, DALI's pad_mode="edge").
Spatial: training resizes the short side to a random integer in [jitter_min, jitter_max], crops a
random square of crop_size and flips with p=0.5; evaluation resizes to eval_short_side and crops the
centre. Crop positions are fractions in [0, 1] of the free range so that they do not depend on the
resized size (the convention of DALI's crop_pos_x / crop_pos_y). The CPU backends resample only the
source window that the crop covers (`source_window`); DALI resizes the whole frame, then crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def clip_span(num_frames: int, stride: int) -> int:
    return (num_frames - 1) * stride + 1


def clip_indices(start: int, video_frames: int, num_frames: int, stride: int) -> np.ndarray:
    """Frame indices of a clip starting at `start`, clamped to the last frame (edge padding)."""
    idx = start + stride * np.arange(num_frames)
    return np.minimum(idx, max(video_frames - 1, 0)).astype(np.int64)


def train_clip_start(video_frames: int, num_frames: int, stride: int,
                     rng: np.random.Generator) -> int:
    max_start = video_frames - clip_span(num_frames, stride)
    return int(rng.integers(0, max_start + 1)) if max_start > 0 else 0


def eval_clip_starts(video_frames: int, num_frames: int, stride: int, num_clips: int) -> np.ndarray:
    """Starts of K uniformly spaced clips: centres of K equal segments of [0, max_start]."""
    max_start = max(video_frames - clip_span(num_frames, stride), 0)
    # floor(x + 0.5), not np.round (half to even), so DALI's arithmetic reproduces it exactly.
    centres = max_start * (2 * np.arange(num_clips) + 1) / (2 * num_clips)
    return np.floor(centres + 0.5).astype(np.int64)


def centre_clip_index(num_clips: int) -> int:
    """The eval clip that clip-1 accuracy uses (the exact centre when K is odd)."""
    return num_clips // 2


@dataclass(frozen=True)
class SpatialParams:
    short_side: int  # resize the short side to this, keeping the aspect ratio
    crop_y: float  # crop position in [0, 1] of the free vertical range
    crop_x: float
    flip: bool


def train_spatial(rng: np.random.Generator, *, short_min: int, short_max: int,
                  flip: bool) -> SpatialParams:
    return SpatialParams(short_side=int(rng.integers(short_min, short_max + 1)),
                         crop_y=float(rng.random()), crop_x=float(rng.random()),
                         flip=bool(flip and rng.random() < 0.5))


def eval_spatial(short_side: int) -> SpatialParams:
    return SpatialParams(short_side=short_side, crop_y=0.5, crop_x=0.5, flip=False)


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H, W) after resizing the short side to `short_side` (DALI's resize_shorter rounding)."""
    if height <= width:
        return short_side, max(1, int(round(width * short_side / height)))
    return max(1, int(round(height * short_side / width))), short_side


def crop_offset(size: int, crop: int, pos: float) -> int:
    return int(round(pos * (size - crop)))


def source_window(height: int, width: int, params: SpatialParams, crop: int) -> tuple[int, int, int]:
    """(y0, x0, side): the square of a height x width frame that resizing the short side to
    `params.short_side` and cropping `crop` x `crop` at (crop_y, crop_x) keeps. Its side is
    crop * short / short_side rounded to whole source pixels, at the same fractions of the free range."""
    if params.short_side < crop:
        raise ValueError(f"short side {params.short_side} is smaller than crop_size={crop}")
    short = min(height, width)
    side = min(short, max(1, int(round(crop * short / params.short_side))))
    return crop_offset(height, side, params.crop_y), crop_offset(width, side, params.crop_x), side


def sample_rng(seed: int, epoch: int, video_index: int) -> np.random.Generator:
    """The random stream of one video in one epoch: same seed and epoch give the same clip and
    crop whichever rank or worker decodes it."""
    return np.random.default_rng([seed, epoch, video_index])


@dataclass(frozen=True)
class ClipSpec:
    """The sampling settings of one loader (a picklable slice of DataConfig)."""

    num_frames: int
    frame_stride: int
    crop_size: int
    train: bool
    jitter_short_side_min: int
    jitter_short_side_max: int
    eval_short_side: int
    flip: bool
    eval_clips: int
    seed: int

    @classmethod
    def from_config(cls, cfg, train: bool) -> "ClipSpec":
        return cls(cfg.num_frames, cfg.frame_stride, cfg.crop_size, train, cfg.jitter_short_side_min,
                   cfg.jitter_short_side_max, cfg.eval_short_side, cfg.flip, cfg.eval_clips, cfg.seed)

    @property
    def clips_per_video(self) -> int:
        return 1 if self.train else self.eval_clips


def videos_per_batch(cfg, train: bool) -> int:
    """Videos per loader batch: `batch_size` clips in training; in evaluation as many videos as fit
    `eval_batch_size` clips of `eval_clips` each (at least one)."""
    return cfg.batch_size if train else max(1, cfg.eval_batch_size // cfg.eval_clips)
