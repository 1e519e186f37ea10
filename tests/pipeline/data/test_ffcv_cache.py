"""FFCV clip cache: returns exactly the clips it stored; frozen temporal sampling; ranks; corrupt."""

import pytest
import torch

from conftest import VIDEOS, tiny_config
from pipeline.data import build_loader, sampling
from test_pyav_loader import frame_ids

NFRAMES = {key: n for key, _, n, _ in VIDEOS}


@pytest.mark.ffcv
def test_ffcv_eval_returns_exactly_the_stored_clips(shard_root, tmp_path):
    cfg = tiny_config(shard_root, ffcv_cache=str(tmp_path))
    ffcv = list(build_loader(cfg.__class__(**{**cfg.__dict__, "backend": "ffcv"}), split="mixed",
                             train=False))
    pyav = list(build_loader(cfg, split="mixed", train=False))  # the clips the writer stored
    assert len(ffcv) == len(pyav)
    for f, p in zip(ffcv, pyav):
        assert f.keys == p.keys and torch.equal(f.labels, p.labels)
        assert torch.equal(f.clip_index, p.clip_index) and torch.equal(f.clips, p.clips)


@pytest.mark.ffcv
def test_ffcv_training_uses_only_stored_clips(shard_root, tmp_path):
    cfg = tiny_config(shard_root, ffcv_cache=str(tmp_path), backend="ffcv", ffcv_clips_per_video=2)
    for epoch in range(2):
        loader = build_loader(cfg, split="mixed", train=True, epoch=epoch)
        batches = list(loader)
        assert len(batches) == len(loader)
        for b in batches:
            assert b.clips.shape == (cfg.batch_size, 3, cfg.num_frames, cfg.crop_size, cfg.crop_size)
            for key, ids in zip(b.keys, frame_ids(b)):
                n = NFRAMES[key]
                stored = sampling.eval_clip_starts(n, cfg.num_frames, cfg.frame_stride, 2)
                assert ids[0] in stored.tolist()  # temporal sampling frozen at write time


@pytest.mark.ffcv
def test_ffcv_two_ranks_and_corrupt_count(corrupt_root, tmp_path):
    cfg = tiny_config(corrupt_root, ffcv_cache=str(tmp_path), backend="ffcv")
    counts, seen = [], []
    for rank in range(2):
        loader = build_loader(cfg, split="mixed", train=False, rank=rank, world_size=2)
        batches = list(loader)
        counts.append((len(loader), len(batches)))
        seen.append({k for b in batches for k, v in zip(b.keys, b.valid.tolist()) if v})
        assert loader.stats.num_corrupt == 1
    assert counts[0] == counts[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(NFRAMES) - {"vid003"}
