"""A tiny sharded dataset of real videos whose frame i has grey level `frame_level(i)`."""

from __future__ import annotations

import pytest

from pipeline.config.data import DataConfig
from pipeline.data.synthetic import encode_video, level_video, sample_record, write_shards

# (key, codec, num_frames, label); two short videos exercise the padding rule.
VIDEOS = [(f"vid{i:03d}", codec, n, i % 3) for i, (codec, n) in enumerate(
    [("h264", 40), ("h264", 33), ("h264", 20), ("h264", 27), ("h264", 12), ("h264", 36), ("h264", 24),
     ("vp9", 40), ("vp9", 30), ("vp9", 21), ("vp9", 10), ("vp9", 38), ("vp9", 25)])]


def _write(root, codec_filter=None, corrupt_key=None):
    samples = {"h264": [], "vp9": []}
    for key, codec, n, label in VIDEOS:
        video = encode_video(level_video(n), codec=codec)
        if key == corrupt_key:
            video = video[:64] + b"\x00" * 200  # truncated garbage
        samples[codec].append(sample_record(key, video, label, n))
    for codec, split in (("h264", "h264"), ("vp9", "vp9")):
        write_shards(root, split, samples[codec], per_shard=4)
    write_shards(root, "mixed", samples["h264"] + samples["vp9"], per_shard=5)
    return root


@pytest.fixture(scope="session")
def shard_root(tmp_path_factory):
    """Shards of splits `h264` (7 videos), `vp9` (6) and `mixed` (13, 3 shards)."""
    return _write(tmp_path_factory.mktemp("shards"))


@pytest.fixture(scope="session")
def corrupt_root(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("corrupt"), corrupt_key="vid003")


def tiny_config(root, **overrides) -> DataConfig:
    base = dict(root=str(root), num_frames=4, frame_stride=3, crop_size=24,
                jitter_short_side_min=28, jitter_short_side_max=36, eval_short_side=32,
                eval_clips=3, batch_size=2, eval_batch_size=6, num_workers=0, prefetch=2)
    base.update(overrides)
    return DataConfig(**base)
