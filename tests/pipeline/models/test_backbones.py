"""Tests of the three backbones: published layout, parameter names, cost and trainability.

Cost figures are multiply-accumulates (MACs) of conv + linear layers, as in the paper and fvcore.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pipeline.models.backbones import BACKBONES, build_r2plus1d_18


def _meta_model(name: str, **kwargs) -> nn.Module:
    # Built directly on the meta device: no memory, no init cost; shapes and FLOPs are all we need.
    with torch.device("meta"):
        return BACKBONES[name](**kwargs).eval()


def _counter_gmacs(model: nn.Module, frames: int, size: int) -> float:
    x = torch.empty(1, 3, frames, size, size, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2 / 1e9  # the counter counts 2 FLOPs per MAC


def _analytic_gmacs(model: nn.Module, frames: int, size: int) -> float:
    """Sum over convs and linears of output elements x (C_in / groups) x kernel volume."""
    total = 0

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv3d):
            kernel_volume = module.kernel_size[0] * module.kernel_size[1] * module.kernel_size[2]
            total += output.numel() * (module.in_channels // module.groups) * kernel_volume
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv3d, nn.Linear))]
    model(torch.empty(1, 3, frames, size, size, device="meta"))
    for handle in handles:
        handle.remove()
    return total / 1e9


# (backbone, frames, crop, published GMACs)
PUBLISHED_GMACS = [
    ("r2plus1d_18", 16, 112, 40.5),
    ("x3d_m", 16, 224, 4.73),
    ("x3d_m", 16, 256, 6.18),
    ("i3d_r50", 16, 224, 56.8),
]
PUBLISHED_PARAMS = {"r2plus1d_18": 31.5e6, "x3d_m": 3.8e6, "i3d_r50": 28.0e6}


@pytest.mark.parametrize(("name", "frames", "size", "published"), PUBLISHED_GMACS,
                         ids=[f"{n}-{t}x{s}-{g}G" for n, t, s, g in PUBLISHED_GMACS])
def test_static_gflops_match_published_figures(name, frames, size, published):
    gmacs = _counter_gmacs(_meta_model(name), frames, size)
    assert gmacs == pytest.approx(published, rel=0.01), f"{name}: {gmacs:.3f} GMACs"


@pytest.mark.parametrize(("name", "frames", "size", "published"), PUBLISHED_GMACS,
                         ids=[f"{n}-{t}x{s}" for n, t, s, _ in PUBLISHED_GMACS])
def test_flop_counter_counts_two_flops_per_mac(name, frames, size, published):
    model = _meta_model(name)
    assert _counter_gmacs(model, frames, size) == pytest.approx(_analytic_gmacs(model, frames, size), rel=1e-9)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_published_figure(name):
    count = sum(p.numel() for p in _meta_model(name).parameters())
    assert count == pytest.approx(PUBLISHED_PARAMS[name], rel=0.02), f"{name}: {count / 1e6:.3f} M"


# --- R(2+1)D-18: torchvision's exact parameter names and shapes -------------------------------------

def _bn(prefix: str, channels: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.weight", (channels,)), (f"{prefix}.bias", (channels,)),
            (f"{prefix}.running_mean", (channels,)), (f"{prefix}.running_var", (channels,)),
            (f"{prefix}.num_batches_tracked", ())]


def _torchvision_r2plus1d_18_state_dict_shapes(num_classes: int = 400) -> list[tuple[str, tuple[int, ...]]]:
    """The state_dict of `torchvision.models.video.r2plus1d_18`, from torchvision's structure rules.

    VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [2, 2, 2, 2], R2Plus1dStem): Conv2Plus1D is
    Sequential(conv 1x3x3, BN, ReLU, conv 3x1x1); conv1 = Sequential(Conv2Plus1D, BN, ReLU),
    conv2 = Sequential(Conv2Plus1D, BN); downsample = Sequential(conv 1x1x1, BN) registered after
    conv1 / conv2; midplanes = (in * planes * 27) // (in * 9 + 3 * planes) of the block.
    """
    keys = [("stem.0.weight", (45, 3, 1, 7, 7)), *_bn("stem.1", 45),
            ("stem.3.weight", (64, 45, 3, 1, 1)), *_bn("stem.4", 64)]
    inplanes = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            mid = (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)
            keys += [(f"{p}.conv1.0.0.weight", (mid, inplanes, 1, 3, 3)), *_bn(f"{p}.conv1.0.1", mid),
                     (f"{p}.conv1.0.3.weight", (planes, mid, 3, 1, 1)), *_bn(f"{p}.conv1.1", planes),
                     (f"{p}.conv2.0.0.weight", (mid, planes, 1, 3, 3)), *_bn(f"{p}.conv2.0.1", mid),
                     (f"{p}.conv2.0.3.weight", (planes, mid, 3, 1, 1)), *_bn(f"{p}.conv2.1", planes)]
            if block == 0 and layer > 1:
                keys += [(f"{p}.downsample.0.weight", (planes, inplanes, 1, 1, 1)), *_bn(f"{p}.downsample.1", planes)]
            inplanes = planes
    return keys + [("fc.weight", (num_classes, 512)), ("fc.bias", (num_classes,))]


def test_r2plus1d_state_dict_equals_torchvision_layout():
    model = build_r2plus1d_18()
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == _torchvision_r2plus1d_18_state_dict_shapes()
    # The (2+1)D mid widths of torchvision's checkpoint, per layer: block 0, block 1.
    mids = [model.state_dict()[f"layer{i}.{b}.conv1.0.0.weight"].shape[0] for i in range(1, 5) for b in (0, 1)]
    assert mids == [144, 144, 230, 288, 460, 576, 921, 1152]


def test_r2plus1d_strides_time_in_layers_2_to_4_and_their_shortcuts():
    model = build_r2plus1d_18()
    for i in (2, 3, 4):
        layer = getattr(model, f"layer{i}")
        assert layer[0].conv1[0][3].stride == (2, 1, 1)
        assert layer[0].downsample[0].stride == (2, 2, 2)


def test_r2plus1d_state_dict_round_trips_strictly():
    source, target = build_r2plus1d_18(), build_r2plus1d_18()
    result = target.load_state_dict(source.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for (k, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), k


# --- PySlowFast layouts ------------------------------------------------------------------------------

def test_i3d_uses_pyslowfast_names_and_temporal_kernels():
    state = _meta_model("i3d_r50").state_dict()
    assert state["s1.pathway0_stem.conv.weight"].shape == (64, 3, 5, 7, 7)
    assert state["s2.pathway0_res0.branch1.weight"].shape == (256, 64, 1, 1, 1)
    assert state["s5.pathway0_res2.branch2.c.weight"].shape == (2048, 512, 1, 1, 1)
    assert state["head.projection.weight"].shape == (400, 2048)
    kernels = [[state[f"s{s}.pathway0_res{i}.branch2.a.weight"].shape[2] for i in range(n)]
               for s, n in zip((2, 3, 4, 5), (3, 4, 6, 3))]
    assert kernels == [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]


def test_x3d_uses_pyslowfast_names_and_widths():
    model = _meta_model("x3d_m")
    state = model.state_dict()
    assert state["s1.pathway0_stem.conv_xy.weight"].shape == (24, 3, 1, 3, 3)
    assert state["s1.pathway0_stem.conv.weight"].shape == (24, 1, 5, 1, 1)
    assert state["s2.pathway0_res0.branch2.b.weight"].shape == (54, 1, 3, 3, 3)
    # SE width: 432 / 16 = 27, rounded to a multiple of 8 not below 90% of 27 -> 32.
    assert state["s5.pathway0_res0.branch2.se.fc1.weight"].shape == (32, 432, 1, 1, 1)
    assert state["head.conv_5.weight"].shape == (432, 192, 1, 1, 1)
    assert state["head.lin_5.weight"].shape == (2048, 432, 1, 1, 1)
    assert state["head.projection.weight"].shape == (400, 2048)
    depths = [sum(1 for k in state if k.startswith(f"s{s}.") and k.endswith("branch2.a.weight")) for s in (2, 3, 4, 5)]
    assert depths == [3, 5, 11, 7]
    se_blocks = [k.split(".")[1] for k in state if k.startswith("s4.") and k.endswith("se.fc1.weight")]
    assert se_blocks == [f"pathway0_res{i}" for i in range(0, 11, 2)]


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_conv_name_tells_its_role(name):
    """The contract with the conversion: stem, shortcut, head and SE convs are recognisable by name."""
    static = ("stem", "downsample", "branch1", "fc", "head", "projection", ".se.")
    residual = (".conv1.", ".conv2.", ".branch2.")
    for path, module in _meta_model(name).named_modules():
        if isinstance(module, nn.Conv3d):
            assert any(s in path for s in static) or any(r in path for r in residual), path


# --- Tiny models: they train -------------------------------------------------------------------------

TINY = {"r2plus1d_18": {"base_width": 8}, "i3d_r50": {"base_width": 4, "zero_init_final_bn": False},
        "x3d_m": {"base_width": 4, "zero_init_final_bn": False}}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_tiny_backbone_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = BACKBONES[name](num_classes=5, dropout=0.1, **TINY[name]).train()
    logits = model(torch.randn(2, 3, 8, 32, 32))
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    for path, p in model.named_parameters():
        assert p.grad is not None, path
        assert torch.isfinite(p.grad).all(), path
        assert p.grad.abs().sum() > 0, path


@pytest.mark.parametrize("name", ["i3d_r50", "x3d_m"])
def test_zero_init_final_bn_makes_every_block_start_as_identity_branch(name):
    model = BACKBONES[name](base_width=4)
    final_bns = [m for m in model.modules() if getattr(m, "transform_final_bn", False)]
    assert final_bns and all(torch.count_nonzero(m.weight) == 0 for m in final_bns)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_builders_are_keyword_only_and_reject_negative_width(name):
    with pytest.raises(TypeError):
        BACKBONES[name](400)
    with pytest.raises(ValueError, match="base_width"):
        BACKBONES[name](base_width=-1)
