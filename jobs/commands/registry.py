"""The MLflow model registry of sweep results.

  vared2 registry compare --name vared2-demo               # all versions, vs static-baseline
  vared2 registry compare --preset debug --sweep SWEEP runtime.tracking_uri=sqlite:///x.db

Aliases: `champion` (most accurate within tune.gflops_budget) and `static-baseline`; evaluate
one with `vared2 evaluate models:/NAME@champion`.
"""

from __future__ import annotations

HELP = "compare registered model versions (vs the static baseline)"


def add_arguments(parser) -> None:
    from jobs.cli import add_config_arguments

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("compare", help="print the versions side by side")
    add_config_arguments(p, default_preset="demo")
    p.add_argument("--name", default=None, help="registered model (default: runtime.registered_model)")
    p.add_argument("--sweep", default=None, help="only the versions registered by this sweep")


def run(args) -> int:
    from jobs.cli import config_from_args
    from jobs.registry import compare

    compare(config_from_args(args), args.name, sweep=args.sweep)
    return 0
