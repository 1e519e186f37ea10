"""Dynamic convolution of VA-RED² (METHOD.md sections 2-5): a conv that, per clip, computes only
the first m = ceil(r * C_out) filters at every R-th output frame and rebuilds the rest cheaply.

    x ──gate──> V_c, V_t (B, S)              soft (training): full conv once, every S x S variant
    │                                         derived by slicing + cheap ops, mixed by V_c then V_t
    └─conv(weight[:m], t-stride st*R)─> Y'   hard (inference): argmax per sample, samples grouped
        └─ChannelCheapOp─> TemporalCheapOp─> Y (B, C_out, T_out, H, W)   by choice, only that variant

The layer keeps `weight` / `bias` under the nn.Conv names, so a static checkpoint loads unchanged, and
`forward(x)` returns the output tensor only; the gate decisions and costs of the last forward are
left in `self.record` (a `LayerRecord`) for the wrapper model to collect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.cheap_ops import ChannelCheapOp, TemporalCheapOp
from pipeline.models.gate import GateValues, SoftModulationGate
from pipeline.models.padding import check_padding_mode, conv_nd

SEARCH_SPACES = (2, 3, 4)
MODES = ("both", "temporal", "channel")
EXECUTIONS = ("auto", "soft", "hard")


def channel_ratios(search_space: int) -> list[float]:
    """r_i = (1/2)^i, i < S."""
    return [0.5 ** i for i in range(search_space)]


def temporal_factors(search_space: int, out_frames: int | None = None) -> list[int]:
    """R_j = 2^j, j < S, clamped to at most `out_frames` (the layer's T_out) when given."""
    factors = [2 ** j for j in range(search_space)]
    return factors if out_frames is None else [min(f, max(out_frames, 1)) for f in factors]


def channel_index(ratio: float, search_space: int) -> int:
    """Index i of ratio r_i; ValueError when the ratio is not in the search space."""
    ratios = channel_ratios(search_space)
    if ratio not in ratios:
        raise ValueError(f"channel ratio {ratio} is not in the search space {ratios}")
    return ratios.index(ratio)


def temporal_index(factor: int, search_space: int) -> int:
    """Index j of factor R_j; ValueError when the factor is not in the search space."""
    factors = temporal_factors(search_space)
    if factor not in factors:
        raise ValueError(f"temporal factor {factor} is not in the search space {factors}")
    return factors.index(factor)


@dataclass
class LayerRecord:
    """What one dynamic layer did in its last forward."""

    channel_gate: Tensor | None  # (B, S) raw gate values, None without a channel axis
    temporal_gate: Tensor | None  # (B, S)
    channel_index: Tensor  # (B,) long, chosen i (argmax or forced; 0 without a channel axis)
    temporal_index: Tensor  # (B,) long, chosen j
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    # Per-sample MACs of the chosen variant: reduced conv + cheap ops + gate FCs. In hard mode this
    # is what ran; in soft mode it is what the hard policy would run for that sample.
    macs: Tensor  # (B,) int64
    full_macs: int  # per-sample MACs of the static conv
    expected_ratio: Tensor  # (B,) r^s / R^s, differentiable w.r.t. the gate (METHOD.md section 5)
    # (B,) gate-weighted distortion of the cheaper variants (training forwards only; see `_distortion`)
    distortion: Tensor | None = None


@dataclass(frozen=True)
class _Plan:
    """What a forward needs to know about an input shape, independent of the data (see `_plan`)."""

    out_shape: tuple[int, ...]
    out_frames: int
    factors: list[int]
    full_macs: int
    macs: Tensor  # (S, S) long: per-sample MACs of each variant
    ratios: Tensor  # r_i, in the input's dtype
    inverse_factors: Tensor  # 1 / R_j


def _sample_dots(a: Tensor, b: Tensor) -> Tensor:
    """(B,) <a_b, b_b> for two tensors with the same number of elements per sample, as B BLAS dots
    (einsum("bi,bi->b") lowers to a batched matrix product that ran 11x slower on CPU)."""
    return torch.stack([torch.dot(ai.reshape(-1), bi.reshape(-1).to(ai.dtype)) for ai, bi in zip(a, b)])


class _StraightThroughRegions(torch.autograd.Function):
    """The straight-through mix of S variants (ours): forward = each sample's chosen variant, exactly;
    the gradient is that of sum_k w_k * variant_k with w = onehot(chosen) + p - p.detach(). The
    variants differ from a base output only in a region each: option k > 0 replaces
    `region_k(base)` (a view: the rebuilt maps of a channel variant, the rebuilt frames of a
    temporal one) by `rebuilt_k`, computed only for the samples that chose k.

    Same forward, same gradients for base, rebuilt maps and everything behind them. The gradient of
    the choice probabilities is <g, variant_k - variant_0> = <g[region_k], diff_k> per sample, with
    diff_k = rebuilt_k - base[region_k] over the whole batch (the distortion term computes it anyway):
    a constant per sample less than the weighted sum's <g, variant_k>, which the softmax the
    probabilities come from cancels exactly. So a training step computes no full-size variant, no
    full-size product per option, and the cheap ops only for the samples that use them.

    forward(plan, chosen, probs, base, *rebuilt, *diffs) writes into `base` (contiguous):
    plan[k - 1] = (region_k, idx_k) for k = 1..S-1, idx_k the samples that chose k; rebuilt_k is
    None where idx_k is empty, diff_k None where the option rebuilds nothing (it equals the base).
    """

    @staticmethod
    def forward(ctx, plan, chosen: Tensor, probs: Tensor, base: Tensor, *tensors: Tensor | None) -> Tensor:
        k_options = len(plan)
        rebuilt, diffs = tensors[:k_options], tensors[k_options:]
        # In place: the base is the layer's own fresh output that nothing saved for backward reads
        # (autograd's version check would refuse otherwise), so a step copies no full-size tensor.
        out = base
        for (region, idx), new in zip(plan, rebuilt):
            if new is not None:
                region(out).index_copy_(0, idx, new.to(out.dtype))
        ctx.mark_dirty(out)
        ctx.plan, ctx.options = plan, probs.shape[1]
        ctx.used = [new is not None for new in rebuilt]
        ctx.save_for_backward(*diffs)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous()
        diffs = ctx.saved_tensors
        grad_probs = grad.new_zeros(grad.shape[0], ctx.options)
        for k, ((region, _), diff) in enumerate(zip(ctx.plan, diffs), start=1):
            if diff is not None:
                grad_probs[:, k] = _sample_dots(region(grad), diff)
        grad_base, grad_rebuilt = grad, []
        if any(ctx.used):
            grad_base = grad.clone()
        for (region, idx), used in zip(ctx.plan, ctx.used):
            if used:
                grad_rebuilt.append(region(grad).index_select(0, idx))
                region(grad_base).index_fill_(0, idx, 0)
            else:
                grad_rebuilt.append(None)
        return (None, None, grad_probs, grad_base, *grad_rebuilt, *[None] * len(diffs))


def _put(dst: Tensor, idx: Tensor | None, src: Tensor) -> Tensor:
    """Write `src` into `dst` (a view of the output), into rows `idx` of it when given."""
    if idx is None:
        dst.copy_(src)
    else:
        dst.index_copy_(0, idx, src)
    return dst


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _explicit_padding(conv: nn.Module) -> tuple[int, ...]:
    check_padding_mode(conv.padding_mode)
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    if conv.padding == "same":
        if any(d * (k - 1) % 2 for k, d in zip(conv.kernel_size, conv.dilation)):
            raise ValueError("padding='same' with an even kernel extent is not supported")
        return tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))
    return tuple(conv.padding)


