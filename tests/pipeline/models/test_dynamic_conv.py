"""DynamicConv3d / DynamicConv2d: exactness facts of METHOD.md section 3, soft/hard agreement,
per-sample grouping, gradients and argument checks."""

import copy

import pytest
import torch
from torch import nn

from pipeline.models.dynamic_conv import (DynamicConv2d, DynamicConv3d, channel_index, temporal_factors,
                                          temporal_index)

CONVS = {
    "spatial_1x3x3": lambda: nn.Conv3d(6, 8, (1, 3, 3), padding=(0, 1, 1), bias=False),
    "temporal_3x1x1": lambda: nn.Conv3d(6, 8, (3, 1, 1), padding=(1, 0, 0), bias=False),
    "full_3x3x3_bias": lambda: nn.Conv3d(6, 10, 3, padding=1),
    "strided": lambda: nn.Conv3d(6, 8, 3, stride=(2, 2, 2), padding=1, bias=False),
    "depthwise": lambda: nn.Conv3d(8, 8, 3, padding=1, groups=8, bias=False),
    "temporal_replicate": lambda: nn.Conv3d(6, 8, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0), bias=False,
                                            padding_mode="replicate"),
    "full_3x3x3_replicate": lambda: nn.Conv3d(6, 10, 3, padding=1, padding_mode="replicate"),
}


def _pair(conv_name, mode="both", search_space=2):
    torch.manual_seed(0)
    conv = CONVS[conv_name]()
    ref = copy.deepcopy(conv)
    layer = DynamicConv3d.from_conv(conv, mode=mode, search_space=search_space)
    x = torch.randn(3, conv.in_channels, 8, 9, 9)
    return layer, ref, x


@pytest.mark.parametrize("conv_name", list(CONVS))
@pytest.mark.parametrize("execution", ["soft", "hard"])
def test_full_variant_equals_static_conv_bit_for_bit(conv_name, execution):
    layer, ref, x = _pair(conv_name)
    layer.execution, layer.forced = execution, (0, 0)
    with torch.no_grad():
        assert torch.equal(layer(x), ref(x))


def test_state_dict_keys_are_conv_keys_plus_new_ones():
    conv = nn.Conv3d(6, 8, 3, padding=1)
    layer = DynamicConv3d.from_conv(conv)
    keys = set(layer.state_dict())
    assert set(conv.state_dict()) <= keys
    assert all(k.split(".")[0] in ("weight", "bias", "gate", "channel_ops", "temporal_op") for k in keys)
    assert layer.weight is conv.weight and layer.weight.shape == (8, 6, 3, 3, 3)


@pytest.mark.parametrize("conv_name", list(CONVS))
@pytest.mark.parametrize("search_space", [2, 3, 4])
def test_hard_forced_equals_soft_forced(conv_name, search_space):
    layer, _, x = _pair(conv_name, search_space=search_space)
    with torch.no_grad():
        for i in range(search_space):
            for j in range(search_space):
                layer.forced = (i, j)
                layer.execution = "soft"
                soft = layer(x)
                layer.execution = "hard"
                hard = layer(x)
                assert soft.shape == hard.shape == (3, layer.out_channels, *soft.shape[2:])
                torch.testing.assert_close(hard, soft, atol=1e-5, rtol=1e-5)


def _randomise_cheap_ops(layer):
    with torch.no_grad():
        for op in list(layer.channel_ops or []) + [layer.temporal_op]:
            if op is not None:
                op.weight.normal_()


@pytest.mark.parametrize("conv_name", ["spatial_1x3x3", "temporal_3x1x1", "full_3x3x3_bias", "depthwise"])
@pytest.mark.parametrize("search_space", [2, 3, 4])
def test_compile_path_assembly_equals_eager_assembly(conv_name, search_space, monkeypatch):
    """Under torch.compile the hard path assembles with concatenations instead of slot writes."""
    layer, _, x = _pair(conv_name, search_space=search_space)
    _randomise_cheap_ops(layer)
    layer.execution = "hard"
    with torch.no_grad():
        eager = {}
        for i in range(search_space):
            for j in range(search_space):
                layer.forced = (i, j)
                eager[i, j] = layer(x)
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        for (i, j), expected in eager.items():
            layer.forced = (i, j)
            torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_hard_layer_equals_eager_layer():
    layer, _, x = _pair("spatial_1x3x3")
    _randomise_cheap_ops(layer)
    layer.execution, layer.forced = "hard", (1, 1)
    with torch.no_grad():
        expected = layer(x)
        compiled = torch.compile(layer, fullgraph=True)
        torch.testing.assert_close(compiled(x), expected, atol=1e-5, rtol=1e-5)


def test_computed_part_is_a_slice_of_the_full_output():
    layer, ref, x = _pair("full_3x3x3_bias")
    layer.execution, layer.forced = "hard", (1, 1)
    with torch.no_grad():
        y, full = layer(x), ref(x)
    m = layer.computed_channels[1]
    torch.testing.assert_close(y[:, :m, ::2], full[:, :m, ::2], atol=1e-5, rtol=1e-5)


