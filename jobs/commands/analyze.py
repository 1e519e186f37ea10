"""Analyse a checkpoint or a registered model: policy maps, cheapest / costliest clips, per-clip cost
distribution, feature redundancy and a Markdown report, logged to the model's MLflow run.

  vared2 analyze runs/demo-r2plus1d_18-both/checkpoint_000005 --out analysis/demo
  vared2 analyze models:/vared2-demo@champion data.root=data/demo/shards --extremes 2
"""

from __future__ import annotations

HELP = "policy maps, cheapest/costliest clips, cost distribution, redundancy (CC/RMSE/RP), report"


def add_arguments(parser) -> None:
    from jobs.analyze import add_arguments as add

    add(parser)


def run(args) -> int:
    from jobs.analyze import run as analyze

    return analyze(args)
