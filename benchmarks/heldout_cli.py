"""A rehearsal of issue 13's held-out check: videos of another kind, through the CLI a user calls.

    .venv/bin/python benchmarks/heldout_cli.py --out /tmp/heldout        # ~12 min on 2 cores

Writes videos unlike the demo's and the study's (6 classes = shape: disc, square, triangle, cross,
ring, bar, on a blocky textured background; per video and independently of the class: motion
still / drift / fast / camera pan / blink, size 120-320 px in portrait and landscape, 12-30 fps,
1.5-4 s, and codec + container H.264 mp4, MPEG-4 part 2 avi, VP9 webm, HEVC mkv or MJPEG mov, a
third of them with an audio track; Kinetics CSVs), then runs, as subprocesses:
`vared2 preprocess` (train, val) -> `vared2 train` static (the demo's static stage) -> `vared2 train`
VA-RED² `model.dynamic=both` from it (the demo preset) -> `vared2 evaluate` both -> `vared2 analyze`,
the demo preset's settings apart from data paths and class count. Prints static against VA-RED²
(clip-1, GFLOPs) and the VA-RED² model's cost per motion kind (still clips should be cheapest).
Nothing here is tuned to these videos; they only differ from everything the project trained on.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import av
import av.logging
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.demo import DYNAMIC_STAGE, STATIC_STAGE  # noqa: E402  (the demo's own two stages)

av.logging.set_level(av.logging.ERROR)

SHAPES = ("disc", "square", "triangle", "cross", "ring", "bar")
MOTIONS = ("still", "drift", "fast", "pan", "blink")
CODECS = (("libx264", ".mp4", "yuv420p"), ("mpeg4", ".avi", "yuv420p"), ("libvpx-vp9", ".webm", "yuv420p"),
          ("libx265", ".mkv", "yuv420p"), ("mjpeg", ".mov", "yuvj420p"))
SIZES = ((176, 144), (160, 120), (120, 160), (222, 130), (320, 240), (144, 176))


def _mask(shape, r, yy, xx):
    if shape == "disc":
        return yy ** 2 + xx ** 2 <= r ** 2
    if shape == "square":
        return (np.abs(yy) <= r * 0.8) & (np.abs(xx) <= r * 0.8)
    if shape == "triangle":
        return (yy <= r * 0.7) & (yy >= -r) & (np.abs(xx) <= (yy + r) * 0.6)
    if shape == "cross":
        return ((np.abs(yy) <= r * 0.25) & (np.abs(xx) <= r)) | ((np.abs(xx) <= r * 0.25) & (np.abs(yy) <= r))
    if shape == "ring":
        d = yy ** 2 + xx ** 2
        return (d <= r ** 2) & (d >= (0.6 * r) ** 2)
    if shape == "bar":
        return (np.abs(yy) <= r * 0.3) & (np.abs(xx) <= r * 1.1)
    raise ValueError(shape)


def render_video(shape, motion, rng, w, h, n):
    big = rng.uniform(0, 1, size=(h // 8 + 8, w // 8 + 8, 3)).astype(np.float32)
    tex = np.kron(big, np.ones((8, 8, 1), np.float32)) * rng.uniform(0.1, 0.35) + rng.uniform(0, 0.3)
    r = rng.uniform(0.12, 0.2) * min(w, h)
    colour = rng.uniform(0.5, 1.0, size=3)
    pos = rng.uniform([r, r], [h - r, w - r])
    speed = {"still": 0, "drift": rng.uniform(0.5, 1.5), "fast": rng.uniform(3, 7), "pan": 0, "blink": 0}[motion]
    ang = rng.uniform(0, 2 * np.pi)
    vel = speed * np.array([np.sin(ang), np.cos(ang)])
    pan = rng.uniform(1, 4) * np.array([np.sin(ang), np.cos(ang)]) if motion == "pan" else np.zeros(2)
    period = int(rng.integers(2, 5))
    noise = rng.uniform(0, 0.02)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    off = np.zeros(2)
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        oy, ox = int(off[0]) % 64, int(off[1]) % 64
        img = np.roll(tex, (oy, ox), axis=(0, 1))[:h, :w].copy()
        if motion != "blink" or (t // period) % 2 == 0:
            m = _mask(shape, r, yy - pos[0], xx - pos[1])
            img[m] = colour
        img += rng.normal(0, noise, img.shape).astype(np.float32)
        out[t] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        pos = pos + vel
        for a, lim in ((0, h), (1, w)):
            if not r <= pos[a] <= lim - r:
                vel[a] = -vel[a]
                pos[a] = np.clip(pos[a], r, lim - r)
        off = off + pan
    return out


def write_video(path, frames, fps, codec, pix, audio):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix
        webm = str(path).endswith(".webm")
        a = c.add_stream("libopus" if webm else "aac", rate=48000 if webm else 22050) if audio else None
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            sr = a.codec_context.sample_rate
            samples = int(sr * len(frames) / fps)
            tone = (0.1 * np.sin(np.arange(samples) / 10)).astype(np.float32)[None]
            fr = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            fr.sample_rate = sr
            for p in a.encode(fr):
                c.mux(p)
            for p in a.encode():
                c.mux(p)


def make_videos(out: Path, n_train: int, n_val: int, seed: int = 123) -> None:
    rng = np.random.default_rng(seed)
    k = 0
    for split, n in (("train", n_train), ("val", n_val)):
        rows = []
        for i in range(n):
            shape = SHAPES[i % len(SHAPES)]
            motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
            w, h = SIZES[int(rng.integers(len(SIZES)))]
            fps = int(rng.choice([12, 15, 24, 25, 30]))
            secs = float(rng.uniform(1.5, 4.0))
            codec, ext, pix = CODECS[int(rng.integers(len(CODECS)))]
            vid, end = f"ho{k:05d}", int(np.ceil(secs))
            k += 1
            folder = out / "videos" / shape
            folder.mkdir(parents=True, exist_ok=True)
            frames = render_video(shape, motion, rng, w, h, int(secs * fps))
            write_video(folder / f"{vid}_000000_{end:06d}{ext}", frames, fps, codec, pix, audio=rng.uniform() < 0.3)
            rows.append((shape, vid, 0, end, split, motion))
            print(f"\r{split}: {i + 1}/{n} videos", end="", flush=True)
        print()
        with open(out / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writerows(r[:5] for r in rows)
        with open(out / f"{split}_motion.csv", "w", newline="") as f:
            csv.writer(f).writerows((r[1], r[5]) for r in rows)


def vared2(args: list[str], cwd: Path, log: Path) -> str:
    """Run one CLI command, its output to `log`; raise with the log's tail when it fails."""
    cmd = [str(Path(sys.executable).parent / "vared2"), *args]
    with open(log, "w") as f:
        done = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    text = log.read_text()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({done.returncode}):\n{text[-2000:]}")
    return text


