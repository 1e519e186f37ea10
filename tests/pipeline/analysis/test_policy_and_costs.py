"""Policy map, per-clip costs, extreme clips and the cost distribution on a tiny trained model."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from matplotlib import image as mpimg

from pipeline.analysis import (collect_policies, cost_summary, policy_table, unit_ratios, write_clips,
                               write_cost_distribution, write_policy_map, write_report)
from pipeline.models import dynamic_layers


def test_the_trained_policy_is_not_constant(records):
    # Guards the fixture: the properties below would hold vacuously on a constant policy.
    assert len(set(records.macs.tolist())) > 1


def test_policy_ratios_lie_in_unit_interval(records):
    table = policy_table(records)
    for axis in ("channel", "temporal", "combined"):
        values = np.asarray(table[axis])
        assert np.all((values > 0) & (values <= 1)), axis
    assert records.combined_ratio.min() < 1  # some layer saved something


def test_policy_ratios_rebuild_each_clips_macs(trained, records):
    """MACs of a clip = static model - dynamic layers at full cost + each layer's full cost times its
    combined ratio + that layer's gate and cheap-op MACs (counted from the modules themselves)."""
    model, _ = trained
    layers = [layer for _, layer in dynamic_layers(model)]
    for n in range(records.num_clips):
        total = records.static_macs
        for l, (info, layer) in enumerate(zip(records.layers, layers)):
            t_out, h, w = info.output_shape[1:]
            frames = round(records.temporal_ratio[n, l] * t_out)  # computed frames
            m = round(records.channel_ratio[n, l] * info.out_channels)  # computed channels
            total += info.full_macs * (records.combined_ratio[n, l] - 1) + layer.gate.macs()
            i = layer.computed_channels.index(m)
            if i > 0:
                total += layer.channel_ops[i - 1].macs(frames, h, w)
            factor = next(f for f in (min(2 ** j, t_out) for j in range(layer.search_space))
                          if -(-t_out // f) == frames)
            if factor > 1:
                total += layer.temporal_op.macs(factor, frames, h, w)
        assert round(total) == records.macs[n]


def test_class_rows_are_the_means_of_their_clips(records):
    table = policy_table(records).to_pydict()
    units, ratios = unit_ratios(records, "block")
    for row in range(len(table["unit"])):
        if table["level"][row] != "block" or table["class_index"][row] < 0:
            continue
        clips = records.labels == table["class_index"][row]
        u = units.index(table["unit"][row])
        assert table["combined"][row] == pytest.approx(ratios["combined"][clips, u].mean())
        assert table["cost_percent"][row] == pytest.approx(100 * records.cost_ratio[clips].mean())


def test_block_combined_ratio_is_the_share_of_block_conv_macs_that_ran(records):
    units, ratios = unit_ratios(records, "block")
    for u, block in enumerate(units):
        idx = [l for l, info in enumerate(records.layers) if info.block == block]
        full = np.array([records.layers[l].full_macs for l in idx], dtype=np.float64)
        ran = (records.combined_ratio[:, idx] * full).sum(1)
        np.testing.assert_allclose(ratios["combined"][:, u], ran / full.sum())


def test_the_cheapest_clip_costs_the_minimum_of_its_class(records):
    for c in set(records.labels.tolist()):
        costs = records.macs[records.labels == c]
        assert records.cheapest[c][0].macs == costs.min()
        assert records.costliest[c][0].macs == costs.max()
        assert [e.macs for e in records.cheapest[c]] == sorted(costs.tolist())[:2]
    overall = min(e.macs for pool in records.cheapest.values() for e in pool)
    assert overall == records.macs.min()


def test_collect_keeps_at_most_max_clips(trained):
    model, batches = trained
    assert collect_policies(model, batches, max_clips=5, extremes_per_class=0).num_clips == 5


def test_a_forced_policy_shows_in_the_map(trained):
    model, batches = trained
    model.force_policy(1, 1)
    try:
        rec = collect_policies(model, batches[:1], extremes_per_class=0)
    finally:
        model.clear_policy()
    assert np.allclose(rec.channel_ratio, [[np.ceil(0.5 * l.out_channels) / l.out_channels for l in rec.layers]])
    assert np.allclose(rec.temporal_ratio, [[np.ceil(l.out_frames / min(2, l.out_frames)) / l.out_frames
                                             for l in rec.layers]])


def _check_image(fig):
    img = mpimg.imread(fig.path)
    assert img.shape[:2] == (fig.height, fig.width)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert float(img[..., :3].std()) > 0.01  # not a blank canvas


def test_report_images_are_non_empty_and_of_the_stated_size(records, tmp_path):
    policy = write_policy_map(records, tmp_path)
    clips = write_clips(records, tmp_path)
    cost = write_cost_distribution(records, tmp_path)
    report = write_report(tmp_path, title="t", meta={"x": 1}, cost=cost, policy=policy, clips=clips)
    figures = policy["figures"] + clips["figures"] + cost["figures"]
    for fig in figures:
        _check_image(fig)
        assert f"]({fig.path.name})" in report.read_text()
    table = pq.read_table(tmp_path / "policy_map.parquet")
    assert table.num_rows == policy["table"].num_rows
    assert (tmp_path / "policy_map.csv").read_text().startswith('"level"')


def test_cost_summary_matches_the_per_clip_macs(records):
    s = cost_summary(records)
    assert s["gflops_min"] == pytest.approx(records.macs.min() / 1e9)
    assert s["gflops_max"] == pytest.approx(records.macs.max() / 1e9)
    assert s["num_clips"] == records.num_clips == sum(v["num_clips"] for v in s["per_class"].values())


def test_unknown_level_is_a_value_error(records):
    with pytest.raises(ValueError, match="layer"):
        unit_ratios(records, "stage")
