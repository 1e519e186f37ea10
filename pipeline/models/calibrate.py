"""Data-driven starts and repairs of a converted model (ours; METHOD.md sections 3, 4 and 8b).

- `calibrate_conversion`: right after a static model is converted, run it at full compute on a few
  training clips and (1) give every channel cheap op, for each map it rebuilds, the computed map
  that predicts the original filter's output best, with a least-squares depthwise 3x3 kernel and
  bias, and (2) set each gate's BatchNorm statistics from the real gate inputs. So a converted
  layer starts close to the static one for every choice, not only for "full".
- `recalibrate_batchnorm`: re-estimate the backbone's BatchNorm running statistics under the hard
  policy (what inference runs), no gradient. Training statistics come from another mixture of
  computed and rebuilt maps (soft mixing scales a layer's output by the raw gate sums), and one
  no-gradient pass removes that mismatch.

Pure torch; the callers pass the clips (tensors (B, C, T, H, W)).
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.convert import dynamic_layers
from pipeline.models.dynamic_conv import DynamicConvBase

# Ridge added to the kernel terms of each least-squares fit, relative to their mean energy.
RIDGE = 1e-3


def _maps_2d(y: Tensor) -> Tensor:
    """(B, C, T, H, W) or (B, C, H, W) -> (B * T, C, H, W)."""
    if y.dim() == 4:
        return y
    b, c, t, h, w = y.shape
    return y.transpose(1, 2).reshape(b * t, c, h, w)


class _ChannelStats:
    """Sums for least-squares fits of every channel from every other one through a 3x3 kernel and a
    bias: G[s] = sum p_s p_s^T (10 x 10, p_s = the 3x3 patch of map s and a 1), X[s, g] = sum p_s y_g,
    plus sum y_g and sum y_g^2, over sampled positions."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.gram = torch.zeros(channels, 10, 10, dtype=torch.float64)
        self.cross = torch.zeros(channels, channels, 10, dtype=torch.float64)
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.sq = torch.zeros(channels, dtype=torch.float64)
        self.count = 0

    def add(self, y: Tensor, positions: int, generator: torch.Generator) -> None:
        maps = _maps_2d(y.detach().float())  # (N, C, H, W)
        n, c, h, w = maps.shape
        patches = F.unfold(maps, 3, padding=1).view(n, c, 9, h * w)  # (N, C, 9, HW)
        patches = patches.permute(0, 3, 1, 2).reshape(n * h * w, c, 9)  # (P, C, 9)
        take = torch.randperm(patches.shape[0], generator=generator)[:positions]
        p = torch.cat([patches[take], patches.new_ones(len(take), c, 1)], dim=2).double()  # (P, C, 10)
        target = p[:, :, 4]  # the centre tap is the map itself: (P, C)
        self.gram += torch.einsum("psk,psl->skl", p, p)
        self.cross += torch.einsum("psk,pg->sgk", p, target)
        self.sum += target.sum(0)
        self.sq += (target * target).sum(0)
        self.count += len(take)

    def fit(self, sources: range, targets: range) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For each target map, the best source among `sources`: (source (G,), kernel (G, 3, 3),
        bias (G,), explained variance R^2 (G,))."""
        s_idx = torch.tensor(list(sources))
        t_idx = torch.tensor(list(targets))
        gram = self.gram[s_idx].clone()  # (S, 10, 10)
        energy = gram[:, :9, :9].diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12)  # (S,)
        gram[:, :9, :9] += RIDGE * energy[:, None, None] * torch.eye(9, dtype=gram.dtype)
        cross = self.cross[s_idx][:, t_idx]  # (S, G, 10)
        coef = torch.linalg.solve(gram[:, None].expand(-1, len(t_idx), -1, -1), cross[..., None])[..., 0]
        explained = (coef * cross).sum(-1)  # (S, G): c^T G^-1 c
        best = explained.argmax(dim=0)  # (G,)
        chosen = coef[best, torch.arange(len(t_idx))]  # (G, 10)
        n = max(self.count, 1)
        total = self.sq[t_idx] - self.sum[t_idx] ** 2 / n
        residual = self.sq[t_idx] - explained[best, torch.arange(len(t_idx))]
        r2 = 1 - residual / total.clamp_min(1e-12)
        return s_idx[best], chosen[:, :9].reshape(-1, 3, 3), chosen[:, 9], r2


class _GateStats:
    """Mean and variance of a gate's FC1 outputs (what its BatchNorm normalises)."""

    def __init__(self) -> None:
        self.sum = self.sq = None
        self.count = 0

    def add(self, layer: DynamicConvBase, x: Tensor) -> None:
        h = layer.gate.fc1(layer.gate.features(x.detach())).double()  # (B, hidden)
        self.sum = h.sum(0) if self.sum is None else self.sum + h.sum(0)
        self.sq = (h * h).sum(0) if self.sq is None else self.sq + (h * h).sum(0)
        self.count += h.shape[0]


