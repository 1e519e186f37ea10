"""A generated demo dataset: real H.264 videos + Kinetics-format CSVs, learnable in minutes on 2 cores.

Four classes show one handwritten digit (scikit-learn's bundled 8x8 `load_digits`, upscaled) that
differs only in how it changes over time, so the classes differ in temporal redundancy:

    still    the digit stays put (only sensor noise changes): every frame is redundant
    slow     it drifts ~1 px per frame, bouncing off the borders
    fast     it moves ~5 px per frame
    flicker  it stays put but blinks on and off every 1-3 frames

Digit, position, direction, colour and noise are drawn per video from `seed`; same seed, same bytes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pipeline.media.encode import X264_DETERMINISTIC, encode_mp4

CLASSES = ("still", "slow", "fast", "flicker")
SPEED = {"still": 0.0, "slow": (0.6, 1.2), "fast": (4.0, 6.0), "flicker": 0.0}
X264_OPTIONS = {"preset": "veryfast", "crf": "18", "x264-params": X264_DETERMINISTIC}


def _digit_sprite(image: np.ndarray, scale: int) -> np.ndarray:
    """8x8 digit in [0, 16] -> (8*scale, 8*scale) float in [0, 1], bilinear-ish by repeat + blur."""
    sprite = np.kron(image / 16.0, np.ones((scale, scale)))
    padded = np.pad(sprite, 1, mode="edge")  # a 3x3 box blur softens the block edges
    return sum(padded[dy:dy + sprite.shape[0], dx:dx + sprite.shape[1]]
               for dy in range(3) for dx in range(3)) / 9.0


def render_video(label: str, rng: np.random.Generator, digits: np.ndarray, *, size: int,
                 num_frames: int) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one video of class `label`."""
    sprite = _digit_sprite(digits[rng.integers(len(digits))], scale=max(2, size // 20))
    sh, sw = sprite.shape
    colour = rng.uniform(0.6, 1.0, size=3)
    background = rng.uniform(0.0, 0.25, size=3)
    noise = rng.uniform(0.0, 0.015)
    pos = rng.uniform(0, [size - sh, size - sw])
    speed = SPEED[label]
    speed = rng.uniform(*speed) if isinstance(speed, tuple) else speed
    angle = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([np.sin(angle), np.cos(angle)])
    period = int(rng.integers(1, 4))
    phase = int(rng.integers(0, 2 * period))
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        img = np.broadcast_to(background, (size, size, 3)).copy()
        visible = label != "flicker" or ((t + phase) // period) % 2 == 0
        if visible:
            y, x = int(round(pos[0])), int(round(pos[1]))
            img[y:y + sh, x:x + sw] = np.maximum(img[y:y + sh, x:x + sw],
                                                 sprite[..., None] * colour)
        img += rng.normal(0.0, noise, size=img.shape)
        frames[t] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        pos = pos + velocity
        for axis, limit in ((0, size - sh), (1, size - sw)):  # bounce off the borders
            if not 0 <= pos[axis] <= limit:
                velocity[axis] = -velocity[axis]
                pos[axis] = np.clip(pos[axis], 0, limit)
    return frames


def write_mp4(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Frames (T, H, W, 3) uint8 -> H.264 yuv420p MP4, deterministic (one thread, bitexact)."""
    Path(path).write_bytes(encode_mp4(frames, fps=fps, options=X264_OPTIONS, bitexact=True))


def make_demo_dataset(out_dir: str | Path, *, num_train_per_class: int = 24,
                      num_val_per_class: int = 8, seed: int = 0, size: int = 80, fps: float = 15.0,
                      seconds: float = 2.0) -> dict[str, Path]:
    """Write `videos/{class}/{id}_000000_{seconds:06d}.mp4`, `train.csv`, `val.csv`, `classes.txt`.

    Returns the paths: `root`, `videos`, `train_csv`, `val_csv`, `classes`.
    """
    if num_train_per_class < 1 or num_val_per_class < 0:
        raise ValueError("num_train_per_class must be >= 1 and num_val_per_class >= 0")
    if size < 32 or size % 2:
        raise ValueError(f"size={size}: must be an even number of pixels, at least 32")
    if fps <= 0 or seconds <= 0:
        raise ValueError("fps and seconds must be positive")
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits().images
    root = Path(out_dir)
    videos = root / "videos"
    num_frames = max(1, round(seconds * fps))
    end = max(1, round(seconds))
    header = ["label", "youtube_id", "time_start", "time_end", "split"]
    paths = {"root": root, "videos": videos, "train_csv": root / "train.csv",
             "val_csv": root / "val.csv", "classes": root / "classes.txt"}
    for split, per_class in (("train", num_train_per_class), ("val", num_val_per_class)):
        rows = []
        for c, label in enumerate(CLASSES):
            (videos / label).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                # One generator per video, keyed by (seed, split, class, index): videos do not
                # change when the number of videos per class changes.
                rng = np.random.default_rng([seed, split == "val", c, i])
                youtube_id = f"{split}{label}{i:04d}"
                frames = render_video(label, rng, digits, size=size, num_frames=num_frames)
                write_mp4(videos / label / f"{youtube_id}_000000_{end:06d}.mp4", frames, fps)
                rows.append([label, youtube_id, 0, end, split])
        with open(paths[f"{split}_csv"], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    paths["classes"].write_text("".join(f"{c}\n" for c in sorted(CLASSES)), encoding="utf-8")
    return paths
