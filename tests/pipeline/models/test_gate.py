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
