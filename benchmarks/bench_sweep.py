"""Sweep throughput (trials per hour) reading the FFCV clip cache against decoding the shards.

    .venv/bin/python benchmarks/bench_sweep.py [--root data/demo] [--trials 2] [--epochs 1]

The same demo sweep (lambda_e grid, no early stopping, so every trial does the same work; each
trial = a TorchTrainer + its final evaluation) runs once with data.backend=pyav (every trial
decodes the H.264 shards) and once with data.backend=ffcv (every trial reads decoded clips from a
cache written once, whose build time is reported apart and amortised over the trials).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def sweep_once(backend: str, args, tmp: Path) -> dict:
    from jobs.tune import run_sweep
    from pipeline.config import load_config

    cache = tmp / "ffcv-cache"
    cfg = load_config(args.preset, [
        f"data.root={Path(args.root).resolve() / 'shards'}", f"data.backend={backend}",
        f"data.ffcv_cache={cache}", f"runtime.storage_path={tmp / backend / 'runs'}",
        f"runtime.tracking_uri=sqlite:///{tmp / backend / 'mlruns.db'}",
        f"runtime.num_workers={args.workers}", f"train.epochs={args.epochs}",
        "tune.scheduler=none", "tune.num_samples=1", "tune.static_baseline=false",
        f"tune.max_concurrent={args.concurrent}"])
    (tmp / backend).mkdir(parents=True, exist_ok=True)
    build = 0.0
    if backend == "ffcv":
        from pipeline.data.ffcv_cache import write_cache

        t = time.perf_counter()
        write_cache(cfg.data, split=cfg.data.train_split, train=True)
        write_cache(cfg.data, split=cfg.data.val_split, train=False)
        build = time.perf_counter() - t
    lambdas = [round(0.5 * 4 ** i, 3) for i in range(args.trials)]
    t = time.perf_counter()
    out = run_sweep(cfg, {"train.lambda_e": ("grid", lambdas)}, name=f"bench-{backend}", register=False)
    wall = time.perf_counter() - t
    assert len(out["rows"]) == args.trials and all(r["status"] == "completed" for r in out["rows"])
    return {"backend": backend, "wall_s": wall, "build_s": build,
            "trials_per_hour": 3600 * args.trials / wall,
            "trials_per_hour_with_build": 3600 * args.trials / (wall + build)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/demo", help="demo data folder (shards in ROOT/shards)")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="training workers per trial")
    parser.add_argument("--concurrent", type=int, default=1, help="trials at once (0 = auto)")
    args = parser.parse_args()
    import ray

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for backend in ("pyav", "ffcv"):
            rows.append(sweep_once(backend, args, Path(tmp)))
            print(rows[-1], flush=True)
    ray.shutdown()
    print(f"\n{'backend':8s} {'wall s':>8s} {'trials/h':>9s} {'cache build s':>13s} {'trials/h incl. build':>20s}")
    for r in rows:
        print(f"{r['backend']:8s} {r['wall_s']:8.1f} {r['trials_per_hour']:9.1f} {r['build_s']:13.1f} "
              f"{r['trials_per_hour_with_build']:20.1f}")
    pyav, ffcv = rows
    print(f"ffcv / pyav trials per hour: {ffcv['trials_per_hour'] / pyav['trials_per_hour']:.2f}x "
          f"({ffcv['trials_per_hour_with_build'] / pyav['trials_per_hour']:.2f}x counting the cache build "
          f"once for this {args.trials}-trial sweep)")


if __name__ == "__main__":
    main()
