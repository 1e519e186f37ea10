"""How redundant video features are (METHOD.md section 10, the paper's "redundancy experiments"):
CC, RMSE and RP of the output maps of each residual-block conv of a static model, along time
(a channel's map at frame t vs t+1) and along channels (a map vs its most correlated other map of
the same frame), per layer and pooled over all pairs.

Degenerate maps (ours): a constant map has no Pearson correlation; a pair of constant maps of equal
value counts as CC 1, a pair with one constant map as CC 0. Min-max normalising a constant map
gives zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor, nn

from pipeline.analysis.figures import Figure, new_figure, save_figure, write_table
from pipeline.models import DynamicConvBase, default_dynamic_filter, dynamic_layers

TAU = 0.85  # RP threshold on CC (METHOD.md section 10)
AXES = ("temporal", "channel")
_EPS = 1e-8


@dataclass
class PairSums:
    """Running sums over pairs of maps: mean CC, mean RMSE and RP follow from them."""

    cc: float = 0.0
    rmse: float = 0.0
    above: int = 0
    pairs: int = 0

    def add(self, cc: Tensor, rmse: Tensor, tau: float) -> None:
        self.cc += float(cc.double().sum())
        self.rmse += float(rmse.double().sum())
        self.above += int((cc > tau).sum())
        self.pairs += int(cc.numel())

    def merge(self, other: "PairSums") -> None:
        self.cc, self.rmse = self.cc + other.cc, self.rmse + other.rmse
        self.above, self.pairs = self.above + other.above, self.pairs + other.pairs

    def metrics(self) -> dict[str, float]:
        n = max(self.pairs, 1)
        nan = float("nan")
        return {"cc": self.cc / n if self.pairs else nan, "rmse": self.rmse / n if self.pairs else nan,
                "rp": self.above / n if self.pairs else nan, "num_pairs": self.pairs}


def _standardise(maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """maps (..., P) -> (z-scores / sqrt(P) with zeros for constant maps, constant mask, mean)."""
    mean = maps.mean(dim=-1, keepdim=True)
    centred = maps - mean
    norm = centred.norm(dim=-1, keepdim=True)
    constant = norm[..., 0] <= _EPS * (1 + mean[..., 0].abs()) * maps.shape[-1] ** 0.5
    z = torch.where(constant[..., None], torch.zeros_like(centred), centred / norm.clamp_min(_EPS))
    return z, constant, mean[..., 0]


def _minmax(maps: Tensor) -> Tensor:
    lo, hi = maps.amin(dim=-1, keepdim=True), maps.amax(dim=-1, keepdim=True)
    span = hi - lo
    return torch.where(span > _EPS, (maps - lo) / span.clamp_min(_EPS), torch.zeros_like(maps))


def _same_constant(const_a: Tensor, mean_a: Tensor, const_b: Tensor, mean_b: Tensor) -> Tensor:
    return const_a & const_b & ((mean_a - mean_b).abs() <= 1e-6 * (1 + mean_a.abs()))


def temporal_pairs(y: Tensor) -> tuple[Tensor, Tensor]:
    """(CC, RMSE) of every (frame t, frame t+1) pair of the same channel. y (B, C, T, H, W)."""
    maps = y.flatten(3).float()  # (B, C, T, HW)
    z, const, mean = _standardise(maps)
    cc = (z[:, :, :-1] * z[:, :, 1:]).sum(-1)  # (B, C, T-1)
    cc = torch.where(_same_constant(const[:, :, :-1], mean[:, :, :-1], const[:, :, 1:], mean[:, :, 1:]),
                     torch.ones_like(cc), cc)
    norm = _minmax(maps)
    rmse = (norm[:, :, :-1] - norm[:, :, 1:]).pow(2).mean(-1).sqrt()
    return cc.flatten(), rmse.flatten()


def channel_pairs(y: Tensor) -> tuple[Tensor, Tensor]:
    """(CC, RMSE) of each map with its most correlated other map of the same frame.
    y (B, C, T, H, W) or (B, C, H, W)."""
    if y.dim() == 4:
        y = y.unsqueeze(2)
    maps = y.float().permute(0, 2, 1, 3, 4).flatten(3).flatten(0, 1)  # (B*T, C, HW)
    if maps.shape[1] < 2:
        return maps.new_zeros(0), maps.new_zeros(0)
    z, const, mean = _standardise(maps)
    corr = z @ z.transpose(1, 2)  # (B*T, C, C)
    same = _same_constant(const[:, :, None], mean[:, :, None], const[:, None, :], mean[:, None, :])
    corr = torch.where(same, torch.ones_like(corr), corr)
    eye = torch.eye(corr.shape[1], dtype=torch.bool, device=corr.device)
    cc, partner = corr.masked_fill(eye, -float("inf")).max(dim=2)  # (B*T, C)
    norm = _minmax(maps)
    matched = torch.gather(norm, 1, partner[..., None].expand_as(norm))
    rmse = (norm - matched).pow(2).mean(-1).sqrt()
    return cc.flatten(), rmse.flatten()


def redundancy_of(y: Tensor, tau: float = TAU) -> dict[str, dict[str, float]]:
    """{axis: {cc, rmse, rp, num_pairs}} of one feature tensor (B, C, T, H, W)."""
    out = {}
    for axis, fn in (("temporal", temporal_pairs), ("channel", channel_pairs)):
        sums = PairSums()
        if axis == "channel" or (y.dim() == 5 and y.shape[2] > 1):
            sums.add(*fn(y), tau)
        out[axis] = sums.metrics()
    return out


def analysed_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose outputs are measured: the dynamic layers, or in a static model the convs
    VA-RED² would make dynamic (METHOD.md section 7), or the convs a baseline pruned or gated."""
    dynamic = dynamic_layers(model)
    if dynamic:
        return dynamic
    if hasattr(model, "layer_names"):  # a baseline of pipeline.models.baselines: its swapped convs
        return [(n, model.backbone.get_submodule(n)) for n in model.layer_names]
    return [(n, m) for n, m in model.named_modules()
            if type(m) in (nn.Conv3d, nn.Conv2d) and default_dynamic_filter(n, m)]


