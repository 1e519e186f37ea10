"""Static GFLOPs and parameters of a backbone, or the hard-policy GFLOPs of a trained checkpoint.

GFLOPs here are multiply-accumulates (MACs) of conv and linear layers, counted per clip, as in the
VA-RED² paper, fvcore and torchvision's model cards. Counters that report FLOPs = 2 x MACs (such as
torch.utils.flop_counter.FlopCounterMode) print twice these numbers; that factor, and differing
input sizes (frames x crop), explain most disagreements between FLOP counts in papers.

  vared2 flops --backbone r2plus1d_18 --frames 16 --size 112
  vared2 flops --checkpoint runs/demo-r2plus1d_18-both/checkpoint_000005 --clips 64
  vared2 flops --checkpoint runs/demo-r2plus1d_18-both/checkpoint_000005 --budget 0.6,0.8
"""

from __future__ import annotations

HELP = "static GFLOPs (MACs) and params of a backbone, or hard-policy GFLOPs of a checkpoint"


def add_arguments(parser) -> None:
    parser.add_argument("--backbone", default="r2plus1d_18", help="r2plus1d_18, i3d_r50 or x3d_m")
    parser.add_argument("--frames", type=int, default=16, help="clip length T (default 16)")
    parser.add_argument("--size", type=int, default=112, help="crop size H = W (default 112)")
    parser.add_argument("--num-classes", type=int, default=400)
    parser.add_argument("--checkpoint", default="",
                        help="a trained checkpoint: report hard-policy GFLOPs avg/max/min over clips")
    parser.add_argument("--clips", type=int, default=32,
                        help="with --checkpoint: how many validation clips to measure (default 32)")
    parser.add_argument("--budget", default="", metavar="B[,B...]",
                        help="with --checkpoint: GFLOPs at these budgets (fractions of static, or 0.3G)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="with --checkpoint: config overrides, e.g. data.root=...")


def run(args) -> int:
    from pipeline.config import ModelConfig
    from pipeline.models import build_model, param_count, static_macs

    if args.checkpoint:
        return _checkpoint(args)
    if args.frames < 1 or args.size < 1:
        raise ValueError("--frames and --size must be positive")
    model = build_model(ModelConfig(backbone=args.backbone, num_classes=args.num_classes,
                                    dynamic="none"))
    macs = static_macs(model, (3, args.frames, args.size, args.size))
    print(f"backbone      {args.backbone}")
    print(f"input         3 x {args.frames} x {args.size} x {args.size} (C x T x H x W), one clip")
    print(f"GFLOPs        {macs / 1e9:.2f}  (multiply-accumulates; = {2 * macs / 1e9:.2f} GFLOPs "
          f"if one counts a MAC as 2 FLOPs)")
    print(f"parameters    {param_count(model) / 1e6:.2f} M")
    return 0


def _checkpoint(args) -> int:

    import torch

    from jobs.models import load_trained
    from pipeline.data import build_loader
    from pipeline.models import gflops_summary, static_macs

    cfg, model = load_trained(args.checkpoint, args.overrides)
    budgets = [(None, False)]
    if args.budget:
        from jobs.evaluate import ensure_budget_calibration, parse_budgets

        budgets = parse_budgets(args.budget)
        ensure_budget_calibration(cfg, model)
    clips = []
    seen = 0
    for batch in build_loader(cfg.data, split=cfg.data.val_split, train=False):
        clips.append(batch.clips[batch.valid])
        seen += clips[-1].shape[0]
        if seen >= args.clips:
            break
    shape = tuple(clips[0].shape[1:])
    static = static_macs(model, shape) / 1e9
    print(f"checkpoint    {args.checkpoint} ({cfg.model.backbone}, dynamic={cfg.model.dynamic}, "
          f"S={cfg.model.search_space})")
    print(f"input         {' x '.join(map(str, shape))} (C x T x H x W), {min(seen, args.clips)} clips "
          f"of {cfg.data.root}/{cfg.data.val_split}")
    model.eval()
    for value, absolute in budgets:
        label = "trained policy"
        if value is not None:
            from pipeline.models.budget import budget_fraction, set_budget

            fraction = budget_fraction(model, value, shape, absolute=absolute)
            set_budget(model, fraction)  # ValueError with the reachable range
            label = f"budget {fraction:.3f} ({fraction * static:.4f} GFLOPs)"
        model.set_execution("hard")
        with torch.no_grad():
            per_clip = torch.cat([model(x).macs.double() for x in clips])[: args.clips]
        summary = gflops_summary(per_clip)
        print(f"GFLOPs        avg {summary['avg']:.4f}  max {summary['max']:.4f}  min {summary['min']:.4f}"
              f"  ({summary['avg'] / static:.3f} of static; hard policy, multiply-accumulates; {label})")
    print(f"static        {static:.4f} GFLOPs (every layer at full cost)")
    return 0
