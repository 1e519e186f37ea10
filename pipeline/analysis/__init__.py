"""Analyses of a trained model (the paper's Figures 3-4 and redundancy study): policy maps, cheapest /
costliest clips, per-clip cost distribution, feature redundancy, and a report stitching them."""

from pipeline.analysis.clip_redundancy import (clip_redundancy, redundancy_vs_cost, spearman,
                                               write_redundancy_vs_cost)
from pipeline.analysis.clips import write_clips
from pipeline.analysis.collect import PolicyRecords, collect_policies
from pipeline.analysis.cost_distribution import cost_summary, write_cost_distribution
from pipeline.analysis.figures import Figure
from pipeline.analysis.policy_map import policy_table, unit_ratios, write_policy_map
from pipeline.analysis.redundancy import measure_redundancy, redundancy_of, write_redundancy
from pipeline.analysis.report import write_report

__all__ = [
    "Figure", "PolicyRecords", "clip_redundancy", "redundancy_vs_cost", "spearman", "write_redundancy_vs_cost", "collect_policies", "cost_summary", "measure_redundancy", "policy_table",
    "redundancy_of", "unit_ratios", "write_clips", "write_cost_distribution", "write_policy_map",
    "write_redundancy", "write_report",
]
