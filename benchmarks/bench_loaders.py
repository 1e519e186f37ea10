"""Loader throughput against the decode limit and a naive whole-video decode, on 10-second videos.

    .venv/bin/python benchmarks/bench_loaders.py [--videos 24] [--workers 2] [--epochs 2] [--rounds 3]

(a) decode limit: PyAV decoding exactly the frames of one training clip per video, converted to
RGB at native size (not even stacked), tight loop, one core; also reported: the same decoding with
no colour conversion at all ("decode only"), which the backend's YUV path undercuts only by what
it does not convert. (b) naive: decode every frame of the video per clip (WebDataset's built-in
video decoder does this). Each row is the best of --rounds timed rounds; the decode limits and the
0-worker backend take turns, pinned to one core. Backends run in training mode (one random clip of
16 frames at stride 2 per video, jitter); the PyAV backend with 0 workers is its per-core figure.
DALI runs on CPU (VP9 only there) when no GPU is present, so it is measured on a VP9 copy of the
videos with its own decode limit. `--breakdown` times each step of a PyAV clip.
The FFCV cache runs twice: with live spatial jitter (`data.ffcv_spatial=live`, the default) and
with crops frozen at write time (`frozen`, only the flip live).
`--allocator keep` (default) runs with `pipeline.allocator.keep_freed_memory()`, as training jobs do
(`runtime.keep_freed_memory`); `--allocator system` leaves glibc's defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import tempfile
import time

from pipeline.allocator import keep_freed_memory
from pipeline.config.data import DataConfig
from pipeline.data import build_loader, kernels, sampling  # noqa: F401 (kernels: see one_core)
from pipeline.data.decode import decode_all, decode_frame_list, decode_video_frames
from pipeline.data.sharding import index_split, read_fields
from pipeline.data.synthetic import encode_video, sample_record, texture_video, write_shards


def make_shards(root: str, split: str, codec: str, n: int, fps: int, seconds: int, gop: int,
                size: tuple[int, int]) -> None:
    frames = fps * seconds
    samples = [sample_record(f"v{i:04d}", encode_video(texture_video(frames, *size, seed=i),
                                                       codec=codec, fps=fps, gop=gop), i % 5, frames)
               for i in range(n)]
    write_shards(root, split, samples, per_shard=8)


def clips_per_s(fn, clips: int) -> float:
    t = time.perf_counter()
    fn()
    return clips / (time.perf_counter() - t)


@contextlib.contextmanager
def one_core():
    """Run the body on one CPU: this thread pinned to one core, torch and OpenCV single-threaded
    (the 1-core rows; DataLoader workers get the same settings from the loader). numba must be
    imported before (as it is, through `kernels`): it sizes its thread pool, which the FFCV
    loader runs on, from the CPUs it sees at import."""
    import cv2
    import torch

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        os.sched_setaffinity(0, affinity)
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)


def decode_loop(cfg: DataConfig, split: str, kind: str, epochs: int):
    """clips/s of decoding exactly the frames of each training clip in a tight loop, converted to
    RGB at native size (kind "limit") or left as decoded YUV frames ("yuv"), or of decoding the
    whole video per clip ("naive"); returns a function that measures one round."""
    refs = index_split(cfg.root, split)
    blobs = [(read_fields(r, ("mp4",))["mp4"], r) for r in refs]
    # the frames, not even stacked
    decode = {"naive": decode_all, "limit": decode_frame_list, "yuv": decode_video_frames}[kind]
    frames = {r.key: 250 for r in refs}

    def run():
        for epoch in range(epochs):
            for data, ref in blobs:
                n = frames[ref.key]
                rng = sampling.sample_rng(cfg.seed, epoch, ref.video_index)
                start = sampling.train_clip_start(n, cfg.num_frames, cfg.frame_stride, rng)
                decode(data, sampling.clip_indices(start, n, cfg.num_frames, cfg.frame_stride))

    return lambda: clips_per_s(run, epochs * len(blobs))


def loader_rate(cfg: DataConfig, split: str, epochs: int, **kw):
    """Builds the loader and runs one whole warm-up epoch (workers start, FFCV compiles, DALI
    builds) outside the timing; returns a function that measures `epochs` epochs."""
    loader = build_loader(cfg, split=split, train=True, **kw)
    for _ in loader:
        pass
    state = {"epoch": 0}

    def run():
        for _ in range(epochs):
            state["epoch"] += 1
            loader.set_epoch(state["epoch"])
            for _ in loader:
                pass

    return lambda: clips_per_s(run, epochs * len(loader) * cfg.batch_size)


def clip_breakdown(cfg: DataConfig, split: str, rounds: int) -> dict[str, float]:
    """ms per clip of each step of the 0-worker PyAV backend, timed separately over one epoch of
    training clips (best of `rounds`): reading the sample, decoding its frames (no colour
    conversion), resampling the crop window of the Y, U, V planes, and converting to RGB and
    normalising into a slot of a batch buffer (reused, as in the loader)."""
    import numpy as np
    import torch

    from pipeline.data.decode import yuv420_planes
    from pipeline.data.pyav_loader import FIELDS, parse_label_nframes
    from pipeline.data.transform import normalize_yuv_into, resample_yuv

    refs = index_split(cfg.root, split)
    out = torch.empty(cfg.batch_size, 3, cfg.num_frames, cfg.crop_size, cfg.crop_size)
    best = {}
    for _ in range(rounds):
        spent = dict.fromkeys(("read", "decode", "resample", "convert+normalise"), 0.0)
        for i, ref in enumerate(refs):
            t0 = time.perf_counter()
            fields = read_fields(ref, FIELDS)
            _, n = parse_label_nframes(fields)
            t1 = time.perf_counter()
            rng = sampling.sample_rng(cfg.seed, 0, ref.video_index)
            start = sampling.train_clip_start(n, cfg.num_frames, cfg.frame_stride, rng)
            params = sampling.train_spatial(rng, short_min=cfg.jitter_short_side_min,
                                            short_max=cfg.jitter_short_side_max, flip=cfg.flip)
            frames = [yuv420_planes(f) for f in decode_video_frames(fields["mp4"], sampling.clip_indices(
                start, n, cfg.num_frames, cfg.frame_stride))]
            t2 = time.perf_counter()
            planes = resample_yuv(frames, params, cfg.crop_size)
            t3 = time.perf_counter()
            normalize_yuv_into(planes, out[i % cfg.batch_size])
            t4 = time.perf_counter()
            for name, dt in zip(spent, np.diff([t0, t1, t2, t3, t4])):
                spent[name] += dt
        for name, total in spent.items():
            best[name] = min(best.get(name, float("inf")), 1e3 * total / len(refs))
    return best


def best_of(rounds: int, *measures) -> list[float]:
    """Highest clips/s of each measure over `rounds` rounds, the measures taking turns within a
    round, so a burst of load from other jobs hits all of them alike."""
    best = [0.0] * len(measures)
    for _ in range(rounds):
        for i, measure in enumerate(measures):
            best[i] = max(best[i], measure())
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per row; the best counts")
    ap.add_argument("--gop", type=int, default=16)
    ap.add_argument("--height", type=int, default=160)
    ap.add_argument("--width", type=int, default=208)
    ap.add_argument("--skip", nargs="*", default=[], choices=["naive", "dali", "ffcv"])
    ap.add_argument("--breakdown", action="store_true",
                    help="also time each step of a clip in the PyAV backend (1 core) and the ratio "
                         "it would reach if only decoding, resampling and normalising cost time")
    ap.add_argument("--allocator", choices=("keep", "system"), default="keep",
                    help="keep: pipeline.allocator.keep_freed_memory(), as training jobs run (default)")
    args = ap.parse_args()
    if args.allocator == "keep" and not keep_freed_memory():
        print("note: keep_freed_memory() is not available here; running with the system allocator")
    root = tempfile.mkdtemp(prefix="bench_loaders_")
    t = time.perf_counter()
    make_shards(root, "h264", "h264", args.videos, 25, 10, args.gop, (args.height, args.width))
    if "dali" not in args.skip:
        make_shards(root, "vp9", "vp9", args.videos, 25, 10, args.gop, (args.height, args.width))
    print(f"wrote {args.videos} x 10 s videos ({args.height}x{args.width}, 25 fps, gop {args.gop}) "
          f"in {time.perf_counter() - t:.0f}s under {root}")
    cfg = DataConfig(root=root, batch_size=8, num_workers=0, ffcv_cache=f"{root}/ffcv")
    rows = {}
    with one_core():  # the per-core rows: decode limits and the backend without workers, in turns
        limit, yuv_limit, cpu1 = best_of(args.rounds, decode_loop(cfg, "h264", "limit", args.epochs),
                                         decode_loop(cfg, "h264", "yuv", args.epochs),
                                         loader_rate(cfg, "h264", args.epochs))
        rows["decode limit (1 core)"] = limit
        rows["decode only, no RGB conversion (1 core)"] = yuv_limit
        if "naive" not in args.skip:
            rows["naive whole-video decode (1 core)"] = decode_loop(cfg, "h264", "naive", 1)()
        rows["pyav backend, 0 workers (1 core)"] = cpu1
        steps = clip_breakdown(cfg, "h264", args.rounds) if args.breakdown else None
    workers = dataclasses.replace(cfg, num_workers=args.workers)
    measures = {f"pyav backend, {args.workers} workers": loader_rate(workers, "h264", args.epochs)}
    if "ffcv" not in args.skip:
        t = time.perf_counter()
        ffcv_cfg = dataclasses.replace(workers, backend="ffcv")
        build_loader(ffcv_cfg, split="h264", train=True)
        print(f"ffcv cache written in {time.perf_counter() - t:.1f}s")
        measures[f"ffcv cache, {args.workers} workers"] = loader_rate(ffcv_cfg, "h264",
                                                                      5 * args.epochs)
        t = time.perf_counter()
        frozen_cfg = dataclasses.replace(ffcv_cfg, ffcv_spatial="frozen")
        build_loader(frozen_cfg, split="h264", train=True)
        print(f"ffcv frozen-crop cache written in {time.perf_counter() - t:.1f}s")
        measures[f"ffcv cache, frozen crops, {args.workers} workers"] = loader_rate(
            frozen_cfg, "h264", 5 * args.epochs)
    rows.update(zip(measures, best_of(args.rounds, *measures.values())))
    cpu_n = rows[f"pyav backend, {args.workers} workers"]
    if "dali" not in args.skip:
        with one_core():
            rows["decode limit VP9 (1 core)"] = decode_loop(cfg, "vp9", "limit", args.epochs)()
        rows[f"dali backend CPU decode VP9, {args.workers} threads"] = loader_rate(
            dataclasses.replace(workers, backend="dali"), "vp9", args.epochs)()
    print(f"\n{'':45s} {'clips/s':>9s}")
    for name, rate in rows.items():
        print(f"{name:45s} {rate:9.1f}")
    print(f"\npyav backend per core / decode limit: {cpu1 / limit:.2f}  (target >= 0.9)")
    print(f"pyav backend per core / decode only:  {cpu1 / yuv_limit:.2f}  (no RGB conversion in the limit)")
    if "naive" not in args.skip:
        print(f"pyav backend per core / naive:        {cpu1 / rows['naive whole-video decode (1 core)']:.2f}"
              "  (target >= 3)")
    print(f"pyav backend {args.workers} workers / decode limit: {cpu_n / limit:.2f}")
    if "ffcv" not in args.skip:
        ffcv = rows[f"ffcv cache, {args.workers} workers"]
        frozen = rows[f"ffcv cache, frozen crops, {args.workers} workers"]
        print(f"ffcv / pyav backend (same workers):   {ffcv / cpu_n:.1f}  (target >= 10; live jitter)")
        print(f"ffcv frozen crops / pyav backend:     {frozen / cpu_n:.1f}  (target >= 10)")
    if steps:
        print("\nPyAV backend, ms per clip by step (1 core, best of rounds): "
              + ", ".join(f"{name} {ms:.3f}" for name, ms in steps.items()))
    if "dali" not in args.skip:
        print(f"dali CPU VP9 / VP9 decode limit:      "
              f"{rows[f'dali backend CPU decode VP9, {args.workers} threads'] / rows['decode limit VP9 (1 core)']:.2f}")


if __name__ == "__main__":
    main()
