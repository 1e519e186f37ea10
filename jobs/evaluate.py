"""Final evaluation of a trained model (METHOD.md section 9) and its record in MLflow.

    python -m jobs.evaluate runs/demo-r2plus1d_18-both/checkpoint_...   # or a models:/NAME@ALIAS URI

clip-1, video-1, video-5, per-class video-1, GFLOPs avg / max / min of the hard policy, and speed in
clips/s with the static model of the same shape timed in the same run, on this process's device.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from jobs.models import load_trained
from jobs.tracking import Tracker
from pipeline.config import Config


load_for_eval = load_trained  # the name the tests and older callers use


def speed(cfg: Config, model: torch.nn.Module, clips: torch.Tensor, device="cpu",
          rounds: int = 5) -> dict[str, float]:
    """Clips/s of `model` (hard policy) and of the static backbone of the same shape, on the same
    real clips, timed in alternating rounds (so a change of machine load hits both) and reported as
    medians."""
    import statistics

    from pipeline.models import build_model
    from pipeline.train.evaluate import measure_throughput

    torch.manual_seed(0)
    static = build_model(dataclasses.replace(cfg.model, dynamic="none", baseline="none")).to(device)
    shape, n = tuple(clips.shape[1:]), clips.shape[0]
    runs: dict[str, list[float]] = {"dynamic": [], "static": []}
    for r in range(rounds):
        order = [("dynamic", model), ("static", static)]
        for name, m in order if r % 2 == 0 else order[::-1]:
            runs[name].append(measure_throughput(m, shape, batch_size=n, inputs=clips, device=device,
                                                 iters=3, warmup=1))
    dyn, sta = statistics.median(runs["dynamic"]), statistics.median(runs["static"])
    return {"speed/clips_per_s": dyn, "speed/static_clips_per_s": sta, "speed/ratio": dyn / sta,
            "speed/batch_size": float(n)}


def evaluate_model(cfg: Config, model: torch.nn.Module, device="cpu", exclude_undecodable: bool = False) -> dict:
    from pipeline.allocator import keep_freed_memory
    from pipeline.data import build_loader
    from pipeline.train.evaluate import evaluate

    if cfg.runtime.keep_freed_memory:
        keep_freed_memory()

    model = model.to(device)
    loader = build_loader(cfg.data, split=cfg.data.val_split, train=False)
    result = evaluate(model, loader, num_clips=cfg.data.eval_clips, device=device,
                      exclude_failed=exclude_undecodable)
    # Speed on a batch of real validation clips (the policy, hence the cost, depends on content).
    clips = []
    for batch in loader:
        clips.append(batch.clips[batch.valid])
        if sum(c.shape[0] for c in clips) >= cfg.data.eval_batch_size:
            break
    clips = torch.cat(clips)[: cfg.data.eval_batch_size]
    metrics = {**result.metrics("test/"), **speed(cfg, model, clips, device)}
    return {"metrics": metrics, "per_class_video_top1": result.per_class_top1, "undecodable": result.failed,
            "note": "GFLOPs are multiply-accumulates (MACs) per clip, as in the paper and fvcore"}


def parse_budgets(text: str) -> list[tuple[float, bool]]:
    """"0.5,0.6,1" -> fractions of the static model's GFLOPs; "0.3G" -> absolute GFLOPs per clip."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        absolute = part[-1] in "gG"
        try:
            value = float(part[:-1] if absolute else part)
        except ValueError:
            raise ValueError(f"--budget {part!r}: give fractions of the static model's GFLOPs (0.6) "
                             "or GFLOPs per clip with a G (0.3G), comma-separated") from None
        if value <= 0:
            raise ValueError(f"--budget {part!r} must be positive")
        out.append((value, absolute))
    if not out:
        raise ValueError("--budget needs at least one value")
    return out


def calibration_clips(cfg: Config, num_clips: int, device="cpu") -> list[torch.Tensor]:
    """Training-split clips (evaluation sampling: centre crops) for the budget calibration, so
    that the validation split measures the calibrated model on clips it never saw."""
    from pipeline.data import build_loader

    clips, seen = [], 0
    for batch in build_loader(cfg.data, split=cfg.data.train_split, train=False):
        x = batch.clips[batch.valid]
        clips.append(x.to(device))
        seen += x.shape[0]
        if seen >= num_clips:
            break
    return clips


def ensure_budget_calibration(cfg: Config, model: torch.nn.Module, *, num_clips: int | None = None,
                              device="cpu", log=print) -> None:
    """Calibrate `model`'s budget knob on `num_clips` training clips (default
    `cfg.train.budget_calibration_clips`) unless it carries a calibration already."""
    from pipeline.models.budget import calibrate_budget

    if float(model.budget_table[:, 1].abs().sum()) > 0:
        return
    num_clips = cfg.train.budget_calibration_clips if num_clips is None else num_clips
    log(f"calibrating the budget knob on {num_clips} clips of {cfg.data.root}/{cfg.data.train_split}")
    calibrate_budget(model, calibration_clips(cfg, num_clips, device))


