"""Train a model on Ray Train with MLflow tracking (a local Ray instance unless runtime.ray_address).

  vared2 train --preset demo                                   # dynamic model, demo data
  vared2 train --preset demo model.dynamic=none                # the static baseline, same path
  vared2 train --preset mini_kinetics_r2plus1d train.init_from=runs/static/checkpoint_000039

Each epoch prints one line (loss, accuracy, GFLOPs, clips/s, validation) and logs to MLflow;
re-running with the same runtime.run_name resumes from the last checkpoint.
"""

from __future__ import annotations

QUIET = True  # Ray's and MLflow's messages go to a log file (jobs/console.py)
HELP = "train (static or VA-RED²) on Ray Train, tracked in MLflow"


def add_arguments(parser) -> None:
    from jobs.cli import add_config_arguments

    add_config_arguments(parser, default_preset="demo")


def run(args) -> int:
    from jobs.cli import config_from_args

    from jobs.run import train_and_evaluate
    from jobs.train import run_name

    cfg = config_from_args(args)
    try:
        out = train_and_evaluate(cfg)
    except KeyboardInterrupt:  # in training or in the final evaluation: the run stays open
        import ray

        ray.shutdown()  # a local instance goes with its workers, not left behind
        print(f"\ninterrupted; the same command (runtime.run_name={run_name(cfg)}) resumes from the "
              "last checkpoint")
        return 130  # like a shell's Ctrl+C
    for key, value in out["report"]["metrics"].items():
        print(f"{key:28s} {value:.4f}")
    print(f"MLflow run {out['run_id']}; checkpoints in {out['storage']}")
    return 0
