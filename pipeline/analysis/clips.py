"""For which inputs the network saves (the paper's Figure 3): per class, the evaluation clips with
the lowest and highest per-clip cost, rendered as frame strips captioned with their cost in % of the
static model, plus a table of the chosen clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.analysis.collect import ExtremeClip, PolicyRecords
from pipeline.analysis.figures import Figure, class_label, new_figure, save_figure, write_table

MAX_FRAMES = 8  # frames shown per strip (uniformly spaced over the clip)
FRAME_PX = 96  # rendered height of one frame


def strip(frames: np.ndarray, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (H, k * (W + 2) - 2, 3): k <= max_frames uniformly spaced frames side by
    side with a 2-pixel white gap."""
    t = frames.shape[0]
    picks = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    h, w = frames.shape[1:3]
    out = np.full((h, len(picks) * (w + 2) - 2, 3), 255, np.uint8)
    for k, i in enumerate(picks):
        out[:, k * (w + 2):k * (w + 2) + w] = frames[i]
    return out


def extremes_table(records: PolicyRecords, class_names: list[str] | None = None) -> pa.Table:
    rows = {k: [] for k in ("class_index", "class_name", "kind", "rank", "key", "gflops", "cost_percent")}
    for kind, pools in (("cheapest", records.cheapest), ("costliest", records.costliest)):
        for c in sorted(pools):
            for rank, clip in enumerate(pools[c]):
                rows["class_index"].append(c)
                rows["class_name"].append(class_label(class_names, c))
                rows["kind"].append(kind)
                rows["rank"].append(rank)
                rows["key"].append(clip.key)
                rows["gflops"].append(clip.macs / 1e9)
                rows["cost_percent"].append(100.0 * clip.macs / records.static_macs)
    return pa.table(rows)


def plot_clip_strips(records: PolicyRecords, path: str | Path, class_names: list[str] | None = None) -> Figure:
    """One row per (class, cheapest / costliest clip): its frame strip and cost in % of static."""
    entries: list[tuple[str, ExtremeClip]] = []
    for c in sorted(set(records.cheapest) | set(records.costliest)):
        entries += [("cheapest", e) for e in records.cheapest.get(c, [])]
        entries += [("costliest", e) for e in records.costliest.get(c, [])]
    if not entries:
        raise ValueError("no clips were kept: collect_policies(..., extremes_per_class >= 1)")
    sample = strip(entries[0][1].frames)
    aspect = sample.shape[1] / sample.shape[0]
    row_h = FRAME_PX + 28
    width = int(max(480, FRAME_PX * aspect + 40))
    fig, axes = new_figure(width, row_h * len(entries) + 20, nrows=len(entries), ncols=1)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 10 / (row_h * len(entries) + 20), bottom=0.01,
                        hspace=0.35)
    for ax, (kind, clip) in zip(axes[:, 0], entries):
        ax.imshow(strip(clip.frames), interpolation="nearest")
        ax.set_axis_off()
        pct = 100.0 * clip.macs / records.static_macs
        ax.set_title(f"{class_label(class_names, clip.label)}: {kind}, {pct:.1f}% of static "
                     f"({clip.macs / 1e9:.3g} GMACs), {clip.key}", fontsize=8)
    return save_figure(fig, path, "Cheapest and costliest evaluation clips per class, cost in % of the "
                                  "static model (MACs)")


def write_clips(records: PolicyRecords, out_dir: str | Path, class_names: list[str] | None = None) -> dict:
    out_dir = Path(out_dir)
    table = extremes_table(records, class_names)
    files = list(write_table(table, out_dir / "extreme_clips"))
    figure = plot_clip_strips(records, out_dir / "extreme_clips.png", class_names)
    return {"table": table, "files": files, "figures": [figure]}
