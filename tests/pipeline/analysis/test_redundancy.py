"""CC / RMSE / RP (METHOD.md section 10) on constructed features and on a tiny model."""

import pytest
import torch
from matplotlib import image as mpimg

from pipeline.analysis import measure_redundancy, redundancy_of, write_redundancy
from pipeline.analysis.redundancy import analysed_layers


def test_identical_frames_are_fully_redundant_in_time():
    frame = torch.randn(2, 8, 1, 12, 12)
    y = frame.expand(2, 8, 5, 12, 12)  # (B, C, T, H, W), every frame the same
    m = redundancy_of(y)["temporal"]
    assert m["cc"] == pytest.approx(1.0, abs=1e-5)
    assert m["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert m["rp"] == 1.0
    assert m["num_pairs"] == 2 * 8 * 4


def test_identical_channels_are_fully_redundant_across_channels():
    y = torch.randn(2, 1, 3, 10, 10).expand(2, 6, 3, 10, 10)
    m = redundancy_of(y)["channel"]
    assert (m["cc"], m["rp"]) == (pytest.approx(1.0, abs=1e-5), 1.0)
    assert m["rmse"] == pytest.approx(0.0, abs=1e-6)


def test_random_noise_is_not_redundant():
    torch.manual_seed(0)
    m = redundancy_of(torch.randn(4, 8, 6, 24, 24))
    assert abs(m["temporal"]["cc"]) < 0.05
    assert m["temporal"]["rp"] == 0.0
    # The best of 7 partners of a 576-pixel noise map correlates at ~0.05: near 0, never above tau.
    assert 0 <= m["channel"]["cc"] < 0.15 and m["channel"]["rp"] == 0.0
    assert m["temporal"]["rmse"] > 0.1  # uniform-ish maps on [0, 1] differ by ~0.2 RMS


def test_redundancy_drops_as_frames_decorrelate():
    torch.manual_seed(0)
    base = torch.randn(2, 4, 1, 16, 16)
    ccs = [redundancy_of(base + s * torch.randn(2, 4, 6, 16, 16))["temporal"]["cc"] for s in (0.1, 0.5, 2.0)]
    assert ccs[0] > ccs[1] > ccs[2]


def test_constant_maps_follow_the_stated_rule():
    y = torch.zeros(1, 2, 3, 4, 4)
    y[:, 1] = 5.0  # two constant channels of different value
    m = redundancy_of(y)
    assert m["temporal"]["cc"] == 1.0 and m["temporal"]["rmse"] == 0.0  # equal constant frames
    assert m["channel"]["cc"] == 0.0  # different constants: no correlation


def test_model_redundancy_table_covers_every_layer_and_axis(trained, tmp_path):
    model, batches = trained
    table = measure_redundancy(model, batches, max_clips=4)
    data = table.to_pydict()
    layers = analysed_layers(model)
    assert len(data["layer"]) == 2 * (len(layers) + 1)
    for axis in ("temporal", "channel"):
        rows = [i for i, a in enumerate(data["axis"]) if a == axis]
        overall = [i for i in rows if data["layer"][i] == "overall"][0]
        pairs = sum(data["num_pairs"][i] for i in rows if i != overall)
        assert data["num_pairs"][overall] == pairs
        weighted = sum(data["cc"][i] * data["num_pairs"][i] for i in rows if i != overall and data["num_pairs"][i])
        assert data["cc"][overall] == pytest.approx(weighted / pairs)
        for i in rows:
            if data["num_pairs"][i]:
                assert -1 <= data["cc"][i] <= 1 and 0 <= data["rmse"][i] <= 1 and 0 <= data["rp"][i] <= 1
    assert all(n == 4 for n in data["num_clips"])
    # The forced full variant is undone afterwards.
    assert all(layer.forced is None and layer.execution == "auto" for _, layer in layers)
    out = write_redundancy(table, tmp_path)
    img = mpimg.imread(out["figures"][0].path)
    assert img.shape[:2] == (out["figures"][0].height, out["figures"][0].width)
    assert float(img[..., :3].std()) > 0.01


def test_a_static_model_is_measured_on_its_block_convs(debug_cfg):
    import dataclasses

    from pipeline.models import build_model
    static = build_model(dataclasses.replace(debug_cfg.model, dynamic="none"))
    dynamic = build_model(debug_cfg.model)
    assert [n for n, _ in analysed_layers(static)] == [n for n, _ in analysed_layers(dynamic)]


def test_tau_outside_the_unit_interval_is_a_value_error(trained):
    model, batches = trained
    with pytest.raises(ValueError, match="tau"):
        measure_redundancy(model, batches, tau=1.5)
