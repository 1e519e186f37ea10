"""Training cost: one optimisation step of the static model vs VA-RED² (straight-through and soft).

    .venv/bin/python benchmarks/bench_train_step.py                       # demo size and full width
    .venv/bin/python benchmarks/bench_train_step.py --threads 1 --rounds 5

Each case builds R(2+1)D-18 from the same seed, runs `pipeline.train.step.train_step` (forward,
L_a + lambda_e L_e + lambda_d D, backward, AdamW update) on the same random batch, interleaved in
rounds so that machine load hits every case alike, and reports the median seconds per step and the
ratio to the static step of the same size. Sizes: the demo's (width 16, 8 x 64 x 64, batch 8) and
the paper's (published width, 16 x 112 x 112, batch 2). A freshly converted model's gates send every
clip through the full variant; the "mixed choices" case gives the gates random weights so that the
samples of a batch take different variants (as after training), which adds the cheap ops of the
chosen variants and the scatter of the rebuilt regions. Users plan GPU hours by the ratio; the GPU
figures come from `benchmarks/gpu_check.py`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.config import apply_overrides, get_preset  # noqa: E402

SIZES = {"demo": ["model.base_width=16", "data.num_frames=8", "data.crop_size=64", "data.batch_size=8"],
         "full": ["model.base_width=0", "data.num_frames=16", "data.jitter_short_side_max=160",
                  "data.jitter_short_side_min=128", "data.eval_short_side=128", "data.crop_size=112",
                  "data.batch_size=2"]}
CASES = {"static": ["model.dynamic=none"],
         "VA-RED² straight-through": ["model.dynamic=both", "model.gate_training=straight_through"],
         "VA-RED² soft": ["model.dynamic=both", "model.gate_training=soft"],
         "VA-RED² s-t, mixed choices": ["model.dynamic=both", "model.gate_training=straight_through"]}
MIXED = "VA-RED² s-t, mixed choices"  # gates that send each sample its own way, as after training


def build(size: str, case: str):
    from pipeline.models import build_model
    from pipeline.train.optim import build_optimizer

    cfg = apply_overrides(get_preset("demo"), [*SIZES[size], *CASES[case], "model.num_classes=400"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    if case == MIXED:  # a freshly converted model computes everything in full; this one does not
        from pipeline.models.convert import dynamic_layers
        with torch.no_grad():
            for _, layer in dynamic_layers(model):
                layer.gate.fc2.weight.normal_(std=3.0)
                layer.gate.fc2.bias.zero_()
    return cfg, model, build_optimizer(model, cfg.train)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="demo,full")
    args = parser.parse_args()

    from pipeline.allocator import keep_freed_memory
    from pipeline.train.step import train_step

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds, median s/step")
    print(f"{'size':6s} {'case':28s} {'s/step':>8s} {'x static':>9s}")
    for size in args.sizes.split(","):
        built = {case: build(size, case) for case in CASES}
        cfg = built["static"][0]
        d = cfg.data
        g = torch.Generator().manual_seed(1)
        clips = torch.randn(d.batch_size, 3, d.num_frames, d.crop_size, d.crop_size, generator=g)
        labels = torch.randint(0, 400, (d.batch_size,), generator=g)
        times = {case: [] for case in CASES}
        for case, (c, model, opt) in built.items():  # warm-up
            train_step(model, clips, labels, opt, lambda_e=c.train.lambda_e, lambda_d=c.train.lambda_d)
        for _ in range(args.rounds):
            for case, (c, model, opt) in built.items():
                started = time.perf_counter()
                train_step(model, clips, labels, opt, lambda_e=c.train.lambda_e, lambda_d=c.train.lambda_d)
                times[case].append(time.perf_counter() - started)
        base = statistics.median(times["static"])
        for case in CASES:
            t = statistics.median(times[case])
            print(f"{size:6s} {case:28s} {t:8.3f} {t / base:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
