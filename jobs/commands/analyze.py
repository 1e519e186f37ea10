"""Analyse a checkpoint or a registered model: policy maps, cheapest / costliest clips, per-clip cost
distribution, feature redundancy and a Markdown report, logged to the model's MLflow run.

  vared2 analyze runs/demo-r2plus1d_18-both/checkpoint_000005 --out analysis/demo
  vared2 analyze models:/vared2-demo@champion data.root=data/demo/shards --extremes 2
"""

from __future__ import annotations

QUIET = True  # Ray's and MLflow's messages go to a log file (jobs/console.py)
HELP = "policy maps, cheapest/costliest clips, cost distribution, redundancy (CC/RMSE/RP), report"


def add_arguments(parser) -> None:
    parser.add_argument("source", help="checkpoint directory / file, a run folder (its newest checkpoint), "
                        "or models:/NAME@ALIAS, runs:/ID/model")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. data.root=data/demo/shards data.eval_clips=3")
    parser.add_argument("--out", default="", help="output folder (default: analysis/<config name>)")
    parser.add_argument("--static", default="", help="a static model (checkpoint or URI) for the redundancy "
                        "analysis; default: the analysed model at its full variant")
    parser.add_argument("--max-clips", type=int, default=0, help="analyse at most this many clips (0 = all)")
    parser.add_argument("--redundancy-clips", type=int, default=16, help="clips for the redundancy analysis")
    parser.add_argument("--extremes", type=int, default=1, help="cheapest / costliest clips shown per class")
    parser.add_argument("--tau", type=float, default=0.85, help="CC threshold of RP")
    parser.add_argument("--run-id", default="", help="MLflow run to log to (default: the model's run)")
    parser.add_argument("--no-log", action="store_true", help="do not log to MLflow")


def run(args) -> int:
    from jobs.analyze import analyze_source

    analyze_source(args.source, args.overrides, out=args.out, static=args.static, max_clips=args.max_clips,
                   redundancy_clips=args.redundancy_clips, extremes=args.extremes, tau=args.tau,
                   run_id=args.run_id, log_to_mlflow=not args.no_log)
    return 0
