"""Per-clip spatial work of the CPU backends (PyAV, FFCV): resample only the crop window of each
frame, flip, and normalise uint8 (T, H, W, 3) into a float (C, T, H, W) slot of the batch in one pass
(or, for already-cropped planar (C, T, H, W) clips, flip and normalise only).

Why not resize whole frames and crop: the crop is often half the frame, and swscale's scaled
YUV -> RGB path costs ~2x its unscaled one, so converting at native size and resampling the window
with OpenCV is ~10x cheaper than the resize it replaces (benchmarks/bench_loaders.py).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from pipeline.data import sampling
from pipeline.data.contract import MEAN, STD

# x_norm = (x / 255 - mean) / std = x * SCALE + SHIFT, per channel (one multiply-add per value)
SCALE = torch.tensor([1.0 / (255.0 * s) for s in STD]).view(3, 1, 1, 1)
SHIFT = torch.tensor([-m / s for m, s in zip(MEAN, STD)]).view(3, 1, 1, 1)
_SCALE, _SHIFT = SCALE.view(3).tolist(), SHIFT.view(3).tolist()


def resample_clip(frames: Sequence[np.ndarray], params: sampling.SpatialParams, crop: int,
                  out: np.ndarray | None = None) -> np.ndarray:
    """uint8 frames (H, W, 3) at native size -> uint8 (T, crop, crop, 3) in `out` (allocated when
    None): the crop of `params` (short side resized to params.short_side, crop at (crop_y, crop_x),
    flip). Bilinear, except area averaging when the window shrinks by more than 2x (no aliasing)."""
    height, width = frames[0].shape[:2]
    y0, x0, side = sampling.source_window(height, width, params, crop)
    if out is None:
        out = np.empty((len(frames), crop, crop, 3), np.uint8)
    dst = np.empty_like(out) if params.flip else out
    interpolation = cv2.INTER_AREA if side > 2 * crop else cv2.INTER_LINEAR
    for t, frame in enumerate(frames):
        window = frame[y0:y0 + side, x0:x0 + side]
        if side == crop:
            dst[t] = window
        else:
            cv2.resize(window, (crop, crop), dst=dst[t], interpolation=interpolation)
    if params.flip:  # all frames in one call: mirror each of the T * crop rows
        cv2.flip(dst.reshape(-1, crop, 3), 1, dst=out.reshape(-1, crop, 3))
    return out


def normalize_into(clip: np.ndarray | torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> `out` float (C, T, H, W), normalised with MEAN / STD, in place.

    No float temporaries and no stacking afterwards (`out` is a slot of the batch): OpenCV splits
    the channels, then one multiply-add per plane writes float32 straight into `out`."""
    clip = clip.numpy() if isinstance(clip, torch.Tensor) else clip
    if not (out.is_contiguous() and out.dtype == torch.float32 and clip.flags.c_contiguous):
        out.copy_(torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2))
        return out.mul_(SCALE).add_(SHIFT)
    frames, height, width, _ = clip.shape
    planes = cv2.split(clip.reshape(frames * height, width, 3))
    dst = out.numpy()
    for c, plane in enumerate(planes):  # plane * scale + 0 * plane + shift, as float32
        cv2.addWeighted(plane, _SCALE[c], plane, 0.0, _SHIFT[c], dst=dst[c].reshape(-1, width),
                        dtype=cv2.CV_32F)
    return out


def normalize_planar_into(planes: np.ndarray, out: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """uint8 (C, T, H, W), already cropped -> `out` float (C, T, H, W), normalised, mirrored when
    `flip`. Planar input needs no channel split: one multiply-add per channel (the FFCV cache's
    frozen crops, stored this way)."""
    channels, frames, height, width = planes.shape
    if not (out.is_contiguous() and out.dtype == torch.float32 and planes.flags.c_contiguous):
        raise ValueError("normalize_planar_into needs contiguous uint8 input and float32 output")
    rows = planes.reshape(channels * frames * height, width)
    if flip:  # every row of every frame and channel mirrored in one call
        rows = cv2.flip(rows, 1)
    dst = out.numpy().reshape(channels, frames * height, width)
    for c in range(channels):
        plane = rows[c * frames * height:(c + 1) * frames * height]
        cv2.addWeighted(plane, _SCALE[c], plane, 0.0, _SHIFT[c], dst=dst[c], dtype=cv2.CV_32F)
    return out


def batch_buffer(n: int, num_frames: int, crop: int) -> torch.Tensor:
    """float (n, 3, T, crop, crop) for a batch. Inside a DataLoader worker it is allocated in shared
    memory, as torch's default collate does, so sending it to the main process copies nothing."""
    shape = (n, 3, num_frames, crop, crop)
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape)
    storage = torch.empty(0)._typed_storage()._new_shared(int(np.prod(shape)), device="cpu")
    return torch.empty(0).new(storage).view(shape)
