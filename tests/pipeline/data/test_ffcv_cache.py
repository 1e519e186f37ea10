"""FFCV clip cache: returns exactly the clips it stored; frozen temporal sampling; frozen crops;
ranks; corrupt."""

import pytest
import torch

from conftest import VIDEOS, tiny_config
from pipeline.data import build_loader, sampling
from pipeline.data.ffcv_cache import _write_spec, cache_path, frozen_spatial
from pipeline.data.pyav_loader import video_clips
from pipeline.data.sharding import index_split
from pipeline.data.transform import normalize_into
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


@pytest.mark.ffcv
def test_ffcv_frozen_returns_the_stored_crops(shard_root, tmp_path):
    cfg = tiny_config(shard_root, ffcv_cache=str(tmp_path), backend="ffcv", ffcv_clips_per_video=2,
                      ffcv_spatial="frozen", flip=False)
    refs = {r.key: r for r in index_split(cfg.root, "mixed")}
    spec = _write_spec(cfg, train=True)
    loader = build_loader(cfg, split="mixed", train=True, epoch=1)
    batches = list(loader)
    assert len(batches) == len(loader) and loader.path.name == "mixed-train-frozen.beton"
    for b in batches:
        for i, key in enumerate(b.keys):
            ref = refs[key]
            clips, label = video_clips(ref, spec, 0, spatial=frozen_spatial(cfg, ref.video_index))
            expected = normalize_into(clips[int(b.clip_index[i])], torch.empty_like(b.clips[i]))
            assert torch.equal(b.clips[i], expected) and int(b.labels[i]) == label
    # each stored clip has its own crop, fixed by (seed, video)
    params = [p for r in refs.values() for p in frozen_spatial(cfg, r.video_index)]
    assert len({(p.short_side, p.crop_y, p.crop_x) for p in params}) > 1
    assert params == [p for r in refs.values() for p in frozen_spatial(cfg, r.video_index)]


@pytest.mark.ffcv
def test_ffcv_cache_of_the_other_spatial_mode_is_refused(shard_root, tmp_path):
    cfg = tiny_config(shard_root, ffcv_cache=str(tmp_path), backend="ffcv", ffcv_spatial="frozen")
    frozen = build_loader(cfg, split="h264", train=True).path
    live = cfg.__class__(**{**cfg.__dict__, "ffcv_spatial": "live"})
    for suffix in (".beton", ".json"):  # a frozen cache where a live one is expected
        frozen.with_suffix(suffix).rename(cache_path(live, "h264", True).with_suffix(suffix))
    with pytest.raises(ValueError, match="ffcv_spatial"):
        build_loader(live, split="h264", train=True)
