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

BatchNorm statistics per budget (ours, as slimmable networks keep them per width): the backbone's
BatchNorm layers were trained under the trained policy, and a policy shifted far from it feeds them
maps with other statistics (measured on the demo model: budget 1.0, every layer at full compute,
lost 5.5 points to the trained point). With `norms=True` the calibration also re-estimates the
backbone's BatchNorm running statistics under each shifted offset's policy on the same clips (and
under the full policy for budget 1.0; offset 0, the trained policy, keeps the trained statistics),
measures the cost with them, and keeps them in the model's
`budget_norms` buffer; `set_budget` interpolates them like the offset, and `set_budget(None)` puts
the trained statistics back. The gates' own BatchNorm is left alone: it decides, it is not decided.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from pipeline.models.convert import clear_policy, dynamic_layers, force_policy

TABLE_POINTS = 16  # rows of the calibration table (offsets measured at most)
# Rows of `budget_norms`: one per table row, then the full policy (budget 1.0), then the trained
# statistics (what `set_budget(None)` restores).
NORM_ROWS = TABLE_POINTS + 2
FULL = 1.0


def _layers(model: nn.Module):
    layers = [layer for _, layer in dynamic_layers(model)]
    if not layers:
        raise ValueError("this model has no dynamic layers: its cost is fixed, it takes no budget")
    return layers


def set_offset(model: nn.Module, offset: float) -> None:
    for layer in _layers(model):
        layer.budget_offset = float(offset)


def norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The backbone's BatchNorm layers with running statistics, in module order, without the gates'."""
    gate_modules = {id(m) for _, layer in dynamic_layers(model) for m in layer.gate.modules()}
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats and id(m) not in gate_modules]


def norm_size(model: nn.Module) -> int:
    """Length of one row of `budget_norms`: every running mean and variance of `norm_layers`."""
    return sum(2 * m.num_features for m in norm_layers(model))


def get_norms(model: nn.Module) -> Tensor:
    """The running statistics of `norm_layers` as one vector (means and variances per layer)."""
    return torch.cat([torch.cat([m.running_mean, m.running_var]) for m in norm_layers(model)]).float()


def put_norms(model: nn.Module, norms: Tensor) -> None:
    at = 0
    for m in norm_layers(model):
        c = m.num_features
        m.running_mean.copy_(norms[at:at + c])
        m.running_var.copy_(norms[at + c:at + 2 * c])
        at += 2 * c


@torch.no_grad()
def estimate_norms(model: nn.Module, clips: list[Tensor]) -> Tensor:
    """The backbone's BatchNorm statistics re-estimated under the current policy (offset or forced)
    on `clips` (cumulative averages, as a no-gradient pass of training would see them); the
    model's own statistics are left as they were."""
    layers = norm_layers(model)
    kept = get_norms(model)
    momenta = [m.momentum for m in layers]
    model.eval()
    model.set_execution("hard")
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for x in clips:
            model(x)
        return get_norms(model)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
            m.eval()
        put_norms(model, kept)
        model.set_execution("auto")


def has_norms(model: nn.Module) -> bool:
    norms = getattr(model, "budget_norms", None)
    return isinstance(norms, Tensor) and norms.numel() > 0 and bool(norms[-1].abs().sum() > 0)


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
                     initial: int = 7, max_offset: float = 16.0, max_gap: float = 0.02,
                     norms: bool = True) -> Tensor:
    """Fill and return `model.budget_table` ((points, 2): offset, mean cost ratio on `clips`).

    Starts from `initial` offsets in [-max_offset, max_offset] (dense near 0, where the trained
    policy sits), then splits the interval with the largest jump in cost until no jump exceeds
    `max_gap` or `points` offsets are measured; rows beyond the measured ones repeat the last. The
    mean cost is made non-increasing in the offset (it is, up to the interplay of layers).
    `norms`: also re-estimate the backbone's BatchNorm statistics per offset (see the module
    docstring), which doubles the passes over `clips`; the costs are then measured with them."""
    clips = list(clips)
    if not clips:
        raise ValueError("calibrate_budget needs at least one batch of clips")
    if not 3 <= initial <= points:
        raise ValueError(f"initial={initial} must lie in [3, points={points}]")
    u = torch.linspace(-1.0, 1.0, initial, dtype=torch.float64)
    measured: dict[float, float] = {}
    stats: dict[float, Tensor] = {}
    if has_norms(model):  # recalibrating: start from the trained statistics
        put_norms(model, model.budget_norms[-1])
    trained = get_norms(model)

    def measure(off: float) -> None:
        set_offset(model, off)
        if norms:
            # The trained policy keeps the trained statistics (estimated over all of training, not
            # over the calibration clips: re-estimating them here cost the study's model 2.3 points
            # at its own cost); every shifted policy gets its own.
            stats[off] = trained if off == 0 else estimate_norms(model, clips)
            put_norms(model, stats[off])
        measured[off] = mean_cost(model, clips)[0]
        put_norms(model, trained)

    try:
        for off in (max_offset * u.abs().pow(2) * u.sign()).tolist():
            measure(0.0 if abs(off) < 1e-9 else off)  # the trained policy exactly, not 5e-32
        while len(measured) < points:
            offs = sorted(measured)
            gaps = [(measured[a] - measured[b], a, b) for a, b in zip(offs, offs[1:])]
            gap, a, b = max(gaps)
            if gap <= max_gap:
                break
            measure((a + b) / 2)
        if norms:
            force_policy(model, 0, 0)
            try:
                full = estimate_norms(model, clips)
            finally:
                clear_policy(model)
    finally:
        set_offset(model, 0.0)
        put_norms(model, trained)
    offs = sorted(measured)
    offs = offs + [offs[-1]] * (points - len(offs))
    table = torch.tensor([(o, measured[o]) for o in offs], dtype=torch.float64)
    table[:, 1] = torch.cummin(table[:, 1], dim=0).values  # non-increasing in the offset
    _store(model, "budget_table", table.float())
    if norms:
        _store(model, "budget_norms", torch.stack([*(stats[o] for o in offs), full, trained]))
    elif isinstance(getattr(model, "budget_norms", None), Tensor):
        model.budget_norms.zero_()  # not calibrated: set_budget leaves BatchNorm alone
    return table


