"""How the per-clip cost spreads (METHOD.md section 6): a histogram of per-clip GFLOPs (MACs) of the
hard policy with the static model marked, and a per-class box plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.analysis.collect import PolicyRecords
from pipeline.analysis.figures import Figure, class_label, new_figure, save_figure


def cost_summary(records: PolicyRecords, class_names: list[str] | None = None) -> dict:
    """GFLOPs avg / max / min over the set and per class, plus the static model's figure."""
    g = records.macs / 1e9

    def stats(x: np.ndarray) -> dict[str, float]:
        return {"gflops_avg": float(x.mean()), "gflops_max": float(x.max()), "gflops_min": float(x.min()),
                "gflops_std": float(x.std()), "num_clips": int(x.size),
                "cost_percent_avg": float(100.0 * x.mean() * 1e9 / records.static_macs)}

    per_class = {class_label(class_names, int(c)): stats(g[records.labels == c])
                 for c in sorted(set(records.labels.tolist()))}
    return {"static_gflops": records.static_macs / 1e9, **stats(g), "per_class": per_class}


def plot_cost_distribution(records: PolicyRecords, path: str | Path,
                           class_names: list[str] | None = None) -> Figure:
    g = records.macs / 1e9
    static = records.static_macs / 1e9
    classes = sorted(set(records.labels.tolist()))
    fig, axes = new_figure(max(900, 500 + 40 * len(classes)), 420, nrows=1, ncols=2, constrained_layout=True)
    hist, box = axes[0]
    bins = min(40, max(5, int(np.sqrt(g.size))))
    hist.hist(g, bins=bins, color="tab:blue", edgecolor="white")
    hist.axvline(static, color="tab:red", linestyle="--", label=f"static {static:.3g}")
    hist.axvline(g.mean(), color="black", label=f"mean {g.mean():.3g}")
    hist.set_xlabel("GFLOPs (GMACs) per clip")
    hist.set_ylabel("clips")
    hist.set_title(f"{g.size} clips: avg {g.mean():.3g}, max {g.max():.3g}, min {g.min():.3g}", fontsize=9)
    hist.legend(fontsize=8)
    box.boxplot([g[records.labels == c] for c in classes], showmeans=True)
    box.set_xticks(range(1, len(classes) + 1), [class_label(class_names, c) for c in classes],
                   rotation=45, ha="right", fontsize=7)
    box.axhline(static, color="tab:red", linestyle="--")
    box.set_ylabel("GFLOPs (GMACs) per clip")
    box.set_title("per class", fontsize=9)
    return save_figure(fig, path, "Per-clip cost of the hard policy (GFLOPs = multiply-accumulates); "
                                  "dashed: the static model")


def write_cost_distribution(records: PolicyRecords, out_dir: str | Path,
                            class_names: list[str] | None = None) -> dict:
    figure = plot_cost_distribution(records, Path(out_dir) / "cost_distribution.png", class_names)
    return {"summary": cost_summary(records, class_names), "figures": [figure]}
