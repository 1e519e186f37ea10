"""How the gates and cheap ops train (METHOD.md sections 4-5, and the choices marked ours): every
cheap op gets a gradient, no gate head dies, a gate decides the same in training and inference, the
distortion term ranks a still clip as cheaper than a moving one, and the gates do not reshape the
backbone's features."""

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


def test_straight_through_mix_matches_the_weighted_sum_it_stands_for():
    from pipeline.models.dynamic_conv import _StraightThroughMix

    torch.manual_seed(0)
    for chosen in (torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 1, 1])):
        logits = torch.randn(4, 2, requires_grad=True)
        variants = [torch.randn(4, 3, 2, 5, 5, requires_grad=True) for _ in range(2)]
        probs = logits.softmax(dim=1)
        onehot = torch.nn.functional.one_hot(chosen, 2).float()
        w = onehot + probs - probs.detach()
        reference = sum(w[:, k].view(-1, 1, 1, 1, 1) * v for k, v in enumerate(variants))
        g = torch.randn_like(reference)
        ref_grads = torch.autograd.grad(reference, [logits, *variants], g, retain_graph=True)
        mixed = _StraightThroughMix.apply(chosen, probs, *variants)
        torch.testing.assert_close(mixed, reference)
        grads = torch.autograd.grad(mixed, [logits, *variants], g, allow_unused=True)
        for got, want in zip(grads, ref_grads):
            torch.testing.assert_close(torch.zeros_like(want) if got is None else got, want)


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
