"""SoftModulationGate: shapes, value range, initial preference for full compute."""

import pytest
import torch

from pipeline.models.gate import INIT_FULL_VALUE, SoftModulationGate


@pytest.mark.parametrize("heads", [("temporal", "channel"), ("temporal",), ("channel",)])
@pytest.mark.parametrize("search_space", [2, 3, 4])
def test_gate_shapes_and_range(heads, search_space):
    gate = SoftModulationGate(12, search_space, heads=heads)
    out = gate(torch.randn(3, 12, 4, 5, 5))
    for name in ("temporal", "channel"):
        v = getattr(out, name)
        if name in heads:
            assert v.shape == (3, search_space)
            assert (v >= 0).all() and (v <= 1).all()
        else:
            assert v is None


def test_gate_init_prefers_full_and_no_option_is_dead():
    torch.manual_seed(0)
    gate = SoftModulationGate(64, 4)
    out = gate(torch.randn(8, 64, 4, 7, 7))
    for v in (out.channel, out.temporal):
        assert (v.argmax(dim=1) == 0).all()
        assert (v > 0.05).all()  # every option alive
        assert torch.allclose(v[:, 0], torch.full((8,), INIT_FULL_VALUE), atol=0.05)


def test_gate_hidden_width():
    assert SoftModulationGate(32, 2).hidden_features == 16
    assert SoftModulationGate(256, 2).hidden_features == 64
    assert SoftModulationGate(32, 2, hidden_min=4).hidden_features == 8


def test_gate_bad_heads():
    with pytest.raises(ValueError):
        SoftModulationGate(8, 2, heads=("spatial",))


def test_pool_motion_gate_sees_what_pooling_averages_away():
    """A still clip and one whose frames alternate have the same GAP; only the motion half of a
    "pool_motion" gate's features tells them apart (zero for the still clip)."""
    torch.manual_seed(0)
    frame = torch.rand(2, 6, 1, 5, 5)
    still = frame.expand(2, 6, 4, 5, 5).contiguous()
    flicker = torch.cat([frame * 0.5, frame * 1.5, frame * 0.5, frame * 1.5], dim=2)
    pool = SoftModulationGate(6, 2, input="pool")
    motion = SoftModulationGate(6, 2, input="pool_motion")
    assert torch.allclose(pool.features(still), pool.features(flicker))
    f_still, f_flicker = motion.features(still), motion.features(flicker)
    assert f_still.shape == (2, 12) and motion.fc1.in_features == 12
    assert torch.allclose(f_still[:, :6], f_flicker[:, :6])
    assert torch.equal(f_still[:, 6:], torch.zeros(2, 6))
    assert (f_flicker[:, 6:] > 0).all()
    # no time axis (2D layers) or one frame: the motion half is zeros, the shapes stay
    assert torch.equal(motion.features(torch.rand(2, 6, 5, 5))[:, 6:], torch.zeros(2, 6))
    assert motion(torch.rand(2, 6, 1, 5, 5)).channel.shape == (2, 2)


def test_motion_features_are_the_mean_absolute_frame_change_and_leave_the_input_alone():
    """The in-place form of the motion half gives exactly mean |X[t+1] - X[t]| and never writes x,
    with or without gradients on x."""
    torch.manual_seed(0)
    gate = SoftModulationGate(6, 2, input="pool_motion")
    x = torch.randn(3, 6, 5, 4, 4)
    kept = x.clone()
    reference = (x[:, :, 1:] - x[:, :, :-1]).abs().flatten(2).mean(dim=2)
    assert torch.equal(gate.features(x)[:, 6:], reference)
    assert torch.equal(x, kept)
    leaf = x.clone().requires_grad_(True)
    gate.features(leaf)[:, 6:].sum().backward()
    assert leaf.grad is not None and torch.equal(leaf.detach(), kept)


def test_bad_gate_input_names_the_choices():
    with pytest.raises(ValueError, match="pool_motion"):
        SoftModulationGate(8, 2, input="motion")

