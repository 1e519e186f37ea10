"""Weight-level magnitude pruning (Han et al., 2015), the paper's Table 7 baseline, pruned to a
target per-clip cost so it can be matched to a dynamic model's GFLOPs.

Cost model (ours, stated in every report): unstructured pruning, MACs counted as nonzero weights,
i.e. a conv with `nnz` nonzero weights producing P output positions costs nnz * P MACs (a dense conv:
weight.numel() * P, the usual count). The MACs fall only for a sparse kernel; dense PyTorch runs the
masked weights at full cost, so speed is not comparable, only GFLOPs.

Which weights: the convs VA-RED² would make dynamic (METHOD.md section 7), every one pruned to the
same sparsity s (Han et al.'s per-layer thresholds), with s chosen so that the removed MACs equal
static * (1 - macs_ratio). Stem, shortcut projections and classifier stay dense, as in VA-RED².
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.models.baselines.common import PRUNABLE, BaselineModel, output_positions
from pipeline.models.convert import default_dynamic_filter


class MaskedConv3d(nn.Conv3d):
    """nn.Conv3d that multiplies its weight by a fixed 0/1 `weight_mask` buffer; pruned weights get
    no gradient through the product and stay zero in effect."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_mask", torch.ones_like(self.weight, dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.weight_mask, self.bias)


class MaskedConv2d(nn.Conv2d):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_mask", torch.ones_like(self.weight, dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.weight_mask, self.bias)


def _masked_from(conv: nn.Module) -> nn.Module:
    cls = MaskedConv3d if isinstance(conv, nn.Conv3d) else MaskedConv2d
    new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
              dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
              padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    new.weight, new.bias = conv.weight, conv.bias  # share the Parameters (optimizer state stays valid)
    new.train(conv.training)
    return new


class MagnitudePrunedModel(BaselineModel):
    """`backbone` with its residual-block convs pruned by weight magnitude to `macs_ratio` of the
    static model's per-clip MACs. Pruning happens on the first forward (it needs the input size to
    count MACs), i.e. after a static checkpoint was loaded, or explicitly with `prune(input_shape)`;
    the masks and the `pruned` flag are buffers, so a pruned checkpoint reloads as it was."""

    added_parts = ("weight_mask", "pruned")

    def __init__(self, backbone: nn.Module, *, macs_ratio: float) -> None:
        if not 0.0 < macs_ratio <= 1.0:
            raise ValueError(f"macs_ratio={macs_ratio} must lie in (0, 1]")
        super().__init__(backbone)
        self.macs_ratio = macs_ratio
        targets = [(n, m) for n, m in backbone.named_modules()
                   if type(m) in PRUNABLE and default_dynamic_filter(n, m)]
        if not targets:
            raise ValueError("magnitude pruning found no conv to prune in the backbone")
        for name, conv in targets:
            parent_name, _, child = name.rpartition(".")
            setattr(backbone.get_submodule(parent_name), child, _masked_from(conv))
        self.layer_names = [n for n, _ in targets]
        self.register_buffer("pruned", torch.tensor(False))
        self._positions: dict[tuple[int, ...], dict[str, int]] = {}

    def masked_layers(self) -> list[tuple[str, nn.Module]]:
        return [(n, self.backbone.get_submodule(n)) for n in self.layer_names]

    def positions(self, input_shape: tuple[int, ...]) -> dict[str, int]:
        key = tuple(input_shape)
        if key not in self._positions:
            self._positions[key] = output_positions(self.backbone, dict(self.masked_layers()), key)
        return self._positions[key]

    @torch.no_grad()
    def prune(self, input_shape: tuple[int, ...]) -> dict[str, float]:
        """Mask the smallest-magnitude weights of every prunable conv at one uniform sparsity so the
        per-clip MACs at `input_shape` (C, T, H, W) reach `macs_ratio` of the static model. Returns
        {"sparsity", "target_macs", "macs"}."""
        static = self.static_macs(input_shape)
        pos = self.positions(input_shape)
        layers = self.masked_layers()
        prunable = sum(m.weight.numel() * pos[n] for n, m in layers)
        remove = static * (1.0 - self.macs_ratio)
        if remove > prunable:
            raise ValueError(f"macs_ratio={self.macs_ratio} is unreachable: the prunable convs hold "
                             f"{prunable / static:.1%} of the static MACs; choose macs_ratio >= "
                             f"{1 - prunable / static:.3f}")
        sparsity = remove / prunable
        for _, conv in layers:
            k = int(round(sparsity * conv.weight.numel()))
            mask = torch.ones(conv.weight.numel(), dtype=torch.bool, device=conv.weight.device)
            if k > 0:
                mask[conv.weight.detach().abs().flatten().topk(k, largest=False).indices] = False
            conv.weight_mask.copy_(mask.view_as(conv.weight))
        self.pruned.fill_(True)
        return {"sparsity": sparsity, "target_macs": static * self.macs_ratio, "macs": self.pruned_macs(input_shape)}

    def pruned_macs(self, input_shape: tuple[int, ...]) -> int:
        """Per-clip MACs with pruned weights not counted (nonzero-weight MACs)."""
        pos = self.positions(input_shape)
        removed = sum(int((~conv.weight_mask).sum()) * pos[n] for n, conv in self.masked_layers())
        return self.static_macs(input_shape) - removed

    def before_forward(self, x: Tensor) -> None:
        if not bool(self.pruned):
            self.prune(tuple(x.shape[1:]))

    def clip_costs(self, x: Tensor) -> tuple[Tensor, Tensor, list]:
        b = x.shape[0]
        macs = self.pruned_macs(tuple(x.shape[1:]))
        # Fixed after pruning: no gradient, so the efficiency loss is a constant for this baseline.
        return (torch.full((b,), macs, dtype=torch.long, device=x.device),
                torch.full((b,), macs / self.static_macs(tuple(x.shape[1:])), device=x.device), [])


def sparsity_of(model: MagnitudePrunedModel) -> float:
    total = sum(conv.weight_mask.numel() for _, conv in model.masked_layers())
    kept = sum(int(conv.weight_mask.sum()) for _, conv in model.masked_layers())
    return 1.0 - kept / max(total, 1)