class DynamicConvBase(nn.Module):
    """Shared machinery of `DynamicConv3d` and `DynamicConv2d`; see the module docstring.

    `execution`: "auto" (soft when training, hard otherwise), "soft" or "hard".
    `forced`: (i, j) or None; overrides the argmax in hard mode and selects that single variant in
    soft mode. An index for an axis the layer lacks is ignored (so one policy can be forced over a
    model mixing 3D and channel-only 2D layers); None means "the gate decides" for that axis.
    """

    spatial_dims: int  # 3 for Conv3d, 2 for Conv2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, ...], *,
                 stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...],
                 groups: int = 1, bias: bool = True, mode: str = "both", search_space: int = 2,
                 gate_hidden_min: int = 16, gate_input: str = "pool", padding_mode: str = "zeros") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not valid; choose one of {MODES}")
        if search_space not in SEARCH_SPACES:
            raise ValueError(f"search_space={search_space} is not valid; choose one of {SEARCH_SPACES}")
        n = self.spatial_dims
        if not all(len(t) == n for t in (kernel_size, stride, padding, dilation)):
            raise ValueError(f"kernel_size, stride, padding and dilation need {n} entries each")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        self.padding_mode = check_padding_mode(padding_mode)  # pipeline/models/padding.py
        self.groups, self.mode, self.search_space = groups, mode, search_space
        self.depthwise = groups > 1 and groups == in_channels == out_channels
        if self.has_channel and groups != 1 and not self.depthwise:
            raise ValueError(f"mode={mode!r} needs groups == 1 or a depthwise conv; got groups={groups} "
                             "(use mode='temporal' for other grouped convs)")

        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._reset_conv_parameters()
        heads = tuple(h for h, on in (("temporal", self.has_temporal), ("channel", self.has_channel)) if on)
        self.gate = SoftModulationGate(in_channels, search_space, heads=heads, hidden_min=gate_hidden_min,
                                       input=gate_input)
        self.ratios = channel_ratios(search_space)
        self.computed_channels = [math.ceil(r * out_channels) for r in self.ratios]  # m_i
        self.channel_ops = (nn.ModuleList(ChannelCheapOp(out_channels, r) for r in self.ratios[1:])
                            if self.has_channel else None)
        self.temporal_op = (TemporalCheapOp(out_channels, temporal_factors(search_space)[-1])
                            if self.has_temporal else None)
        self._execution = "auto"
        self._forced: tuple[int | None, int | None] | None = None
        # Inference-time shift of every choice towards cheaper options (pipeline/models/budget.py):
        # option k's log-probability gets + offset * k before the argmax; 0 = the trained policy.
        self.budget_offset = 0.0
        # How training mixes the variants: "soft" (paper) or "straight_through" (ours); see
        # `_mix`. Set per model by `VaredModel(gate_training=...)`.
        self.gate_training = "soft"
        self.record: LayerRecord | None = None
        self._macs_tables: dict[tuple[int, ...], Tensor] = {}
        self._plans: dict[tuple, _Plan] = {}

    def _reset_conv_parameters(self) -> None:  # nn.Conv's default initialisation
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    # ----- construction -------------------------------------------------------------------------
    @classmethod
    def from_conv(cls, conv: nn.Module, *, mode: str = "both", search_space: int = 2,
                  gate_hidden_min: int = 16, gate_input: str = "pool") -> "DynamicConvBase":
        """A dynamic layer sharing `conv`'s weight and bias Parameters (so optimizer state stays valid)."""
        expected = nn.Conv3d if cls.spatial_dims == 3 else nn.Conv2d
        if not isinstance(conv, expected):
            raise ValueError(f"{cls.__name__}.from_conv needs an {expected.__name__}, got {type(conv).__name__}")
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=_explicit_padding(conv), dilation=conv.dilation, groups=conv.groups,
                    bias=conv.bias is not None, mode=mode, search_space=search_space,
                    gate_hidden_min=gate_hidden_min, gate_input=gate_input, padding_mode=conv.padding_mode)
        layer.to(device=conv.weight.device, dtype=conv.weight.dtype)
        layer.weight = conv.weight
        layer.bias = conv.bias
        return layer

    @property
    def has_channel(self) -> bool:
        return self.mode in ("both", "channel")

    @property
    def has_temporal(self) -> bool:
        return self.spatial_dims == 3 and self.mode in ("both", "temporal")

    # ----- execution controls -------------------------------------------------------------------
    @property
    def execution(self) -> str:
        return self._execution

    @execution.setter
    def execution(self, value: str) -> None:
        if value not in EXECUTIONS:
            raise ValueError(f"execution={value!r} is not valid; choose one of {EXECUTIONS}")
        self._execution = value

    @property
    def forced(self) -> tuple[int | None, int | None] | None:
        return self._forced

    @forced.setter
    def forced(self, value: tuple[int | None, int | None] | None) -> None:
        if value is not None:
            if len(value) != 2:
                raise ValueError(f"forced={value!r} must be (channel_index, temporal_index) or None")
            for name, idx in zip(("channel", "temporal"), value):
                if idx is not None and (not isinstance(idx, int) or not 0 <= idx < self.search_space):
                    raise ValueError(f"forced {name} index {idx!r} is out of range 0..{self.search_space - 1}")
            value = tuple(value)
        self._forced = value

    def is_soft(self) -> bool:
        return self._execution == "soft" or (self._execution == "auto" and self.training)

    # ----- geometry and cost --------------------------------------------------------------------
    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(B, C_out, *spatial) of the static conv for an input of `input_shape`."""
        sizes = [_out_size(s, k, st, p, d) for s, k, st, p, d in
                 zip(input_shape[2:], self.kernel_size, self.stride, self.padding, self.dilation)]
        return (input_shape[0], self.out_channels, *sizes)

    def _conv_macs(self, out_channels: int, out_spatial: list[int]) -> int:
        return out_channels * math.prod(out_spatial) * (self.in_channels // self.groups) * math.prod(self.kernel_size)

    def full_macs(self, input_shape: tuple[int, ...]) -> int:
        """Per-sample MACs of the static conv (gate and cheap ops excluded)."""
        return self._conv_macs(self.out_channels, list(self.output_shape(input_shape)[2:]))

    def variant_macs(self, input_shape: tuple[int, ...], i: int, j: int) -> int:
        """Per-sample MACs of variant (r_i, R_j) as the hard path executes it, gate FCs included."""
        out = list(self.output_shape(input_shape)[2:])
        m = self.computed_channels[i] if self.has_channel else self.out_channels
        per_group = (self.in_channels // self.groups) if not self.depthwise else 1
        frames, hw = (out[0], out[1:]) if self.spatial_dims == 3 else (1, out)
        factor = self._factors(out)[j] if self.has_temporal else 1
        computed_frames = -(-frames // factor)
        spatial = ([computed_frames] if self.spatial_dims == 3 else []) + hw
        macs = m * math.prod(spatial) * per_group * math.prod(self.kernel_size) + self.gate.macs()
        if self.has_channel and i > 0:
            macs += self.channel_ops[i - 1].macs(computed_frames, *hw)
        if self.has_temporal and factor > 1:
            macs += self.temporal_op.macs(factor, computed_frames, *hw)
        return macs

    def _macs_table(self, input_shape: tuple[int, ...], device) -> Tensor:
        """(S, S) long tensor of `variant_macs`, cached per per-sample input shape."""
        key = (*input_shape[1:], str(device))
        if key not in self._macs_tables:
            self._macs_tables[key] = torch.tensor(
                [[self.variant_macs(input_shape, i, j) for j in range(self.search_space)]
                 for i in range(self.search_space)], dtype=torch.long, device=device)
        return self._macs_tables[key]

    def _factors(self, out_spatial: list[int]) -> list[int]:
        return temporal_factors(self.search_space, out_spatial[0]) if self.has_temporal else [1] * self.search_space

    # ----- forward ------------------------------------------------------------------------------
    def _frames_preselectable(self, factor: int) -> bool:
        """A temporal kernel of 1 without temporal padding reads only input frames 0, s, 2s, ... with
        s = st * R: selecting them before the conv gives the identical result from less input."""
        return (self.spatial_dims == 3 and factor > 1 and self.kernel_size[0] == 1
                and self.padding[0] == 0)

    def _conv(self, x: Tensor, m: int, factor: int, preselected: bool = False) -> Tensor:
        """The first m filters at every `factor`-th output frame: exactly Y_full[:, :m, ::factor].
        `preselected`: x already holds only frames 0, st*R, 2*st*R, ... (see _frames_preselectable)."""
        weight, bias, groups = self.weight, self.bias, self.groups
        if m < self.out_channels:
            weight = weight[:m]  # contiguous: a prefix of the filter axis
            bias = None if bias is None else bias[:m]
            if self.depthwise:
                x, groups = x[:, :m], m
        if preselected:
            stride = (1, *self.stride[1:])
        else:
            stride = self.stride if factor == 1 else (self.stride[0] * factor, *self.stride[1:])
        return conv_nd(x, weight, bias, stride, self.padding, self.dilation, groups, self.padding_mode)

    def _as_frames(self, y: Tensor) -> Tensor:
        return y if self.spatial_dims == 3 else y.unsqueeze(2)

    def _fill_channels(self, y: Tensor, i: int) -> Tensor:
        """f^c: the m_i computed maps (B, m_i, ...) -> all C_out maps."""
        if i == 0:
            return y
        full = self.channel_ops[i - 1](self._as_frames(y))
        return full if self.spatial_dims == 3 else full.squeeze(2)

    def _fill_frames(self, y: Tensor, factor: int, out_frames: int) -> Tensor:
        """f^t: the computed frames (B, C_out, ceil(T_out / R), H, W) -> T_out frames."""
        return y if factor == 1 else self.temporal_op(y, factor, out_frames)

    def _variant(self, x: Tensor, i: int, factor: int, out_frames: int, dst: Tensor | None = None,
                 idx: Tensor | None = None, preselected: bool = False) -> Tensor:
        """The hard path of one variant: reduced conv, then the channel and temporal cheap ops.

        The computed maps and the rebuilt ones are written straight into their slots of the output
        (`dst`, rows `idx` when given; else a new tensor): no intermediate concatenations, and a
        grouped batch needs no extra scatter copy. Same values as `_fill_frames(_fill_channels(.))`.
        """
        m = self.computed_channels[i] if self.has_channel else self.out_channels
        y = self._conv(x, m, factor, preselected)
        if i == 0 and factor == 1:
            return y if dst is None else _put(dst, idx, y)
        if self.spatial_dims != 3 or y.shape[2] * factor != out_frames:  # 2D, or a trimmed last group
            full = self._fill_frames(self._fill_channels(y, i), factor, out_frames)
            return full if dst is None else _put(dst, idx, full)
        if dst is None and torch.compiler.is_compiling():
            return self._assemble_functional(y, i, factor)
        b, _, n, h, w = y.shape
        if dst is None:
            dst = y.new_empty(b, self.out_channels, out_frames, h, w)
        slots = dst.view(dst.shape[0], self.out_channels, n, factor, h, w)  # frame iR + k -> slot (i, k)
        new = self.channel_ops[i - 1].new_maps(y) if i > 0 and self.channel_ops[i - 1].new else None
        _put(slots[:, :m, :, 0], idx, y)
        if new is not None:
            _put(slots[:, m:, :, 0], idx, new)
        if factor > 1:
            _put(slots[:, :m, :, 1:], idx, self.temporal_op.new_frames(y, factor))
            if new is not None:
                _put(slots[:, m:, :, 1:], idx, self.temporal_op.new_frames(new, factor, first_channel=m))
        return dst

    def _assemble_functional(self, y: Tensor, i: int, factor: int) -> Tensor:
        """`_variant`'s assembly as concatenations of 3D depthwise convs, for torch.compile: inductor
        turns the concatenations into direct writes fused with the following BatchNorm / ReLU in
        whatever memory layout it picks, where the in-place slot writes and the frames-into-channels
        views of the eager path force layout-converting scalar loops. Same values."""
        full = y
        if i > 0 and self.channel_ops[i - 1].new:
            full = torch.cat([y, self.channel_ops[i - 1].new_maps_3d(y)], dim=1)
        if factor == 1:
            return full
        frames = self.temporal_op.new_frames_3d(full, factor)  # (B, C, n, R - 1, H, W)
        return torch.cat([full.unsqueeze(3), frames], dim=3).flatten(2, 3)

    def _mix(self, values: Tensor, variants: list[Tensor]) -> Tensor:
        """The paper's soft training output of one head: sum_k V_k * variant_k with the raw gate values.

        The default, "straight_through" (ours, `_straight_channels` / `_straight_frames`), runs
        forward the one-hot argmax choice, exactly what hard inference runs, while the gradient
        reaches the gate's choice probabilities v (`GateValues.*_probs`) as in soft mode
        (w = onehot + v - v.detach(); `_StraightThroughRegions`). Pure soft mixing trains the network
        on a blend of variants that argmax inference never computes (on the demo data a soft-trained
        model scored 0.65 in soft mode, chance in hard mode, before BatchNorm recalibration).
        Probabilities keep the part of the gradient common to all options out: it cannot change the
        choice, but on the raw values it pushed whole heads to 0 (7% of heads ended dead, never to
        get a gradient again).
        """
        return sum(self._bcast(values[:, k]) * v for k, v in enumerate(variants))

    def _soft(self, x: Tensor, gate: GateValues, forced_i: int | None, forced_j: int | None,
              factors: list[int], out_frames: int, ci: Tensor, tj: Tensor) -> tuple[Tensor, Tensor | None]:
        """The training forward; returns (output, per-sample distortion term or None)."""
        y = self._conv(x, self.out_channels, 1)  # (B, C_out, T_out, H, W): run once
        distortion = None
        inv_var = None
        if (self.has_channel and forced_i is None) or (self.has_temporal and forced_j is None):
            with torch.no_grad():  # each channel's variance over the batch: the distortion's unit
                flat = y.detach().float().flatten(2)  # (B, C, N): sums over contiguous rows are fast
                n = flat.shape[0] * flat.shape[2]
                mean = flat.sum(dim=2).sum(dim=0) / n
                var = (flat * flat).sum(dim=2).sum(dim=0) / n - mean * mean
                inv_var = 1.0 / (var * n / max(n - 1, 1)).clamp_min(1e-6)
        straight = self.gate_training == "straight_through"
        if self.has_channel:
            if forced_i is not None:
                y = self._fill_channels(y[:, : self.computed_channels[forced_i]], forced_i)
            else:
                errors, diffs = self._channel_errors(y, inv_var)
                distortion = self._distortion(gate.channel_probs, errors)
                if straight:
                    y = self._straight_channels(y, gate.channel_probs, ci, diffs)
                else:
                    variants = [self._fill_channels(y[:, :m], i) for i, m in enumerate(self.computed_channels)]
                    y = self._mix(gate.channel, variants)
        if self.has_temporal:
            if forced_j is not None:
                f = factors[forced_j]
                y = self._fill_frames(y[:, :, ::f], f, out_frames)
            else:
                errors, diffs = self._temporal_errors(y, inv_var, factors, out_frames)
                d = self._distortion(gate.temporal_probs, errors)
                distortion = d if distortion is None else distortion + d
                if straight:
                    y = self._straight_frames(y, gate.temporal_probs, tj, diffs, factors, out_frames)
                else:
                    variants = [self._fill_frames(y[:, :, ::f], f, out_frames) for f in factors]
                    y = self._mix(gate.temporal, variants)
        return y, distortion

    def _straight_channels(self, y: Tensor, probs: Tensor, chosen: Tensor, diffs: list[Tensor | None]) -> Tensor:
        """The straight-through channel mix (`_StraightThroughRegions`): the full output, with the
        rebuilt maps m_i: of the samples that chose r_i < 1 computed from their m_i computed maps."""
        plan, rebuilt = [], []
        for i, m in enumerate(self.computed_channels[1:], start=1):
            idx = (chosen == i).nonzero().squeeze(1)
            plan.append((lambda t, m=m: t[:, m:], idx))
            if idx.numel() == 0 or self.channel_ops[i - 1].new == 0:
                rebuilt.append(None)
                continue
            new = self.channel_ops[i - 1].new_maps(self._as_frames(y[:, :m].index_select(0, idx)))
            rebuilt.append(new if self.spatial_dims == 3 else new.squeeze(2))
        # A 2D layer's diffs keep their frame axis of 1: the gate gradient's dots read them flat.
        return _StraightThroughRegions.apply(plan, chosen, probs, y, *rebuilt, *diffs[1:])

    def _straight_frames(self, y: Tensor, probs: Tensor, chosen: Tensor, diffs: list[Tensor | None],
                         factors: list[int], out_frames: int) -> Tensor:
        """The same for the temporal head: the rebuilt frames of the samples that chose R_j > 1 (the
        whole variant where a trimmed last group leaves no fixed frame pattern)."""
        b, c, t, h, w = y.shape
        plan, rebuilt = [], []
        for j, f in enumerate(factors[1:], start=1):
            idx = (chosen == j).nonzero().squeeze(1)
            if f == 1:
                region = (lambda z: z[:, :0])
            elif t % f == 0:
                region = (lambda z, f=f: z.view(z.shape[0], c, t // f, f, h, w)[:, :, :, 1:])
            else:
                region = (lambda z: z)
            plan.append((region, idx))
            if idx.numel() == 0 or f == 1:
                rebuilt.append(None)
                continue
            src = y[:, :, ::f].index_select(0, idx)
            rebuilt.append(self.temporal_op.new_frames(src, f) if t % f == 0 else self._fill_frames(src, f, out_frames))
        return _StraightThroughRegions.apply(plan, chosen, probs, y, *rebuilt, *diffs[1:])

    @staticmethod
    def _error(rebuilt: Tensor, target: Tensor, inv_var: Tensor, total: int) -> tuple[Tensor, Tensor]:
        """(B,) sum of squared errors in units of each channel's variance (channels on dim 1),
        divided by the `total` number of output elements per sample; and the detached difference
        rebuilt - target (the straight-through mix's gradient of the choice reads it)."""
        diff = rebuilt.float() - target.float()
        # Per-channel sums of squares, then weighted: no full-size broadcast product (2x faster).
        return (diff * diff).flatten(2).sum(dim=2) @ inv_var / total, diff.detach()

    def _channel_errors(self, y: Tensor, inv_var: Tensor) -> tuple[Tensor, list[Tensor | None]]:
        """(B, S): how much of the full output each channel variant gets wrong (only its rebuilt maps
        differ), computed from the detached full output so that only the cheap ops get a gradient;
        and per option the difference of its rebuilt maps from the full ones (None: nothing rebuilt)."""
        frames = self._as_frames(y.detach())
        total = frames[0].numel()
        errors, diffs = [frames.new_zeros(frames.shape[0], dtype=torch.float32)], [None]
        for i, m in enumerate(self.computed_channels[1:], start=1):
            op = self.channel_ops[i - 1]
            if op.new == 0:
                errors.append(errors[0])
                diffs.append(None)
                continue
            error, diff = self._error(op.new_maps(frames[:, :m]), frames[:, m:], inv_var[m:], total)
            errors.append(error)
            diffs.append(diff)
        return torch.stack(errors, dim=1), diffs

    def _temporal_errors(self, y: Tensor, inv_var: Tensor, factors: list[int],
                         out_frames: int) -> tuple[Tensor, list[Tensor | None]]:
        """(B, S) and the differences: the same for the temporal variants of `y` (the channel-mixed
        output); a difference holds the rebuilt frames only, or the whole variant after a trimmed
        last group."""
        y = y.detach()
        b, c, t, h, w = y.shape
        total = y[0].numel()
        errors, diffs = [], []
        for f in factors:
            if f == 1:
                errors.append(y.new_zeros(b, dtype=torch.float32))
                diffs.append(None)
                continue
            # A copy: the strided slice would fold into the cheap op's (B, C * n, H, W) as a view of y
            # that its conv saves for backward (and copies to dense anyway), while the straight-through
            # mix writes into y in place.
            src = y[:, :, ::f].clone(memory_format=torch.contiguous_format)
            if t % f == 0:  # frames i * f + k, k >= 1, are the rebuilt ones
                n = t // f
                new = self.temporal_op.new_frames(src, f)  # (B, C, n, f - 1, H, W)
                target = y.reshape(b, c, n, f, h, w)[:, :, :, 1:]
                error, diff = self._error(new, target, inv_var, total)
            else:  # a trimmed last group: compare whole variants
                error, diff = self._error(self._fill_frames(src, f, out_frames), y, inv_var, total)
            errors.append(error)
            diffs.append(diff)
        return torch.stack(errors, dim=1), diffs

    @staticmethod
    def _distortion(probs: Tensor, errors: Tensor) -> Tensor:
        """The distortion term of one head (ours), (B,): sum_k v[k] * D_k, v the choice probabilities.

        D_k (`errors`, (B, S)) is the mean squared difference between variant k and the full-compute
        output, per channel in units of that channel's variance over the batch: how much of the
        layer's output the cheaper variant gets wrong for this clip. The gate gets the gradient of v
        (D detached): a cheap choice costs what it distorts, so clips whose frames and maps repeat
        (small D) are the ones it makes cheap. The cheap ops get the gradient of D (computed from the
        detached full output, v detached): every cheap op learns, each step, to rebuild the maps it
        stands in for, weighted towards the clips that are likely to use it.
        """
        errors = errors.to(probs.dtype)
        return (probs * errors.detach()).sum(dim=1) + (probs.detach() * errors).sum(dim=1)

    def _bcast(self, v: Tensor) -> Tensor:
        return v.view(-1, *([1] * (self.spatial_dims + 1)))

    def _hard(self, x: Tensor, ci: Tensor, tj: Tensor, fixed: tuple[int, int] | None, factors: list[int],
              out_frames: int, out_shape: tuple[int, ...]) -> Tensor:
        """Only the chosen variants: samples grouped per choice, computed, scattered back.
        `fixed` is the variant of the whole batch when it is known without reading the gate."""
        if fixed is not None:
            return self._variant(x, fixed[0], factors[fixed[1]], out_frames)
        combo = ci * self.search_space + tj  # (B,)
        choices = combo.unique()
        if choices.numel() == 1:  # fast path: one variant for the batch, no gather/scatter
            c = int(choices[0])
            return self._variant(x, c // self.search_space, factors[c % self.search_space], out_frames)
        out = x.new_empty(out_shape)
        for c in choices.tolist():
            idx = (combo == c).nonzero().squeeze(1)
            i, factor = c // self.search_space, factors[c % self.search_space]
            # The gather copies the group's input anyway: copy only the frames the conv reads.
            pre = self._frames_preselectable(factor)
            src = x[:, :, :: self.stride[0] * factor] if pre else x
            self._variant(src.index_select(0, idx), i, factor, out_frames, dst=out, idx=idx, preselected=pre)
        return out

    def _choice(self, probs: Tensor | None, forced: int | None, batch: int, device) -> Tensor:
        """argmax V, ties broken by the pre-activations: the argmax of the choice probabilities
        (the same index wherever a value is positive; when max(tanh, 0) zeroes a whole head, the
        head still decides by its pre-activations instead of falling to index 0 for good)."""
        if forced is not None or probs is None:
            return torch.full((batch,), forced or 0, dtype=torch.long, device=device)
        if self.budget_offset and (not self.is_soft() or self.gate_training == "straight_through"):
            shift = torch.arange(probs.shape[1], device=probs.device, dtype=probs.dtype) * self.budget_offset
            return (probs.clamp_min(1e-30).log() + shift).argmax(dim=1)
        return probs.argmax(dim=1)

    def _expected(self, probs: Tensor | None, forced: int | None, s: Tensor, batch: int) -> Tensor:
        """sum_k v[k] * s[k], v the gate's choice probabilities; one-hot when forced; 1 without the axis."""
        if probs is None:
            return s.new_ones(batch)
        if forced is not None:
            return s[forced].expand(batch)
        return probs @ s

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(f"{type(self).__name__} expects a {self.spatial_dims + 2}D input "
                             f"(B, C, {'T, ' if self.spatial_dims == 3 else ''}H, W); got shape {tuple(x.shape)}")
        batch = x.shape[0]
        plan = self._plan(tuple(x.shape), x)
        out_shape = (batch, *plan.out_shape[1:])
        out_frames, factors = plan.out_frames, plan.factors
        forced_i, forced_j = self._forced if self._forced is not None else (None, None)
        forced_i = forced_i if self.has_channel else None
        forced_j = forced_j if self.has_temporal else None

        # The gate reads a detached input (ours): the policy learns through the gate's own parameters,
        # and L_e / the distortion term never reshape the backbone's features (with them attached,
        # training accuracy fell from 0.74 to 0.62 over 6 demo epochs while GFLOPs barely moved).
        gate = self.gate(x.detach())
        ci = self._choice(gate.channel_probs, forced_i, batch, x.device)
        tj = self._choice(gate.temporal_probs, forced_j, batch, x.device)
        distortion = None
        if self.is_soft():
            y, distortion = self._soft(x, gate, forced_i, forced_j, factors, out_frames, ci, tj)
        else:
            # Known without reading the gate when every axis is forced or absent (also meta-safe).
            known_i = forced_i if self.has_channel else 0
            known_j = forced_j if self.has_temporal else 0
            fixed = None if known_i is None or known_j is None else (known_i, known_j)
            y = self._hard(x, ci, tj, fixed, factors, out_frames, out_shape)

        expected = (self._expected(gate.channel_probs, forced_i, plan.ratios, batch)
                    * self._expected(gate.temporal_probs, forced_j, plan.inverse_factors, batch))
        self.record = LayerRecord(
            channel_gate=gate.channel, temporal_gate=gate.temporal, channel_index=ci, temporal_index=tj,
            input_shape=tuple(x.shape), output_shape=tuple(y.shape),
            macs=plan.macs[ci, tj], full_macs=plan.full_macs, expected_ratio=expected,
            distortion=distortion)
        return y

    def _plan(self, input_shape: tuple[int, ...], like: Tensor) -> "_Plan":
        """Shape-only facts of a forward (geometry, MACs per choice, scale tensors), computed once per
        per-sample input shape, device and dtype instead of on every forward."""
        key = (*input_shape[1:], like.device, like.dtype)
        plan = self._plans.get(key)
        if plan is None:
            out_shape = self.output_shape(input_shape)
            factors = self._factors(list(out_shape[2:]))
            plan = self._plans[key] = _Plan(
                out_shape=out_shape, out_frames=out_shape[2] if self.spatial_dims == 3 else 1,
                factors=factors, full_macs=self.full_macs(input_shape),
                macs=self._macs_table(input_shape, like.device),
                ratios=like.new_tensor(self.ratios), inverse_factors=like.new_tensor([1.0 / f for f in factors]))
        return plan

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, padding_mode={self.padding_mode!r}, groups={self.groups}, "
                f"bias={self.bias is not None}, mode={self.mode!r}, "
                f"search_space={self.search_space}")


class DynamicConv3d(DynamicConvBase):
    """Dynamic version of an nn.Conv3d: channel-wise and/or temporal-wise (mode)."""

    spatial_dims = 3


class DynamicConv2d(DynamicConvBase):
    """Dynamic version of an nn.Conv2d (2D backbones): channel-wise only, weight keeps its 4D shape."""

    spatial_dims = 2

    def __init__(self, *args, mode: str = "channel", **kwargs) -> None:
        if mode != "channel":
            raise ValueError(f"DynamicConv2d supports mode='channel' only; got mode={mode!r}")
        super().__init__(*args, mode=mode, **kwargs)

    @classmethod
    def from_conv(cls, conv: nn.Module, *, mode: str = "channel", search_space: int = 2,
                  gate_hidden_min: int = 16, gate_input: str = "pool") -> "DynamicConv2d":
        return super().from_conv(conv, mode=mode, search_space=search_space, gate_hidden_min=gate_hidden_min,
                                 gate_input=gate_input)
