"""DALI backend: fn.readers.webdataset (with the .idx files) -> fn.decoders.video -> resize, crop,
flip and normalise in DALI, wrapped for PyTorch.

Decoding runs on the GPU (`device="mixed"`, NVDEC: H.264, HEVC, AV1, VP9) when a `device_id` is
given (the caller passes LOCAL_RANK), else on the CPU (`device="cpu"`, libavcodec: VP9, VP8, MJPEG
only; that is how the tests run without a GPU). Frame indices are computed inside the graph from the
`nframes` field with the rules of sampling.py, so evaluation clips are the CPU backend's exactly;
training draws from DALI's own generator (same distribution, different stream).
Sharding: the reader's shard_id / num_shards split; every rank yields the same number of batches
(training drops what does not fill the smallest rank's batches; evaluation pads with invalid clips).
A video DALI cannot decode stops the pipeline: filter corrupt videos in preprocessing (the manifest
marks them) when using this backend; the PyAV backend skips them at load time.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pipeline.data import sampling
from pipeline.data.sampling import videos_per_batch
from pipeline.data.contract import MEAN, STD, Batch, LoadStats
from pipeline.data.sharding import find_shards, index_split
from pipeline.data.verify import require_intact


def _video_decoder():
    from nvidia.dali import fn
    return fn.decoders.video if hasattr(fn.decoders, "video") else fn.experimental.decoders.video


def build_pipeline(cfg, *, paths: list[str], train: bool, rank: int, world_size: int,
                   batch_size: int, device_id: int | None, decoder_device: str, seed: int):
    """The DALI pipeline: outputs (clips float (C, K*T, H, W), label (1,), key bytes)."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali import math as dmath

    T, s = cfg.num_frames, cfg.frame_stride
    K = 1 if train else cfg.eval_clips
    span = sampling.clip_span(T, s)
    offsets = np.tile(s * np.arange(T), K).astype(np.int32)  # t * stride, per index j
    centres = np.repeat((2 * np.arange(K) + 1) / (2 * K), T).astype(np.float32)  # clip k(j)

    @pipeline_def(batch_size=batch_size, num_threads=max(1, cfg.num_workers), device_id=device_id,
                  seed=seed, prefetch_queue_depth=cfg.prefetch)
    def pipe():
        video, label, nframes = fn.readers.webdataset(
            paths=paths, index_paths=[p[:-4] + ".idx" for p in paths],
            ext=["mp4", "label", "nframes"], dtypes=[types.UINT8, types.INT32, types.INT32],
            shard_id=rank, num_shards=world_size, random_shuffle=train, initial_fill=256,
            pad_last_batch=not train, missing_component_behavior="error", name="reader")
        key = fn.pad(fn.get_property(video, key="source_info"), fill_value=0)  # to batch max
        max_start = fn.cast(dmath.max(nframes - span, 0), dtype=types.FLOAT)  # 0: short video
        if train:  # uniform integer in [0, max_start]
            u = fn.random.uniform(range=[0.0, 1.0])
            start = dmath.min(dmath.floor(u * (max_start + 1.0)), max_start)
        else:  # floor(max_start * centre_k + 0.5), as sampling.eval_clip_starts
            start = dmath.floor(max_start * types.Constant(centres) + 0.5)
        index = fn.cast(start, dtype=types.INT32) + types.Constant(offsets)
        index = dmath.min(index, nframes - 1)  # edge padding
        frames = _video_decoder()(video, frames=index, device=decoder_device)  # (K*T, H, W, C)
        if train:
            short = fn.random.uniform(values=[float(v) for v in range(
                cfg.jitter_short_side_min, cfg.jitter_short_side_max + 1)])
            pos_x, pos_y = fn.random.uniform(range=[0.0, 1.0]), fn.random.uniform(range=[0.0, 1.0])
            mirror = fn.random.coin_flip(probability=0.5 if cfg.flip else 0.0)
        else:
            short, pos_x, pos_y, mirror = float(cfg.eval_short_side), 0.5, 0.5, 0
        frames = fn.resize(frames, resize_shorter=short, antialias=True)
        clips = fn.crop_mirror_normalize(
            frames, crop=(cfg.crop_size, cfg.crop_size), crop_pos_x=pos_x, crop_pos_y=pos_y,
            mirror=mirror, mean=[m * 255 for m in MEAN], std=[v * 255 for v in STD],
            dtype=types.FLOAT, output_layout="CFHW")
        return clips, label, key

    return pipe()


