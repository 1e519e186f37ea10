"""FFCV backend: a cache of decoded clips, written once from the shards, for runs that read the same
data many times (Tune sweeps, many epochs).

The cache FREEZES TEMPORAL SAMPLING AT WRITE TIME: each video keeps `ffcv_clips_per_video` clips
(training; uniformly spaced starts) or its K evaluation clips, and no other frames. A training epoch
picks one stored clip per video at random. Spatial jitter, by `ffcv_spatial`:
- "live" (default): scale, crop and flip drawn every epoch, applied to the stored square of side
  jitter_short_side_max (uint8 (T, S, S, 3)); each clip is resampled on every read.
- "frozen": scale and crop drawn once per stored clip at write time (so K clips per video are K
  different crops), stored cropped and planar (uint8 (3, T, crop, crop)); only the flip stays live.
  A read is then a flip and a normalisation: ~2.5x the clips/s of "live" (benchmarks/RESULTS.md), for
  sweeps that trade augmentation for speed.
Evaluation clips are stored already resized and centre-cropped, so an evaluation batch equals the
PyAV backend's exactly. Entries are video-major (entry = stored_video * clips + clip); a JSON
sidecar holds the keys and how the clips were stored.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from pipeline.data import sampling
from pipeline.data.contract import Batch, LoadStats
from pipeline.data.pyav_loader import video_clips
from pipeline.data.sampling import ClipSpec, videos_per_batch
from pipeline.data.sharding import batch_slices, index_split, rank_items
from pipeline.data.transform import normalize_into, normalize_planar_into, resample_clip


def _mode(cfg, train: bool) -> str:
    """How the clips of this cache are stored: "eval", "live" or "frozen" (sidecar `spatial`)."""
    return cfg.ffcv_spatial if train else "eval"


def cache_path(cfg, split: str, train: bool) -> Path:
    mode = _mode(cfg, train)
    tag = "-frozen" if mode == "frozen" else ""
    if cfg.ffcv_cache:
        return Path(cfg.ffcv_cache) / f"{split}-{'train' if train else 'eval'}{tag}.beton"
    k = cfg.ffcv_clips_per_video if train else cfg.eval_clips
    side = cfg.jitter_short_side_max if mode == "live" else cfg.crop_size
    if mode == "frozen":  # the jitter range and seed decide which crops were stored
        tag += f"{cfg.jitter_short_side_min}-{cfg.jitter_short_side_max}seed{cfg.seed}"
    name = (f"{split}-{'train' if train else 'eval'}-t{cfg.num_frames}s{cfg.frame_stride}k{k}-{side}"
            f"{tag}.beton")
    return Path(cfg.root) / "ffcv" / name


def _write_spec(cfg, train: bool) -> ClipSpec:
    """Clips to store: uniformly spaced starts; live training clips as squares of
    jitter_short_side_max, frozen ones at crop size (each cropped by `frozen_spatial`)."""
    spec = ClipSpec.from_config(cfg, train=False)
    if train:
        side = cfg.jitter_short_side_max if cfg.ffcv_spatial == "live" else cfg.crop_size
        spec = dataclasses.replace(spec, eval_clips=cfg.ffcv_clips_per_video, eval_short_side=side,
                                   crop_size=side)
    return spec


def frozen_spatial(cfg, video_index: int) -> list[sampling.SpatialParams]:
    """The scale and crop of each stored clip of a video in a "frozen" cache (no flip: the flip is
    drawn at read time), fixed by (seed, video)."""
    rng = np.random.default_rng([cfg.seed, video_index, 0xF207])
    return [sampling.train_spatial(rng, short_min=cfg.jitter_short_side_min,
                                   short_max=cfg.jitter_short_side_max, flip=False)
            for _ in range(cfg.ffcv_clips_per_video)]


class _Clips:
    """Indexed dataset for ffcv's writer: entry -> (clip, label, video, clip_index). Decodes one video
    for all of its clips and keeps it while its entries are written; a video that fails to decode is
    written as blank clips with video = -1, which the loader leaves out and counts as corrupt.
    With `frozen_cfg` (the DataConfig of a "frozen" cache), each clip is cropped by
    `frozen_spatial` and stored planar (3, T, crop, crop)."""

    def __init__(self, refs, spec: ClipSpec, frozen_cfg=None):
        self.refs, self.spec, self.k, self.frozen = refs, spec, spec.eval_clips, frozen_cfg
        self._last: tuple | None = None

    def __len__(self) -> int:
        return len(self.refs) * self.k

    def __getitem__(self, i: int):
        v, c = divmod(i, self.k)
        if self._last is None or self._last[0] != v:
            ref = self.refs[v]
            try:
                spatial = frozen_spatial(self.frozen, ref.video_index) if self.frozen else None
                clips, label = video_clips(ref, self.spec, epoch=0, spatial=spatial)
                if self.frozen:
                    clips = np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))
                self._last = (v, clips, label, ref.video_index)
            except Exception:  # any failure of one video must not stop the write
                blank = np.zeros(self.shape, np.uint8)
                self._last = (v, [blank] * self.k, -1, -1)
        return self._last[1][c], self._last[2], self._last[3], c

    @property
    def shape(self) -> tuple[int, ...]:
        t, side = self.spec.num_frames, self.spec.crop_size
        return (3, t, side, side) if self.frozen else (t, side, side, 3)


def write_cache(cfg, *, split: str, train: bool, path: str | Path | None = None,
                num_workers: int = 1) -> Path:
    """Decode the clips of every video of `split` once and write them as an FFCV dataset."""
    from ffcv.fields import IntField, NDArrayField
    from ffcv.writer import DatasetWriter

    path = Path(path) if path else cache_path(cfg, split, train)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = _write_spec(cfg, train)
    refs = index_split(cfg.root, split)
    mode = _mode(cfg, train)
    clips = _Clips(refs, spec, frozen_cfg=cfg if mode == "frozen" else None)
    fields = {"clip": NDArrayField(np.dtype("uint8"), clips.shape),
              "label": IntField(), "video": IntField(), "clip_index": IntField()}
    tmp = path.with_name(path.name + ".tmp")
    DatasetWriter(str(tmp), fields, num_workers=num_workers).from_indexed_dataset(
        clips, chunksize=spec.eval_clips)
    meta = {"keys": [r.key for r in refs], "clips_per_video": spec.eval_clips, "train": train,
            "spatial": mode, "shape": list(clips.shape)}
    path.with_suffix(".json").write_text(json.dumps(meta))
    tmp.rename(path)  # complete caches only: an interrupted write leaves a .tmp, rebuilt next time
    return path


def clip_params(n: int, rng: np.random.Generator, cfg, mode: str) -> list[sampling.SpatialParams]:
    """Spatial parameters of the n clips of a batch, drawn in clip order from `rng` (live: jitter
    of the stored squares; frozen: the flip only; evaluation: the stored clip as it is)."""
    if mode == "eval":
        return [sampling.eval_spatial(cfg.crop_size)] * n
    if mode == "frozen":
        return [sampling.SpatialParams(cfg.crop_size, 0.5, 0.5, bool(cfg.flip and rng.random() < 0.5))
                for _ in range(n)]
    return [sampling.train_spatial(rng, short_min=cfg.jitter_short_side_min,
                                   short_max=cfg.jitter_short_side_max, flip=cfg.flip)
            for _ in range(n)]


def transform_stored(stored: np.ndarray, params: sampling.SpatialParams, crop: int,
                     out: torch.Tensor, planar: bool = False) -> None:
    """One stored clip -> its slot of the float batch. uint8 (T, S, S, 3): the live jitter resamples
    only the crop window of the square (as if resized to params.short_side, then cropped);
    evaluation clips are stored at crop size and only normalised. Planar uint8 (3, T, crop, crop)
    (frozen crops, `planar`): flipped when params.flip, and normalised."""
    if planar:
        normalize_planar_into(stored, out, flip=params.flip)
        return
    if stored.shape[1] != crop or params.flip:
        stored = resample_clip(stored, params, crop)
    normalize_into(stored, out)


class FFCVLoader:
    """Iterable of `Batch` from the clip cache (built on first use); same interface as PyAVLoader."""

    def __init__(self, cfg, *, split: str, train: bool, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, num_workers: int | None = None):
        from ffcv.reader import Reader

        self.cfg, self.train, self.rank, self.world_size, self.epoch = cfg, train, rank, world_size, epoch
        import numba

        # ffcv's threads are numba's, of which there are as many as the CPUs numba saw when imported
        self.num_workers = max(1, min(cfg.num_workers if num_workers is None else num_workers,
                                      numba.config.NUMBA_NUM_THREADS))
        self.path = cache_path(cfg, split, train)
        if not self.path.exists():
            write_cache(cfg, split=split, train=train, path=self.path, num_workers=self.num_workers)
        meta = json.loads(self.path.with_suffix(".json").read_text())
        self.mode = _mode(cfg, train)
        stored_mode = meta.get("spatial", "live" if meta.get("train") else "eval")  # older caches
        if stored_mode != self.mode:
            raise ValueError(f"the FFCV cache {self.path} holds {stored_mode!r} clips, but "
                             f"data.ffcv_spatial asks for {self.mode!r}: delete it, or set "
                             f"data.ffcv_cache to another folder")
        self.keys, self.k = meta["keys"], meta["clips_per_video"]
        stored = Reader(str(self.path)).metadata
        video = np.asarray(stored["f2"]).reshape(-1, self.k)[:, 0]  # per stored video
        self.corrupt = [self.keys[v] for v in np.flatnonzero(video < 0)]
        self.videos = np.flatnonzero(video >= 0)  # stored videos that decoded
        self.videos_per_batch = videos_per_batch(cfg, train)
        self.stats = LoadStats()
        self._loader = None
        self._pool: ThreadPoolExecutor | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self) -> tuple[list[int], list[bool]]:
        """Cache entries of this rank and epoch, in batch order, and which are real (not padding)."""
        items = rank_items(len(self.videos), rank=self.rank, world_size=self.world_size,
                           seed=self.cfg.seed, epoch=self.epoch, shuffle=self.train, pad=not self.train)
        entries, valid = [], []
        for item in items:
            v = int(self.videos[item if item is not None else 0])
            if self.train:  # one of the stored clips, chosen per (seed, epoch, video)
                c = int(sampling.sample_rng(self.cfg.seed, self.epoch, v).integers(self.k))
                entries.append(v * self.k + c)
            else:
                entries.extend(v * self.k + c for c in range(self.k))
            valid.extend([item is not None] * (1 if self.train else self.k))
        return entries, valid

    def __len__(self) -> int:
        n = len(rank_items(len(self.videos), rank=self.rank, world_size=self.world_size, seed=0,
                           epoch=0, shuffle=False, pad=not self.train))
        return len(batch_slices(n, self.videos_per_batch, drop_last=self.train))

    def __iter__(self):
        from ffcv.fields.decoders import IntDecoder, NDArrayDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToTensor

        entries, valid = self._plan()
        clips_per_batch = self.videos_per_batch * (1 if self.train else self.k)
        self.stats = LoadStats(num_corrupt=len(self.corrupt), corrupt_keys=list(self.corrupt))
        if not entries:
            return
        if self._loader is None:  # built once: ffcv compiles its pipeline per Loader
            self._loader = Loader(
                str(self.path), batch_size=clips_per_batch, num_workers=self.num_workers,
                order=OrderOption.SEQUENTIAL, indices=entries, drop_last=self.train,
                batches_ahead=self.cfg.prefetch,
                pipelines={"clip": [NDArrayDecoder(), ToTensor()], "label": [IntDecoder(), ToTensor()],
                           "video": [IntDecoder(), ToTensor()],
                           "clip_index": [IntDecoder(), ToTensor()]})
        # This epoch's entries (same count every epoch); ffcv reads them through these attributes.
        loader = self._loader
        loader.indices = np.asarray(entries)
        loader.traversal_order.indices = loader.indices
        loader.first_traversal_order = loader.indices
        rng = np.random.default_rng([self.cfg.seed, self.epoch, self.rank, 0xFFC7])
        if self._pool is None:  # cv2 and torch release the GIL: clips of a batch run in parallel
            self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="ffcv-clips")
        crop = self.cfg.crop_size
        for b, (clips, label, video, clip_index) in enumerate(loader):
            # ffcv reuses its output buffers for later batches: copy what outlives this step.
            label, video, clip_index = (t.view(-1).long().clone() for t in (label, video, clip_index))
            ok = torch.tensor(valid[b * clips_per_batch:b * clips_per_batch + len(clips)])
            params = clip_params(len(clips), rng, self.cfg, self.mode)
            stored = clips.numpy()
            out = torch.empty(len(clips), 3, self.cfg.num_frames, crop, crop)
            list(self._pool.map(transform_stored, stored, params, [crop] * len(clips), out,
                                [self.mode == "frozen"] * len(clips)))
            self.stats.num_clips += len(clips)
            yield Batch(out, label,
                        [self.keys[v] if o else "" for v, o in zip(video.tolist(), ok.tolist())],
                        torch.where(ok, video, -1), clip_index, ok)
