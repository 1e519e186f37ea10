"""Cost accounting: MACs agree with FlopCounterMode / 2 and with the published static figures."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pipeline.models.cost import conv_macs, dynamic_layer_macs, gflops_summary, param_count, static_macs
from pipeline.models.dynamic_conv import DynamicConv3d


def _counter_macs(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2  # 2 FLOPs per MAC


def test_static_macs_match_flop_counter():
    net = nn.Sequential(nn.Conv3d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv3d(8, 8, 3, padding=1, groups=8), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                        nn.Linear(8, 4))
    x = torch.randn(1, 3, 8, 16, 16)
    assert static_macs(net, (3, 8, 16, 16)) == _counter_macs(lambda: net(x))
    assert conv_macs(net[0], (1, 8, 4, 8, 8)) == 8 * 4 * 8 * 8 * 3 * 27


@pytest.mark.parametrize("search_space", [2, 3, 4])
def test_per_choice_cost_equals_flop_counter_and_falls(search_space):
    torch.manual_seed(0)
    layer = DynamicConv3d.from_conv(nn.Conv3d(16, 24, 3, padding=1), search_space=search_space).eval()
    x = torch.randn(2, 16, 8, 10, 10)
    costs = {}
    with torch.no_grad():
        for i in range(search_space):
            for j in range(search_space):
                layer.forced = (i, j)
                counted = _counter_macs(lambda: layer(x))
                per_sample = dynamic_layer_macs(layer, x.shape, i, j)
                assert counted == 2 * per_sample
                assert layer.record.macs.tolist() == [per_sample] * 2
                costs[i, j] = per_sample
    for i in range(search_space - 1):
        for j in range(search_space - 1):
            assert costs[i + 1, j] < costs[i, j] and costs[i, j + 1] < costs[i, j]


def test_static_macs_counts_dynamic_layers_at_full_cost():
    net = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.Conv3d(8, 8, 3, padding=1))
    before = static_macs(net, (3, 4, 8, 8))
    net[1] = DynamicConv3d.from_conv(net[1])
    assert static_macs(net, (3, 4, 8, 8)) == before


def test_summary_and_params():
    assert gflops_summary([1e9, 3e9]) == {"avg": 2.0, "max": 3.0, "min": 1.0}
    with pytest.raises(ValueError):
        gflops_summary([])
    assert param_count(nn.Linear(3, 2)) == 8


def test_static_macs_of_a_vared_model_equal_its_backbones():
    # VaredModel.forward asks for its own static cost; run inside an outer static_macs (a fresh model,
    # empty cache) that nested count must not add the outer hooks' counts a second time.
    from pipeline.models.backbones import BACKBONES
    from pipeline.models.vared import VaredModel

    model = VaredModel(BACKBONES["r2plus1d_18"](num_classes=10, base_width=8), dynamic="none").eval()
    shape = (3, 4, 32, 32)
    backbone = static_macs(model.backbone, shape)
    assert static_macs(model, shape) == backbone
    with torch.device("meta"):
        x = torch.empty(1, *shape)
    assert backbone == _counter_macs(lambda: copy_to_meta(model.backbone)(x))


def copy_to_meta(module):
    import copy
    return copy.deepcopy(module).to("meta")
