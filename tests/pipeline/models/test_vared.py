"""VaredModel: equivalence with the static backbone, per-clip cost of the executed policy, checkpoints,
and (over the real backbones) gradients to every parameter in soft mode."""

import copy
import importlib.util

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pipeline.models.cost import static_macs
from pipeline.models.vared import VaredModel


def _tiny_backbone(num_classes=5):
    def unit(cin, cout):
        return nn.Sequential(nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1), bias=False), nn.BatchNorm3d(cout),
                             nn.ReLU(), nn.Conv3d(cout, cout, (3, 1, 1), padding=(1, 0, 0), bias=False),
                             nn.BatchNorm3d(cout), nn.ReLU())

    return nn.Sequential(nn.Sequential(nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU()),  # "0": stem
                         unit(8, 12), unit(12, 16), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(16, num_classes))


def _model(**kwargs):
    torch.manual_seed(0)
    static = _tiny_backbone().eval()
    model = VaredModel(copy.deepcopy(static), include=lambda n, m: not n.startswith("0"), **kwargs).eval()
    return static, model


def test_all_full_policy_equals_static_backbone():
    static, model = _model()
    model.force_policy(0, 0)
    x = torch.randn(2, 3, 8, 12, 12)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out.logits, static(x))
    assert out.policy.shape == (2, 4, 2) and (out.policy == 0).all()
    torch.testing.assert_close(out.expected_ratio, torch.ones(2))
    assert (out.macs > static_macs(static, (3, 8, 12, 12))).all()  # + the gates


@pytest.mark.parametrize("policy", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_per_clip_cost_matches_flop_counter(policy):
    _, model = _model()
    model.force_policy(*policy)
    x = torch.randn(3, 3, 8, 12, 12)
    model.static_macs(tuple(x.shape[1:]))  # fill the cache: its meta run would be counted too
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    assert out.macs.sum().item() == counter.get_total_flops() // 2
    assert torch.isclose(out.gflops[0], torch.tensor(out.macs[0].item() / 1e9, dtype=torch.float64))


def test_gate_policy_cost_matches_flop_counter_and_differs_per_sample():
    _, model = _model(search_space=3)
    for layer in [m for m in model.modules() if hasattr(m, "gate")]:
        layer.gate.fc2.weight.data.normal_(std=3.0)  # spread the choices
    x = torch.randn(8, 3, 8, 12, 12) * torch.linspace(0.1, 5, 8).view(8, 1, 1, 1, 1)
    model.static_macs(tuple(x.shape[1:]))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    assert out.macs.sum().item() == counter.get_total_flops() // 2
    policies = [tuple(p.flatten().tolist()) for p in out.policy]
    assert len(set(policies)) > 1
    for a in range(8):
        for b in range(8):
            if policies[a] == policies[b]:
                assert out.macs[a] == out.macs[b]
    assert len(set(out.macs.tolist())) > 1


def test_static_model_through_same_interface():
    static, _ = _model()
    model = VaredModel(copy.deepcopy(static), dynamic="none").eval()
    x = torch.randn(2, 3, 4, 8, 8)
    out = model(x)
    assert out.records == [] and out.policy.shape == (2, 0, 2)
    assert (out.macs == static_macs(static, (3, 4, 8, 8))).all() and (out.expected_ratio == 1).all()


def test_load_backbone_state_dict():
    static, model = _model()
    fresh = _tiny_backbone()
    model.load_backbone_state_dict(static.state_dict())
    model.load_backbone_state_dict({"backbone." + k: v for k, v in static.state_dict().items()})
    sd = fresh.state_dict()
    sd.pop("5.weight")
    with pytest.raises(RuntimeError):
        model.load_backbone_state_dict(sd)
    assert set("backbone." + k for k in static.state_dict()) <= set(model.state_dict())


def test_bad_input_and_mode():
    _, model = _model()
    with pytest.raises(ValueError):
        model(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError):
        VaredModel(_tiny_backbone(), dynamic="spatial")


HAS_BACKBONES = importlib.util.find_spec("pipeline.models.backbones") is not None


@pytest.mark.skipif(not HAS_BACKBONES, reason="pipeline.models.backbones is missing")
@pytest.mark.parametrize("name", ["r2plus1d_18", "i3d_r50", "x3d_m"])
def test_every_parameter_receives_a_gradient_in_soft_mode(name):
    from pipeline.models.backbones import BACKBONES

    torch.manual_seed(0)
    model = VaredModel(BACKBONES[name](num_classes=5, base_width=8), gate_training="soft").train()
    for m in model.modules():  # undo zero-initialised final BNs, which would block gradients at init
        if isinstance(m, nn.BatchNorm3d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
    # 16 frames: the deepest R(2+1)D stage still has 2 frames, so its temporal cheap ops run.
    out = model(torch.randn(2, 3, 16, 32, 32))
    (out.logits.logsumexp(dim=1).sum() + out.expected_ratio.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    dead = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not dead


def test_straight_through_training_forward_equals_hard_inference_and_trains_the_gates():
    """gate_training="straight_through": the training forward runs each sample's argmax variant
    (what inference runs), while the gates still get gradients."""
    from pipeline.models import dynamic_layers

    torch.manual_seed(0)
    _, model = _model()
    for _, layer in dynamic_layers(model.backbone):
        assert layer.gate_training == "straight_through"  # the default
        with torch.no_grad():  # varied per-sample choices
            layer.gate.fc2.weight.normal_(0, 3.0)
    x = torch.randn(6, 3, 8, 16, 16) + 3 * torch.randn(6, 3, 1, 1, 1)  # clips differ in content
    model.eval()  # running BN stats in both passes, so the two forwards are comparable
    model.set_execution("soft")
    soft = model(x)
    model.set_execution("hard")
    with torch.no_grad():
        hard = model(x)
    assert len({tuple(p.flatten().tolist()) for p in hard.policy}) > 1  # choices differ per sample
    assert torch.equal(soft.policy, hard.policy)
    assert torch.allclose(soft.logits, hard.logits, atol=1e-5)
    (soft.logits.sum() + soft.expected_ratio.sum()).backward()
    gates = [p.grad for n, p in model.named_parameters() if ".gate." in n]
    assert gates and all(g is not None and g.abs().sum() > 0 for g in gates)
