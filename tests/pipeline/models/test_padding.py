"""Temporal padding (pipeline/models/padding.py, `model.temporal_padding`): "replicate" keeps a still
clip still at every depth, so rebuilding frames from their neighbours is exact for it, where zero
padding is not; it applies to temporal convs only; a static model trained with one padding refuses
to start a dynamic run with the other."""

import pytest
import torch
from torch import nn

from pipeline.config import apply_overrides, get_preset
from pipeline.models import build_model
from pipeline.models.backbones import build_backbone
from pipeline.models.convert import dynamic_layers
from pipeline.models.padding import conv_nd
from pipeline.train.start import check_static_matches


def _debug_model(padding: str):
    cfg = apply_overrides(get_preset("debug"), ["model.num_classes=3", f"model.temporal_padding={padding}",
                                                "data.num_frames=8"])
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    return model, (3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)


def _still_clips(shape, n=2):
    frame = torch.randn(n, shape[0], 1, *shape[2:])
    return frame.expand(n, shape[0], shape[1], *shape[2:]).contiguous()


def test_conv_nd_pads_like_nn_conv():
    x = torch.randn(2, 4, 6, 7, 8)
    for mode in ("zeros", "replicate"):
        conv = nn.Conv3d(4, 5, 3, stride=(2, 1, 2), padding=(1, 1, 0), padding_mode=mode)
        with torch.no_grad():
            ours = conv_nd(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, 1, mode)
            assert torch.equal(ours, conv(x))


def test_only_temporal_convs_change_padding():
    cfg = apply_overrides(get_preset("debug"), ["model.temporal_padding=replicate"]).model
    convs = [m for m in build_backbone(cfg).modules() if isinstance(m, nn.Conv3d)]
    temporal = [m for m in convs if m.kernel_size[0] > 1 and m.padding[0] > 0]
    assert temporal and all(m.padding_mode == "replicate" for m in temporal)
    assert all(m.padding_mode == "zeros" for m in convs if m not in temporal)


def _layer_inputs(model, x) -> dict:
    """Each dynamic layer's input in one forward of `x`."""
    inputs = {}
    hooks = [layer.register_forward_pre_hook(lambda m, a, n=name: inputs.__setitem__(n, a[0]))
             for name, layer in dynamic_layers(model)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return inputs


def _frames_differ(x) -> bool:
    return x.shape[2] > 1 and float((x[:, :, 1:] - x[:, :, :1]).abs().max()) > 1e-5


def test_still_clips_stay_still_at_every_depth_only_under_replicate():
    model, shape = _debug_model("replicate")
    inputs = _layer_inputs(model, _still_clips(shape))
    assert inputs and not any(_frames_differ(x) for x in inputs.values())

    model, shape = _debug_model("zeros")
    inputs = _layer_inputs(model, _still_clips(shape))
    # zero padding makes the end frames differ from the first temporal conv on
    assert sum(_frames_differ(x) for x in inputs.values()) >= len(inputs) // 2


@pytest.mark.parametrize("padding, exact", [("replicate", True), ("zeros", False)])
def test_temporal_reduction_of_a_still_clip_is_exact_only_under_replicate(padding, exact):
    model, shape = _debug_model(padding)
    x = _still_clips(shape)
    with torch.no_grad():
        model.force_policy(0, 0)
        static = model(x)
        full = static.logits
        model.force_policy(0, 1)  # every layer at R = 2: half the frames rebuilt by the cheap ops
        reduced = model(x)
    model.clear_policy()
    assert bool((reduced.macs < static.macs).all())
    gap = float((reduced.logits - full).abs().max())
    assert (gap < 1e-5) == exact, gap


def test_a_static_model_with_another_padding_is_refused():
    replicate = apply_overrides(get_preset("debug"), ["model.temporal_padding=replicate"]).model
    check_static_matches(replicate, {"model": {"backbone": "r2plus1d_18", "temporal_padding": "replicate"}})
    with pytest.raises(ValueError, match="model.temporal_padding=zeros"):
        check_static_matches(replicate, {"model": {"backbone": "r2plus1d_18", "temporal_padding": "zeros"}})
    with pytest.raises(ValueError, match="model.temporal_padding=zeros"):  # saved before the key existed
        check_static_matches(replicate, {"model": {"backbone": "r2plus1d_18"}})
    with pytest.raises(ValueError, match="model.backbone=x3d_m"):
        check_static_matches(replicate, {"model": {"backbone": "x3d_m", "temporal_padding": "replicate"}})
