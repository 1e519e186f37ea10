"""Per-clip transforms of the CPU backends (transform.py): window resampling, flip, fused normalisation."""

import cv2
import numpy as np
import pytest
import torch

from conftest import tiny_config
from pipeline.data import build_loader, sampling
from pipeline.data.contract import normalize_uint8
from pipeline.data.transform import (batch_buffer, normalize_into, normalize_planar_into,
                                      resample_clip)


def gradient_frames(height=60, width=80, frames=3):
    """Smooth frames (2 grey levels per pixel across, 1 down), different per channel and frame."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([2 * x + y, 2 * x + 2 * y, x + 2 * y], axis=-1)
    return [np.clip(base + 5 * t, 0, 255).astype(np.uint8) for t in range(frames)]


@pytest.mark.parametrize("short_side", [40, 48, 60, 75, 130])  # down- and upscaling
@pytest.mark.parametrize("pos", [(0.0, 0.0), (0.3, 0.8), (1.0, 1.0), (0.5, 0.5)])
def test_window_resampling_equals_resize_then_crop(short_side, pos):
    frames, crop = gradient_frames(), 32
    params = sampling.SpatialParams(short_side=short_side, crop_y=pos[0], crop_x=pos[1], flip=False)
    got = resample_clip(frames, params, crop)
    height, width = sampling.resized_size(60, 80, short_side)
    y0 = sampling.crop_offset(height, crop, pos[0])
    x0 = sampling.crop_offset(width, crop, pos[1])
    interpolation = cv2.INTER_AREA if short_side < 60 / 2 else cv2.INTER_LINEAR
    want = np.stack([cv2.resize(f, (width, height), interpolation=interpolation)[y0:y0 + crop,
                                                                                 x0:x0 + crop]
                     for f in frames])
    # the window is rounded to whole source pixels: at most ~1 source pixel of a 3-level slope
    assert np.abs(got.astype(int) - want).max() <= 4


def test_flip_mirrors_the_crop():
    frames = gradient_frames()
    params = sampling.SpatialParams(short_side=45, crop_y=0.2, crop_x=0.7, flip=False)
    plain = resample_clip(frames, params, 32)
    flipped = resample_clip(frames, sampling.SpatialParams(45, 0.2, 0.7, True), 32)
    assert np.array_equal(flipped, plain[:, :, ::-1])


def test_eval_window_is_centred_and_inside_the_frame():
    for height, width, short_side, crop in [(60, 80, 64, 32), (81, 47, 50, 40), (32, 40, 32, 24)]:
        y0, x0, side = sampling.source_window(height, width, sampling.eval_spatial(short_side), crop)
        assert 0 <= y0 and y0 + side <= height and 0 <= x0 and x0 + side <= width
        assert abs((height - side) / 2 - y0) <= 0.5 and abs((width - side) / 2 - x0) <= 0.5
    with pytest.raises(ValueError, match="crop_size"):
        sampling.source_window(60, 80, sampling.eval_spatial(20), 32)


def test_fused_normalisation_equals_the_reference_formula():
    clip = np.random.default_rng(0).integers(0, 256, (4, 12, 10, 3), dtype=np.uint8)
    reference = normalize_uint8(torch.from_numpy(clip)[None])[0]
    out = torch.empty(2, 3, 4, 12, 10)
    assert normalize_into(clip, out[1]) is not None
    torch.testing.assert_close(out[1], reference, rtol=0, atol=1e-5)
    strided = torch.empty(3, 4, 12, 20)[..., ::2]  # a non-contiguous slot takes the torch path
    normalize_into(torch.from_numpy(clip), strided)
    torch.testing.assert_close(strided, reference, rtol=0, atol=1e-5)


def test_planar_normalisation_equals_the_interleaved_one_and_flips():
    clip = np.random.default_rng(1).integers(0, 256, (4, 12, 10, 3), dtype=np.uint8)
    planes = np.ascontiguousarray(clip.transpose(3, 0, 1, 2))
    reference = normalize_uint8(torch.from_numpy(clip)[None])[0]
    out = torch.empty(3, 4, 12, 10)
    torch.testing.assert_close(normalize_planar_into(planes, out), reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(normalize_planar_into(planes, out, flip=True),
                               reference.flip(-1), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="contiguous"):
        normalize_planar_into(planes, torch.empty(3, 4, 12, 20)[..., ::2])


class _Buffers(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        return batch_buffer(2, 4, 8)


def test_batch_buffer_is_shared_memory_inside_workers():
    assert not batch_buffer(2, 4, 8).is_shared()
    loader = torch.utils.data.DataLoader(_Buffers(), batch_size=None, num_workers=1)
    (buffer,) = list(loader)
    assert buffer.shape == (2, 3, 4, 8, 8) and buffer.is_shared()


def test_persistent_workers_follow_set_epoch(shard_root):
    cfg = tiny_config(shard_root, num_workers=2)
    loader = build_loader(cfg, split="mixed", train=True)
    for epoch in (0, 1, 2):
        loader.set_epoch(epoch)
        got = [(b.keys, b.clips) for b in loader]
        fresh = [(b.keys, b.clips) for b in build_loader(tiny_config(shard_root), split="mixed",
                                                         train=True, epoch=epoch)]
        assert [k for k, _ in got] == [k for k, _ in fresh]
        assert all(torch.equal(x, y) for (_, x), (_, y) in zip(got, fresh))
