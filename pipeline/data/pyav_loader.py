"""CPU backend: samples read from the shards through their index, decoded by PyAV (only the frames a
clip needs), transformed in torch DataLoader workers.

Each DataLoader item is one whole batch, built from a contiguous slice of this rank's samples
(sharding.py), so the batch count per rank is fixed before any video is opened and the content of a
batch depends only on (seed, epoch, rank, world_size), not on the number of workers. A video that
fails to decode is counted and replaced: in training by the next video of the rank (wrapping), in
evaluation by an all-zero clip marked invalid, so an epoch never stops and ranks stay in step.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data import sampling
from pipeline.data.contract import Batch, LoadStats, normalize_uint8
from pipeline.data.decode import CorruptVideo, decode_frames, probe_num_frames
from pipeline.data.sharding import SampleRef, batch_slices, index_split, rank_items, read_fields

FIELDS = ("mp4", "cls", "label", "nframes", "json")


@dataclass(frozen=True)
class ClipSpec:
    """The sampling settings of one loader (a picklable slice of DataConfig)."""

    num_frames: int
    frame_stride: int
    crop_size: int
    train: bool
    jitter_short_side_min: int
    jitter_short_side_max: int
    eval_short_side: int
    flip: bool
    eval_clips: int
    seed: int

    @classmethod
    def from_config(cls, cfg, train: bool) -> "ClipSpec":
        return cls(cfg.num_frames, cfg.frame_stride, cfg.crop_size, train, cfg.jitter_short_side_min,
                   cfg.jitter_short_side_max, cfg.eval_short_side, cfg.flip, cfg.eval_clips, cfg.seed)

    @property
    def clips_per_video(self) -> int:
        return 1 if self.train else self.eval_clips


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


def crop_flip(frames: np.ndarray, params: sampling.SpatialParams, crop: int) -> torch.Tensor:
    """uint8 (T, H', W', 3) already resized to params.short_side -> uint8 (T, crop, crop, 3)."""
    height, width = frames.shape[1:3]
    if height < crop or width < crop:
        raise ValueError(f"resized frame {height}x{width} is smaller than crop_size={crop}")
    y0 = sampling.crop_offset(height, crop, params.crop_y)
    x0 = sampling.crop_offset(width, crop, params.crop_x)
    x = frames[:, y0:y0 + crop, x0:x0 + crop]
    if params.flip:
        x = x[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(x))


def video_clips(ref: SampleRef, spec: ClipSpec, epoch: int) -> tuple[list[torch.Tensor], int]:
    """All clips one video contributes (1 in training, K in evaluation) and its label."""
    fields = read_fields(ref, FIELDS)
    if "mp4" not in fields:
        raise CorruptVideo("sample has no mp4")
    label, nframes = parse_label_nframes(fields)
    if nframes is None:
        nframes = probe_num_frames(fields["mp4"])
    rng = sampling.sample_rng(spec.seed, epoch, ref.video_index)
    if spec.train:
        starts = [sampling.train_clip_start(nframes, spec.num_frames, spec.frame_stride, rng)]
        spatial = sampling.train_spatial(rng, short_min=spec.jitter_short_side_min,
                                         short_max=spec.jitter_short_side_max, flip=spec.flip)
    else:
        starts = sampling.eval_clip_starts(nframes, spec.num_frames, spec.frame_stride,
                                           spec.eval_clips).tolist()
        spatial = sampling.eval_spatial(spec.eval_short_side)
    indices = [sampling.clip_indices(s, nframes, spec.num_frames, spec.frame_stride) for s in starts]
    # one decoding pass for all K clips, resized during the colour conversion
    frames = decode_frames(fields["mp4"], np.concatenate(indices), short_side=spatial.short_side)
    frames = crop_flip(frames, spatial, spec.crop_size)
    return list(frames.split(spec.num_frames)), label


class BatchDataset(torch.utils.data.Dataset):
    """Item b = batch b of this rank in this epoch, as uint8 tensors (normalised in the main process)."""

    def __init__(self, refs: list[SampleRef], items: list[int | None], spec: ClipSpec, epoch: int,
                 videos_per_batch: int):
        self.refs, self.items, self.spec, self.epoch = refs, items, spec, epoch
        self.slices = batch_slices(len(items), videos_per_batch, drop_last=spec.train)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, b: int) -> dict:
        spec, k = self.spec, self.spec.clips_per_video
        clips, labels, keys, vids, clip_ids, valid, corrupt = [], [], [], [], [], [], []
        blank = torch.zeros(spec.num_frames, spec.crop_size, spec.crop_size, 3, dtype=torch.uint8)
        fallback = self.slices[b].stop  # next rank item to try in place of a corrupt video
        for position in range(self.slices[b].start, self.slices[b].stop):
            item, ok = self.items[position], False
            for _attempt in range(len(self.items) if spec.train else 1):
                if item is None:
                    break
                ref = self.refs[item]
                try:
                    video, label = video_clips(ref, spec, self.epoch)
                    ok = True
                    break
                except Exception as exc:  # any failure of one video must not stop the epoch
                    corrupt.append(f"{ref.key}: {type(exc).__name__}: {exc}"[:300])
                    item = self.items[fallback % len(self.items)]
                    fallback += 1
            if not ok:
                video, label = [blank] * k, -1
            clips.extend(video)
            labels.extend([label] * k)
            keys.extend([self.refs[item].key if ok else ""] * k)
            vids.extend([self.refs[item].video_index if ok else -1] * k)
            clip_ids.extend(range(k))
            valid.extend([ok] * k)
        return {"clips": torch.stack(clips), "labels": torch.tensor(labels), "keys": keys,
                "video_index": torch.tensor(vids), "clip_index": torch.tensor(clip_ids),
                "valid": torch.tensor(valid), "corrupt": corrupt}


class PyAVLoader:
    """Iterable of `Batch`; `set_epoch(e)` before each epoch, `stats` after it."""

    def __init__(self, cfg, *, split: str, train: bool, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, num_workers: int | None = None, pin_memory: bool = False):
        self.spec = ClipSpec.from_config(cfg, train)
        self.refs = index_split(cfg.root, split)
        self.rank, self.world_size, self.epoch = rank, world_size, epoch
        self.num_workers = cfg.num_workers if num_workers is None else num_workers
        self.prefetch, self.pin_memory = cfg.prefetch, pin_memory
        self.videos_per_batch = cfg.batch_size if train else max(1, cfg.eval_batch_size // cfg.eval_clips)
        self.stats = LoadStats()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def dataset(self) -> BatchDataset:
        items = rank_items(len(self.refs), rank=self.rank, world_size=self.world_size,
                           seed=self.spec.seed, epoch=self.epoch, shuffle=self.spec.train,
                           pad=not self.spec.train)
        return BatchDataset(self.refs, items, self.spec, self.epoch, self.videos_per_batch)

    def __len__(self) -> int:
        return len(self.dataset())

    def __iter__(self):
        self.stats = LoadStats()
        extra = {"prefetch_factor": self.prefetch, "persistent_workers": False} if self.num_workers else {}
        loader = torch.utils.data.DataLoader(self.dataset(), batch_size=None, shuffle=False,
                                             num_workers=self.num_workers,
                                             pin_memory=self.pin_memory, **extra)
        for raw in loader:
            self.stats.num_clips += len(raw["keys"])
            self.stats.num_corrupt += len(raw["corrupt"])
            self.stats.corrupt_keys.extend(raw["corrupt"])
            yield Batch(normalize_uint8(raw["clips"]), raw["labels"], raw["keys"],
                        raw["video_index"], raw["clip_index"], raw["valid"])