@torch.no_grad()
def calibrate_conversion(model: nn.Module, clips: Iterable[Tensor], *, positions: int = 4096,
                         seed: int = 0) -> dict[str, float]:
    """Fit the channel cheap ops and set the gate BatchNorm statistics of `model`'s dynamic layers
    from the static outputs on `clips`; returns {layer name: mean R^2 of its ratio-1/2 rebuilt maps}
    (or of its coarsest ratio). The model must still compute like the static one (just converted)."""
    layers = dynamic_layers(model)
    if not layers:
        return {}
    generator = torch.Generator().manual_seed(seed)
    channel = {name: _ChannelStats(layer.out_channels) for name, layer in layers if layer.has_channel}
    gates = {name: _GateStats() for name, _ in layers}
    was_training = model.training
    saved = [(layer, layer.execution, layer.forced) for _, layer in layers]
    handles = []
    for name, layer in layers:
        layer.execution, layer.forced = "hard", (0, 0)

        def hook(module, inputs, output, name=name):
            gates[name].add(module, inputs[0])
            if name in channel:
                channel[name].add(output, positions, generator)
        handles.append(layer.register_forward_hook(hook))
    model.eval()
    seen = 0
    try:
        for x in clips:
            model(x)
            seen += 1
    finally:
        for h in handles:
            h.remove()
        for layer, execution, forced in saved:
            layer.execution, layer.forced = execution, forced
        model.train(was_training)
    if seen == 0:
        raise ValueError("calibrate_conversion got no clips")
    quality: dict[str, float] = {}
    for name, layer in layers:
        g = gates[name]
        mean = g.sum / g.count
        var = (g.sq / g.count - mean * mean).clamp_min(0) * g.count / max(g.count - 1, 1)
        bn = layer.gate.bn
        bn.running_mean.copy_(mean.to(bn.running_mean))
        bn.running_var.copy_(var.to(bn.running_var))
        bn.num_batches_tracked.fill_(1)
        if name not in channel:
            continue
        for op in layer.channel_ops:
            if op.new == 0:
                continue
            source, kernel, bias, r2 = channel[name].fit(range(op.computed), range(op.computed, op.out_channels))
            op.source.copy_(source.to(op.source))
            op.weight.copy_(kernel.to(op.weight))
            op.bias.copy_(bias.to(op.bias))
            quality[name] = float(r2.mean())  # the last op is the coarsest ratio
    return quality


def _is_gate_norm(name: str) -> bool:
    return ".gate." in f".{name}."


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, clips: Iterable[Tensor]) -> int:
    """Re-estimate the running statistics of every BatchNorm outside the gates as the plain average
    over `clips`, with the dynamic layers in hard mode; returns the number of batches used (0 leaves
    the model unchanged). Gate BatchNorms keep theirs: they are part of the learned decisions."""
    norms = [m for name, m in model.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
             and not _is_gate_norm(name)]
    clips = iter(clips)
    first = next(clips, None)
    if first is None or not norms:
        return 0
    layers = [layer for _, layer in dynamic_layers(model)]
    saved_exec = [layer.execution for layer in layers]
    saved_momentum = [m.momentum for m in norms]
    was_training = model.training
    state = {id(m): (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.eval()  # gates, dropout and every other module as at inference ...
    for m in norms:
        m.train()  # ... but these norms average their batch statistics
    for layer in layers:
        layer.execution = "hard"
    count = 0
    try:
        model(first)
        count += 1
        for x in clips:
            model(x)
            count += 1
    except BaseException:
        for m in norms:
            mean, var, tracked = state[id(m)]
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(tracked)
        raise
    finally:
        for m, momentum in zip(norms, saved_momentum):
            m.momentum = momentum
        for layer, execution in zip(layers, saved_exec):
            layer.execution = execution
        model.train(was_training)
    return count
