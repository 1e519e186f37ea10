"""Check a split's shards against what preprocessing recorded: every tar reads to its end, every
`.idx` matches its tar, every video the manifest puts in a shard is there with its size and sha256,
and the shard list matches the summary. Exit status 1 when anything is damaged.

  vared2 verify data/demo/shards                  # train and val
  vared2 verify data/demo/shards --split val --no-hashes   # headers and indices only (fast)
"""

from __future__ import annotations

HELP = "check shards against their manifest and .idx files; list what is damaged"


def add_arguments(parser) -> None:
    parser.add_argument("root", help="the shard folder (preprocess.output / data.root)")
    parser.add_argument("--split", default="train,val", metavar="S[,S...]",
                        help="splits to check (default: train,val; a split without shards is an error)")
    parser.add_argument("--no-hashes", action="store_true",
                        help="skip the sha256 of every video (reads tar headers and .idx files only)")


def run(args) -> int:
    from pipeline.data.verify import verify_split

    damaged = 0
    for split in [s for s in args.split.split(",") if s]:
        report = verify_split(args.root, split, hashes=not args.no_hashes)
        checked = f"{report.hashed} hashed" if not args.no_hashes else "hashes skipped"
        print(f"{split}: {report.num_shards} shards, {report.num_videos} videos in the manifest "
              f"({checked}): {'ok' if report.ok else f'{len(report.damage)} problems'}")
        for d in report.damage:
            print(f"  {d}")
        damaged += len(report.damage)
    return 1 if damaged else 0
