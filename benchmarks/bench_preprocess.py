"""Sharder throughput against the floor: a plain PyAV decode -> resize -> encode loop, one process.

  .venv/bin/python benchmarks/bench_preprocess.py                 # defaults below, ~2 minutes
  .venv/bin/python benchmarks/bench_preprocess.py --videos 16 --no-ray

Sources are generated digit videos (H.264, `--size` square, `--src-fps`, `--seconds`), so the
numbers are comparable between machines but lighter than real Kinetics clips (340x256, 10 s).
Measures videos/s per core of (a) the floor, (b) `preprocessing.run.preprocess` in one process
(transcode + validation decode + sha256 + tar/.idx/manifest), and (c) the Ray job with 1 and 2
workers (Ray started before timing). Prints a table (and writes it to --results FILE if given).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import PreprocessConfig  # noqa: E402
from preprocessing.demo_data import CLASSES, render_video, write_mp4  # noqa: E402
from preprocessing.run import preprocess, settings_from_config  # noqa: E402
from preprocessing.transcode import ENCODERS, encoder_options, output_size  # noqa: E402


def make_sources(root: Path, n: int, size: int, fps: float, seconds: float) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits().images
    videos = root / "videos"
    rows = ["label,youtube_id,time_start,time_end,split"]
    for i in range(n):
        label = CLASSES[i % len(CLASSES)]
        frames = render_video(label, np.random.default_rng([1, i]), digits, size=size,
                              num_frames=round(fps * seconds))
        (videos / label).mkdir(parents=True, exist_ok=True)
        write_mp4(videos / label / f"bench{i:05d}_000000_000010.mp4", frames, fps)
        rows.append(f"{label},bench{i:05d},0,10,train")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return videos


def floor_transcode(path: Path, cfg: PreprocessConfig) -> int:
    """The plain loop any sharder must pay: decode, keep frames at the target rate, resize, encode."""
    s = settings_from_config(cfg)
    rate = Fraction(s.fps).limit_denominator(1001)
    buf = io.BytesIO()
    with av.open(str(path)) as src, av.open(buf, "w", format="mp4") as out:
        stream = src.streams.video[0]
        stream.thread_type = "NONE"  # one core, as the sharder's tasks
        stream.codec_context.thread_count = 1
        step = float(stream.average_rate) / s.fps
        enc = None
        n = 0
        for i, frame in enumerate(src.decode(stream)):
            if i < round(n * step):
                continue
            if enc is None:
                w, h = output_size(frame.width, frame.height, s.short_side)
                enc = out.add_stream(ENCODERS[s.codec], rate=rate)
                enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
                enc.codec_context.gop_size = s.keyframe_interval
                enc.codec_context.options = encoder_options(s)
            f = frame.reformat(width=enc.width, height=enc.height, format="yuv420p",
                               interpolation="BILINEAR")
            f.pts, f.pict_type = n, 0
            for packet in enc.encode(f):
                out.mux(packet)
            n += 1
        for packet in enc.encode():
            out.mux(packet)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--size", type=int, default=256, help="source frame side (default 256)")
    ap.add_argument("--src-fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--short-side", type=int, default=128)
    ap.add_argument("--codec", default="h264")
    ap.add_argument("--workers", type=int, default=2, help="largest Ray worker count (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats, best kept")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--results", default="", help="also write the table to this Markdown file")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    try:
        t = time.perf_counter()
        videos = make_sources(root, args.videos, args.size, args.src_fps, args.seconds)
        print(f"generated {args.videos} sources in {time.perf_counter() - t:.1f} s")
        files = sorted(videos.rglob("*.mp4"))

        def config(out: str) -> PreprocessConfig:
            return PreprocessConfig(format="kinetics", annotations=str(root / "train.csv"),
                                    videos=str(videos), output=out, split="train",
                                    codec=args.codec, short_side=args.short_side, fps=15.0,
                                    min_frames=8, max_shard_samples=8)

        floor_transcode(files[0], config(""))  # warm-up (imports, codec init)
        # Alternating repeats, best of each: other processes on the machine only ever slow a run.
        floor_times, serial_times, floor_cpu, serial_cpu = [], [], [], []
        for rep in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            for f in files:
                floor_transcode(f, config(""))
            floor_times.append(time.perf_counter() - t)
            floor_cpu.append(time.process_time() - c)
            out = root / f"serial{rep}"
            t, c = time.perf_counter(), time.process_time()
            summary = preprocess(config(str(out)))
            serial_times.append(time.perf_counter() - t)
            serial_cpu.append(time.process_time() - c)
            assert summary["num_ok"] == len(files), summary["status"]
            shutil.rmtree(out)
        floor = len(files) / min(floor_times)
        serial = len(files) / min(serial_times)
        # Videos per CPU-second: what one core sustains, insensitive to other load on the machine.
        cpu_note = (f"Per CPU-second of the process (robust to other load): floor "
                    f"{len(files) / min(floor_cpu):.2f}, sharder {len(files) / min(serial_cpu):.2f} "
                    f"videos/s -> ratio {min(floor_cpu) / min(serial_cpu):.2f}.")
        rows = [("plain PyAV loop (floor), 1 process", 1, floor),
                ("sharder, 1 process (`preprocess`)", 1, serial)]

        if not args.no_ray:
            import ray

            from jobs.preprocess import run_preprocess

            ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            try:
                best, best_cpu = {}, {}
                for rep in range(args.repeats):
                    for workers in sorted({1, args.workers}):
                        out = root / f"ray{workers}-{rep}"
                        t = time.perf_counter()
                        result = run_preprocess(config(str(out)), num_workers=workers,
                                                show_progress=False)
                        best[workers] = min(best.get(workers, 1e9), time.perf_counter() - t)
                        best_cpu[workers] = min(best_cpu.get(workers, 1e9), result["task_cpu_s"])
                        shutil.rmtree(out)
                cpu_note += " Ray tasks, per task CPU-second: " + ", ".join(
                    f"{w} worker(s) {len(files) / c:.2f} ({min(floor_cpu) / c:.2f} of floor)"
                    for w, c in sorted(best_cpu.items())) + "."
                for workers, seconds in sorted(best.items()):
                    rows.append((f"sharder on Ray, {workers} worker(s)", workers, len(files) / seconds))
            finally:
                ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    command = "python benchmarks/bench_preprocess.py " + " ".join(sys.argv[1:])
    lines = [
        "## Preprocessing throughput (`benchmarks/bench_preprocess.py`)",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"PyAV {av.__version__}.  ",
        f"Sources: {args.videos} H.264 videos {args.size}x{args.size} at {args.src_fps:g} fps, "
        f"{args.seconds:g} s; output {args.codec}, short side {args.short_side}, 15 fps. "
        f"Best of {args.repeats} alternating repeats; load average at the end "
        f"{os.getloadavg()[0]:.1f}.",
        "",
        "| run | cores | videos/s | videos/s per core | per core vs floor |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, cores, rate in rows:
        lines.append(f"| {name} | {cores} | {rate:.2f} | {rate / cores:.2f} | "
                     f"{rate / cores / floor:.2f} |")
    lines += ["", cpu_note]
    ray_rows = [r for r in rows if r[0].startswith("sharder on Ray")]
    if len(ray_rows) == 2:
        lines.append("")
        lines.append(f"Scaling 1 -> {ray_rows[1][1]} Ray workers: "
                     f"{ray_rows[1][2] / ray_rows[0][2]:.2f}x (ideal {ray_rows[1][1]}x).")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(text)
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
