"""The YUV path of the CPU backend: 8-bit 4:2:0 frames are resampled as Y, U, V planes and converted
to RGB only at crop size (decode.yuv420_planes, transform.resample_yuv, kernels)."""

import numpy as np
import pytest
import torch

from conftest import tiny_config
from pipeline.data import sampling
from pipeline.data.decode import decode_frame_list, decode_video_frames, yuv420_planes
from pipeline.data.pyav_loader import video_clips, video_clips_into
from pipeline.data.sampling import ClipSpec
from pipeline.data.sharding import index_split
from pipeline.data.synthetic import encode_video, texture_video
from pipeline.data.transform import (normalize_into, normalize_yuv_into, resample_clip, resample_yuv,
                                     yuv_to_rgb)


def smooth_video(frames=6, height=64, width=96):
    """Colour gradients: chroma varies slowly, as in natural video."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([2 * x + y, 255 - 2 * y, x + y // 2], axis=-1).astype(np.float32)
    return np.stack([np.clip(base + 4 * t, 0, 255).astype(np.uint8) for t in range(frames)])


@pytest.fixture(scope="module")
def h264():
    return encode_video(smooth_video(), codec="h264", gop=3)


def test_frames_and_planes(h264):
    frames = decode_video_frames(h264, [4, 1, 4])
    assert frames[0] is frames[2] and len(frames) == 3
    y, u, v = yuv420_planes(frames[0])
    assert y.shape == (64, 96) and u.shape == v.shape == (32, 48) and y.dtype == np.uint8
    mjpeg = decode_video_frames(encode_video(smooth_video(), codec="mjpeg"), [0])[0]
    assert mjpeg.format.name == "yuvj420p" and yuv420_planes(mjpeg) is None  # full range: RGB path


def test_colour_conversion_matches_swscale(h264):
    """Whole frame, chroma replicated as swscale's unscaled converter does: within 3 grey levels."""
    frame = decode_video_frames(h264, [2])[0]
    y, u, v = yuv420_planes(frame)
    up = [np.repeat(np.repeat(p, 2, 0), 2, 1) for p in (u, v)]
    ours = yuv_to_rgb(tuple(p[None] for p in (y, *up)))[0]
    assert np.abs(ours.astype(int) - frame.to_ndarray(format="rgb24").astype(int)).max() <= 3


@pytest.mark.parametrize("params", [sampling.SpatialParams(72, 0.3, 0.8, False),
                                    sampling.SpatialParams(64, 0.5, 0.5, True),
                                    sampling.SpatialParams(100, 1.0, 0.0, False),
                                    sampling.SpatialParams(40, 0.5, 0.5, False)])  # 64 -> 40: area
def test_yuv_crop_equals_the_rgb_crop(h264, params):
    """Same window, flip and scale as resample_clip on RGB frames; only chroma upsampling differs
    (bilinear here, replicated in swscale), which moves smooth colours by a few grey levels."""
    idx = [0, 2, 4]
    rgb = resample_clip(decode_frame_list(h264, idx), params, 32).astype(int)
    yuv = yuv_to_rgb(resample_yuv([yuv420_planes(f) for f in decode_video_frames(h264, idx)],
                                  params, 32)).astype(int)
    assert np.abs(rgb - yuv).mean() < 2 and np.abs(rgb - yuv).max() <= 8


def test_fused_normalisation_is_bit_identical(h264):
    planes = resample_yuv([yuv420_planes(f) for f in decode_video_frames(h264, [0, 1])],
                          sampling.SpatialParams(70, 0.2, 0.4, True), 24)
    fused, reference = torch.empty(3, 2, 24, 24), torch.empty(3, 2, 24, 24)
    normalize_yuv_into(planes, fused)
    normalize_into(yuv_to_rgb(planes), reference)
    assert torch.equal(fused, reference)


@pytest.mark.parametrize("split", ["h264", "vp9"])
def test_video_clips_and_batches_agree(shard_root, split):
    """uint8 clips (FFCV cache writer) and normalised clips (batches) are the same pixels, for the
    YUV path (H.264, VP9) and for eval (K clips per video)."""
    for train in (True, False):
        spec = ClipSpec.from_config(tiny_config(shard_root), train)
        ref = index_split(str(shard_root), split)[0]
        clips, label = video_clips(ref, spec, epoch=3)
        out = torch.empty(len(clips), 3, spec.num_frames, spec.crop_size, spec.crop_size)
        assert video_clips_into(ref, spec, 3, out) == label
        for k, clip in enumerate(clips):
            assert torch.equal(out[k], normalize_into(clip, torch.empty_like(out[k])))


def test_textured_video_close_to_the_rgb_path():
    """Sharp colour edges (8-pixel blocks) are the worst case for the chroma difference."""
    data = encode_video(texture_video(6, 64, 96, seed=2), codec="h264")
    params = sampling.SpatialParams(72, 0.5, 0.5, False)
    rgb = resample_clip(decode_frame_list(data, [0, 3]), params, 48).astype(int)
    yuv = yuv_to_rgb(resample_yuv([yuv420_planes(f) for f in decode_video_frames(data, [0, 3])],
                                  params, 48)).astype(int)
    assert np.abs(rgb - yuv).mean() < 8
