"""The model registry without Ray: versions, tags, aliases (champion within a budget), compare."""

import pytest
import torch

from pipeline.config import apply_overrides, load_config, to_dict


@pytest.fixture()
def store(tmp_path):
    """Four logged debug models (untrained weights; their test metrics are set by the test)."""
    from jobs.tracking import Tracker
    from pipeline.models import build_model
    from pipeline.train.checkpoint import save_checkpoint

    data = tmp_path / "shards"
    data.mkdir()
    (data / "train-manifest.parquet").write_bytes(b"manifest-1")
    cfg = load_config("debug", [f"runtime.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}",
                                f"data.root={data}", "runtime.registered_model=reg-test"])
    tracker = Tracker(cfg.runtime)
    runs = {}
    # (label, dynamic, lambda_e, clip-1, GFLOPs avg)
    for label, dynamic, lam, acc, gflops in [("static", "none", 0.0, 0.50, 4.0),
                                             ("a", "both", 0.1, 0.60, 3.5),
                                             ("b", "both", 1.0, 0.55, 2.0),
                                             ("c", "both", 10.0, 0.40, 1.0)]:
        rcfg = apply_overrides(cfg, {"model.dynamic": dynamic, "train.lambda_e": lam})
        run_id = tracker.start_run(rcfg, run_name=label)
        torch.manual_seed(0)
        save_checkpoint(tmp_path / label, model=build_model(rcfg.model), epoch=1, step=1,
                        config=to_dict(rcfg))
        tracker.log_metrics(run_id, {"test/clip_top1": acc, "test/video_top1": acc,
                                     "test/gflops_avg": gflops, "test/gflops_max": gflops * 1.1,
                                     "test/gflops_min": gflops * 0.9}, step=1)
        tracker.log_model(rcfg, run_id, tmp_path / label)
        tracker.end_run(run_id)
        runs[label] = {"run_id": run_id, "test/clip_top1": acc, "test/gflops_avg": gflops}
    return cfg, runs


def test_champion_is_the_most_accurate_front_model_within_the_budget(store):
    from jobs.registry import CHAMPION, STATIC, register_sweep
    from jobs.tracking import Tracker

    cfg, runs = store
    front = [runs["a"], runs["b"], runs["c"]]
    c = Tracker(cfg.runtime).client
    out = register_sweep(apply_overrides(cfg, {"tune.gflops_budget": 2.5}), front,
                         static_run_id=runs["static"]["run_id"], sweep="s")
    champion = c.get_model_version_by_alias("reg-test", CHAMPION)
    assert champion.run_id == runs["b"]["run_id"]  # a is more accurate but over the budget
    assert c.get_model_version_by_alias("reg-test", STATIC).run_id == runs["static"]["run_id"]
    assert champion.tags["lambda_e"] == "1" and champion.tags["S"] == "2"
    assert champion.tags["gflops_avg"] == "2" and champion.tags["clip_top1"] == "0.55"
    assert champion.tags["manifest_hash"] not in ("", "none") and len(champion.tags["git_commit"]) >= 7
    # Registering again (a restored sweep) adds no versions; a new budget moves the alias.
    again = register_sweep(cfg, front, static_run_id=runs["static"]["run_id"], sweep="s")
    assert again["versions"] == out["versions"] and again["static"] == out["static"]
    assert c.get_model_version_by_alias("reg-test", CHAMPION).run_id == runs["a"]["run_id"]


def test_a_budget_no_front_model_fits_is_a_value_error(store):
    from jobs.registry import register_sweep

    cfg, runs = store
    with pytest.raises(ValueError, match="cheapest needs 1"):
        register_sweep(apply_overrides(cfg, {"tune.gflops_budget": 0.5}), [runs["b"], runs["c"]],
                       static_run_id=None, sweep="s")


def test_compare_lists_versions_cheapest_first_against_the_static_baseline(store):
    from jobs.registry import compare, register_sweep

    cfg, runs = store
    register_sweep(cfg, [runs["a"], runs["c"]], static_run_id=runs["static"]["run_id"], sweep="s")
    rows = compare(cfg, "reg-test").splitlines()[3:]
    assert [r.split()[0] for r in rows] == ["v2", "v1", "v3"]  # c (1.0), a (3.5), static (4.0)
    c_row = rows[0].split()
    assert c_row[-2] == "-0.100" and c_row[-1] == "0.250"  # clip-1 vs static, GFLOPs / static
    assert "static-baseline" in rows[2] and "champion" in rows[1]


def test_manifest_hash_changes_with_the_manifests(tmp_path):
    from jobs.registry import manifest_hash

    assert manifest_hash(tmp_path) == "none"
    (tmp_path / "train-manifest.parquet").write_bytes(b"one")
    first = manifest_hash(tmp_path)
    (tmp_path / "train-manifest.parquet").write_bytes(b"two")
    assert manifest_hash(tmp_path) != first


def test_versions_and_the_registered_model_say_what_they_are_and_how_to_load_them(store):
    from jobs.registry import CHAMPION, register_sweep
    from jobs.tracking import Tracker

    cfg, runs = store
    c = Tracker(cfg.runtime).client
    register_sweep(cfg, [runs["b"]], static_run_id=runs["static"]["run_id"], sweep="s")
    champion = c.get_model_version_by_alias("reg-test", CHAMPION)
    text = champion.description
    for part in ("VA-RED² r2plus1d_18", "dynamic=both", "lambda_e=1;", "2 GFLOPs avg", "clip-1 0.550",
                 f'mlflow.pyfunc.load_model("models:/reg-test/{champion.version}")', 'params={"budget": 0.6}',
                 f"(N, 3, {cfg.data.num_frames}, {cfg.data.crop_size}, {cfg.data.crop_size})",
                 f"(N, {cfg.model.num_classes})"):
        assert part in text, (part, text)
    static = c.get_model_version_by_alias("reg-test", "static-baseline")
    assert "Static r2plus1d_18" in static.description and "budget" not in static.description
    model = c.get_registered_model("reg-test").description
    assert f'load_model("models:/reg-test@{CHAMPION}").predict(clips, params={{"budget": 0.6}})' in model
