"""CPU backend: batch contract, decoded frames, determinism, ranks, corrupt samples."""

import numpy as np
import torch

from conftest import VIDEOS, tiny_config
from pipeline.data import build_loader, sampling
from pipeline.data.decode import decode_all, decode_frames
from pipeline.data.synthetic import encode_video, level_to_index, level_video

NFRAMES = {key: n for key, _, n, _ in VIDEOS}


def frame_ids(batch):
    """Which source frame each (clip, t) holds, read back from the grey level."""
    px = batch.clips * (0.225 * 255) + 0.45 * 255  # (B, C, T, H, W)
    return [[level_to_index(px[i, :, t].mean()) for t in range(px.shape[2])] for i in range(len(batch))]


def test_decode_frames_seeks_and_matches_full_decode():
    for codec in ("h264", "vp9", "mjpeg"):
        data = encode_video(level_video(30), codec=codec, gop=6)
        idx = [29, 13, 14, 2, 13, 35]  # unordered, repeated, past the end
        got = decode_frames(data, idx)
        assert np.abs(got.astype(int) - decode_all(data, idx).astype(int)).max() <= 1
        assert [level_to_index(f.mean()) for f in got] == [29, 13, 14, 2, 13, 29]


def test_batch_contract(shard_root):
    for train in (True, False):
        cfg = tiny_config(shard_root)
        batch = next(iter(build_loader(cfg, split="mixed", train=train)))
        k = 1 if train else cfg.eval_clips
        n = cfg.batch_size if train else (cfg.eval_batch_size // k) * k
        assert batch.clips.shape == (n, 3, cfg.num_frames, cfg.crop_size, cfg.crop_size)
        assert batch.clips.dtype == torch.float32 and batch.labels.dtype == torch.int64
        assert len(batch.keys) == n and batch.valid.all()
        assert batch.clip_index.tolist() == list(range(k)) * (n // k)


def test_eval_clips_are_the_sampled_frames(shard_root):
    cfg = tiny_config(shard_root)
    for batch in build_loader(cfg, split="mixed", train=False):
        for key, k, ids in zip(batch.keys, batch.clip_index.tolist(), frame_ids(batch)):
            if not key:
                continue
            n = NFRAMES[key]
            start = sampling.eval_clip_starts(n, cfg.num_frames, cfg.frame_stride, cfg.eval_clips)[k]
            assert ids == sampling.clip_indices(start, n, cfg.num_frames, cfg.frame_stride).tolist()


def test_train_clips_follow_stride_and_padding(shard_root):
    cfg = tiny_config(shard_root)
    for batch in build_loader(cfg, split="mixed", train=True):
        for key, ids in zip(batch.keys, frame_ids(batch)):
            n = NFRAMES[key]
            expected = sampling.clip_indices(ids[0], n, cfg.num_frames, cfg.frame_stride).tolist()
            assert ids == expected and max(ids) < n


def test_identical_batches_for_identical_seed(shard_root):
    def epoch(seed, ep, workers):
        loader = build_loader(tiny_config(shard_root, seed=seed, num_workers=workers),
                              split="mixed", train=True, epoch=ep)
        return [(b.keys, b.clips) for b in loader]

    a, b = epoch(0, 1, 0), epoch(0, 1, 2)  # worker count does not change the batches
    assert [k for k, _ in a] == [k for k, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
    assert [k for k, _ in a] != [k for k, _ in epoch(0, 2, 0)]
    assert [k for k, _ in a] != [k for k, _ in epoch(1, 1, 0)]


def test_two_ranks_disjoint_with_equal_batch_counts(shard_root):
    for train in (True, False):
        cfg = tiny_config(shard_root)
        seen, counts = [], []
        for rank in range(2):
            loader = build_loader(cfg, split="mixed", train=train, rank=rank, world_size=2, epoch=3)
            batches = list(loader)
            counts.append((len(loader), len(batches)))
            seen.append({k for b in batches for k, v in zip(b.keys, b.valid.tolist()) if v})
        assert counts[0] == counts[1] and counts[0][0] == counts[0][1]
        assert not seen[0] & seen[1]
        if not train:  # evaluation covers every video
            assert seen[0] | seen[1] == set(NFRAMES)


def test_corrupt_sample_skipped_and_counted(corrupt_root):
    cfg = tiny_config(corrupt_root)
    for train in (True, False):
        loader = build_loader(cfg, split="mixed", train=train)
        batches = list(loader)
        assert len(batches) == len(loader)
        assert loader.stats.num_corrupt == 1 and loader.stats.corrupt_keys[0].startswith("vid003")
        keys = {k for b in batches for k, v in zip(b.keys, b.valid.tolist()) if v}
        assert "vid003" not in keys
        if train:  # replaced by another video: every training clip is real
            assert all(b.valid.all() for b in batches)