class DALILoader:
    """Iterable of `Batch` from a DALI pipeline; same interface as PyAVLoader."""

    def __init__(self, cfg, *, split: str, train: bool, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, device_id: int | None = None, decoder_device: str | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        self.cfg, self.train, self.epoch = cfg, train, epoch
        self.rank, self.world_size, self.device_id = rank, world_size, device_id
        # DALI reads through the .idx files and dies mid-epoch on a truncated tar or a stale index:
        # refuse damaged shards up front, naming them.
        require_intact(cfg.root, split)
        self.paths = [str(p) for p in find_shards(cfg.root, split)]
        refs = index_split(cfg.root, split)
        self.video_index = {r.key: r.video_index for r in refs}
        self.num_samples = len(refs)
        self.decoder_device = decoder_device or ("mixed" if device_id is not None else "cpu")
        self.clips_per_video = 1 if train else cfg.eval_clips
        self.videos_per_batch = videos_per_batch(cfg, train)
        per_rank = (self.num_samples // world_size if train
                    else math.ceil(self.num_samples / world_size))
        self.num_batches = (per_rank // self.videos_per_batch if train
                            else math.ceil(per_rank / self.videos_per_batch))
        self.stats = LoadStats()
        self._iterator = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def _make_iterator(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        pipe = build_pipeline(self.cfg, paths=self.paths, train=self.train, rank=self.rank,
                              world_size=self.world_size, batch_size=self.videos_per_batch,
                              device_id=self.device_id, decoder_device=self.decoder_device,
                              seed=self.cfg.seed + 7919 * self.rank)
        # DROP in training, PARTIAL in evaluation (the reader pads a short shard with its last
        # sample; the iterator cuts those off, and __iter__ pads with invalid clips instead).
        policy = LastBatchPolicy.DROP if self.train else LastBatchPolicy.PARTIAL
        return DALIGenericIterator([pipe], ["clips", "label", "key"], reader_name="reader",
                                   last_batch_policy=policy, auto_reset=True)

    def __iter__(self):
        # One pipeline for the loader's life: the reader walks its shard epoch after epoch and its
        # generator moves on; a fixed seed gives the same sequence of epochs.
        if self._iterator is None:
            self._iterator = self._make_iterator()
        self.stats = LoadStats()
        K, T = self.clips_per_video, self.cfg.num_frames
        produced = 0
        for out in self._iterator:  # always drained to the end, so the reader stays in step
            if produced == self.num_batches:
                continue
            clips = out[0]["clips"]  # (B, C, K*T, H, W)
            B, C, _, H, W = clips.shape
            clips = clips.view(B, C, K, T, H, W).permute(0, 2, 1, 3, 4, 5).reshape(B * K, C, T, H, W)
            keys = [_key(k) for k in out[0]["key"]]
            produced += 1
            self.stats.num_clips += B * K
            yield Batch(clips, out[0]["label"].view(-1).long().repeat_interleave(K),
                        [k for k in keys for _ in range(K)],
                        torch.tensor([self.video_index.get(k, -1) for k in keys]).repeat_interleave(K),
                        torch.arange(K).repeat(B), torch.ones(B * K, dtype=torch.bool))
        while produced < self.num_batches:  # a rank with fewer samples pads with invalid clips
            produced += 1
            n = self.videos_per_batch * K
            c = self.cfg.crop_size
            yield Batch(torch.zeros(n, 3, T, c, c), torch.full((n,), -1), [""] * n,
                        torch.full((n,), -1), torch.arange(K).repeat(self.videos_per_batch),
                        torch.zeros(n, dtype=torch.bool))


def _key(source_info: torch.Tensor) -> str:
    """`path.tar:offset:key.ext` (DALI's source_info) -> key."""
    text = bytes(source_info.cpu().numpy().astype(np.uint8)).decode(errors="replace").rstrip("\0")
    return text.rsplit(":", 1)[-1].split(".", 1)[0]
