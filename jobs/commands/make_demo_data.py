"""Generate the demo dataset: real H.264 videos of handwritten digits + Kinetics-format CSVs.

Four classes differ only in time: still, slow, fast and flickering digits (scikit-learn's bundled
digits, no download). Same --seed, same bytes. With --shards the videos are also preprocessed
(in this process, settings of the `demo` preset) into OUT/shards, where `--preset demo` reads them.

examples:
  vared2 make-demo-data                            # data/demo: 4 classes x (24 train + 8 val)
  vared2 make-demo-data --shards                   # ... and data/demo/shards for `vared2 train`
  vared2 make-demo-data --out /tmp/tiny --train-per-class 4 --val-per-class 2 --seconds 1
"""

from __future__ import annotations

HELP = "generate the demo digits video dataset (and, with --shards, its shards)"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="data/demo", metavar="DIR", help="output folder (default: data/demo)")
    parser.add_argument("--train-per-class", type=int, default=24, metavar="N", help="default: 24")
    parser.add_argument("--val-per-class", type=int, default=8, metavar="N", help="default: 8")
    parser.add_argument("--seed", type=int, default=0, help="default: 0")
    parser.add_argument("--size", type=int, default=80, metavar="PX",
                        help="frame width = height in pixels, even, >= 32 (default: 80)")
    parser.add_argument("--fps", type=float, default=15.0, help="default: 15")
    parser.add_argument("--seconds", type=float, default=2.0, help="video length (default: 2)")
    parser.add_argument("--shards", action="store_true",
                        help="also write OUT/shards (train and val) with the demo preset's settings")


def run(args) -> int:
    from dataclasses import replace

    from preprocessing.demo_data import make_demo_dataset

    paths = make_demo_dataset(args.out, num_train_per_class=args.train_per_class,
                              num_val_per_class=args.val_per_class, seed=args.seed, size=args.size,
                              fps=args.fps, seconds=args.seconds)
    print(f"videos in {paths['videos']}; annotations {paths['train_csv']}, {paths['val_csv']}")
    if args.shards:
        from pipeline.config import get_preset
        from preprocessing.run import preprocess

        base = get_preset("demo").preprocess
        for split in ("train", "val"):
            cfg = replace(base, annotations=str(paths[f"{split}_csv"]), videos=str(paths["videos"]),
                          output=str(paths["root"] / "shards"), split=split)
            summary = preprocess(cfg)
            print(f"{split}: {summary['num_ok']} videos in {summary['num_shards']} shards, "
                  f"status {summary['status']}")
        print(f"shards in {paths['root'] / 'shards'}")
    return 0