def _store(model: nn.Module, name: str, value: Tensor) -> None:
    """Write `value` into the model's buffer `name` (replaced when its shape differs: a buffer
    assigned a tensor stays a buffer, so the state dict carries it)."""
    current = getattr(model, name, None)
    if isinstance(current, Tensor) and current.shape == value.shape:
        current.copy_(value)
    else:
        setattr(model, name, value)


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
    table = _reachable_table(model, budget)
    return _offset_at(table, *_locate(table, budget))


def _reachable_table(model: nn.Module, budget: float) -> Tensor:
    """The calibration table; ValueError naming the reachable range when `budget` lies outside it."""
    table = _table(model)
    low, high = reachable(model)
    if not low - 1e-9 <= budget <= high + 1e-9:
        raise ValueError(f"budget={budget:g} is out of reach: this model reaches {low:.3f} to {high:.3f} "
                         "of the static model's GFLOPs")
    return table


def _offset_at(table: Tensor, k: int, t: float) -> float:
    offsets = table[:, 0]
    return float(offsets[k - 1] + t * (offsets[k] - offsets[k - 1])) if k > 0 else float(offsets[0])


def _locate(table: Tensor, budget: float) -> tuple[int, float]:
    """(k, t): `budget` lies between rows k - 1 and k of the table, a fraction t of the way (k = 0:
    at or above the first row; the last row when below every row)."""
    offsets, costs = table[:, 0], table[:, 1]
    if budget >= costs[0]:
        return 0, 0.0
    for k in range(1, len(costs)):
        if costs[k] <= budget and offsets[k] > offsets[k - 1]:
            c0, c1 = float(costs[k - 1]), float(costs[k])
            return k, 0.0 if c0 == c1 else (c0 - budget) / (c0 - c1)
    return len(costs) - 1, 1.0 if len(costs) > 1 else 0.0


def set_budget(model: nn.Module, budget: float | None) -> None:
    """Run `model` at `budget` (fraction of the static model's GFLOPs; 1.0 = every layer at full
    compute, the static network's policy) from now on, with that budget's BatchNorm statistics when
    the calibration estimated them; None returns to the trained policy and statistics. ValueError
    names the reachable range."""
    norms = model.budget_norms if has_norms(model) else None
    if budget is None:
        clear_policy(model)
        set_offset(model, 0.0)
        if norms is not None:
            put_norms(model, norms[-1])
        return
    budget = float(budget)
    if budget >= FULL - 1e-9:
        if budget > FULL + 1e-9:
            low, high = reachable(model)
            raise ValueError(f"budget={budget:g} is out of reach: this model reaches {low:.3f} to {high:.3f} "
                             "of the static model's GFLOPs")
        set_offset(model, 0.0)
        force_policy(model, 0, 0)  # every layer at full compute: the static network's policy
        if norms is not None:
            put_norms(model, norms[-2])
        return
    table = _reachable_table(model, budget)
    k, t = _locate(table, budget)  # the offset and the statistics interpolate between the same rows
    clear_policy(model)
    set_offset(model, _offset_at(table, k, t))
    if norms is not None:
        put_norms(model, norms[k] if k == 0 else torch.lerp(norms[k - 1], norms[k], t))


def budget_fraction(model: nn.Module, budget: float, input_shape: tuple[int, ...], *, absolute: bool) -> float:
    """`budget` as a fraction of the static model's GFLOPs: itself, or GFLOPs per clip / static."""
    if not absolute:
        return budget
    return budget * 1e9 / model.static_macs(tuple(input_shape))
