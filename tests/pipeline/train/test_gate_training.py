"""How the gates and cheap ops train (METHOD.md sections 4-5, and the choices marked ours): every
cheap op gets a gradient, no gate head dies, a gate decides the same in training and inference, the
distortion term ranks a still clip as cheaper than a moving one, and the gates do not reshape the
backbone's features."""

import pytest
import torch

from pipeline.config import apply_overrides, get_preset
from pipeline.models import build_model
from pipeline.models.convert import dynamic_layers
from pipeline.train.optim import build_optimizer
from pipeline.train.step import train_step
from tests.pipeline.train.test_loop import learnable_clips


def debug_model(*overrides):
    cfg = apply_overrides(get_preset("debug"), ["model.num_classes=2", *overrides])
    torch.manual_seed(0)
    return cfg, build_model(cfg.model)


def test_every_cheap_op_and_gate_gets_a_gradient_in_a_straight_through_step():
    cfg, model = debug_model()
    clips, labels = learnable_clips(4, cfg, seed=0)
    model.train()
    out = model(clips)
    from pipeline.train.losses import total_loss

    loss, _, _ = total_loss(out, labels, lambda_e=1.0, lambda_d=cfg.train.lambda_d)
    loss.backward()
    # The forward ran the argmax choice (full compute at the start) everywhere ...
    assert all(bool((r.channel_index == 0).all() and (r.temporal_index == 0).all()) for r in out.records)
    for (name, layer), record in zip(dynamic_layers(model), out.records):
        ops = list(layer.channel_ops or [])
        if layer.temporal_op is not None and record.output_shape[2] > 1:  # T_out = 1: nothing to rebuild
            ops.append(layer.temporal_op)
        for op in ops:  # ... yet every cheap op learns (the distortion term's gradient)
            assert op.weight.grad is not None and op.weight.grad.abs().sum() > 0, name
        assert layer.gate.fc2.weight.grad is not None and layer.gate.fc2.weight.grad.abs().sum() > 0, name


def test_a_gate_head_whose_values_are_all_zero_still_decides_and_learns():
    """max(tanh, 0) can zero a whole head; argmax V would then fall to index 0 (full compute) with no
    gradient ever again. Its choice falls to the pre-activations and its probabilities keep a gradient."""
    cfg, model = debug_model()
    layer = dynamic_layers(model)[0][1]
    with torch.no_grad():
        layer.gate.fc2.bias.copy_(torch.tensor([-2.0, -1.0] * 2))  # both heads: values all 0, option 1 ahead
    x = torch.randn(3, layer.in_channels, 4, 16, 16)
    layer.train()
    gate = layer.gate(x)
    assert torch.equal(gate.channel, torch.zeros_like(gate.channel))
    layer.eval()
    layer.execution = "hard"
    with torch.no_grad():
        layer(x)
    assert (layer.record.channel_index == 1).all() and (layer.record.temporal_index == 1).all()
    layer.train()
    layer.execution = "auto"
    layer(x)
    layer.record.expected_ratio.sum().backward()
    assert layer.gate.fc2.bias.grad.abs().sum() > 0


def test_no_gate_head_is_stuck_after_a_strong_efficiency_push():
    cfg, model = debug_model("train.lr=0.01", "train.gate_lr_mult=10")
    opt = build_optimizer(model, cfg.train)
    for step in range(25):
        clips, labels = learnable_clips(8, cfg, seed=step)
        train_step(model, clips, labels, opt, lambda_e=20.0, lambda_d=cfg.train.lambda_d)
    model.eval()
    with torch.no_grad():
        out = model(learnable_clips(8, cfg, seed=99)[0])
    for (name, layer), record in zip(dynamic_layers(model), out.records):
        for probs in (record.channel_gate, record.temporal_gate):
            if probs is not None:
                assert torch.isfinite(probs).all(), name
    assert any(bool((r.channel_index > 0).any()) for r in out.records)  # the push reached the choices


def test_running_gate_norm_decides_the_same_in_training_and_inference():
    cfg, model = debug_model()
    clips, _ = learnable_clips(4, cfg, seed=0)
    with torch.no_grad():
        model.train()
        model(clips)  # a first batch sets the gate statistics
        layer = dynamic_layers(model)[0][1]
        x = torch.randn(4, layer.in_channels, 4, 16, 16)
        layer.train()
        train_values = layer.gate(x).channel
        layer.eval()
        eval_values = layer.gate(x).channel
    torch.testing.assert_close(train_values, eval_values, atol=1e-6, rtol=1e-5)
    # one clip's decision does not depend on the other clips of its batch
    with torch.no_grad():
        layer.train()
        alone = layer.gate(x[:1]).channel
    torch.testing.assert_close(alone, train_values[:1], atol=1e-5, rtol=1e-4)


def test_distortion_term_is_smaller_for_a_still_clip_than_a_moving_one():
    cfg, model = debug_model("model.dynamic=temporal")
    clips, labels = learnable_clips(8, cfg, seed=0)  # label 0: still, label 1: moving
    model.train()
    with torch.no_grad():
        out = model(clips)
    assert out.distortion is not None and out.distortion.shape == (8,)
    assert out.distortion[labels == 0].max() < out.distortion[labels == 1].min()


