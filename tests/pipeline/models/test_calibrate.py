"""Calibration of a converted model (pipeline/models/calibrate.py): the fitted cheap ops start closer
to the static layer than the identity-copy start, gate statistics come from real inputs, and the
BatchNorm recalibration re-estimates the statistics of the hard-policy forward."""

import copy

import torch
from torch import nn

from pipeline.config import apply_overrides, get_preset
from pipeline.models import build_model
from pipeline.models.calibrate import calibrate_conversion, recalibrate_batchnorm
from pipeline.models.convert import dynamic_layers
from pipeline.models.dynamic_conv import DynamicConv3d


def _correlated_conv(seed: int = 0) -> nn.Conv3d:
    """A conv whose filters m..C-1 are scaled, shifted-by-permutation copies of filters 0..m-1 plus
    noise: the rebuilt maps are predictable, but not from the source the copy init assumes."""
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv3d(6, 8, (1, 3, 3), padding=(0, 1, 1), bias=False)
    with torch.no_grad():
        base = torch.randn(4, 6, 1, 3, 3, generator=g)
        perm = torch.tensor([2, 0, 3, 1])
        conv.weight[:4] = base
        conv.weight[4:] = -1.7 * base[perm] + 0.05 * torch.randn(4, 6, 1, 3, 3, generator=g)
    return conv


def _rebuild_error(layer: DynamicConv3d, x: torch.Tensor) -> float:
    """Mean squared error of the ratio-1/2 variant against the full output."""
    with torch.no_grad():
        layer.execution = "hard"
        layer.forced = (0, 0)
        full = layer(x)
        layer.forced = (1, 0)
        half = layer(x)
        layer.forced = None
    return float(((half - full) ** 2).mean() / full.var())


def test_calibrated_channel_op_starts_closer_to_the_static_layer_than_the_copy_init():
    torch.manual_seed(0)
    copied = DynamicConv3d.from_conv(_correlated_conv(), mode="channel")
    fitted = copy.deepcopy(copied)
    calib = [torch.randn(4, 6, 3, 10, 10) for _ in range(4)]
    quality = calibrate_conversion(nn.Sequential(fitted), calib)
    held_out = torch.randn(4, 6, 3, 10, 10)
    assert list(quality.values())[0] > 0.9  # the rebuilt maps are almost exact linear functions
    assert _rebuild_error(fitted, held_out) < 0.1 * _rebuild_error(copied, held_out)
    assert fitted.channel_ops[0].source.tolist() == [2, 0, 3, 1]  # the matching computed maps


def test_calibration_leaves_the_full_variant_unchanged_and_sets_gate_statistics():
    cfg = apply_overrides(get_preset("debug"), ["model.num_classes=3"])
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    x = torch.randn(4, 3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    model.force_policy(0, 0)
    before = model(x).logits
    model.clear_policy()
    calibrate_conversion(model, [x])
    model.force_policy(0, 0)
    assert torch.equal(model(x).logits, before)
    for _, layer in dynamic_layers(model):
        bn = layer.gate.bn
        assert int(bn.num_batches_tracked) == 1
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_recalibration_sets_the_statistics_of_the_hard_policy_forward():
    cfg = apply_overrides(get_preset("debug"), ["model.num_classes=3"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    model.force_policy(1, 1)  # a cheap policy everywhere
    x = torch.randn(6, 3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    norms = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm3d)}
    inputs = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: inputs.__setitem__(n, i[0].detach()))
             for n, m in norms.items()]
    model.eval()
    model.set_execution("hard")
    with torch.no_grad():
        model(x)  # the hard forward with the (old) running statistics ...
    for h in hooks:
        h.remove()
    first = "backbone.stem.1"  # ... whose first BatchNorm sees exactly the input of the recalibration
    for m in norms.values():
        m.running_mean.fill_(5.0)
        m.running_var.fill_(9.0)
    assert recalibrate_batchnorm(model, [x]) == 1
    expected = inputs[first].transpose(0, 1).flatten(1).mean(dim=1)
    torch.testing.assert_close(norms[first].running_mean, expected)
    for name, m in norms.items():
        assert not torch.allclose(m.running_mean, torch.full_like(m.running_mean, 5.0)), name
    gate_bn = dynamic_layers(model)[0][1].gate.bn
    assert torch.equal(gate_bn.running_var, torch.ones_like(gate_bn.running_var))  # gates keep theirs


def test_recalibration_restores_hard_mode_outputs_after_soft_statistics():
    """Running statistics gathered under soft mixing (outputs scaled by the raw gate sums) are off for
    the hard forward; re-estimating them brings the eval output back to the train-mode (batch
    statistics) output of the same hard policy."""
    cfg = apply_overrides(get_preset("debug"), ["model.num_classes=3", "model.gate_training=soft"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    x = torch.randn(8, 3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    model.train()
    with torch.no_grad():
        for _ in range(20):
            model(x)  # soft forwards: the running statistics of mixed outputs
    model.force_policy(1, 1)

    def gap(m):
        with torch.no_grad():
            m.eval()
            m.set_execution("hard")
            evaluated = m(x).logits
            ref = copy.deepcopy(m)
            for mod in ref.modules():
                if isinstance(mod, nn.BatchNorm3d):
                    mod.train()  # batch statistics of this very hard forward
            return float((evaluated - ref(x).logits).abs().mean())

    stale = gap(model)
    recalibrate_batchnorm(model, [x])
    assert gap(model) < 0.05 * stale
