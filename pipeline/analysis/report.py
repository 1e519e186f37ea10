"""One Markdown report stitching every analysis artifact: images (relative links) and numbers."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.analysis.figures import Figure

NOTE = "GFLOPs are multiply-accumulates (MACs) of conv and linear layers per clip, as in the paper and fvcore."


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _image(fig: Figure, out_dir: Path) -> list[str]:
    rel = os.path.relpath(fig.path, out_dir)
    return [f"![{fig.caption}]({rel})", "", f"*{fig.caption}* ({fig.width}x{fig.height} px)", ""]


def write_report(out_dir: str | Path, *, title: str, meta: dict, cost: dict | None = None,
                 policy: dict | None = None, clips: dict | None = None, redundancy: dict | None = None,
                 baselines: dict | None = None, adaptivity: dict | None = None) -> Path:
    """`report.md` in `out_dir`; each section is the dict a `write_*` function of this package returned."""
    out_dir = Path(out_dir)
    lines = [f"# {title}", "", NOTE, ""]
    lines += _table(["item", "value"], [[k, v] for k, v in meta.items()])
    if cost:
        s = cost["summary"]
        lines += ["## Per-clip cost", ""]
        lines += _table(["set", "clips", "GFLOPs avg", "max", "min", "% of static"],
                        [["all", s["num_clips"], s["gflops_avg"], s["gflops_max"], s["gflops_min"],
                          s["cost_percent_avg"]]]
                        + [[c, v["num_clips"], v["gflops_avg"], v["gflops_max"], v["gflops_min"],
                            v["cost_percent_avg"]] for c, v in s["per_class"].items()])
        lines += [f"Static model: {s['static_gflops']:.4g} GFLOPs per clip.", ""]
        for fig in cost["figures"]:
            lines += _image(fig, out_dir)
    if adaptivity:
        a = adaptivity["summary"]
        lines += ["## Does the cost follow the clip's redundancy?", "",
                  "Redundancy of a clip: mean correlation of its adjacent frames (1 = a still image).", ""]
        lines += _table(["Spearman(redundancy, compute spared)", "most redundant quarter: cost",
                         "least redundant quarter: cost", "ratio", "clips"],
                        [[a["spearman"], a["most_redundant_cost"], a["least_redundant_cost"],
                          a["quartile_cost_ratio"], a["num_clips"]]])
        lines += _table(["class", "mean redundancy", "mean cost (fraction of static)"],
                        [[c, v["redundancy"], v["cost_ratio"]] for c, v in
                         sorted(a["per_class"].items(), key=lambda kv: -kv[1]["redundancy"])])
        for fig in adaptivity["figures"]:
            lines += _image(fig, out_dir)
    if policy:
        lines += ["## Policy map", "", "Ratio of computed features per block (all classes; 1 = static).", ""]
        lines += _table(["block", "channel", "temporal", "combined"],
                        [[b, v["channel"], v["temporal"], v["combined"]] for b, v in policy["blocks"].items()])
        for fig in policy["figures"]:
            lines += _image(fig, out_dir)
    if clips:
        lines += ["## Cheapest and costliest clips", ""]
        t = clips["table"].to_pydict()
        lines += _table(["class", "kind", "key", "GFLOPs", "% of static"],
                        [[t["class_name"][i], t["kind"][i], t["key"][i], t["gflops"][i], t["cost_percent"][i]]
                         for i in range(len(t["key"]))])
        for fig in clips["figures"]:
            lines += _image(fig, out_dir)
    if redundancy:
        lines += ["## Redundancy of the static model (METHOD.md section 10)", ""]
        lines += _table(["axis", "CC", "RMSE", "RP", "pairs"],
                        [[a, v["cc"], v["rmse"], v["rp"], v["num_pairs"]] for a, v in redundancy["overall"].items()])
        lines += ["Paper (Kinetics-400, I3D, temporal): CC 0.81, RMSE 0.074, RP 0.68.", ""]
        for fig in redundancy["figures"]:
            lines += _image(fig, out_dir)
    if baselines:
        lines += ["## Matching baselines", ""]
        lines += _table(["item", "value"], [[k, v] for k, v in baselines.items()])
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
