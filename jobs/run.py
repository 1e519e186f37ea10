"""One training run's life in MLflow, start to finish: `jobs.train.fit` opens the run and trains,
`jobs.evaluate.finish_run` evaluates the last checkpoint and logs it, and the run is closed here.
`vared2 train`, the demo, every Tune trial and a sweep's static baseline go through
`train_and_evaluate`; an ASHA-stopped trial, whose training is over, through `evaluate_and_close`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.tracking import Tracker
from pipeline.config import Config


def train_and_evaluate(cfg: Config, *, parent_run_id: str | None = None, callbacks: list | None = None,
                       tags: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> dict:
    """Train, evaluate, log, close; returns fit's {"run_id", "checkpoint", "metrics", "storage",
    "config"} plus "report" (finish_run's). `parent_run_id`, `callbacks` (Tune's
    TuneReportCallback) and `tags` go to fit, `params` are logged before the evaluation. A Ctrl-C
    (KeyboardInterrupt from fit) leaves the run open: the same command resumes it."""
    from jobs.train import fit

    out = fit(cfg, parent_run_id=parent_run_id, callbacks=callbacks, tags=tags)
    report = evaluate_and_close(out["config"], out["run_id"], out["checkpoint"], params=params)
    return {**out, "report": report}


def evaluate_and_close(cfg: Config, run_id: str, checkpoint_dir: str | Path, *, tracker: Tracker | None = None,
                       params: dict[str, Any] | None = None) -> dict:
    """The end of a run whose training is over: `params` logged, `finish_run`, then the run closed
    FINISHED, or FAILED when the evaluation or its logging raised."""
    from jobs.evaluate import finish_run

    tracker = tracker or Tracker(cfg.runtime)
    try:
        if params:
            tracker.log_params(run_id, params)
        report = finish_run(cfg, run_id, checkpoint_dir, tracker=tracker)
    except Exception:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id)
    return report
