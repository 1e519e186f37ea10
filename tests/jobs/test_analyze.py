"""`vared2 analyze` end to end on the generated debug data: every artifact is written, the images
open at their stated sizes, and the files are logged to the model's MLflow run."""

import dataclasses
import json

import pytest
import torch
from matplotlib import image as mpimg

from jobs.analyze import analyze_source, main, model_run_id
from jobs.cli import main as cli_main
from pipeline.config import apply_overrides, get_preset, to_dict
from pipeline.data import build_loader
from pipeline.models import build_model
from pipeline.train.checkpoint import save_checkpoint
from pipeline.train.step import train_step

EXPECTED = {"report.md", "summary.json", "cost_distribution.png", "policy_map.parquet", "policy_map.csv",
            "policy_map_layer.png", "policy_map_block.png", "extreme_clips.png", "extreme_clips.parquet",
            "extreme_clips.csv", "redundancy.png", "redundancy.parquet", "redundancy.csv"}


@pytest.fixture(scope="module")
def checkpoint(debug_shards, tmp_path_factory):
    """A debug model trained for a few steps on the debug shards, saved as a checkpoint."""
    cfg = apply_overrides(get_preset("debug"), [f"data.root={debug_shards}"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for batch in list(build_loader(cfg.data, split="train", train=True))[:3]:
        train_step(model, batch.clips, batch.labels, opt, lambda_e=10.0)
    directory = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(directory, model=model, epoch=0, step=3, config=to_dict(cfg))
    return cfg, directory


def test_analyze_writes_every_artifact_with_real_images(checkpoint, tmp_path):
    cfg, ckpt = checkpoint
    out = tmp_path / "analysis"
    assert cli_main(["analyze", str(ckpt), "--out", str(out), "--redundancy-clips", "4", "--no-log"]) == 0
    assert EXPECTED <= {p.name for p in out.iterdir()}
    report = (out / "report.md").read_text()
    for png in sorted(out.glob("*.png")):
        img = mpimg.imread(png)
        assert f"]({png.name})" in report
        assert f"({img.shape[1]}x{img.shape[0]} px)" in report  # the size the report states
        assert float(img[..., :3].std()) > 0.01
    summary = json.loads((out / "summary.json").read_text())
    cost = summary["cost"]
    assert cost["gflops_min"] <= cost["gflops_avg"] <= cost["gflops_max"]
    assert cost["num_clips"] == 8 * cfg.data.eval_clips  # 2 val videos per class, 4 classes
    assert set(summary["redundancy"]) == {"temporal", "channel"}
    assert 0 < summary["matching_prune_macs_ratio"] <= 1.1


def test_analyze_logs_every_file_to_the_run(checkpoint, tmp_path):
    from jobs.tracking import NullTracker

    cfg, ckpt = checkpoint
    tracker = NullTracker()  # what is logged where; storing it is MLflow's part
    run_id = tracker.start_run(cfg, run_name="analyze-test")
    out = tmp_path / "analysis"
    analyze_source(str(ckpt), out=str(out), run_id=run_id, max_clips=6, redundancy_clips=2, tracker=tracker)
    logged = {(r, f"{folder}/{path.name}") for r, path, folder in tracker.called("log_artifact")}
    assert {(run_id, f"analysis/{name}") for name in EXPECTED} <= logged
    assert model_run_id(tracker, f"runs:/{run_id}/model") == run_id
    assert model_run_id(tracker, str(ckpt)) is None


def test_a_bad_override_exits_with_status_2(checkpoint, tmp_path):
    _, ckpt = checkpoint
    assert main([str(ckpt), "model.nope=1", "--out", str(tmp_path), "--no-log"]) == 2


def test_a_baseline_checkpoint_is_analysed_by_its_own_builder(checkpoint, tmp_path):
    from pipeline.models.baselines import build_baseline

    cfg, _ = checkpoint
    bcfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, baseline="channel_gating"))
    model = build_baseline(bcfg.model)
    save_checkpoint(tmp_path / "ckpt", model=model, epoch=0, step=0, config=to_dict(bcfg))
    out = tmp_path / "analysis"
    assert main([str(tmp_path / "ckpt"), "--out", str(out), "--max-clips", "4", "--redundancy-clips", "2",
                 "--no-log"]) == 0
    assert (out / "policy_map_block.png").exists()
