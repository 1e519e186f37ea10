"""`make demo`: the whole pipeline on embedded defaults, on one local Ray instance.

generated digits videos -> WebDataset shards (Ray tasks) -> static R(2+1)D training (Ray Train,
2 workers) -> VA-RED² training initialised from it -> hard-policy evaluation of both -> a table and
the analysis (policy map, cost against redundancy) -> a Ray Tune sweep over lambda_e with the model
registry -> the VA-RED² model's budget curve next to the sweep's Pareto front, with every run,
metric, evaluation and model in the local MLflow store (sqlite:///mlruns.db).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from pipeline.config import Config, apply_overrides, get_preset

# Stage 1, the static backbone, trains from scratch (the demo preset describes stage 2).
STATIC_STAGE = ["model.dynamic=none", "train.epochs=16", "train.lr=3e-3", "train.lambda_e=0",
                "train.eval_every=100"]
# Stage 2 (the demo preset) is evaluated once, after training (finish_run), on 200 videos x 1 clip.
DEMO = ["data.eval_clips=1"]
DYNAMIC_STAGE = ["train.eval_every=100"]
# The sweep: lambda_e on either side of the demo preset's (the main run is the middle point), each
# trial one epoch from the static model with lambda_e at full strength from the first step, 1
# worker each, so the two trials run side by side on 2 cores. The trials are compared at their
# trained cost; their budget knob is calibrated on demand (`vared2 evaluate --budget`) instead of
# after training (train.budget_calibration): the sweep went from 211 s to 88 s (session 16).
SWEEP_LAMBDAS = [1.0, 10.0]
SWEEP_STAGE = ["runtime.num_workers=1", "train.epochs=1", "train.lambda_e_warmup_epochs=0",
               "train.eval_every=100", "tune.scheduler=none", "tune.num_samples=1",
               "tune.static_baseline=false", "train.budget_calibration=on_demand"]
# The budget curve of the VA-RED² model (fractions of the static model's GFLOPs).
BUDGETS = [0.5, 0.6, 0.7, 0.8, 1.0]
STEPS = 6


def demo_config(root: str = "data/demo", overrides=()) -> Config:
    cfg = get_preset("demo")
    return apply_overrides(cfg, [f"data.root={root}/shards", f"preprocess.output={root}/shards",
                                 *DEMO, *overrides])


def prepare_data(cfg: Config, root: str) -> None:
    from jobs.preprocess import run_preprocess
    from preprocessing.demo_data import make_demo_dataset

    paths = {"videos": Path(root) / "videos", "train_csv": Path(root) / "train.csv",
             "val_csv": Path(root) / "val.csv"}
    if not paths["val_csv"].exists():
        print(f"[1/{STEPS}] generating the demo videos in {root}/videos")
        paths = make_demo_dataset(root, num_train_per_class=40, num_val_per_class=50, seed=0,
                                  size=cfg.preprocess.short_side, fps=cfg.preprocess.fps, seconds=2.0)
    for split in ("train", "val"):
        pcfg = dataclasses.replace(cfg.preprocess, annotations=str(paths[f"{split}_csv"]),
                                   videos=str(paths["videos"]), split=split)
        summary = run_preprocess(pcfg, num_workers=cfg.runtime.num_workers)
        counts = ", ".join(f"{n} {status}" for status, n in summary.get("status", {}).items())
        print(f"[1/{STEPS}] {split}: {summary['num_rows']} videos ({counts}), "
              f"{summary['shards_written']} shards written, {summary['shards_skipped']} reused")


def train_stage(cfg: Config, label: str) -> dict:
    """One trained, evaluated and closed run, as a row of the results table."""
    from jobs.run import train_and_evaluate

    out = train_and_evaluate(cfg)
    return {"label": label, "run_id": out["run_id"], "checkpoint": out["checkpoint"],
            "storage": out["storage"], **out["report"]["metrics"]}


def print_table(rows: list[dict]) -> None:
    print("\nGFLOPs = multiply-accumulates per clip (hard policy); speed = clips/s on this CPU, "
          "static model timed in the same run")
    head = f"{'model':22s} {'GFLOPs avg':>10s} {'max':>8s} {'min':>8s} {'clip-1':>7s} " \
           f"{'video-1':>7s} {'clips/s':>8s} {'static clips/s':>14s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['label']:22s} {r['test/gflops_avg']:10.4f} {r['test/gflops_max']:8.4f} "
              f"{r['test/gflops_min']:8.4f} {r['test/clip_top1']:7.3f} {r['test/video_top1']:7.3f} "
              f"{r['speed/clips_per_s']:8.1f} {r['speed/static_clips_per_s']:14.1f}")


def analyze(static: dict, dynamic: dict, root: str) -> None:
    """Policy map, cheapest / costliest clips, cost distribution and redundancy of the demo models,
    written to `{root}/analysis` and logged to the VA-RED² run."""
    from jobs.analyze import analyze_source

    out = Path(root) / "analysis"
    analyze_source(str(dynamic["checkpoint"]), static=str(static["checkpoint"]), out=str(out),
                   run_id=dynamic["run_id"])
    print(f"analysis report: {out / 'report.md'}")


def budget_curve(dynamic: dict, static: dict, sweep_out: dict) -> list[dict]:
    """The VA-RED² model at each of BUDGETS (one checkpoint, no retraining), drawn next to the sweep's
    trained models and logged to the VA-RED² run (`budget/`)."""
    from jobs.budget_curve import log_curve
    from jobs.evaluate import budget_table, evaluate_budgets
    from jobs.models import load_trained
    from jobs.tracking import Tracker

    cfg, model = load_trained(str(dynamic["checkpoint"]))
    rows = evaluate_budgets(cfg, model, [(b, False) for b in BUDGETS], log=lambda line: None)
    print(budget_table(rows))
    sweep_rows = list(sweep_out.get("rows", [])) if sweep_out else []
    sweep_rows.append({"test/gflops_avg": dynamic["test/gflops_avg"], "test/clip_top1": dynamic["test/clip_top1"],
                       "lambda_e": cfg.train.lambda_e})  # the main run: the sweep's middle point
    files = log_curve(Tracker(cfg.runtime), dynamic["run_id"], rows, sweep_rows=sweep_rows,
                      static={"gflops_avg": static["test/gflops_avg"], "clip_top1": static["test/clip_top1"]})
    print(f"budget curve: {files[0]} (and MLflow run {dynamic['run_id']}, budget/)")
    return rows


def sweep(dyn_cfg: Config, static: dict, tag: str) -> dict:
    from jobs.registry import compare
    from jobs.tune import run_sweep

    cfg = apply_overrides(dyn_cfg, SWEEP_STAGE)
    out = run_sweep(cfg, {"train.lambda_e": ("grid", SWEEP_LAMBDAS)}, name=f"demo-sweep-{tag}",
                    static_run_id=static["run_id"])
    print("\nlambda_e -> GFLOPs avg (hard policy), clip-1:")
    for row in sorted(out["rows"], key=lambda r: r["lambda_e"]):
        print(f"  {row['lambda_e']:6.2f} -> {row.get('test/gflops_avg', float('nan')):.4f}  {row.get('test/clip_top1', float('nan')):.3f}"
              f"{'  (on the front)' if row.get('on_front') else ''}")
    print(f"Pareto plot and table: MLflow run {out['parent_run_id']} (sweep/)")
    compare(cfg, out["registry"]["name"], sweep=out["name"])  # prints the table
    return out


def run_demo(root: str = "data/demo", overrides=()) -> list[dict]:
    from jobs.ray_env import init_ray

    started = time.perf_counter()

    def step(k: int, text: str) -> None:
        print(f"[{k}/{STEPS}] {text}  ({time.perf_counter() - started:.0f} s)")

    cfg = demo_config(root, overrides)
    tag = time.strftime("%Y%m%d-%H%M%S")
    init_ray(cfg)
    prepare_data(cfg, root)
    step(2, "static R(2+1)D baseline on Ray Train")
    static_cfg = apply_overrides(cfg, [*STATIC_STAGE, f"runtime.run_name=demo-static-{tag}"])
    static = train_stage(static_cfg, "static R(2+1)D-18")
    step(3, f"VA-RED² ({cfg.model.dynamic}, S={cfg.model.search_space}, lambda_e="
          f"{cfg.train.lambda_e}) initialised from the static model")
    dyn_cfg = apply_overrides(cfg, [*DYNAMIC_STAGE, f"train.init_from={static['checkpoint']}",
                                    f"runtime.run_name=demo-vared2-{tag}"])
    dynamic = train_stage(dyn_cfg, "VA-RED² R(2+1)D-18")
    step(4, "results")
    print_table([static, dynamic])
    analyze(static, dynamic, root)
    step(5, f"Ray Tune sweep over lambda_e = {SWEEP_LAMBDAS}, Pareto front, model registry")
    sweep_out = sweep(dyn_cfg, static, tag)
    step(6, f"the VA-RED² model at budgets {BUDGETS} of the static GFLOPs (one model, no retraining)")
    budget_curve(dynamic, static, sweep_out)
    print(f"\nMLflow: experiment '{cfg.runtime.experiment}' in sqlite:///mlruns.db "
          f"(mlflow ui --backend-store-uri sqlite:///mlruns.db); runs {static['run_id']}, "
          f"{dynamic['run_id']}; {time.perf_counter() - started:.0f} s in all")
    return [static, dynamic]
