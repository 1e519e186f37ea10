"""Evaluate a checkpoint or a registered model under the hard policy (METHOD.md section 9).

  vared2 evaluate runs/demo-r2plus1d_18-both/checkpoint_000005
  vared2 evaluate models:/vared2-demo@champion data.root=data/demo/shards
  vared2 evaluate runs/demo-vared2-.../checkpoint_000005 --budget 0.5,0.6,0.7,0.8,1.0

Prints clip-1, video-1, video-5, GFLOPs avg / max / min (multiply-accumulates per clip) and
clips/s against the static model of the same shape timed in the same run.
"""

from __future__ import annotations

QUIET = True  # Ray's and MLflow's messages go to a log file (jobs/console.py)
HELP = "evaluate a checkpoint or models:/NAME@ALIAS (clip-1, video-1/5, GFLOPs, speed)"


def add_arguments(parser) -> None:
    parser.add_argument("source", help="checkpoint directory / file, a run folder (its newest checkpoint), "
                        "or models:/NAME@ALIAS")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--budget", default="", metavar="B[,B...]",
                        help="evaluate at these compute budgets: fractions of the static model's GFLOPs "
                             "(0.5,0.6,1.0) or GFLOPs per clip with a G (0.3G)")
    parser.add_argument("--exclude-undecodable", action="store_true",
                        help="leave videos that cannot be decoded out of the accuracy (default: they count "
                             "as wrong; either way they are listed)")


def run(args) -> int:
    from jobs.evaluate import evaluate_source

    evaluate_source(args.source, args.overrides, budget=args.budget,
                    exclude_undecodable=args.exclude_undecodable)
    return 0