def test_cheap_ops_start_as_copies():
    layer, ref, x = _pair("spatial_1x3x3")
    layer.execution, layer.forced = "hard", (0, 1)  # temporal cheap op only: frame 2i+1 copies 2i
    with torch.no_grad():
        y, full = layer(x), ref(x)
    assert torch.equal(y[:, :, 1::2], full[:, :, ::2])


@pytest.mark.parametrize("frames", [8, 7])
@pytest.mark.parametrize("search_space", [2, 3])
@pytest.mark.parametrize("conv_name", ["full_3x3x3_bias", "spatial_1x3x3", "temporal_3x1x1", "strided"])
def test_hard_mixed_choices_equal_each_sample_alone(conv_name, search_space, frames):
    # Covers the grouped path: frames preselected for 1x3x3 kernels, maps written into output rows,
    # odd T_out (last group trimmed) and S = 3 (rebuilt maps gathered from their sources).
    layer, _, x = _pair(conv_name, search_space=search_space)
    x = x[:, :, :frames]
    layer.eval()
    with torch.no_grad():
        # Make the gate prefer different variants for different samples.
        torch.manual_seed(1)
        layer.gate.fc2.weight.normal_(std=3.0)
        layer.channel_ops[0].weight.normal_()  # cheap ops away from the identity: slots must not mix
        layer.temporal_op.weight.normal_()
        x = torch.cat([x, 5 * x, -x, x.flip(0)])
        y = layer(x)
        rec = layer.record
        assert len(set(zip(rec.channel_index.tolist(), rec.temporal_index.tolist()))) > 1
        for b in range(x.shape[0]):
            layer.forced = (int(rec.channel_index[b]), int(rec.temporal_index[b]))
            torch.testing.assert_close(y[b:b + 1], layer(x[b:b + 1]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["both", "temporal", "channel"])
def test_soft_gradient_reaches_every_parameter(mode):
    layer, _, x = _pair("full_3x3x3_bias", mode=mode, search_space=3)
    layer.train()
    layer(x).square().mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_record_contents():
    layer, _, x = _pair("spatial_1x3x3")
    layer.eval()
    with torch.no_grad():
        y = layer(x)
    rec = layer.record
    assert rec.channel_gate.shape == rec.temporal_gate.shape == (3, 2)
    assert rec.channel_index.dtype == torch.long and rec.channel_index.shape == (3,)
    assert rec.input_shape == tuple(x.shape) and rec.output_shape == tuple(y.shape)
    assert rec.full_macs == 8 * 8 * 9 * 9 * 6 * 9
    assert rec.macs.shape == (3,) and rec.expected_ratio.shape == (3,)
    assert ((rec.expected_ratio > 0.25) & (rec.expected_ratio <= 1)).all()


def test_temporal_factors_are_clamped_to_output_frames():
    assert temporal_factors(4, 3) == [1, 2, 3, 3]
    conv = nn.Conv3d(4, 4, 3, padding=1)
    layer = DynamicConv3d.from_conv(conv, search_space=4)
    layer.execution, layer.forced = "hard", (0, 3)
    x = torch.randn(2, 4, 2, 5, 5)
    with torch.no_grad():
        assert layer(x).shape == conv(x).shape


def test_dynamic_conv2d_channel_only():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, padding=1)
    ref = copy.deepcopy(conv)
    layer = DynamicConv2d.from_conv(conv, search_space=3)
    assert layer.weight.dim() == 4 and layer.temporal_op is None
    x = torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        layer.execution, layer.forced = "hard", (0, None)
        assert torch.equal(layer(x), ref(x))
        for i in range(3):
            layer.forced = (i, None)
            layer.execution = "soft"
            soft = layer(x)
            layer.execution = "hard"
            torch.testing.assert_close(layer(x), soft, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        DynamicConv2d.from_conv(nn.Conv2d(4, 4, 3), mode="both")


def test_bad_arguments_raise_value_error():
    conv = nn.Conv3d(4, 4, 3)
    for bad in (0, 1, 5):
        with pytest.raises(ValueError):
            DynamicConv3d.from_conv(conv, search_space=bad)
    with pytest.raises(ValueError):
        DynamicConv3d.from_conv(conv, mode="spatial")
    with pytest.raises(ValueError):
        DynamicConv3d.from_conv(nn.Conv3d(4, 8, 3, groups=2), mode="channel")
    DynamicConv3d.from_conv(nn.Conv3d(4, 8, 3, groups=2), mode="temporal")  # allowed
    layer = DynamicConv3d.from_conv(conv)
    with pytest.raises(ValueError):
        layer.forced = (2, 0)
    with pytest.raises(ValueError):
        layer.forced = (0, -1)
    with pytest.raises(ValueError):
        layer.execution = "fast"
    with pytest.raises(ValueError):
        layer(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError):
        DynamicConv2d.from_conv(nn.Conv2d(4, 4, 3))(torch.randn(1, 4, 2, 5, 5))
    with pytest.raises(ValueError):
        channel_index(0.3, 2)
    with pytest.raises(ValueError):
        temporal_index(8, 3)
    assert channel_index(0.25, 3) == 2 and temporal_index(4, 3) == 2
