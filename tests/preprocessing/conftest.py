"""Tiny generated videos and a Kinetics-style dataset with every kind of broken input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import PreprocessConfig
from preprocessing.demo_data import write_mp4

WIDTH, HEIGHT, FPS, FRAMES = 40, 24, 15.0, 12


def make_video(path: Path, *, num_frames: int = FRAMES, width: int = WIDTH, height: int = HEIGHT,
               seed: int = 0, fps: float = FPS) -> Path:
    rng = np.random.default_rng(seed)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    base = rng.integers(0, 255, size=(height, width, 3))
    for t in range(num_frames):  # a moving gradient: compressible, not constant
        frames[t] = (base + 8 * t) % 256
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, fps)
    return path


def write_kinetics_csv(path: Path, rows: list[tuple[str, str, int, int, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
        for label, yid, start, end, split in rows:
            w.writerow([label, yid, start, end, split, 0])
    return path


# (label, youtube id, kind) of the broken-input dataset; kind says what lies on disk.
BROKEN = [
    ("a", "good-a-000", "ok"), ("a", "good-a-001", "ok"), ("b", "good-b-000", "ok"),
    ("b", "good-b-001", "ok"), ("a", "missing0001", "missing"), ("b", "truncated01", "truncated"),
    ("a", "zerobytes01", "empty"), ("b", "notavideo01", "text"), ("a", "tooshort001", "short"),
]
EXPECTED_STATUS = {"ok": "ok", "missing": "missing", "truncated": "corrupt", "empty": "corrupt",
                   "text": "corrupt", "short": "too_short"}


@pytest.fixture(scope="session")
def broken_dataset(tmp_path_factory) -> dict:
    """Videos in per-class folders + a CSV with one row of every failure kind."""
    root = tmp_path_factory.mktemp("broken")
    videos = root / "videos"
    rows = []
    for n, (label, yid, kind) in enumerate(BROKEN):
        rows.append((label, yid, 10, 20, "train"))
        path = videos / label / f"{yid}_000010_000020.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "ok":
            make_video(path, seed=n)
        elif kind == "truncated":
            data = make_video(path, seed=n).read_bytes()
            path.write_bytes(data[: len(data) // 2])
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "text":
            path.write_text("this is not a video\n")
        elif kind == "short":
            make_video(path, num_frames=3, seed=n)
    csv_path = write_kinetics_csv(root / "train.csv", rows)
    return {"root": root, "videos": videos, "csv": csv_path}


def config_for(dataset: dict, output: Path, **overrides) -> PreprocessConfig:
    """A small-shard config over `dataset`: 2 samples per shard, so resume has shards to skip."""
    base = dict(format="kinetics", annotations=str(dataset["csv"]), videos=str(dataset["videos"]),
                output=str(output), split="train", short_side=16, fps=FPS, min_frames=8,
                keyframe_interval=4, max_shard_samples=2, num_workers=1)
    base.update(overrides)
    return PreprocessConfig(**base)
