"""CPU backend: samples read from the shards through their index, decoded by PyAV (only the frames a
clip needs), cropped, resampled and normalised in torch DataLoader workers (transform.py). Frames in
8-bit 4:2:0 (every shard preprocessing writes) are resampled as Y, U, V planes and converted to RGB
at crop size, fused with normalisation (kernels.py); other pixel formats are converted by swscale
at native size first.

Each DataLoader item is one whole batch, built from a contiguous slice of this rank's samples
(sharding.py), so the batch count per rank is fixed before any video is opened and the content of a
batch depends only on (seed, epoch, rank, world_size), not on the number of workers. A video that
fails to decode is counted and replaced: in training by the next video of the rank (wrapping), in
evaluation by an all-zero clip marked invalid, so an epoch never stops and ranks stay in step.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np
import torch

from pipeline.data import sampling
from pipeline.data.sampling import ClipSpec, videos_per_batch
from pipeline.data.contract import Batch, LoadStats
from pipeline.data.decode import (CorruptVideo, decode_video_frames, frames_to_rgb, probe_num_frames,
                                  yuv420_planes)
from pipeline.data.sharding import SampleRef, batch_slices, index_split, rank_items, read_fields
from pipeline.data.transform import (batch_buffer, normalize_into, normalize_yuv_into, resample_clip,
                                      resample_yuv, yuv_to_rgb)

FIELDS = ("mp4", "cls", "label", "nframes", "json")


def parse_label_nframes(fields: dict[str, bytes]) -> tuple[int, int | None]:
    """Label and frame count from the raw int32 fields, else from `cls` / `json`."""
    if "label" in fields and len(fields["label"]) == 4:
        label = struct.unpack("<i", fields["label"])[0]
    elif "cls" in fields:
        label = int(fields["cls"].decode().strip())
    else:
        raise CorruptVideo("sample has no label")
    if "nframes" in fields and len(fields["nframes"]) == 4:
        return label, struct.unpack("<i", fields["nframes"])[0]
    meta = json.loads(fields["json"]) if "json" in fields else {}
    for name in ("num_frames", "nframes", "frame_count", "frames"):
        if isinstance(meta.get(name), int):
            return label, meta[name]
    return label, None


def _clip_plan(ref: SampleRef, spec: ClipSpec, epoch: int, spatial):
    """(encoded video, label, frame indices of each clip, spatial parameters of each clip)."""
    fields = read_fields(ref, FIELDS)
    if "mp4" not in fields:
        raise CorruptVideo("sample has no mp4")
    label, nframes = parse_label_nframes(fields)
    if nframes is None:
        nframes = probe_num_frames(fields["mp4"])
    rng = sampling.sample_rng(spec.seed, epoch, ref.video_index)
    if spec.train:
        starts = [sampling.train_clip_start(nframes, spec.num_frames, spec.frame_stride, rng)]
        params = [sampling.train_spatial(rng, short_min=spec.jitter_short_side_min,
                                         short_max=spec.jitter_short_side_max, flip=spec.flip)]
    else:
        starts = sampling.eval_clip_starts(nframes, spec.num_frames, spec.frame_stride,
                                           spec.eval_clips).tolist()
        params = [sampling.eval_spatial(spec.eval_short_side)] * len(starts)
    if spatial is not None:
        if len(spatial) != len(starts):
            raise ValueError(f"{len(spatial)} spatial parameters for {len(starts)} clips")
        params = list(spatial)
    indices = [sampling.clip_indices(s, nframes, spec.num_frames, spec.frame_stride) for s in starts]
    return fields["mp4"], label, indices, params


def _decoded_clips(ref: SampleRef, spec: ClipSpec, epoch: int, spatial):
    """Decode every frame the video's clips need in one pass, at native size. Returns
    [(frames, params)] per clip, the label, and whether frames are YUV planes (8-bit 4:2:0
    BT.601: the colour conversion then runs after resampling, on crop-size pixels only) or RGB
    arrays."""
    data, label, indices, params = _clip_plan(ref, spec, epoch, spatial)
    frames = decode_video_frames(data, np.concatenate(indices))
    planes = {id(f): yuv420_planes(f) for f in frames}
    yuv = all(p is not None for p in planes.values())
    if yuv:
        frames = [planes[id(f)] for f in frames]
    else:  # any other pixel format: swscale converts the whole frame to RGB
        frames = frames_to_rgb(frames)
    t = spec.num_frames
    clips = [(frames[k * t:(k + 1) * t], p) for k, p in enumerate(params)]
    return clips, label, yuv


def video_clips(ref: SampleRef, spec: ClipSpec, epoch: int,
                spatial: Sequence[sampling.SpatialParams] | None = None) -> tuple[np.ndarray, int]:
    """All clips one video contributes (1 in training, K in evaluation), uint8 RGB
    (K, T, crop, crop, 3), and its label. `spatial` (one per clip) replaces the spec's spatial
    parameters (the FFCV cache's frozen crops). Normalised with normalize_into, a clip equals
    the one video_clips_into writes, bit for bit."""
    clips, label, yuv = _decoded_clips(ref, spec, epoch, spatial)
    crop = spec.crop_size
    out = np.empty((len(clips), spec.num_frames, crop, crop, 3), np.uint8)
    for k, (frames, params) in enumerate(clips):
        if yuv:
            out[k] = yuv_to_rgb(resample_yuv(frames, params, crop))
        else:
            resample_clip(frames, params, crop, out[k])
    return out, label


def video_clips_into(ref: SampleRef, spec: ClipSpec, epoch: int, out: torch.Tensor) -> int:
    """The clips of video_clips, normalised straight into `out` float (K, 3, T, crop, crop)
    (YUV videos: resampled planes -> normalised RGB in one pass); returns the label."""
    clips, label, yuv = _decoded_clips(ref, spec, epoch, None)
    for k, (frames, params) in enumerate(clips):
        if yuv:
            normalize_yuv_into(resample_yuv(frames, params, spec.crop_size), out[k])
        else:
            normalize_into(resample_clip(frames, params, spec.crop_size), out[k])
    return label


class BatchDataset(torch.utils.data.Dataset):
    """Item (epoch, b) = batch b of this rank in that epoch, clips already normalised.

    The epoch travels with the index, so the DataLoader's worker processes live for the loader's
    life (persistent_workers) instead of being restarted every epoch."""

    def __init__(self, refs: list[SampleRef], spec: ClipSpec, rank: int, world_size: int,
                 videos_per_batch: int):
        self.refs, self.spec, self.rank, self.world_size = refs, spec, rank, world_size
        self.videos_per_batch = videos_per_batch
        self._epoch_items: tuple[int, list[int | None], list[slice]] | None = None

    def plan(self, epoch: int) -> tuple[list[int | None], list[slice]]:
        """This rank's items in `epoch` and their batch slices (cached for the current epoch)."""
        if self._epoch_items is None or self._epoch_items[0] != epoch:
            items = rank_items(len(self.refs), rank=self.rank, world_size=self.world_size,
                               seed=self.spec.seed, epoch=epoch, shuffle=self.spec.train,
                               pad=not self.spec.train)
            slices = batch_slices(len(items), self.videos_per_batch, drop_last=self.spec.train)
            self._epoch_items = (epoch, items, slices)
        return self._epoch_items[1], self._epoch_items[2]

    def __getitem__(self, index: tuple[int, int]) -> dict:
        epoch, b = index
        items, slices = self.plan(epoch)
        spec, k = self.spec, self.spec.clips_per_video
        out = batch_buffer(len(range(slices[b].start, slices[b].stop)) * k, spec.num_frames,
                           spec.crop_size)
        labels, keys, vids, clip_ids, valid, corrupt = [], [], [], [], [], []
        fallback = slices[b].stop  # next rank item to try in place of a corrupt video
        for position in range(slices[b].start, slices[b].stop):
            item, ok = items[position], False
            for _attempt in range(len(items) if spec.train else 1):
                if item is None:
                    break
                ref = self.refs[item]
                try:
                    label = video_clips_into(ref, spec, epoch, out[len(labels):len(labels) + k])
                    ok = True
                    break
                except Exception as exc:  # any failure of one video must not stop the epoch
                    corrupt.append(f"{ref.key}: {type(exc).__name__}: {exc}"[:300])
                    item = items[fallback % len(items)]
                    fallback += 1
            if not ok:  # all-zero uint8 clips, normalised like any other
                for c in range(len(labels), len(labels) + k):
                    normalize_into(torch.zeros(spec.num_frames, spec.crop_size, spec.crop_size, 3,
                                               dtype=torch.uint8), out[c])
            labels.extend([label if ok else -1] * k)
            keys.extend([self.refs[item].key if ok else ""] * k)
            vids.extend([self.refs[item].video_index if ok else -1] * k)
            clip_ids.extend(range(k))
            valid.extend([ok] * k)
        return {"clips": out, "labels": torch.tensor(labels), "keys": keys,
                "video_index": torch.tensor(vids), "clip_index": torch.tensor(clip_ids),
                "valid": torch.tensor(valid), "corrupt": corrupt}


class _EpochBatches(torch.utils.data.Sampler):
    """Yields (epoch, b) for every batch of the loader's current epoch, read when iteration starts."""

    def __init__(self, loader: "PyAVLoader"):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        epoch = self.loader.epoch
        return iter([(epoch, b) for b in range(len(self.loader))])


def _single_threaded(_worker_id: int) -> None:
    """Workers parallelise across batches; OpenCV's own threads would only compete with them
    (torch already runs one thread per worker)."""
    import cv2
    cv2.setNumThreads(1)


class PyAVLoader:
    """Iterable of `Batch`; `set_epoch(e)` before each epoch, `stats` after it."""

    def __init__(self, cfg, *, split: str, train: bool, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, num_workers: int | None = None, pin_memory: bool = False):
        self.spec = ClipSpec.from_config(cfg, train)
        self.refs = index_split(cfg.root, split)
        self.rank, self.world_size, self.epoch = rank, world_size, epoch
        self.num_workers = cfg.num_workers if num_workers is None else num_workers
        self.prefetch, self.pin_memory = cfg.prefetch, pin_memory
        self.videos_per_batch = videos_per_batch(cfg, train)
        self.stats = LoadStats()
        self._dataset = BatchDataset(self.refs, self.spec, rank, world_size, self.videos_per_batch)
        self._loader = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._dataset.plan(self.epoch)[1])

    def __iter__(self):
        self.stats = LoadStats()
        if self._loader is None:  # built once: its workers persist from epoch to epoch
            extra = ({"prefetch_factor": self.prefetch, "persistent_workers": True,
                      "worker_init_fn": _single_threaded} if self.num_workers else {})
            self._loader = torch.utils.data.DataLoader(
                self._dataset, batch_size=None, sampler=_EpochBatches(self),
                num_workers=self.num_workers, pin_memory=self.pin_memory, **extra)
        for raw in self._loader:
            self.stats.num_clips += len(raw["keys"])
            self.stats.num_corrupt += len(raw["corrupt"])
            self.stats.corrupt_keys.extend(raw["corrupt"])
            yield Batch(raw["clips"], raw["labels"], raw["keys"], raw["video_index"],
                        raw["clip_index"], raw["valid"])
