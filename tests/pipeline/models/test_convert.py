"""convert_to_dynamic: which layers, in place, idempotent, warnings; model-wide switches."""

import pytest
import torch
from torch import nn

from pipeline.models.convert import (clear_policy, convert_to_dynamic, default_dynamic_filter, dynamic_layers,
                                     force_policy, set_execution)
from pipeline.models.dynamic_conv import DynamicConv2d, DynamicConv3d


def _unit(cin, cout):  # a (2+1)D unit: spatial 1x3x3, BN, ReLU, temporal 3x1x1
    mid = (cin + cout) // 2
    return nn.Sequential(nn.Conv3d(cin, mid, (1, 3, 3), padding=(0, 1, 1), bias=False), nn.BatchNorm3d(mid),
                         nn.ReLU(), nn.Conv3d(mid, cout, (3, 1, 1), padding=(1, 0, 0), bias=False))


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Sequential(_unit(cin, cout), nn.BatchNorm3d(cout), nn.ReLU())
        self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x):
        return torch.relu(self.conv1(x) + self.downsample(x))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU())
        self.layer1 = nn.Sequential(Block(8, 8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.layer1(self.stem(x)).mean(dim=(2, 3, 4)))


def test_default_filter_keeps_stem_shortcuts_head_se_static():
    for name in ("stem.0", "s1.pathway0_stem.conv", "layer2.0.downsample.0", "s2.res0.branch1", "head.projection",
                 "fc", "s2.res0.branch2.se.fc1", "block.shortcut.conv"):
        assert not default_dynamic_filter(name, nn.Conv3d(1, 1, 1)), name
    for name in ("layer1.0.conv1.0.0", "s2.pathway0_res0.branch2.b", "s3.res1.branch2.a", "res.conv"):
        assert default_dynamic_filter(name, nn.Conv3d(1, 1, 1)), name


def test_convert_in_place_returns_originals_and_is_idempotent():
    model = Tiny()
    keys = set(model.state_dict())
    replaced = convert_to_dynamic(model)
    assert list(replaced) == ["layer1.0.conv1.0.0", "layer1.0.conv1.0.3"]
    assert all(isinstance(m, nn.Conv3d) for m in replaced.values())
    assert [n for n, _ in dynamic_layers(model)] == list(replaced)
    assert isinstance(model.layer1[0].conv1[0][0], DynamicConv3d)
    assert type(model.stem[0]) is nn.Conv3d and type(model.layer1[0].downsample[0]) is nn.Conv3d
    assert keys <= set(model.state_dict())
    with pytest.warns(UserWarning):
        assert convert_to_dynamic(model) == {}


def test_convert_warns_when_nothing_matches():
    with pytest.warns(UserWarning, match="no convolution matched"):
        assert convert_to_dynamic(nn.Sequential(nn.Linear(2, 2))) == {}


def test_conv2d_becomes_channel_only_and_temporal_mode_skips_it():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv3d(4, 4, 3))
    convert_to_dynamic(net, include=lambda n, m: True)
    assert isinstance(net[0], DynamicConv2d) and net[0].mode == "channel"
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv3d(4, 4, 3))
    convert_to_dynamic(net, mode="temporal", include=lambda n, m: True)
    assert type(net[0]) is nn.Conv2d and isinstance(net[1], DynamicConv3d)


def test_model_wide_switches():
    model = Tiny()
    convert_to_dynamic(model, search_space=3)
    set_execution(model, "hard")
    force_policy(model, 2, 1)
    assert all(m.execution == "hard" and m.forced == (2, 1) for _, m in dynamic_layers(model))
    clear_policy(model)
    assert all(m.forced is None for _, m in dynamic_layers(model))
    with pytest.raises(ValueError):
        force_policy(model, 3, 0)
    with pytest.raises(ValueError):
        set_execution(model, "sometimes")
