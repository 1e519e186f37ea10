"""Tiny synthetic videos and shards in the DATA.md format, for tests and the loader benchmark.

Frame i of a test video is filled with grey level `frame_level(i)`, so a test can read back which
frame a loader decoded. Videos and shards are written by `pipeline.media`, as preprocessing's are;
only the encoder options (fast, not deterministic) and the samples' fields are the fixtures' own.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from pipeline.media.encode import encode_mp4
from pipeline.media.shards import TarWriter

# Fast, near-lossless settings, not pinned for determinism (x264's mbtree stays on); mjpeg
# keeps its defaults.
ENCODER_OPTIONS = {"h264": {"preset": "veryfast", "crf": "18"},
                   "vp9": {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"},
                   "mjpeg": {}}


def frame_level(index: int) -> int:
    return 10 + 6 * index  # distinct grey levels for up to 40 frames


def level_to_index(level: float) -> int:
    return int(round((float(level) - 10) / 6))


def encode_video(frames: np.ndarray, *, codec: str = "h264", fps: int = 25, gop: int = 8) -> bytes:
    """uint8 (T, H, W, 3) RGB -> mp4 bytes."""
    return encode_mp4(frames, fps=fps, codec=codec, options=ENCODER_OPTIONS[codec], gop=gop)


def level_video(num_frames: int, height: int = 32, width: int = 40) -> np.ndarray:
    return np.stack([np.full((height, width, 3), frame_level(i), np.uint8) for i in range(num_frames)])


def texture_video(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A moving smooth texture: compresses like natural video, unlike noise or flat frames."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), np.uint8)).astype(np.float32)
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        dy, dx = t % 8, (2 * t) % 8
        out[t] = np.clip(big[dy:dy + height, dx:dx + width] * 0.8 + 3 * (t % 17), 0, 255)
    return out


def sample_record(key: str, video: bytes, label: int, num_frames: int) -> dict:
    meta = {"source": key, "label_name": f"class{label}", "num_frames": num_frames}
    return {"__key__": key, "mp4": video, "cls": str(label).encode(), "json": json.dumps(meta).encode(),
            "label": struct.pack("<i", label), "nframes": struct.pack("<i", num_frames)}


def write_shards(out_dir: str | os.PathLike, split: str, samples: list[dict],
                 per_shard: int) -> list[Path]:
    """Write `samples` (from `sample_record`) into {split}-{index:06d}.tar shards with .idx files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, start in enumerate(range(0, len(samples), per_shard)):
        writer = TarWriter(out_dir / f"{split}-{s:06d}.tar")
        for sample in samples[start:start + per_shard]:
            for ext in sorted(sample.keys() - {"__key__"}):  # sorted, as webdataset's writer did
                writer.add(f"{sample['__key__']}.{ext}", sample[ext])
        writer.close()
        paths.append(writer.path)
    return paths
