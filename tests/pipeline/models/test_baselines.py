"""Table 7 baselines: magnitude pruning reaches the requested GFLOPs, channel gating counts what it
computes, and both train one step with gradients through the VA-RED² training step."""

import dataclasses

import pytest
import torch

from pipeline.config import get_preset
from pipeline.models import build_model
from pipeline.models.baselines import (ChannelGatedModel, MagnitudePrunedModel, build_baseline,
                                       sparsity_of)
from pipeline.train.step import train_step

SHAPE = (3, 4, 32, 32)  # the debug preset's clip


def _cfg(baseline: str, **kw):
    return dataclasses.replace(get_preset("debug").model, baseline=baseline, **kw)


@pytest.mark.parametrize("ratio", [0.9, 0.7, 0.5])
def test_magnitude_pruning_reaches_the_requested_gflops(ratio):
    torch.manual_seed(0)
    model = build_baseline(_cfg("magnitude", prune_macs_ratio=ratio)).eval()
    out = model(torch.randn(2, *SHAPE))
    static = build_model(dataclasses.replace(_cfg("none"), dynamic="none")).static_macs(SHAPE)
    assert model.static_macs(SHAPE) == static
    assert out.macs.tolist() == [out.macs[0].item()] * 2
    assert out.macs[0].item() / static == pytest.approx(ratio, abs=2e-3)


def test_magnitude_pruning_removes_the_smallest_weights():
    torch.manual_seed(0)
    model = build_baseline(_cfg("magnitude", prune_macs_ratio=0.6))
    model.prune(SHAPE)
    assert 0 < sparsity_of(model) < 1
    for _, conv in model.masked_layers():
        kept = conv.weight[conv.weight_mask].abs()
        dropped = conv.weight[~conv.weight_mask].abs()
        if len(kept) and len(dropped):
            assert dropped.max() <= kept.min()


def test_pruned_macs_count_nonzero_weights_times_output_positions():
    model = build_baseline(_cfg("magnitude", prune_macs_ratio=0.6))
    model.prune(SHAPE)
    from torch.utils.flop_counter import FlopCounterMode

    # The dense count of the same model (FlopCounterMode counts 2 FLOPs per MAC) ...
    with FlopCounterMode(display=False) as counter:
        model.backbone(torch.randn(1, *SHAPE))
    assert counter.get_total_flops() // 2 == model.static_macs(SHAPE)
    # ... minus every masked weight once per output position.
    pos = model.positions(SHAPE)
    removed = sum(int((~c.weight_mask).sum()) * pos[n] for n, c in model.masked_layers())
    assert model.pruned_macs(SHAPE) == model.static_macs(SHAPE) - removed


def test_an_unreachable_target_is_a_value_error():
    model = build_baseline(_cfg("magnitude", prune_macs_ratio=0.01))
    with pytest.raises(ValueError, match="unreachable"):
        model.prune(SHAPE)


def test_a_pruned_checkpoint_reloads_without_pruning_again():
    torch.manual_seed(0)
    model = build_baseline(_cfg("magnitude", prune_macs_ratio=0.6))
    x = torch.randn(2, *SHAPE)
    model.eval()
    before = model(x)
    fresh = build_baseline(_cfg("magnitude", prune_macs_ratio=0.6))
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    after = fresh(x)
    torch.testing.assert_close(after.logits, before.logits)
    assert after.macs.tolist() == before.macs.tolist()


def test_a_static_checkpoint_loads_into_a_baseline():
    static = build_model(dataclasses.replace(_cfg("none"), dynamic="none"))
    for name in ("magnitude", "channel_gating"):
        model = build_baseline(_cfg(name))
        model.load_backbone_state_dict(static.state_dict())  # strict: only the baseline's own parts missing
        torch.testing.assert_close(model.backbone.fc.weight, static.backbone.fc.weight)


def test_channel_gating_costs_lie_between_the_base_path_and_the_static_model():
    torch.manual_seed(0)
    model = build_baseline(_cfg("channel_gating", gating_base_fraction=0.5)).eval()
    out = model(torch.randn(3, *SHAPE))
    static = model.static_macs(SHAPE)
    base = static - sum(r.full_macs for r in out.records) + sum(
        l.split_macs(p)[0] for (_, l), p in zip(model.gated_layers(), model.positions(SHAPE)))
    assert torch.all(out.macs >= base) and torch.all(out.macs <= static)
    assert len(out.records) == len(model.gated_layers())


@pytest.mark.parametrize("padding", ["replicate", "zeros"])
def test_channel_gating_with_every_gate_on_equals_the_dense_conv(padding):
    torch.manual_seed(0)
    static = build_model(dataclasses.replace(_cfg("none"), dynamic="none", temporal_padding=padding)).eval()
    model = build_baseline(dataclasses.replace(_cfg("channel_gating"), temporal_padding=padding)).eval()
    model.load_backbone_state_dict(static.state_dict())
    with torch.no_grad():
        for _, layer in model.gated_layers():
            layer.delta.fill_(-1e9)  # every partial sum passes the threshold
    x = torch.randn(2, *SHAPE)
    out = model(x)
    torch.testing.assert_close(out.logits, static(x).logits, rtol=1e-4, atol=1e-5)
    assert out.macs.tolist() == [model.static_macs(SHAPE)] * 2


@pytest.mark.parametrize("name", ["magnitude", "channel_gating"])
def test_baselines_train_one_step_with_gradients(name):
    torch.manual_seed(0)
    model = build_baseline(_cfg(name, prune_macs_ratio=0.7))
    x, y = torch.randn(4, *SHAPE), torch.tensor([0, 1, 2, 3])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = train_step(model, x, y, opt, lambda_e=1.0)
    assert torch.isfinite(torch.tensor(result.loss))
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    if name == "channel_gating":  # the efficiency loss reaches the thresholds
        assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.endswith("delta"))
    else:  # pruned weights stay pruned: no gradient flows through a zero mask
        for _, conv in model.masked_layers():
            assert torch.all(conv.weight.grad[~conv.weight_mask] == 0)


def test_unknown_baseline_is_a_value_error():
    with pytest.raises(ValueError, match="magnitude"):
        build_baseline(dataclasses.replace(_cfg("none")))
    assert isinstance(build_baseline(_cfg("magnitude")), MagnitudePrunedModel)
    assert isinstance(build_baseline(_cfg("channel_gating")), ChannelGatedModel)
