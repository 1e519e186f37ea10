"""The accuracy study's generated dataset: redundancy that varies within classes, not only between.

Six classes = three digit shapes (0, 1, 4; scikit-learn's bundled 8x8 digits, a random sample of
the shape per video) x two motion axes (horizontal, vertical). Every video draws its own activity:

    speed     log-uniform in [1, 6] px per frame along the class's axis, bouncing off the borders
    pauses    with p = 0.5 the digit rests for one random stretch of 20-60% of the video
    blinks    with p = 0.3 it disappears for 1-3 frames, 1-3 times

so a slow, pausing video is nearly a still image and a fast, blinking one changes every frame,
whatever its class. What a video's frames really share is measured on the decoded clip
(`pipeline.analysis.clip_redundancy`), not taken from these parameters; the parameters are kept in
`videos.csv` beside the Kinetics-format CSVs for reference.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from preprocessing.demo_data import _digit_sprite, write_mp4

DIGITS = (0, 1, 4)
AXES = ("horizontal", "vertical")
CLASSES = tuple(f"digit{d}_{a}" for d in DIGITS for a in AXES)
SPEED_RANGE = (1.0, 6.0)


def render_study_video(label: str, rng: np.random.Generator, images: np.ndarray, targets: np.ndarray,
                       *, size: int, num_frames: int) -> tuple[np.ndarray, dict]:
    """Frames (T, H, W, 3) uint8 of one video of class `label`, and its drawn parameters."""
    digit_name, axis = label.split("_")
    digit = int(digit_name[len("digit"):])
    pool = np.flatnonzero(targets == digit)
    sprite = _digit_sprite(images[rng.choice(pool)], scale=max(2, size // 16))
    sh, sw = sprite.shape
    colour = rng.uniform(0.6, 1.0, size=3)
    background = rng.uniform(0.0, 0.25, size=3)
    noise = rng.uniform(0.0, 0.015)
    pos = rng.uniform(0, [size - sh, size - sw])
    speed = float(np.exp(rng.uniform(*np.log(SPEED_RANGE))))
    direction = rng.choice([-1.0, 1.0])
    velocity = np.array([direction * speed, 0.0]) if axis == "vertical" else np.array([0.0, direction * speed])
    moving = np.ones(num_frames, dtype=bool)
    if rng.random() < 0.5:
        length = int(round(rng.uniform(0.2, 0.6) * num_frames))
        start = int(rng.integers(0, num_frames - length + 1))
        moving[start:start + length] = False
    hidden = np.zeros(num_frames, dtype=bool)
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 4))):
            t = int(rng.integers(0, num_frames))
            hidden[t:t + int(rng.integers(1, 4))] = True
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        img = np.broadcast_to(background, (size, size, 3)).copy()
        if not hidden[t]:
            y, x = int(round(pos[0])), int(round(pos[1]))
            img[y:y + sh, x:x + sw] = np.maximum(img[y:y + sh, x:x + sw], sprite[..., None] * colour)
        img += rng.normal(0.0, noise, size=img.shape)
        frames[t] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        if moving[t]:
            pos = pos + velocity
        for a, limit in ((0, size - sh), (1, size - sw)):  # bounce off the borders
            if not 0 <= pos[a] <= limit:
                velocity[a] = -velocity[a]
                pos[a] = np.clip(pos[a], 0, limit)
    params = {"speed": round(speed, 3), "paused_fraction": round(float(1 - moving.mean()), 3),
              "hidden_frames": int(hidden.sum())}
    return frames, params


def make_study_dataset(out_dir: str | Path, *, num_train_per_class: int = 100, num_val_per_class: int = 50,
                       seed: int = 0, size: int = 64, fps: float = 15.0, seconds: float = 2.0) -> dict[str, Path]:
    """Write `videos/{class}/{id}_000000_{seconds:06d}.mp4`, `train.csv` / `val.csv` (Kinetics
    format), `classes.txt` and `videos.csv` (per video: split, class, speed, paused fraction,
    hidden frames). Same arguments, same bytes. Returns the paths as `make_demo_dataset` does."""
    if num_train_per_class < 1 or num_val_per_class < 0:
        raise ValueError("num_train_per_class must be >= 1 and num_val_per_class >= 0")
    if size < 32 or size % 2:
        raise ValueError(f"size={size}: must be an even number of pixels, at least 32")
    if fps <= 0 or seconds <= 0:
        raise ValueError("fps and seconds must be positive")
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    root = Path(out_dir)
    videos = root / "videos"
    num_frames = max(1, round(seconds * fps))
    end = max(1, round(seconds))
    paths = {"root": root, "videos": videos, "train_csv": root / "train.csv", "val_csv": root / "val.csv",
             "classes": root / "classes.txt", "params": root / "videos.csv"}
    params_rows = []
    for split, per_class in (("train", num_train_per_class), ("val", num_val_per_class)):
        rows = []
        for c, label in enumerate(CLASSES):
            (videos / label).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                rng = np.random.default_rng([seed, 7, split == "val", c, i])
                youtube_id = f"{split}{c}{i:05d}"
                frames, params = render_study_video(label, rng, digits.images, digits.target,
                                                    size=size, num_frames=num_frames)
                write_mp4(videos / label / f"{youtube_id}_000000_{end:06d}.mp4", frames, fps)
                rows.append([label, youtube_id, 0, end, split])
                params_rows.append([youtube_id, split, label, params["speed"], params["paused_fraction"],
                                    params["hidden_frames"]])
        with open(paths[f"{split}_csv"], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writerows(rows)
    with open(paths["params"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["youtube_id", "split", "label", "speed", "paused_fraction", "hidden_frames"])
        writer.writerows(params_rows)
    paths["classes"].write_text("".join(f"{c}\n" for c in sorted(CLASSES)), encoding="utf-8")
    return paths
