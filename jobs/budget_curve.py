"""The budget curve of one VA-RED² model: accuracy against GFLOPs across compute budgets, drawn on
the same plot as the Pareto front of separately trained lambda_e models, logged to the model's run.

    vared2 evaluate CHECKPOINT --budget 0.5,0.6,0.7,0.8,1.0 --run-id RUN [--sweep NAME]

Logged under `budget/` of the run: `budget_curve.png`, `budget_curve.md`, `budget_curve.csv`, and
metrics `budget/B/gflops_avg`, `budget/B/clip_top1`, `budget/B/video_top1` for each budget B, which
`vared2 registry compare` prints under its table.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from jobs.tracking import Tracker

NOTE = "GFLOPs = multiply-accumulates per clip, hard policy"


def plot_curve(rows: list[dict], path: Path, *, sweep_rows: list[dict] = (), static: dict | None = None,
               title: str = "One model across budgets vs separately trained models"):
    from pipeline.analysis.figures import new_figure, save_figure
    from pipeline.train.pareto import pareto_front

    fig, axes = new_figure(720, 480, constrained_layout=True)
    ax = axes[0][0]
    xs = [r["gflops_avg"] for r in rows]
    ax.plot(xs, [r["clip_top1"] for r in rows], "o-", color="tab:blue", label="this model, budget knob")
    for r in rows:
        ax.annotate(f"{r['target']:.2f}", (r["gflops_avg"], r["clip_top1"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 3))
    done = [r for r in sweep_rows if "test/clip_top1" in r and "test/gflops_avg" in r]
    if done:
        ax.scatter([r["test/gflops_avg"] for r in done], [r["test/clip_top1"] for r in done], color="tab:orange",
                   marker="s", label="sweep: one trained model per lambda_e")
        front = pareto_front([(r["test/clip_top1"], r["test/gflops_avg"]) for r in done])
        pts = sorted((done[i]["test/gflops_avg"], done[i]["test/clip_top1"]) for i in front)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "--", color="tab:orange", label="sweep Pareto front")
        for r in done:
            ax.annotate(f"λ={r.get('lambda_e', float('nan')):g}", (r["test/gflops_avg"], r["test/clip_top1"]),
                        fontsize=7, textcoords="offset points", xytext=(3, -9))
    if static:
        ax.scatter([static["gflops_avg"]], [static["clip_top1"]], color="black", marker="*", s=80,
                   label="static model")
    ax.set_xlabel(f"GFLOPs avg per clip ({NOTE})")
    ax.set_ylabel("clip-1")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return save_figure(fig, path, "clip-1 against GFLOPs: one VA-RED² model across budgets, and the sweep")


def write_curve(rows: list[dict], out_dir: Path, **plot_args) -> list[Path]:
    from jobs.evaluate import budget_table

    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "budget_curve.png"
    plot_curve(rows, png, **plot_args)
    md = out_dir / "budget_curve.md"
    md.write_text(f"{NOTE}; budget = target fraction of the static model's GFLOPs\n\n```\n"
                  f"{budget_table(rows)}\n```\n", encoding="utf-8")
    table = out_dir / "budget_curve.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [png, md, table]


def log_curve(tracker: Tracker, run_id: str, rows: list[dict], **plot_args) -> list[Path]:
    """Write the curve's files and log them (and per-budget metrics) to `run_id`."""
    out = Path(tempfile.mkdtemp(prefix="vared2-budget-"))
    files = write_curve(rows, out, **plot_args)
    for path in files:
        tracker.log_artifact(run_id, path, "budget")
    metrics = {}
    for r in rows:
        key = f"{r['target']:.2f}"
        metrics.update({f"budget/{key}/gflops_avg": r["gflops_avg"], f"budget/{key}/clip_top1": r["clip_top1"],
                        f"budget/{key}/video_top1": r["video_top1"]})
    tracker.log_metrics(run_id, metrics, step=0)
    return files


def curve_lines(metrics: dict[str, float]) -> list[str]:
    """`budget/B/...` metrics of a run as lines `budget B: GFLOPs g, clip-1 a` (registry compare)."""
    budgets = sorted({k.split("/")[1] for k in metrics if k.startswith("budget/") and k.count("/") == 2},
                     key=float)
    return [f"budget {b}: GFLOPs {metrics.get(f'budget/{b}/gflops_avg', float('nan')):.4f}, "
            f"clip-1 {metrics.get(f'budget/{b}/clip_top1', float('nan')):.3f}" for b in budgets]