def metric(text: str, name: str) -> float:
    return float([line.split()[-1] for line in text.splitlines() if line.strip().startswith(name + " ")][-1])


def cost_per_motion(out: Path, run: Path, common: list[str]) -> dict[str, tuple[int, float]]:
    """{motion kind: (clips, mean cost as a fraction of static)} of the model on the val split."""
    from jobs.models import load_trained
    from pipeline.analysis import collect_policies
    from pipeline.data import build_loader

    motion = dict(csv.reader(open(out / "val_motion.csv")))
    cfg, model = load_trained(str(run), common)
    records = collect_policies(model, build_loader(cfg.data, split=cfg.data.val_split, train=False))
    costs: dict[str, list[float]] = {}
    for key, cost in zip(records.keys, records.cost_ratio.tolist()):
        costs.setdefault(motion[key.split("_")[0]], []).append(cost)
    return {k: (len(v), sum(v) / len(v)) for k, v in costs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/heldout", help="videos, shards, runs and logs (default: /tmp/heldout)")
    parser.add_argument("--train", type=int, default=240, help="training videos (default: 240)")
    parser.add_argument("--val", type=int, default=210, help="validation videos (default: 210)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not (out / "val_motion.csv").exists():
        make_videos(out, args.train, args.val)
    shards = out / "shards"
    for split in ("train", "val"):
        vared2(["preprocess", "--preset", "demo", "--format", "kinetics", "--annotations", str(out / f"{split}.csv"),
                "--videos", str(out / "videos"), "--output", str(shards), "--split", split, "--workers", "2"],
               work, work / f"preprocess-{split}.log")
    print(f"preprocessed ({time.perf_counter() - started:.0f} s)", flush=True)
    common = [f"data.root={shards}", "model.num_classes=6", "data.eval_clips=1"]
    static = vared2(["train", "--preset", "demo", *STATIC_STAGE, *common, "runtime.run_name=heldout-static"],
                    work, work / "train-static.log")
    print(f"static trained ({time.perf_counter() - started:.0f} s)", flush=True)
    dynamic = vared2(["train", "--preset", "demo", "model.dynamic=both", f"train.init_from={work}/runs/heldout-static",
                      *DYNAMIC_STAGE, *common, "runtime.run_name=heldout-both"], work, work / "train-both.log")
    print(f"VA-RED² trained ({time.perf_counter() - started:.0f} s)", flush=True)
    evals = {name: vared2(["evaluate", f"{work}/runs/heldout-{name}", *common], work, work / f"evaluate-{name}.log")
             for name in ("static", "both")}
    vared2(["analyze", f"{work}/runs/heldout-both", "--static", f"{work}/runs/heldout-static",
            "--out", str(work / "analysis"), *common], work, work / "analyze.log")
    summary = json.loads((work / "analysis" / "summary.json").read_text())["redundancy_vs_cost"]
    s_acc, d_acc = metric(evals["static"], "test/clip_top1"), metric(evals["both"], "test/clip_top1")
    s_gf, d_gf = metric(evals["static"], "test/gflops_avg"), metric(evals["both"], "test/gflops_avg")
    print(f"\n{args.val} validation videos x 1 clip (one video = {100 / args.val:.1f} points); hard policy")
    print(f"static   clip-1 {s_acc:.3f}  GFLOPs {s_gf:.4f}  (train log: {metric(static, 'test/clip_top1'):.3f})")
    print(f"VA-RED²  clip-1 {d_acc:.3f}  GFLOPs {d_gf:.4f}  ({d_gf / s_gf:.3f}x static, "
          f"{100 * (d_acc - s_acc):+.1f} points; train log: {metric(dynamic, 'test/clip_top1'):.3f})")
    print(f"cost vs redundancy (vared2 analyze): Spearman(redundancy, compute spared) {summary['spearman']:.2f}, "
          f"most redundant quarter at {summary['most_redundant_cost']:.3f} of static, least at "
          f"{summary['least_redundant_cost']:.3f} ({summary['quartile_cost_ratio']:.2f}x)")
    print("VA-RED² cost per motion kind (fraction of static):")
    per_motion = cost_per_motion(out, work / "runs" / "heldout-both", common)
    for kind, (n, c) in sorted(per_motion.items(), key=lambda kv: kv[1][1]):
        print(f"  {kind:6s} {n:4d} clips  {c:.3f}")
    print(f"logs and analysis in {work} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