@torch.no_grad()
def measure_redundancy(model: nn.Module, batches: Iterable, *, tau: float = TAU, max_clips: int = 16,
                       device: torch.device | str = "cpu") -> pa.Table:
    """Run `model` over up to `max_clips` clips and measure every analysed layer's outputs. A dynamic
    model runs with every layer forced to its full variant (r = 1, R = 1), i.e. as the static model."""
    if not 0 < tau < 1:
        raise ValueError(f"tau={tau} must lie in (0, 1)")
    layers = analysed_layers(model)
    if not layers:
        raise ValueError("the model has no conv layer to analyse")
    sums = {(name, axis): PairSums() for name, _ in layers for axis in AXES}
    saved = [(layer, layer.forced, layer.execution) for _, layer in layers if isinstance(layer, DynamicConvBase)]

    def hook(name):
        def fn(_module, _inputs, output):
            for axis, pairs in (("temporal", temporal_pairs), ("channel", channel_pairs)):
                if axis == "channel" or (output.dim() == 5 and output.shape[2] > 1):
                    sums[(name, axis)].add(*pairs(output), tau)
        return fn

    handles = [layer.register_forward_hook(hook(name)) for name, layer in layers]
    model.eval()
    seen = 0
    try:
        for layer, _, _ in saved:
            layer.forced, layer.execution = (0, 0), "hard"
        for batch in batches:
            valid = torch.as_tensor(getattr(batch, "valid", torch.ones(len(batch.keys), dtype=torch.bool)))
            clips = batch.clips[valid][:max_clips - seen]
            if len(clips):
                model(clips.to(device))
                seen += len(clips)
            if seen >= max_clips:
                break
    finally:
        for h in handles:
            h.remove()
        for layer, forced, execution in saved:
            layer.forced, layer.execution = forced, execution
    if seen == 0:
        raise ValueError("the redundancy analysis got no clips: is the evaluation split empty?")
    return redundancy_table(layers, sums, tau, seen)


def redundancy_table(layers, sums: dict[tuple[str, str], PairSums], tau: float, num_clips: int) -> pa.Table:
    rows = {k: [] for k in ("layer", "position", "axis", "cc", "rmse", "rp", "num_pairs", "tau", "num_clips")}

    def add(layer: str, position: int, axis: str, s: PairSums) -> None:
        m = s.metrics()
        for key, value in (("layer", layer), ("position", position), ("axis", axis), ("cc", m["cc"]),
                           ("rmse", m["rmse"]), ("rp", m["rp"]), ("num_pairs", m["num_pairs"]),
                           ("tau", tau), ("num_clips", num_clips)):
            rows[key].append(value)

    for axis in AXES:
        pooled = PairSums()
        for position, (name, _) in enumerate(layers):
            short = name[len("backbone."):] if name.startswith("backbone.") else name
            add(short, position, axis, sums[(name, axis)])
            pooled.merge(sums[(name, axis)])
        add("overall", -1, axis, pooled)  # every pair of every layer counted once
    return pa.table(rows)


def plot_redundancy(table: pa.Table, path: str | Path) -> Figure:
    data = table.to_pydict()
    layers = list(dict.fromkeys(l for l in data["layer"] if l != "overall"))
    fig, axes = new_figure(max(800, 200 + 18 * len(layers)), 640, nrows=2, ncols=1, constrained_layout=True)
    tau = data["tau"][0]
    for ax, axis in zip(axes[:, 0], AXES):
        idx = [i for i, (l, a) in enumerate(zip(data["layer"], data["axis"])) if a == axis and l != "overall"]
        overall = next(i for i, (l, a) in enumerate(zip(data["layer"], data["axis"])) if a == axis and l == "overall")
        x = np.arange(len(idx))
        for metric, style in (("cc", "o-"), ("rmse", "s-"), ("rp", "^-")):
            ax.plot(x, [data[metric][i] for i in idx], style, markersize=3,
                    label=f"{metric.upper()} (overall {data[metric][overall]:.3f})")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xticks(x, [data["layer"][i] for i in idx] if axis == AXES[-1] else [""] * len(idx),
                      rotation=90, fontsize=6)
        ax.set_title(f"{axis} redundancy per layer (RP: share of pairs with CC > {tau})", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    return save_figure(fig, path, f"Redundancy of the static model's conv outputs: CC, RMSE (min-max "
                                  f"normalised maps), RP at tau = {tau}")


def write_redundancy(table: pa.Table, out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    files = list(write_table(table, out_dir / "redundancy"))
    figure = plot_redundancy(table, out_dir / "redundancy.png")
    data = table.to_pydict()
    overall = {data["axis"][i]: {k: data[k][i] for k in ("cc", "rmse", "rp", "num_pairs")}
               for i, l in enumerate(data["layer"]) if l == "overall"}
    return {"table": table, "files": files, "figures": [figure], "overall": overall}