def test_efficiency_and_distortion_terms_do_not_reach_the_backbone_weights():
    cfg, model = debug_model()
    clips, labels = learnable_clips(4, cfg, seed=0)
    model.train()
    out = model(clips)
    (out.expected_ratio.sum() + out.distortion.sum()).backward()
    for name, param in model.named_parameters():
        if ".gate." not in name and ".channel_ops." not in name and ".temporal_op." not in name:
            assert param.grad is None or param.grad.abs().sum() == 0, name


@pytest.mark.parametrize("conv_name,mode,search_space,frames", [
    ("3d", "both", 2, 4), ("3d", "both", 3, 4), ("3d", "both", 2, 3), ("3d", "temporal", 3, 3),
    ("3d", "channel", 3, 4), ("2d", "channel", 3, 1)])
def test_straight_through_training_equals_the_weighted_sum_it_stands_for(conv_name, mode, search_space, frames):
    """The layer's straight-through step (rebuilt regions only, cheap ops only for the samples that
    chose them) against its definition: every variant at full size, mixed by
    w = onehot(argmax) + p - p.detach(); same output, distortion and gradient of every parameter."""
    import copy

    from torch import nn

    from pipeline.models.dynamic_conv import DynamicConv2d, DynamicConv3d

    torch.manual_seed(0)
    if conv_name == "3d":
        layer = DynamicConv3d.from_conv(nn.Conv3d(6, 8, 3, padding=1), mode=mode, search_space=search_space)
        x = torch.randn(8, 6, frames, 5, 5)
    else:
        layer = DynamicConv2d.from_conv(nn.Conv2d(6, 8, 3, padding=1), search_space=search_space)
        x = torch.randn(8, 6, 5, 5)
    with torch.no_grad():
        layer.gate.fc2.weight.normal_(std=3.0)  # choices that differ from sample to sample
        for op in [*(layer.channel_ops or []), *([layer.temporal_op] if layer.temporal_op else [])]:
            for p in op.parameters():
                p.add_(0.3 * torch.randn_like(p))  # rebuilt maps that differ from copies
    layer.gate_training = "straight_through"
    reference = copy.deepcopy(layer)
    reference.gate_training = "soft"
    seen = {}
    gate_forward = reference.gate.forward

    def remember(z):
        seen["gate"] = gate_forward(z)
        return seen["gate"]

    def weighted(values, variants):
        gate = seen["gate"]
        probs = gate.channel_probs if values is gate.channel else gate.temporal_probs
        w = torch.nn.functional.one_hot(probs.argmax(dim=1), probs.shape[1]).to(probs) + probs - probs.detach()
        return sum(reference._bcast(w[:, k]) * v for k, v in enumerate(variants))

    reference.gate.forward, reference._mix = remember, weighted
    g = None
    results = []
    for m in (layer, reference):
        m.train()
        m.gate.eval()  # the same gate decisions in both (no running-statistics update in between)
        out = m(x)
        g = torch.randn_like(out) if g is None else g
        loss = (out * g).sum() + m.record.distortion.sum() + m.record.expected_ratio.sum()
        grads = torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)
        results.append((out, m.record, [torch.zeros_like(p) if gr is None else gr
                                        for p, gr in zip(m.parameters(), grads)]))
    (out, rec, grads), (ref_out, ref_rec, ref_grads) = results
    combos = rec.channel_index * search_space + rec.temporal_index
    assert combos.unique().numel() > 1  # the case under test: samples taking different variants
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(rec.distortion, ref_rec.distortion)
    for (name, _), got, want in zip(layer.named_parameters(), grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


def _gate_trained_on_still_and_flicker(gate_input: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One temporal dynamic layer whose gate alone trains on the efficiency and distortion terms, on
    still clips and clips whose frames alternate in brightness (both with the same pooled mean);
    returns the hard temporal choices of (still, flicker) clips."""
    from torch import nn

    from pipeline.models.dynamic_conv import DynamicConv3d

    torch.manual_seed(0)
    layer = DynamicConv3d.from_conv(nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1)), mode="temporal",
                                    gate_input=gate_input)

    def batch(n):
        frame = torch.rand(n, 4, 1, 8, 8)
        still = frame.expand(n, 4, 4, 8, 8)
        flicker = torch.cat([frame * 0.5, frame * 1.5] * 2, dim=2)
        return torch.cat([still, flicker])

    opt = torch.optim.Adam(layer.gate.parameters(), lr=0.02)
    layer.train()
    for _ in range(60):
        layer(batch(8))
        rec = layer.record
        loss = (rec.expected_ratio ** 2).mean() + 4.0 * rec.distortion.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    layer.eval()
    with torch.no_grad():
        layer(batch(16))
    chosen = layer.record.temporal_index
    return chosen[:16], chosen[16:]


def test_a_motion_reading_gate_makes_still_clips_cheap_and_keeps_flicker_full():
    """What a clip costs must follow how much its frames repeat (METHOD.md 8b). The "pool" gate sees
    the same pooled vector for both kinds of clip and cannot tell them apart; the "pool_motion"
    gate learns to reduce the still clips (exact there) and to compute the flickering ones."""
    still, flicker = _gate_trained_on_still_and_flicker("pool_motion")
    assert (still == 1).float().mean() >= 0.9 and (flicker == 0).float().mean() >= 0.9
    still, flicker = _gate_trained_on_still_and_flicker("pool")
    assert (still == 1).float().mean() - (flicker == 1).float().mean() < 0.5
