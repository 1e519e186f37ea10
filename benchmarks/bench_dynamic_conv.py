"""Does VA-RED²'s FLOP cut become wall-clock speed? Static R(2+1)D-18 vs the converted model, hard mode.

    .venv/bin/python benchmarks/bench_dynamic_conv.py [--frames 16 --size 112 --batch-sizes 1 8]

Both models are timed in the same run, on the same input, with the same torch thread count:
(a) every dynamic layer forced to r = 1/2, R = 2; (b) random per-sample choices (gates with large
random weights), which exercises the grouping of a batch by choice. It prints the measured speedup
next to the FLOP ratio and the realised fraction (speedup - 1) / (FLOP ratio - 1); target >= 0.85.
GFLOPs are multiply-accumulates per clip.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pipeline.config import ModelConfig
from pipeline.models import build_model, dynamic_layers, static_macs


def timed(model, x, iters: int, warmup: int) -> float:
    """Median seconds per forward."""
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def randomise_gates(model, seed: int = 0) -> None:
    """Large random gate weights: each sample's argmax then depends on its content."""
    g = torch.Generator().manual_seed(seed)
    for _, layer in dynamic_layers(model):
        fc2 = layer.gate.fc2
        with torch.no_grad():
            fc2.weight.copy_(torch.randn(fc2.weight.shape, generator=g) * 3.0)
            fc2.bias.copy_(torch.rand(fc2.bias.shape, generator=g))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = (3, args.frames, args.size, args.size)
    static = build_model(ModelConfig(backbone="r2plus1d_18", dynamic="none")).eval()
    dynamic = build_model(ModelConfig(backbone="r2plus1d_18", dynamic="both", search_space=2)).eval()
    dynamic.load_backbone_state_dict(static.backbone.state_dict())
    dynamic.set_execution("hard")
    static_gmacs = static_macs(static, shape) / 1e9
    print(f"R(2+1)D-18 at {'x'.join(map(str, shape[1:]))}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; static {static_gmacs:.2f} GFLOPs (MACs) per clip")
    print(f"{'case':28s} {'batch':>5s} {'static s':>9s} {'dynamic s':>9s} {'speedup':>8s} "
          f"{'FLOP ratio':>10s} {'realised fraction':>17s} {'choices':>7s}")
    rows = []
    for case in ("forced r=1/2 R=2", "random per-sample choices"):
        if case.startswith("forced"):
            dynamic.force_policy(1, 1)
        else:
            dynamic.clear_policy()
            randomise_gates(dynamic)
        for batch in args.batch_sizes:
            x = torch.randn(batch, *shape)
            with torch.no_grad():
                out = dynamic(x)
            dyn_gmacs = float(out.macs.double().mean()) / 1e9
            choices = len({tuple(p.flatten().tolist()) for p in out.policy})
            t_static = timed(static, x, args.iters, args.warmup)
            t_dynamic = timed(dynamic, x, args.iters, args.warmup)
            speedup = t_static / t_dynamic
            ratio = static_gmacs / dyn_gmacs
            fraction = (speedup - 1) / (ratio - 1)
            rows.append(fraction)
            print(f"{case:28s} {batch:5d} {t_static:9.3f} {t_dynamic:9.3f} {speedup:8.2f} "
                  f"{ratio:10.2f} {fraction:17.2f} {choices:7d}")
    print(f"minimum realised fraction {min(rows):.2f} (target >= 0.85)")


if __name__ == "__main__":
    main()
