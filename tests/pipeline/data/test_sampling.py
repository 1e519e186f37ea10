"""Clip sampling rules (sampling.py) shared by every backend."""

import numpy as np
import pytest

from pipeline.data import sampling


@pytest.mark.parametrize("video_frames", [1, 5, 12, 31, 32, 100])
def test_clip_indices_within_bounds_with_edge_padding(video_frames):
    rng = np.random.default_rng(0)
    for _ in range(50):
        start = sampling.train_clip_start(video_frames, 8, 4, rng)
        idx = sampling.clip_indices(start, video_frames, 8, 4)
        assert idx.min() >= 0 and idx.max() <= video_frames - 1
        if video_frames < sampling.clip_span(8, 4):  # padding rule: start at 0, repeat last frame
            assert start == 0
            assert (idx == np.minimum(4 * np.arange(8), video_frames - 1)).all()
        else:
            assert (np.diff(idx) == 4).all()


def test_train_start_covers_the_whole_valid_range():
    rng = np.random.default_rng(1)
    starts = {sampling.train_clip_start(20, 4, 2, rng) for _ in range(2000)}
    assert starts == set(range(20 - 7 + 1))


def test_eval_clips_uniformly_spaced():
    starts = sampling.eval_clip_starts(130, 8, 4, 5)  # max_start = 130 - 29 = 101
    gaps = np.diff(starts)
    assert starts[0] >= 0 and starts[-1] <= 101
    assert gaps.max() - gaps.min() <= 1  # equal up to rounding
    assert starts[sampling.centre_clip_index(5)] == int(101 / 2 + 0.5)  # odd K: exact centre
    assert (sampling.eval_clip_starts(10, 8, 4, 3) == 0).all()  # short video: all at frame 0


def test_jitter_ranges_respected():
    rng = np.random.default_rng(2)
    params = [sampling.train_spatial(rng, short_min=128, short_max=160, flip=True) for _ in range(2000)]
    sides = {p.short_side for p in params}
    assert min(sides) == 128 and max(sides) == 160
    assert all(0 <= p.crop_x <= 1 and 0 <= p.crop_y <= 1 for p in params)
    assert 0.4 < np.mean([p.flip for p in params]) < 0.6
    rng = np.random.default_rng(2)
    assert not any(sampling.train_spatial(rng, short_min=128, short_max=160, flip=False).flip
                   for _ in range(100))


def test_resized_size_keeps_aspect_and_short_side():
    assert sampling.resized_size(32, 40, 64) == (64, 80)
    assert sampling.resized_size(40, 32, 64) == (80, 64)
