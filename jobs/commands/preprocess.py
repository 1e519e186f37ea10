"""Turn videos + annotations into WebDataset shards (one split per run), on Ray or in this process.

Writes into --output: {split}-NNNNNN.tar shards with DALI .idx files, classes.txt, a Parquet
manifest of every input row ({split}-manifest.parquet: ok / missing / corrupt / too_short / ...)
and {split}-summary.json. Re-running skips finished shards; the result is byte-identical.

examples:
  # Kinetics-400 (flat or per-class video folders), train then val into the same folder
  vared2 preprocess --format kinetics --annotations k400/train.csv --videos k400/train \\
      --output data/k400 --split train --workers 16
  vared2 preprocess --format kinetics --annotations k400/validate.csv --videos k400/val \\
      --output data/k400 --split val --workers 16

  # Mini-Kinetics-200: the K400 CSV filtered by the id list of the split
  vared2 preprocess --format mini_kinetics --annotations k400/train.csv \\
      --subset mini/train_ytid_list.txt --class-index mini/classes.txt --videos k400/train \\
      --output data/mk200 --split train

  # Moments in Time (folder with trainingSet.csv, validationSet.csv, moments_categories.txt)
  vared2 preprocess --format moments --annotations Moments_in_Time/ \\
      --videos Moments_in_Time/training --output data/mit --split train

  # anything else: a `path,label` CSV; other codecs and sizes through dotted overrides
  vared2 preprocess --format csv --annotations my.csv --output data/mine preprocess.codec=vp9 \\
      preprocess.short_side=256 preprocess.fps=30

  # the generated demo dataset, in this process (no Ray)
  vared2 make-demo-data --out data/demo
  vared2 preprocess --preset demo --annotations data/demo/train.csv --videos data/demo/videos \\
      --split train --no-ray

codecs: h264 (default; DALI decodes it on GPU, PyAV on CPU), vp9 and mjpeg (DALI also decodes them
on CPU), copy (remux the source video stream, no re-encoding). The payload is always an MP4
container stored under the `mp4` field, whatever the codec.
"""

from __future__ import annotations

QUIET = True  # Ray's and MLflow's messages go to a log file (jobs/console.py)
HELP = "videos + annotations -> WebDataset shards, manifest and summary (Ray or in-process)"

# flag -> preprocess.<field>; a flag that is given becomes a strict dotted override.
FLAGS = {
    "format": "kinetics | mini_kinetics | moments | csv",
    "annotations": "annotation CSV (Moments in Time: its folder or CSV)",
    "videos": "folder of the videos (flat or per-class); csv: base of relative paths",
    "subset": "mini_kinetics: id list (YouTube ids or video names) of this split",
    "class_index": "class order file (`label,index` or one name per line); default: sorted labels",
    "output": "output folder for shards, manifest, summary, classes.txt",
    "split": "split name: selects Kinetics rows by their `split` column and names the shards",
    "codec": "h264 | vp9 | mjpeg | copy",
    "short_side": "short side of the output in pixels",
    "fps": "constant output frame rate",
}


def add_arguments(parser) -> None:
    from jobs.cli import add_config_arguments

    add_config_arguments(parser)
    for name, help_text in FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar=name.upper(),
                            help=help_text + " (preprocess." + name + ")")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="concurrent shard tasks = CPUs of the local Ray instance "
                             "(default: preprocess.num_workers)")
    parser.add_argument("--address", metavar="ADDR", default="",
                        help="join an existing Ray cluster (`auto`, `ray://host:10001`); "
                             "default: runtime.ray_address, else a local instance")
    parser.add_argument("--no-ray", action="store_true",
                        help="run every shard in this process (small datasets, debugging)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import json

    from jobs.cli import config_from_args
    from pipeline.config import apply_overrides

    cfg = config_from_args(args)
    flags = {f"preprocess.{k}": getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    # Flags first, then the dotted overrides again: a KEY=VALUE on the line has the last word.
    cfg = apply_overrides(apply_overrides(cfg, flags), args.overrides)
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers={args.workers}: must be at least 1")
        cfg = apply_overrides(cfg, {"preprocess.num_workers": args.workers})
    pre = cfg.preprocess
    try:
        summary = _preprocess(pre, args, cfg)
    except KeyboardInterrupt:
        from pathlib import Path

        kept = len(list(Path(pre.output).glob(f"{pre.split}-[0-9]*.stats.json")))
        print(f"\ninterrupted; {kept} finished shard(s) of split {pre.split!r} are kept in {pre.output}, "
              "and the same command resumes: it skips them and writes the rest")
        return 130  # like a shell's Ctrl+C
    brief = {k: summary[k] for k in ("split", "num_rows", "num_ok", "status", "num_shards", "bytes",
                                     "duration_s", "elapsed_s") if k in summary}
    print(json.dumps(brief, ensure_ascii=False))
    print(f"shards, manifest and summary in {pre.output}")
    return 0


def _preprocess(pre, args, cfg) -> dict:
    if args.no_ray:
        import time

        from tqdm import tqdm

        from preprocessing.run import preprocess

        start = time.perf_counter()
        with tqdm(unit="shard", desc=f"preprocess {pre.split}", disable=args.quiet) as bar:
            summary = preprocess(pre, progress=lambda stats: bar.update(1))
        summary["elapsed_s"] = round(time.perf_counter() - start, 3)
    else:
        from jobs.preprocess import run_preprocess

        summary = run_preprocess(pre, ray_address=args.address or cfg.runtime.ray_address,
                                 show_progress=not args.quiet)
    return summary
