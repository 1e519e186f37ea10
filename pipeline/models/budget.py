"""One checkpoint, any compute budget (ours): a GFLOPs knob for a trained VA-RED² model.

Every dynamic layer decides per clip by the argmax of its gate's choice probabilities. A budget
shifts all decisions by one global offset delta towards cheaper options: option k of a head scores
log p_k + delta * k (the options are ordered from full compute to cheapest). delta = 0 is the trained
policy; delta -> +inf runs every layer's cheapest variant; a budget of 1.0 runs the static model
exactly (every layer forced to its full variant). The decisions stay per clip: a redundant clip
still moves to the cheap options before a busy one does.

`calibrate_budget` measures, on calibration clips, the mean cost (fraction of the static model's
MACs) at a grid of offsets; the table is kept in the model's `budget_table` buffer, so it travels in
the checkpoint and the served model, and `set_budget` only interpolates it.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from pipeline.models.convert import clear_policy, dynamic_layers, force_policy

TABLE_POINTS = 16  # rows of the calibration table (offsets measured at most)
FULL = 1.0


def _layers(model: nn.Module):
    layers = [layer for _, layer in dynamic_layers(model)]
    if not layers:
        raise ValueError("this model has no dynamic layers: its cost is fixed, it takes no budget")
    return layers


def set_offset(model: nn.Module, offset: float) -> None:
    for layer in _layers(model):
        layer.budget_offset = float(offset)


@torch.no_grad()
def mean_cost(model: nn.Module, clips: list[Tensor]) -> tuple[float, Tensor]:
    """(mean cost ratio, per-clip cost ratios) of `model`'s hard policy on `clips`."""
    model.eval()
    model.set_execution("hard")
    ratios = []
    for x in clips:
        out = model(x)
        ratios.append(out.macs.double().cpu() / model.static_macs(tuple(x.shape[1:])))
    model.set_execution("auto")
    r = torch.cat(ratios)
    return float(r.mean()), r


@torch.no_grad()
def cheapest_ratio(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Cost of the cheapest policy (every layer's cheapest variant) as a fraction of static."""
    s = _layers(model)[0].search_space
    model.eval()
    force_policy(model, s - 1, s - 1)
    try:
        x = torch.zeros((1, *input_shape), device=next(model.parameters()).device)
        model.set_execution("hard")
        macs = float(model(x).macs[0])
    finally:
        clear_policy(model)
        model.set_execution("auto")
    return macs / model.static_macs(tuple(input_shape))


@torch.no_grad()
def calibrate_budget(model: nn.Module, clips: Iterable[Tensor], *, points: int = TABLE_POINTS,
                     initial: int = 7, max_offset: float = 16.0, max_gap: float = 0.02) -> Tensor:
    """Fill and return `model.budget_table` ((points, 2): offset, mean cost ratio on `clips`).

    Starts from `initial` offsets in [-max_offset, max_offset] (dense near 0, where the trained
    policy sits), then splits the interval with the largest jump in cost until no jump exceeds
    `max_gap` or `points` offsets are measured; rows beyond the measured ones repeat the last. The
    mean cost is made non-increasing in the offset (it is, up to the interplay of layers)."""
    clips = list(clips)
    if not clips:
        raise ValueError("calibrate_budget needs at least one batch of clips")
    if not 3 <= initial <= points:
        raise ValueError(f"initial={initial} must lie in [3, points={points}]")
    u = torch.linspace(-1.0, 1.0, initial, dtype=torch.float64)
    measured: dict[float, float] = {}

    def measure(off: float) -> None:
        set_offset(model, off)
        measured[off] = mean_cost(model, clips)[0]

    try:
        for off in (max_offset * u.abs().pow(2) * u.sign()).tolist():
            measure(off)
        while len(measured) < points:
            offs = sorted(measured)
            gaps = [(measured[a] - measured[b], a, b) for a, b in zip(offs, offs[1:])]
            gap, a, b = max(gaps)
            if gap <= max_gap:
                break
            measure((a + b) / 2)
    finally:
        set_offset(model, 0.0)
    offs = sorted(measured)
    rows = [(o, measured[o]) for o in offs] + [(offs[-1], measured[offs[-1]])] * (points - len(offs))
    table = torch.tensor(rows, dtype=torch.float64)
    table[:, 1] = torch.cummin(table[:, 1], dim=0).values  # non-increasing in the offset
    if isinstance(getattr(model, "budget_table", None), Tensor) and model.budget_table.shape == table.shape:
        model.budget_table.copy_(table)
    else:
        model.budget_table = table.float()
    return table


def reachable(model: nn.Module) -> tuple[float, float]:
    """(lowest, highest) budget, as fractions of the static model's GFLOPs, the model can meet."""
    table = _table(model)
    return float(table[:, 1].min()), FULL


def _table(model: nn.Module) -> Tensor:
    table = getattr(model, "budget_table", None)
    if table is None or table.numel() == 0 or not torch.isfinite(table).all() or float(table[0, 1]) <= 0:
        raise ValueError("this model has no budget calibration; run calibrate_budget (or `vared2 evaluate "
                         "--budget`, which calibrates on training clips) first")
    return table.double()


def offset_for(model: nn.Module, budget: float) -> float:
    """The offset whose calibrated mean cost equals `budget` (linear interpolation of the table)."""
    table = _table(model)
    low, high = reachable(model)
    if not low - 1e-9 <= budget <= high + 1e-9:
        raise ValueError(f"budget={budget:g} is out of reach: this model reaches {low:.3f} to {high:.3f} "
                         "of the static model's GFLOPs")
    offsets, costs = table[:, 0], table[:, 1]
    if budget >= costs[0]:
        return float(offsets[0])
    for k in range(1, len(costs)):
        if costs[k] <= budget and offsets[k] > offsets[k - 1]:
            c0, c1 = float(costs[k - 1]), float(costs[k])
            t = 0.0 if c0 == c1 else (c0 - budget) / (c0 - c1)
            return float(offsets[k - 1] + t * (offsets[k] - offsets[k - 1]))
    return float(offsets[-1])


def set_budget(model: nn.Module, budget: float | None) -> None:
    """Run `model` at `budget` (fraction of the static model's GFLOPs, 1.0 = the static model
    exactly) from now on; None returns to the trained policy. ValueError names the reachable range."""
    if budget is None:
        clear_policy(model)
        set_offset(model, 0.0)
        return
    budget = float(budget)
    if budget >= FULL - 1e-9:
        if budget > FULL + 1e-9:
            low, high = reachable(model)
            raise ValueError(f"budget={budget:g} is out of reach: this model reaches {low:.3f} to {high:.3f} "
                             "of the static model's GFLOPs")
        set_offset(model, 0.0)
        force_policy(model, 0, 0)  # the static model, bit for bit
        return
    offset = offset_for(model, budget)
    clear_policy(model)
    set_offset(model, offset)


def budget_fraction(model: nn.Module, budget: float, input_shape: tuple[int, ...], *, absolute: bool) -> float:
    """`budget` as a fraction of the static model's GFLOPs: itself, or GFLOPs per clip / static."""
    if not absolute:
        return budget
    return budget * 1e9 / model.static_macs(tuple(input_shape))
