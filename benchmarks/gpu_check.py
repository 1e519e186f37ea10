"""GPU check, ready to run on a machine with only Python 3.12 + torch (CUDA): static vs VA-RED²
R(2+1)D-18 at 16x112x112, inference at batch 1 / 8 / 32 in fp32 and bf16 (CUDA graphs where the
shapes are static), and one training step of each, with realised fractions.

    python benchmarks/gpu_check.py                 # ~3 min on one H200; prints one table
    python benchmarks/gpu_check.py --device cpu --batch-sizes 1 --frames 4 --size 32   # smoke run

Needs nothing but torch from this repository's `pipeline/models` and `pipeline/config` (no Ray,
MLflow, PyAV or DALI). Cases: "forced" = every dynamic layer at r = 1/2, R = 2 (one variant for the
whole batch: no grouping, capturable in a CUDA graph); "per-sample" = gates with large random
weights, so the clips of a batch choose differently and are grouped per choice (data-dependent, so
eager only). Realised fraction = (speedup - 1) / (FLOP ratio - 1), against the faster of eager and
graphed static in the same run. GFLOPs = multiply-accumulates per clip. The last line states the
minimum realised fraction over the inference cases. Results belong in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import ModelConfig  # noqa: E402
from pipeline.models import build_model, dynamic_layers  # noqa: E402
from pipeline.train.losses import total_loss  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, iters: int, warmup: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def graphed(model, x, device):
    """A replay function of `model(x).logits` captured in a CUDA graph (None when not on CUDA or
    when capture fails, e.g. data-dependent control flow)."""
    if device.type != "cuda":
        return None
    static_in = x.clone()
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    try:
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(3):
                model(static_in)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            out = model(static_in).logits
    except Exception as err:  # noqa: BLE001 - report and fall back to eager
        print(f"  (no CUDA graph: {type(err).__name__}: {str(err)[:80]})")
        return None
    return lambda: (graph.replay(), out)[1]


def models_for(args, device, dtype):
    torch.manual_seed(0)
    base = dict(backbone="r2plus1d_18", num_classes=400, base_width=args.width)
    static = build_model(ModelConfig(dynamic="none", **base)).to(device=device, dtype=dtype).eval()
    dynamic = build_model(ModelConfig(dynamic="both", **base)).to(device=device, dtype=dtype).eval()
    dynamic.load_state_dict(static.state_dict(), strict=False)
    static.set_execution("hard")
    dynamic.set_execution("hard")
    return static, dynamic


def per_sample_gates(model):
    with torch.no_grad():
        for _, layer in dynamic_layers(model):
            layer.gate.fc2.weight.normal_(std=3.0)
            layer.gate.fc2.bias.zero_()


def inference(args, device) -> list[dict]:
    rows = []
    for dtype_name in args.dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
        for batch in args.batch_sizes:
            x = torch.randn(batch, 3, args.frames, args.size, args.size, device=device, dtype=dtype)
            static, dynamic = models_for(args, device, dtype)
            with torch.no_grad():
                static_macs = float(static(x).macs.double().mean())
            eager = timed(lambda: static(x), device, args.iters, args.warmup)
            g = graphed(static, x, device)
            graph_t = timed(g, device, args.iters, args.warmup) if g else float("inf")
            best_static = min(eager, graph_t)
            for case in ("forced", "per-sample"):
                if case == "forced":
                    dynamic.force_policy(1, 1)
                else:
                    dynamic.clear_policy()
                    per_sample_gates(dynamic)
                with torch.no_grad():
                    macs = float(dynamic(x).macs.double().mean())
                t_dyn = timed(lambda: dynamic(x), device, args.iters, args.warmup)
                if case == "forced":
                    gd = graphed(dynamic, x, device)
                    if gd:
                        t_dyn = min(t_dyn, timed(gd, device, args.iters, args.warmup))
                flop_ratio = static_macs / macs
                speedup = best_static / t_dyn
                rows.append({"kind": "inference", "dtype": dtype_name, "batch": batch, "case": case,
                             "static_ms": 1e3 * best_static, "static_eager_ms": 1e3 * eager,
                             "static_graph_ms": 1e3 * graph_t, "dynamic_ms": 1e3 * t_dyn,
                             "flop_ratio": flop_ratio, "speedup": speedup,
                             "realised": (speedup - 1) / (flop_ratio - 1) if flop_ratio > 1 else float("nan")})
                print_row(rows[-1])
    return rows


def training(args, device) -> list[dict]:
    rows = []
    batch = args.train_batch
    dtype = torch.bfloat16 if device.type == "cuda" else None
    x = torch.randn(batch, 3, args.frames, args.size, args.size, device=device)
    y = torch.randint(0, 400, (batch,), device=device)
    times = {}
    for name, dynamic, gate_training in (("static", "none", "straight_through"),
                                         ("VA-RED² straight-through", "both", "straight_through"),
                                         ("VA-RED² soft", "both", "soft")):
        torch.manual_seed(0)
        model = build_model(ModelConfig(backbone="r2plus1d_18", num_classes=400, base_width=args.width,
                                        dynamic=dynamic, gate_training=gate_training)).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                out = model(x)
                loss, _, _ = total_loss(out, y, 1.0, 8.0)
            loss.backward()
            opt.step()
        times[name] = timed(step, device, max(3, args.iters // 2), args.warmup)
    for name, t in times.items():
        rows.append({"kind": "train", "case": name, "batch": batch, "step_ms": 1e3 * t,
                     "vs_static": t / times["static"]})
        print(f"train  batch {batch:3d}  {name:26s} {1e3 * t:9.1f} ms/step  {t / times['static']:.2f}x static")
    return rows


def print_row(r):
    print(f"infer  {r['dtype']:4s} batch {r['batch']:3d}  {r['case']:10s} static {r['static_ms']:8.2f} ms "
          f"(eager {r['static_eager_ms']:.2f}, graph {r['static_graph_ms']:.2f})  dynamic {r['dynamic_ms']:8.2f} ms  "
          f"FLOPs {r['flop_ratio']:.2f}x  speed {r['speedup']:.2f}x  realised {r['realised']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--width", type=int, default=0, help="base width (0 = published R(2+1)D-18)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device; use --device cpu for a smoke run", file=sys.stderr)
        return 2
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, torch {torch.__version__}, R(2+1)D-18 {args.frames}x{args.size}x{args.size}; "
          "GFLOPs = multiply-accumulates per clip")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = inference(args, device)
    training(args, device)
    fractions = [r["realised"] for r in rows if r["realised"] == r["realised"]]
    print(f"{time.perf_counter() - started:.0f} s; minimum realised fraction over the inference cases: "
          f"{min(fractions):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