def evaluate_budgets(cfg: Config, model: torch.nn.Module, budgets: list[tuple[float, bool]],
                     device="cpu", log=print) -> list[dict]:
    """One row per budget: target, GFLOPs avg / max / min reached, clip-1, video-1, clips/s."""
    from pipeline.data import build_loader
    from pipeline.models.budget import budget_fraction, reachable, set_budget
    from pipeline.train.evaluate import evaluate, measure_throughput

    if getattr(model, "dynamic", "none") == "none":
        raise ValueError("--budget needs a VA-RED² model: a static or baseline model has one fixed cost")
    model = model.to(device)
    ensure_budget_calibration(cfg, model, device=device, log=log)
    shape = (3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    fractions = [budget_fraction(model, value, shape, absolute=absolute) for value, absolute in budgets]
    low, high = reachable(model)
    for (value, absolute), fraction in zip(budgets, fractions):
        if not low - 1e-9 <= fraction <= high + 1e-9:
            label = f"{value:g} GFLOPs ({fraction:.3f} of static)" if absolute else f"{value:g}"
            raise ValueError(f"budget {label} is out of reach: this model reaches {low:.3f} to {high:.3f} of "
                             f"the static model's {model.static_macs(shape) / 1e9:.4g} GFLOPs")
    loader = build_loader(cfg.data, split=cfg.data.val_split, train=False)
    speed_clips = None
    rows = []
    try:
        for (value, absolute), fraction in zip(budgets, fractions):
            set_budget(model, fraction)
            result = evaluate(model, loader, num_clips=cfg.data.eval_clips, device=device)
            if speed_clips is None:
                speed_clips = torch.cat([b.clips[b.valid] for _, b in zip(range(2), loader)])[: cfg.data.eval_batch_size]
            static = model.static_macs(shape) / 1e9
            rows.append({"target": fraction, "target_gflops": fraction * static,
                         "gflops_avg": result.gflops_avg, "gflops_max": result.gflops_max,
                         "gflops_min": result.gflops_min, "ratio": result.gflops_avg / static,
                         "clip_top1": result.clip_top1, "video_top1": result.video_top1,
                         "clips_per_s": measure_throughput(model, shape, batch_size=speed_clips.shape[0],
                                                           inputs=speed_clips.to(device), device=device,
                                                           iters=3, warmup=1)})
    finally:
        set_budget(model, None)
    return rows


def budget_table(rows: list[dict]) -> str:
    head = (f"{'budget':>7s} {'target GFLOPs':>13s} {'GFLOPs avg':>10s} {'x static':>8s} {'max':>8s} "
            f"{'min':>8s} {'max/min':>7s} {'clip-1':>7s} {'video-1':>7s} {'clips/s':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['target']:7.3f} {r['target_gflops']:13.4f} {r['gflops_avg']:10.4f} {r['ratio']:8.3f} "
                     f"{r['gflops_max']:8.4f} {r['gflops_min']:8.4f} {r['gflops_max'] / r['gflops_min']:7.2f} "
                     f"{r['clip_top1']:7.3f} {r['video_top1']:7.3f} {r['clips_per_s']:8.1f}")
    return "\n".join(lines)


def finish_run(cfg: Config, run_id: str, checkpoint_dir: str | Path, *, tracker: Tracker | None = None) -> dict:
    """Evaluate the final checkpoint and log metrics + evaluation.json + the model to `run_id`
    (`jobs.run` closes the run). A VA-RED² model is first calibrated for the budget knob (unless
    `train.budget_calibration` is "on_demand"), and the calibration is written into the checkpoint
    that is logged, so the registered and served model carry it."""
    from pipeline.train.checkpoint import update_weights

    tracker = tracker or Tracker(cfg.runtime)
    _, model = load_trained(str(checkpoint_dir))
    if getattr(model, "dynamic", "none") != "none" and cfg.train.budget_calibration == "after_training":
        ensure_budget_calibration(cfg, model, log=lambda line: None)
        update_weights(checkpoint_dir, model)
    report = evaluate_model(cfg, model)
    tracker.log_metrics(run_id, report["metrics"], step=cfg.train.epochs)
    tracker.log_json(run_id, report, "evaluation.json")
    tracker.log_model(cfg, run_id, checkpoint_dir)
    return report


def evaluate_source(source: str, overrides=(), *, budget: str = "", exclude_undecodable: bool = False) -> dict:
    """`vared2 evaluate`: the evaluation of `source` printed (or, with `budget`, the table of one row
    per budget); returns the report (or the rows)."""
    cfg, model = load_trained(source, overrides)
    if budget:
        rows = evaluate_budgets(cfg, model, parse_budgets(budget))
        print(budget_table(rows))
        print("GFLOPs are multiply-accumulates (MACs) per clip, hard policy; budget = target fraction of "
              "the static model's GFLOPs")
        return {"budgets": rows}
    report = evaluate_model(cfg, model, exclude_undecodable=exclude_undecodable)
    for key, value in report["metrics"].items():
        print(f"{key:28s} {value:.4f}")
    print(report["note"])
    if report["undecodable"]:
        verb = "are left out" if exclude_undecodable else "count as wrong"
        print(f"warning: {len(report['undecodable'])} videos could not be decoded and {verb}:", file=sys.stderr)
        for line in report["undecodable"]:
            print(f"  {line}", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m jobs.evaluate ...` = `vared2 evaluate ...`."""
    from jobs.cli import main as cli

    return cli(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
