"""Accuracy study: does VA-RED² keep the static model's accuracy at fewer GFLOPs, with statistics?

    .venv/bin/python benchmarks/accuracy_study.py --out data/study           # ~1 h on 2 cores
    .venv/bin/python benchmarks/accuracy_study.py --out data/study --seeds 1 # a quicker look
    .venv/bin/python benchmarks/accuracy_study.py --out data/study --methods both \
        --variant lin=train.efficiency_form=linear,train.lambda_e=4.5     # "both" beside a variant of it
    .venv/bin/python benchmarks/accuracy_study.py --out data/study --methods both,sweep-all \
        --variant sandwich=train.budget_offsets=4,train.budget_offsets_epochs=all  # then budget_vs_sweep.py

Data: `preprocessing.study_data` (6 classes = 3 digit shapes x 2 motion axes, 600 train / 300 val
videos, speed, pauses and blinks drawn per video, so redundancy varies within classes), written
once and preprocessed into shards by the project's own preprocessing. Per seed, through the project's
own training code (`pipeline.train.loop.train_epochs`, `pipeline.data.build_loader`,
`pipeline.train.evaluate.evaluate`), the `study` settings below:

    static R(2+1)D-18 (narrow)                        -> from it, each with the VA-RED² defaults:
    VA-RED² temporal / channel / both (S = 2)            magnitude pruning at the GFLOPs "both" reached
    CGNet-style channel gating                           (+ on seed 0: "both" at two more lambda_e)

Printed: mean and spread over seeds of clip-1 / video-1 / GFLOPs avg per method, the paired
difference to the static model of the same seed (mean, 95% t-interval, "inside the noise" when the
interval holds 0), per dynamic model the Spearman correlation between each clip's redundancy and
the compute it is spared and the cost of the most / least redundant quarter, and lambda_e vs GFLOPs.
Written to --out: `study.json`, `study.md`, `pareto.png`. Runs already finished are reused, so an
interrupted study resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The study's settings: the demo preset (VA-RED² defaults) on the study data, smaller clips so that
# 3 seeds of 7 runs fit in about an hour on 2 cores.
DATA = ["model.num_classes=6", "data.num_frames=8", "data.crop_size=40", "data.jitter_short_side_min=40",
        "data.jitter_short_side_max=45", "data.eval_short_side=40", "data.eval_clips=3",
        "data.batch_size=8", "data.num_workers=0", "train.log_every=100000", "train.eval_every=100000"]
STATIC = ["model.dynamic=none", "train.epochs=12", "train.lr=3e-3", "train.lambda_e=0", "train.lambda_d=0"]
DYNAMIC_EPOCHS = 4
STUDY_LAMBDA_E = 3.5  # the study's operating point (the demo preset has since moved to 4)
SWEEP_LAMBDAS = (1.0, 10.0)
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57}  # two-sided 95% t quantiles by degrees of freedom


METHODS = ("both", "temporal", "channel", "static-ft", "gating", "sweep", "magnitude", "sweep-all")
DEFAULT_METHODS = METHODS[:-1]  # "sweep": lambda_e 1 and 10 on seed 0; "sweep-all": on every seed


def jobs_for(seed: int, phase: int, static_ckpt: str, both_ratio: float | None, *,
             methods: tuple[str, ...] = DEFAULT_METHODS, variants: dict[str, list[str]] | None = None) -> list[dict]:
    """The runs of one seed that start from phase `phase`'s inputs (0: none; 1: the static model;
    2: also the GFLOPs "both" reached). `methods`: which of METHODS to run; `variants`: extra
    "both" runs, {name: overrides on top of the study's settings}."""
    common = [f"train.seed={seed}", f"data.seed={seed}", f"train.epochs={DYNAMIC_EPOCHS}",
              f"train.lambda_e={STUDY_LAMBDA_E}"]
    if phase == 0:
        return [{"name": f"static-s{seed}", "method": "static", "seed": seed,
                 "overrides": [*STATIC, f"train.seed={seed}", f"data.seed={seed}"]}]
    init = [f"train.init_from={static_ckpt}"]
    if phase == 1:
        out = [{"name": f"{mode}-s{seed}", "method": f"VA-RED² {mode}", "seed": seed,
                "overrides": [f"model.dynamic={mode}", *common, *init]}
               for mode in ("both", "temporal", "channel") if mode in methods]
        # The control: the static model trained as many more epochs as the dynamic ones get.
        if "static-ft" in methods:
            out.append({"name": f"static-ft-s{seed}", "method": "static + fine-tuning", "seed": seed,
                        "overrides": [*common, "model.dynamic=none", "train.lambda_e=0", "train.lambda_d=0", *init]})
        if "gating" in methods:
            out.append({"name": f"gating-s{seed}", "method": "channel gating", "seed": seed,
                        "overrides": ["model.baseline=channel_gating", "model.gating_base_fraction=0.5",
                                      *common, *init]})
        if "sweep-all" in methods or (seed == 0 and "sweep" in methods):
            out += [{"name": f"both-le{lam:g}-s{seed}", "method": f"VA-RED² both, lambda_e {lam:g}", "seed": seed,
                     "overrides": ["model.dynamic=both", *common, f"train.lambda_e={lam}", *init]}
                    for lam in SWEEP_LAMBDAS]
        out += [{"name": f"both-{name}-s{seed}", "method": f"VA-RED² both, {name}", "seed": seed,
                 "overrides": ["model.dynamic=both", *common, *init, *extra]}
                for name, extra in (variants or {}).items()]
        return out
    if "magnitude" not in methods:
        return []
    return [{"name": f"magnitude-s{seed}", "method": "magnitude pruning", "seed": seed,
             "overrides": ["model.baseline=magnitude", f"model.prune_macs_ratio={both_ratio:.4f}",
                           *common, "train.lambda_e=0", "train.lambda_d=0", *init]}]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """"NAME=key=value,key=value" -> (NAME, ["key=value", ...]); the overrides are checked here."""
    from pipeline.config import apply_overrides, get_preset

    name, sep, rest = text.partition("=")
    overrides = [o for o in rest.split(",") if o]
    if not sep or not name.replace("-", "").replace("_", "").isalnum() or not overrides:
        raise ValueError(f"--variant {text!r}: expected NAME=key=value[,key=value...] with a plain NAME")
    apply_overrides(get_preset("demo"), overrides)  # a bad key or value fails now, not in a worker
    return name, overrides


def run_job(job: dict, root: str, out: str) -> dict:
    """Train and evaluate one run in this (worker) process, 1 thread; cached in out/runs/NAME."""
    import torch

    from pipeline.analysis.clip_redundancy import redundancy_vs_cost
    from pipeline.analysis.collect import collect_policies
    from pipeline.config import apply_overrides, get_preset, to_dict
    from pipeline.data import build_loader
    from pipeline.models import build_model
    from pipeline.train.checkpoint import load_checkpoint, save_checkpoint
    from pipeline.train.evaluate import evaluate
    from pipeline.train.loop import train_epochs
    from pipeline.train.start import start_from_static

    run_dir = Path(out) / "runs" / job["name"]
    done = run_dir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    torch.set_num_threads(1)
    cfg = apply_overrides(get_preset("demo"), [f"data.root={root}", *DATA, *job["overrides"]])
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    train_loader = build_loader(cfg.data, split="train", train=True, epoch=0)
    val_loader = build_loader(cfg.data, split="val", train=False)
    started = time.perf_counter()
    if cfg.train.init_from:
        start_from_static(model, load_checkpoint(cfg.train.init_from), train_loader,
                          calibrate_batches=cfg.train.calibrate_batches)

    def batches(epoch):
        train_loader.set_epoch(epoch)
        return train_loader

    train_epochs(cfg, model=model, train_batches=batches, steps_per_epoch=len(train_loader),
                 log=lambda line: None)
    result = evaluate(model, val_loader, num_clips=cfg.data.eval_clips)
    shape = (3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    row = {**job, "clip_top1": result.clip_top1, "video_top1": result.video_top1,
           "gflops_avg": result.gflops_avg, "gflops_max": result.gflops_max, "gflops_min": result.gflops_min,
           "ratio": result.gflops_avg * 1e9 / model.static_macs(shape), "num_videos": result.num_videos,
           "lambda_e": cfg.train.lambda_e, "train_s": time.perf_counter() - started}
    if cfg.model.dynamic != "none" and cfg.model.baseline == "none":
        records = collect_policies(model, val_loader, extremes_per_class=0)
        row["adaptivity"] = redundancy_vs_cost(records.redundancy, records.cost_ratio)
    save_checkpoint(run_dir, model=model, epoch=cfg.train.epochs - 1, step=0, config=to_dict(cfg))
    done.write_text(json.dumps(row, indent=1))
    return row


def prepare_data(out: Path) -> str:
    from dataclasses import replace

    from pipeline.config import get_preset
    from preprocessing.run import preprocess
    from preprocessing.study_data import make_study_dataset

    shards = out / "shards"
    if not (shards / "val-summary.json").exists():
        print(f"generating the study videos in {out}/videos", flush=True)
        paths = make_study_dataset(out, num_train_per_class=100, num_val_per_class=50, size=56)
        base = replace(get_preset("demo").preprocess, short_side=40, output=str(shards))
        for split in ("train", "val"):
            summary = preprocess(replace(base, annotations=str(paths[f"{split}_csv"]),
                                         videos=str(paths["videos"]), split=split))
            print(f"  {split}: {summary['num_ok']} videos in {summary['num_shards']} shards", flush=True)
    return str(shards)


def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return m, s


def paired(rs: list[dict], reference: dict[int, dict]) -> dict | None:
    """Paired clip-1 difference to the reference run of the same seed: mean, 95% t-interval."""
    diffs = [r["clip_top1"] - reference[r["seed"]]["clip_top1"] for r in rs if r["seed"] in reference]
    if not diffs:
        return None
    m, s = mean_std(diffs)
    half = T95.get(len(diffs) - 1, 2.0) * s / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {"mean": m, "ci95": [m - half, m + half], "diffs": diffs,
            "inside_noise": bool(len(diffs) > 1 and m - half <= 0 <= m + half)}


def summarize(rows: list[dict]) -> dict:
    static = {r["seed"]: r for r in rows if r["method"] == "static"}
    tuned = {r["seed"]: r for r in rows if r["method"] == "static + fine-tuning"}
    methods: dict[str, list[dict]] = {}
    for r in rows:
        methods.setdefault(r["method"], []).append(r)
    table = {}
    for method, rs in methods.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        entry = {"seeds": [r["seed"] for r in rs]}
        for key in ("clip_top1", "video_top1", "gflops_avg", "ratio"):
            entry[key] = mean_std([r[key] for r in rs])
        if method != "static":
            entry["paired_clip_top1"] = paired(rs, static)
        if method not in ("static", "static + fine-tuning"):
            entry["paired_vs_tuned"] = paired(rs, tuned)
        adapt = [r["adaptivity"] for r in rs if "adaptivity" in r]
        if adapt:
            entry["spearman"] = mean_std([a["spearman"] for a in adapt])
            entry["quartile_cost_ratio"] = mean_std([a["quartile_cost_ratio"] for a in adapt])
        table[method] = entry
    sweep = sorted([(r["lambda_e"], r["gflops_avg"], r["clip_top1"]) for r in rows
                    if r["seed"] == 0 and (r["method"] == "VA-RED² both"
                                           or r["method"].startswith("VA-RED² both, lambda_e"))])
    return {"methods": table, "lambda_e_sweep": sweep,
            "monotone": all(a[1] > b[1] for a, b in zip(sweep, sweep[1:]))}


def fmt(ms: tuple[float, float], digits: int = 3) -> str:
    m, s = ms
    return f"{m:.{digits}f} ± {s:.{digits}f}" if not math.isnan(s) else f"{m:.{digits}f}"


def report(summary: dict, rows: list[dict], out: Path, num_val: int) -> str:
    lines = [f"GFLOPs = multiply-accumulates per clip, hard policy; mean ± std over seeds; {num_val} validation "
             "videos (one video = {:.1f} points of clip-1)".format(100 / max(num_val, 1)), "",
             "| method | seeds | clip-1 | video-1 | GFLOPs avg | x static | clip-1 - static (paired, 95% CI) "
             "| clip-1 - static + fine-tuning | Spearman(redundancy, spared) | most / least redundant quarter cost |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(p: dict | None) -> str:
        return (f"{p['mean']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]"
                f"{' (inside the noise)' if p['inside_noise'] else ''}") if p else "-"
    for method, e in summary["methods"].items():
        lines.append(f"| {method} | {len(e['seeds'])} | {fmt(e['clip_top1'])} | {fmt(e['video_top1'])} | "
                     f"{fmt(e['gflops_avg'], 4)} | {fmt(e['ratio'])} | {cell(e.get('paired_clip_top1'))} | "
                     f"{cell(e.get('paired_vs_tuned'))} | "
                     f"{fmt(e['spearman'], 2) if 'spearman' in e else '-'} | "
                     f"{fmt(e['quartile_cost_ratio'], 2) if 'quartile_cost_ratio' in e else '-'} |")
    lines += ["", "lambda_e -> GFLOPs avg, clip-1 (VA-RED² both, seed 0): " + ", ".join(
        f"{lam:g} -> {g:.4f} ({a:.3f})" for lam, g, a in summary["lambda_e_sweep"])
        + f"; monotone: {'yes' if summary['monotone'] else 'NO'}"]
    text = "\n".join(lines)
    (out / "study.md").write_text(text + "\n", encoding="utf-8")
    return text


def plot(rows: list[dict], path: Path) -> None:
    from pipeline.analysis.figures import new_figure, save_figure

    fig, axes = new_figure(760, 480, constrained_layout=True)
    ax = axes[0][0]
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        ax.scatter([r["gflops_avg"] for r in rs], [r["clip_top1"] for r in rs], label=method, s=28)
    ax.set_xlabel("GFLOPs avg per clip (multiply-accumulates, hard policy)")
    ax.set_ylabel("clip-1")
    ax.set_title("Accuracy study: every run (one point per seed)", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, path, "clip-1 against GFLOPs of every run of the accuracy study")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/study", help="data, runs and results folder (default: data/study)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel, 1 thread each (default: 2)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated subset of {', '.join(METHODS)} (default: all but sweep-all; "
                             "static always runs)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="an extra 'both' run per seed with these comma-separated overrides, e.g. "
                             "lin=train.efficiency_form=linear,train.lambda_e=4.5 (repeatable)")
    args = parser.parse_args()
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: {', '.join(unknown)} not valid; choose from {', '.join(METHODS)}")
    if "magnitude" in methods and "both" not in methods:
        parser.error("--methods: magnitude is matched to the GFLOPs of 'both'; add both")
    try:
        variants = dict(parse_variant(v) for v in args.variant)
    except ValueError as err:
        parser.error(str(err))
    plan = {"methods": methods, "variants": variants}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    root = prepare_data(out)
    rows: list[dict] = []
    ctx = get_context("spawn")
    # Each seed's runs start as soon as what they start from is done (static -> dynamic and gating;
    # VA-RED² both -> magnitude pruning at its GFLOPs), so both workers stay busy.
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        pending = {pool.submit(run_job, job, root, str(out)): job
                   for s in range(args.seeds) for job in jobs_for(s, 0, "", None, **plan)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                row = future.result()
                rows.append(row)
                print(f"  {row['name']:18s} clip-1 {row['clip_top1']:.3f}  GFLOPs {row['gflops_avg']:.4f} "
                      f"({row['ratio']:.3f}x)  {row['train_s']:.0f} s  [{time.perf_counter() - started:.0f} s]",
                      flush=True)
                seed, ckpt = job["seed"], str(out / "runs" / f"static-s{job['seed']}")
                follow = []
                if job["method"] == "static":
                    follow = jobs_for(seed, 1, ckpt, None, **plan)
                elif job["name"] == f"both-s{seed}":
                    follow = jobs_for(seed, 2, ckpt, row["ratio"], **plan)
                pending.update({pool.submit(run_job, j, root, str(out)): j for j in follow})
    summary = summarize(rows)
    num_val = rows[0]["num_videos"]
    (out / "study.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=1, default=str))
    plot(rows, out / "pareto.png")
    print()
    print(report(summary, rows, out, num_val))
    print(f"\nwritten: {out / 'study.md'}, {out / 'study.json'}, {out / 'pareto.png'} "
          f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
