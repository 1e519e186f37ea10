"""Ray Train overhead: the same epoch loop in a plain process vs inside a TorchTrainer, and 1 -> 2 workers.

    .venv/bin/python benchmarks/bench_train.py [--preset demo] [--epochs 3] [KEY=VALUE ...]

Throughput is clips/s of the training epochs after the first (warm-up), measured by the loop
itself (`train/clips_per_s`: data loading + forward + backward + update, summed over ranks), so Ray
start-up and the per-epoch report/checkpoint are not counted, but everything Ray adds per step
(process group, DDP wrapper, worker placement) is. Ray gives each worker 1 CPU and sets its torch threads to 1, so the plain
loop runs with 1 thread too. Overhead target: at most 5%.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from pipeline.config import apply_overrides, get_preset


def plain_loop(cfg) -> list[float]:
    from pipeline.data import build_loader
    from pipeline.models import build_model
    from pipeline.train.loop import train_epochs

    torch.set_num_threads(1)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    per_epoch: list[float] = []

    loader = build_loader(cfg.data, split=cfg.data.train_split, train=True)

    def batches(epoch):
        loader.set_epoch(epoch)
        return loader

    train_epochs(cfg, model=model, train_batches=batches, steps_per_epoch=len(loader),
                 on_epoch_end=lambda r: per_epoch.append(r.metrics["train/clips_per_s"]),
                 log=lambda s: None)
    return per_epoch


def ray_loop(cfg, workers: int) -> list[float]:
    from jobs import tracking
    from jobs.train import fit

    out = fit(apply_overrides(cfg, [f"runtime.num_workers={workers}",
                                    f"runtime.run_name=bench-{workers}w-{time.time():.0f}"]))
    tracker = tracking.Tracker(out["config"].runtime)
    history = tracker.client.get_metric_history(out["run_id"], "train/clips_per_s")
    tracker.end_run(out["run_id"])
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-train-")
    cfg = apply_overrides(get_preset(args.preset), [
        f"train.epochs={args.epochs}", "train.eval_every=1000", f"runtime.storage_path={tmp}/runs",
        f"runtime.tracking_uri=sqlite:///{tmp}/mlruns.db", *args.overrides])
    plain = plain_loop(cfg)[1:]
    one = ray_loop(cfg, 1)[1:]
    two = ray_loop(cfg, 2)[1:]
    p, r1, r2 = statistics.median(plain), statistics.median(one), statistics.median(two)
    print(f"preset {args.preset}, {args.epochs} epochs, clips/s of epochs 2..{args.epochs} (median)")
    print(f"plain loop, 1 process, 1 thread     {p:8.2f}")
    print(f"Ray Train, 1 worker (1 CPU)          {r1:8.2f}   overhead {100 * (1 - r1 / p):5.1f}% (target <= 5%)")
    print(f"Ray Train, 2 workers (1 CPU each)    {r2:8.2f}   scaling 1 -> 2 workers {r2 / r1:.2f}x")


if __name__ == "__main__":
    main()
