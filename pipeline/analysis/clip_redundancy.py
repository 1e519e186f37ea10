"""How redundant each clip is in time, measured on the clip itself, and how a model's per-clip cost
follows it (the paper's claim: redundant inputs cost less).

A clip's redundancy (ours) is the mean Pearson correlation between adjacent frames of its luma
(the mean of the three channels as the model sees them): 1 for a still image, lower the more each
frame differs from the next (motion, flicker, cuts). A pair in which a frame is constant counts as
1 when both frames are equal, else 0. It needs no model, so it ranks clips the same way for every
model compared on them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_EPS = 1e-6


def clip_redundancy(clips: Tensor) -> Tensor:
    """(B, C, T, H, W) clips -> (B,) float64 mean adjacent-frame correlation (1 for T = 1)."""
    if clips.dim() != 5:
        raise ValueError(f"clip_redundancy expects (B, C, T, H, W); got shape {tuple(clips.shape)}")
    luma = clips.detach().double().mean(dim=1).flatten(2)  # (B, T, HW)
    if luma.shape[1] < 2:
        return luma.new_ones(luma.shape[0])
    centred = luma - luma.mean(dim=2, keepdim=True)
    a, b = centred[:, :-1], centred[:, 1:]
    num = (a * b).sum(dim=2)
    den = (a.pow(2).sum(dim=2) * b.pow(2).sum(dim=2)).sqrt()
    cc = num / den.clamp_min(_EPS)
    constant = den <= _EPS
    same = (luma[:, :-1] - luma[:, 1:]).abs().amax(dim=2) <= _EPS
    cc = torch.where(constant, same.double(), cc)
    return cc.mean(dim=1)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's correlation needs."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end - 1) / 2.0
            start = end
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long arrays (nan when either is constant)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("spearman needs two 1D arrays of the same length")
    if len(x) < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def redundancy_vs_cost(redundancy: np.ndarray, cost_ratio: np.ndarray) -> dict[str, float]:
    """How per-clip cost (fraction of the static model's MACs) follows per-clip redundancy:
    `spearman` between redundancy and the compute spared (1 - cost), the mean cost of the most and
    of the least redundant quarter of clips, and their ratio (below 1: redundant clips are cheaper)."""
    redundancy = np.asarray(redundancy, np.float64)
    cost = np.asarray(cost_ratio, np.float64)
    if redundancy.shape != cost.shape or len(cost) < 4:
        raise ValueError("redundancy_vs_cost needs at least 4 clips with one redundancy and one cost each")
    order = np.argsort(redundancy, kind="mergesort")
    quarter = max(1, len(cost) // 4)
    least, most = cost[order[:quarter]].mean(), cost[order[-quarter:]].mean()
    return {"spearman": spearman(redundancy, 1.0 - cost), "most_redundant_cost": float(most),
            "least_redundant_cost": float(least), "quartile_cost_ratio": float(most / least),
            "num_clips": int(len(cost))}


def write_redundancy_vs_cost(records, out_dir, class_names: list[str] | None = None) -> dict:
    """Scatter of per-clip cost against per-clip redundancy (one colour per class) with the numbers
    of `redundancy_vs_cost`; returns {"summary": ..., "figures": [...]}."""
    from pathlib import Path

    from pipeline.analysis.figures import class_label, new_figure, save_figure

    cost = records.cost_ratio
    summary = redundancy_vs_cost(records.redundancy, cost)
    per_class = {class_label(class_names, int(c)): {
        "redundancy": float(records.redundancy[records.labels == c].mean()),
        "cost_ratio": float(cost[records.labels == c].mean())} for c in sorted(set(records.labels.tolist()))}
    summary["per_class"] = per_class
    fig, axes = new_figure(640, 460, constrained_layout=True)
    ax = axes[0][0]
    for c in sorted(set(records.labels.tolist())):
        sel = records.labels == c
        ax.scatter(records.redundancy[sel], cost[sel], s=10, alpha=0.6, label=class_label(class_names, int(c)))
    ax.set_xlabel("clip redundancy (mean correlation of adjacent frames)")
    ax.set_ylabel("cost (fraction of the static model's GFLOPs)")
    ax.set_title(f"Spearman(redundancy, compute spared) = {summary['spearman']:.2f}; most / least redundant "
                 f"quarter cost {summary['quartile_cost_ratio']:.2f}x", fontsize=9)
    if len(per_class) <= 12:
        ax.legend(fontsize=7)
    figure = save_figure(fig, Path(out_dir) / "redundancy_vs_cost.png",
                         "Per-clip cost of the hard policy against the clip's temporal redundancy")
    return {"summary": summary, "figures": [figure]}
