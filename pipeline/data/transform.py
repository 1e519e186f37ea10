"""Per-clip spatial work of the CPU backends (PyAV, FFCV): resample only the crop window of each
frame, flip, and normalise into a float (C, T, H, W) slot of the batch in one pass. Three inputs:
- Y, U, V planes of 4:2:0 frames (the PyAV backend's usual case): `resample_yuv` resamples the
  window of each plane to crop size (chroma upsampled bilinearly on the way), `normalize_yuv_into`
  converts to RGB and normalises in one pass; the colour conversion thus runs on crop-size pixels
  only, not on whole frames.
- uint8 RGB (T, H, W, 3) frames (other pixel formats, the FFCV live cache): `resample_clip`, then
  `normalize_into`.
- already-cropped planar uint8 (C, T, H, W) clips (FFCV frozen cache): `normalize_planar_into`.

Why not resize whole frames and crop: the crop is often half the frame, and swscale's scaled
YUV -> RGB path costs ~2x its unscaled one, so resampling only the window with OpenCV is ~10x
cheaper than the resize it replaces (benchmarks/bench_loaders.py).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from pipeline.data import kernels, sampling
from pipeline.data.contract import MEAN, STD

# x_norm = (x / 255 - mean) / std = x * SCALE + SHIFT, per channel (one multiply-add per value)
SCALE = torch.tensor([1.0 / (255.0 * s) for s in STD]).view(3, 1, 1, 1)
SHIFT = torch.tensor([-m / s for m, s in zip(MEAN, STD)]).view(3, 1, 1, 1)
_SCALE32, _SHIFT32 = SCALE.view(3).numpy().copy(), SHIFT.view(3).numpy().copy()  # for the kernels


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

    No float temporaries and no stacking afterwards (`out` is a slot of the batch): one pass
    (kernels.rgb_normalise) splits the channels and writes float32 straight into `out`."""
    clip = clip.numpy() if isinstance(clip, torch.Tensor) else clip
    if not (out.is_contiguous() and out.dtype == torch.float32 and clip.flags.c_contiguous):
        out.copy_(torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2))
        return out.mul_(SCALE).add_(SHIFT)
    kernels.rgb_normalise(clip.reshape(-1, 3), out.numpy().reshape(3, -1), _SCALE32, _SHIFT32)
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
    kernels.planar_normalise(rows.reshape(channels, -1), out.numpy().reshape(channels, -1),
                             _SCALE32, _SHIFT32)
    return out


def resample_yuv(frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 params: sampling.SpatialParams, crop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V planes of 4:2:0 frames at native size -> Y, U, V uint8 (T, crop, crop) of the crop of
    `params`, mirrored when params.flip: the same window as resample_clip on the RGB frames, luma
    resampled from the full-resolution plane, chroma upsampled straight from its half-resolution
    window to crop size (bilinear, like luma; area when a window shrinks by more than 2x)."""
    luma = frames[0][0]
    height, width = luma.shape
    y0, x0, side = sampling.source_window(height, width, params, crop)
    chroma_h, chroma_w = frames[0][1].shape
    cy0, cx0 = y0 // 2, x0 // 2
    cside_y = max(1, min(chroma_h - cy0, (y0 + side + 1) // 2 - cy0))
    cside_x = max(1, min(chroma_w - cx0, (x0 + side + 1) // 2 - cx0))
    out = tuple(np.empty((len(frames), crop, crop), np.uint8) for _ in range(3))

    def interpolation(rows: int) -> int:
        return cv2.INTER_AREA if rows > 2 * crop else cv2.INTER_LINEAR

    for t, (y, u, v) in enumerate(frames):
        cv2.resize(y[y0:y0 + side, x0:x0 + side], (crop, crop), dst=out[0][t],
                   interpolation=interpolation(side))
        for plane, dst in ((u, out[1][t]), (v, out[2][t])):
            cv2.resize(plane[cy0:cy0 + cside_y, cx0:cx0 + cside_x], (crop, crop), dst=dst,
                       interpolation=interpolation(cside_y))
    if params.flip:
        for plane in out:
            cv2.flip(plane.reshape(-1, crop), 1, dst=plane.reshape(-1, crop))
    return out


def normalize_yuv_into(planes: tuple[np.ndarray, np.ndarray, np.ndarray], out: torch.Tensor) -> torch.Tensor:
    """Y, U, V uint8 (T, H, W) at the same resolution -> `out` float (3, T, H, W): BT.601 RGB,
    rounded and clipped like swscale's, normalised, in one pass (kernels.yuv_normalise);
    bit-identical to yuv_to_rgb followed by normalize_into."""
    y, u, v = (np.ascontiguousarray(p).reshape(-1) for p in planes)
    kernels.yuv_normalise(y, u, v, out.numpy().reshape(3, -1), _SCALE32, _SHIFT32)
    return out


def yuv_to_rgb(planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Y, U, V uint8 (T, H, W) -> uint8 RGB (T, H, W, 3), as normalize_yuv_into converts them."""
    y, u, v = (np.ascontiguousarray(p).reshape(-1) for p in planes)
    rgb = np.empty(planes[0].shape + (3,), np.uint8)
    kernels.yuv_to_rgb(y, u, v, rgb.reshape(-1, 3))
    return rgb


def batch_buffer(n: int, num_frames: int, crop: int) -> torch.Tensor:
    """float (n, 3, T, crop, crop) for a batch. Inside a DataLoader worker it is allocated in shared
    memory, as torch's default collate does, so sending it to the main process copies nothing."""
    shape = (n, 3, num_frames, crop, crop)
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape)
    storage = torch.empty(0)._typed_storage()._new_shared(int(np.prod(shape)), device="cpu")
    return torch.empty(0).new(storage).view(shape)
