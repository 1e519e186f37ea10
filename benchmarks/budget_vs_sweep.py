"""One model at many budgets vs one trained model per operating point (issue 14's comparison).

    .venv/bin/python benchmarks/budget_vs_sweep.py --study data/study          # after accuracy_study.py

Takes the accuracy study's VA-RED² "both" model of seed 0 (lambda_e 3.5) and evaluates it, through
`jobs.evaluate.evaluate_budgets` (what `vared2 evaluate --budget` runs), at the GFLOPs that the
separately trained lambda_e 1 and 10 models of the same seed reached, at its own trained cost and at
0.6 / 0.8 / 1.0 of the static model. The budget table is calibrated on
`train.budget_calibration_clips` training clips (240); every figure here is measured on the 300
validation videos (3 clips each), a set the calibration never saw. Prints, per point: the target,
the GFLOPs reached (and its error against the target), the per-clip max / min cost ratio, the
knob's clip-1, and the clip-1 of the model trained for that cost where there is one. Writes
`budget_vs_sweep_<model>.md` / `.json` / `.png` next to the study's results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="data/study", help="--out folder of accuracy_study.py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="", help="the study run to evaluate (default: both-s<seed>; e.g. a "
                        "run trained with train.budget_offsets)")
    parser.add_argument("--calibration-clips", type=int, default=None,
                        help="training clips to calibrate on (default: train.budget_calibration_clips)")
    args = parser.parse_args()

    import torch

    from jobs.budget_curve import plot_curve
    from jobs.evaluate import budget_table, ensure_budget_calibration, evaluate_budgets
    from jobs.models import load_trained
    from pipeline.models.budget import reachable

    torch.set_num_threads(2)
    runs = Path(args.study) / "runs"
    name = args.model or f"both-s{args.seed}"
    model_dir = runs / name
    if not (model_dir / "result.json").exists():
        print(f"no finished run {model_dir}: run benchmarks/accuracy_study.py --out {args.study} first")
        return 2
    trained = {}  # cost ratio -> (label, clip-1) of a model trained for that cost
    for run in (f"both-le1-s{args.seed}", f"both-s{args.seed}", f"both-le10-s{args.seed}"):
        path = runs / run / "result.json"
        if path.exists():
            r = json.loads(path.read_text())
            trained[round(r["ratio"], 4)] = {"label": f"lambda_e {r['lambda_e']:g}", "clip_top1": r["clip_top1"],
                                             "gflops_avg": r["gflops_avg"], "ratio": r["ratio"]}
    static = json.loads((runs / f"static-s{args.seed}" / "result.json").read_text())
    cfg, model = load_trained(str(model_dir))
    ensure_budget_calibration(cfg, model, num_clips=args.calibration_clips)  # as finish_run does
    low, high = reachable(model)
    targets = sorted({*(r for r in trained if low <= r <= high), 0.6, 0.8} - {1.0}) + [1.0]
    targets = [t for t in targets if low <= t <= high]
    rows = evaluate_budgets(cfg, model, [(t, False) for t in targets], log=print)
    print(budget_table(rows))
    lines = ["| budget (x static) | GFLOPs reached | error vs target | max / min per clip | knob clip-1 "
             "| trained for this cost: clip-1 | difference |", "|---|---|---|---|---|---|---|"]
    out_rows = []
    for row in rows:
        match = trained.get(round(row["target"], 4))
        if row["target"] == 1.0:
            match = {"label": "static", "clip_top1": static["clip_top1"]}
        diff = row["clip_top1"] - match["clip_top1"] if match else None
        lines.append(f"| {row['target']:.3f} | {row['ratio']:.3f} | {100 * (row['ratio'] / row['target'] - 1):+.1f}% "
                     f"| {row['gflops_max'] / row['gflops_min']:.2f} | {row['clip_top1']:.3f} | "
                     + (f"{match['clip_top1']:.3f} ({match['label']}) | {diff:+.3f} |" if match else "- | - |"))
        out_rows.append({**row, "trained": match})
    text = "\n".join(lines)
    print(text)
    out = Path(args.study)
    stem = f"budget_vs_sweep_{name}"  # one file set per model, so seeds and variants never overwrite each other
    (out / f"{stem}.md").write_text(
        f"One VA-RED² model ({name}) at each budget vs the models trained "
        f"for that cost; the study's 300 validation videos x 3 clips, hard policy; reachable "
        f"{low:.3f}-{high:.3f} of static.\n\n{text}\n")
    (out / f"{stem}.json").write_text(json.dumps(out_rows, indent=1, default=float))
    sweep_rows = [{"test/gflops_avg": t["gflops_avg"], "test/clip_top1": t["clip_top1"],
                   "lambda_e": float(t["label"].split()[-1])} for t in trained.values()]
    plot_curve(rows, out / f"{stem}.png", sweep_rows=sweep_rows,
               static={"gflops_avg": static["gflops_avg"], "clip_top1": static["clip_top1"]})
    print(f"written: {out / stem}.md, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
