"""Knob at the cheap end: one global offset vs per-layer offsets scaled by cost share (3 schemes)."""
import sys, json, time
import numpy as np, torch
sys.path.insert(0, "/work/main")
from pipeline.config import from_dict, Config
from pipeline.models import build_model
from pipeline.models.convert import dynamic_layers
from pipeline.models.budget import mean_cost, estimate_norms, put_norms, get_norms
from pipeline.train.checkpoint import load_checkpoint
from pipeline.data import build_loader
from pipeline.train.evaluate import evaluate
from jobs.evaluate import calibration_clips
torch.set_num_threads(2)
results = {}
for run in sys.argv[1:]:
    st = load_checkpoint(run); cfg = from_dict(Config, st["config"])
    model = build_model(cfg.model); model.load_state_dict(st["model"])
    clips = calibration_clips(cfg, 240)
    layers = [l for _, l in dynamic_layers(model)]
    shape = (3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    model.eval(); model.set_execution("hard")
    with torch.no_grad():
        out = model(clips[0][:1])
    share = np.array([r.full_macs for r in out.records], dtype=np.float64); share /= share.mean()
    model.set_execution("auto")
    trained = get_norms(model)
    schemes = {"global": np.ones_like(share), "cost": share, "sqrtcost": np.sqrt(share), "invcost": 1 / share}
    loader = build_loader(cfg.data, split="val", train=False)
    res = {}
    for target in (0.45, 0.55):
        for name, w in schemes.items():
            def setd(d):
                for l, wl in zip(layers, w): l.budget_offset = float(d * wl)
            lo, hi = 0.0, 64.0
            for _ in range(14):
                mid = (lo + hi) / 2; setd(mid)
                c = mean_cost(model, clips)[0]
                lo, hi = (mid, hi) if c > target else (lo, mid)
            setd(hi)
            put_norms(model, estimate_norms(model, clips))
            r = evaluate(model, loader, num_clips=cfg.data.eval_clips)
            res[f"{target}/{name}"] = (r.clip_top1, r.gflops_avg * 1e9 / model.static_macs(shape))
            put_norms(model, trained); setd(0.0)
            print(run.split('/')[-1], target, name, round(r.clip_top1, 3), round(res[f"{target}/{name}"][1], 3), flush=True)
    results[run] = res
json.dump(results, open("/work/exp/perlayer.json", "w"), indent=1)
