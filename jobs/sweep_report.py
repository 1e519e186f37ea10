"""The sweep's report on its MLflow parent run: a Pareto plot and a table of every trial.

`pareto.png`: accuracy against GFLOPs avg for every trial (ASHA-stopped ones hollow, evaluated
from their last checkpoint), the front highlighted and joined, the static baseline as a star.
`trials.csv` / `trials.md`: one row per trial. Written under `{storage}/{sweep}.report/`; the sweep
logs them to its parent run under `sweep/`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.config import Config

COLUMNS = ["trial_id", "status", "on_front", "lambda_e", "S", "test/gflops_avg", "test/gflops_max",
           "test/gflops_min", "test/clip_top1", "test/video_top1", "epochs", "run_id", "overrides"]


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in sorted(value.items()))
    return "" if value is None else str(value)


def write_table(rows: list[dict], folder: Path) -> tuple[Path, Path]:
    csv_path, md_path = folder / "trials.csv", folder / "trials.md"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in COLUMNS])
    md = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(_cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    md_path.write_text("\n".join(md) + "\n")
    return csv_path, md_path


def plot(rows: list[dict], path: Path, *, objective: str, static: dict | None = None,
         title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = f"test/{objective}"
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    done = [r for r in rows if acc in r and "test/gflops_avg" in r]
    for stopped in (False, True):
        pts = [r for r in done if (r["status"] != "completed") == stopped and not r.get("on_front")]
        ax.scatter([r["test/gflops_avg"] for r in pts], [r[acc] for r in pts], s=36,
                   facecolors="none" if stopped else "tab:gray", edgecolors="tab:gray",
                   label="stopped early (ASHA)" if stopped else "trial")
    front = sorted((r for r in done if r.get("on_front")), key=lambda r: r["test/gflops_avg"])
    ax.plot([r["test/gflops_avg"] for r in front], [r[acc] for r in front], "-o", color="tab:red",
            label="Pareto front", zorder=3)
    for r in done:
        ax.annotate(f"λ={r['lambda_e']:.3g} S={r['S']}", (r["test/gflops_avg"], r[acc]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    if static and acc in static:
        ax.scatter([static["test/gflops_avg"]], [static[acc]], marker="*", s=160, color="tab:blue",
                   label="static baseline", zorder=4)
    ax.set_xlabel("GFLOPs avg per clip (hard policy, MACs)")
    ax.set_ylabel(objective.replace("_top1", "-1"))
    ax.set_title(title or "accuracy vs computation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(cfg: Config, rows: list[dict], *, static: dict | None, name: str) -> dict:
    folder = Path(cfg.runtime.storage_path) / f"{name}.report"
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = write_table(rows, folder)
    png = plot(rows, folder / "pareto.png", objective=cfg.tune.objective, static=static,
               title=f"sweep {name}: {len(rows)} trials")
    return {"csv": csv_path, "md": md_path, "png": png}
