"""Final evaluation of a trained model (METHOD.md section 9) and its record in MLflow.

    python -m jobs.evaluate runs/demo-r2plus1d_18-both/checkpoint_...   # or a models:/NAME@ALIAS URI

clip-1, video-1, video-5, per-class video-1, GFLOPs avg / max / min of the hard policy, and speed in
clips/s with the static model of the same shape timed in the same run, on this process's device.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from jobs import tracking
from pipeline.config import Config, from_dict


def load_for_eval(source: str, overrides=()) -> tuple[Config, torch.nn.Module]:
    """(config, model) from a checkpoint directory/file or an MLflow model URI."""
    from pipeline.config import apply_overrides
    from pipeline.models import build_model
    from pipeline.train.checkpoint import load_checkpoint

    if source.startswith(("models:/", "runs:/")):
        cfg, model = tracking.load_model(source)
    else:
        state = load_checkpoint(source)
        cfg = from_dict(Config, state["config"])
        model = build_model(cfg.model)
        model.load_state_dict(state["model"])
    return apply_overrides(cfg, overrides), model


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


def evaluate_model(cfg: Config, model: torch.nn.Module, device="cpu") -> dict:
    from pipeline.allocator import keep_freed_memory
    from pipeline.data import build_loader
    from pipeline.train.evaluate import evaluate

    if cfg.runtime.keep_freed_memory:
        keep_freed_memory()

    model = model.to(device)
    loader = build_loader(cfg.data, split=cfg.data.val_split, train=False)
    result = evaluate(model, loader, num_clips=cfg.data.eval_clips, device=device)
    # Speed on a batch of real validation clips (the policy, hence the cost, depends on content).
    clips = []
    for batch in loader:
        clips.append(batch.clips[batch.valid])
        if sum(c.shape[0] for c in clips) >= cfg.data.eval_batch_size:
            break
    clips = torch.cat(clips)[: cfg.data.eval_batch_size]
    metrics = {**result.metrics("test/"), **speed(cfg, model, clips, device)}
    return {"metrics": metrics, "per_class_video_top1": result.per_class_top1,
            "note": "GFLOPs are multiply-accumulates (MACs) per clip, as in the paper and fvcore"}


def finish_run(cfg: Config, run_id: str, checkpoint_dir: str | Path) -> dict:
    """Evaluate the final checkpoint, log metrics + evaluation.json + the model, close the run."""
    _, model = load_for_eval(str(checkpoint_dir))
    report = evaluate_model(cfg, model)
    tracking.log_metrics(cfg, run_id, report["metrics"], step=cfg.train.epochs)
    tracking.log_json(cfg, run_id, report, "evaluation.json")
    tracking.log_model(cfg, run_id, checkpoint_dir)
    tracking.end_run(cfg, run_id)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="checkpoint directory / file, or models:/NAME@ALIAS, runs:/ID/model")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. data.root=/data/k400/shards data.eval_clips=10")
    args = parser.parse_args(argv)
    try:
        cfg, model = load_for_eval(args.source, args.overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = evaluate_model(cfg, model)
    for key, value in report["metrics"].items():
        print(f"{key:28s} {value:.4f}")
    print(report["note"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
