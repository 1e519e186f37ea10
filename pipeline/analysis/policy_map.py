"""Where the network saves (the paper's Figure 4): per class and per dynamic layer / residual block,
the ratio of computed features (channel, temporal, combined) averaged over the clips of an
evaluation set, as a table and a classes x layers heatmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.analysis.collect import PolicyRecords
from pipeline.analysis.figures import Figure, class_label, new_figure, save_figure, write_table

AXES = ("channel", "temporal", "combined")
LEVELS = ("layer", "block")


def unit_ratios(records: PolicyRecords, level: str = "layer") -> tuple[list[str], dict[str, np.ndarray]]:
    """(unit names, {axis: (N, U) per-clip ratios}). A block's ratio is the MAC-weighted mean of its
    layers' ratios (weights = the layers' static MACs), so a block's combined ratio is exactly the
    fraction of its conv MACs that ran."""
    if level not in LEVELS:
        raise ValueError(f"level={level!r} is not valid; choose one of {LEVELS}")
    per_layer = {"channel": records.channel_ratio, "temporal": records.temporal_ratio,
                 "combined": records.combined_ratio}
    if level == "layer":
        return [l.name for l in records.layers], per_layer
    blocks = list(dict.fromkeys(l.block for l in records.layers))
    weights = np.zeros((len(records.layers), len(blocks)))
    for i, layer in enumerate(records.layers):
        weights[i, blocks.index(layer.block)] = layer.full_macs
    weights /= weights.sum(axis=0, keepdims=True)
    return blocks, {axis: ratio @ weights for axis, ratio in per_layer.items()}


def policy_table(records: PolicyRecords, class_names: list[str] | None = None) -> pa.Table:
    """Long table, one row per (level, class, unit): mean ratios over the class's clips, the
    class's mean per-clip cost in % of the static model, and the clip count. Class -1 is "all"."""
    columns: dict[str, list] = {k: [] for k in ("level", "class_index", "class_name", "unit", "position",
                                                "num_clips", *AXES, "cost_percent")}
    classes = [-1, *sorted(set(records.labels.tolist()))]
    cost = 100.0 * records.cost_ratio
    for level in LEVELS:
        units, ratios = unit_ratios(records, level)
        for c in classes:
            rows = np.ones(records.num_clips, bool) if c < 0 else records.labels == c
            for u, unit in enumerate(units):
                columns["level"].append(level)
                columns["class_index"].append(int(c))
                columns["class_name"].append(class_label(class_names, c))
                columns["unit"].append(unit)
                columns["position"].append(u)
                columns["num_clips"].append(int(rows.sum()))
                for axis in AXES:
                    columns[axis].append(float(ratios[axis][rows, u].mean()))
                columns["cost_percent"].append(float(cost[rows].mean()))
    return pa.table(columns)


def ratio_matrix(table: pa.Table, level: str, axis: str) -> tuple[list[str], list[str], np.ndarray]:
    """(row names = classes, column names = units, (classes, units) matrix) of one axis."""
    if axis not in AXES:
        raise ValueError(f"axis={axis!r} is not valid; choose one of {AXES}")
    data = table.filter(pc.equal(table["level"], level)).to_pydict()
    classes = list(dict.fromkeys(data["class_name"]))
    units = list(dict.fromkeys(data["unit"]))
    matrix = np.full((len(classes), len(units)), np.nan)
    for name, unit, value in zip(data["class_name"], data["unit"], data[axis]):
        matrix[classes.index(name), units.index(unit)] = value
    return classes, units, matrix


def plot_policy_map(table: pa.Table, path: str | Path, level: str = "layer") -> Figure:
    """Three stacked heatmaps (channel, temporal, combined), classes x units, colour = ratio in [0, 1]."""
    classes, units, _ = ratio_matrix(table, level, "combined")
    width = int(max(640, 260 + 22 * len(units)))
    row_h = int(max(140, 60 + 18 * len(classes)))
    fig, axes = new_figure(width, 3 * row_h + 120, nrows=3, ncols=1, constrained_layout=True)
    for ax, axis in zip(axes[:, 0], AXES):
        _, _, matrix = ratio_matrix(table, level, axis)
        im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xticks(range(len(units)), units if axis == "combined" else [""] * len(units),
                      rotation=90, fontsize=6)
        ax.set_title(f"{axis} ratio of computed features", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    return save_figure(fig, path, f"Policy map per {level}: ratio of computed features per class "
                                  "(1 = the static layer's full output)")


def write_policy_map(records: PolicyRecords, out_dir: str | Path,
                     class_names: list[str] | None = None) -> dict:
    """policy_map.parquet / .csv and one heatmap per level under `out_dir`."""
    out_dir = Path(out_dir)
    table = policy_table(records, class_names)
    parquet, csv = write_table(table, out_dir / "policy_map")
    figures = [plot_policy_map(table, out_dir / f"policy_map_{level}.png", level) for level in LEVELS]
    overall = table.filter(pc.and_(pc.equal(table["level"], "block"),
                                           pc.equal(table["class_index"], -1))).to_pydict()
    summary = {unit: {axis: overall[axis][i] for axis in AXES} for i, unit in enumerate(overall["unit"])}
    return {"table": table, "files": [parquet, csv], "figures": figures, "blocks": summary}
