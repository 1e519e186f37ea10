"""Training on a local Ray instance (2 CPU workers): MLflow record, model round trip, fault recovery."""

import pytest
import torch

from pipeline.config import load_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from jobs.ray_env import init_ray

    init_ray(load_config("debug"))
    yield
    ray.shutdown()


def debug_config(shards, tmp_path, name, *extra):
    return load_config("debug", [f"data.root={shards}", f"runtime.storage_path={tmp_path / 'runs'}",
                                 f"runtime.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}",
                                 f"runtime.run_name={name}", "runtime.num_workers=2",
                                 "train.epochs=2", *extra])


@pytest.mark.parametrize("mode", ["raise", pytest.param("sigkill", marks=pytest.mark.chaos)])
def test_a_run_whose_worker_fails_once_resumes_and_ends_with_the_same_metrics(
        ray_local, debug_shards, tmp_path, mode):
    """`raise`: a worker raises after epoch 1; `sigkill`: one worker process is killed with SIGKILL
    there (no exception, no cleanup). Ray Train restarts the group from the epoch-1 checkpoint."""
    from jobs.train import fit

    clean = fit(debug_config(debug_shards, tmp_path, "clean"))
    failed = fit(debug_config(debug_shards, tmp_path, "failed-once", "runtime.fail_at_epoch=1",
                              f"runtime.fail_mode={mode}"))
    marker = tmp_path / "runs" / ".failed-once-failed-once"
    assert mode in marker.read_text()  # the failure did happen
    for key in ("train/loss", "val/clip_top1", "val/gflops_avg", "step", "epoch"):
        assert failed["metrics"][key] == pytest.approx(clean["metrics"][key], rel=1e-5), key
    assert failed["metrics"]["epoch"] == 2


def test_training_is_tracked_in_mlflow_and_the_logged_model_runs_in_hard_mode(
        ray_local, debug_shards, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from jobs.evaluate import load_for_eval
    from jobs.run import train_and_evaluate
    from jobs.tracking import manifest_hash, tracking_uri

    cfg = debug_config(debug_shards, tmp_path, "tracked")
    out = train_and_evaluate(cfg)
    report = out["report"]
    client = MlflowClient(tracking_uri(cfg))
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.backbone"] == "r2plus1d_18"
    datasets = {t.value: i.dataset for i in run.inputs.dataset_inputs for t in i.tags}
    assert datasets["training"].digest == manifest_hash(debug_shards, "train") != "none"
    assert datasets["validation"].digest == manifest_hash(debug_shards, "val") != "none"
    history = client.get_metric_history(out["run_id"], "train/loss")
    assert [m.step for m in history] == [1, 2]  # one value per epoch, from rank 0 only
    for key in ("val/clip_top1", "val/video_top1", "val/gflops_avg", "test/gflops_max",
                "speed/clips_per_s", "speed/static_clips_per_s"):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"config.json", "evaluation.json"} <= artifacts
    assert report["metrics"]["test/gflops_max"] >= report["metrics"]["test/gflops_min"]

    _, from_mlflow = load_for_eval(f"runs:/{out['run_id']}/model", [f"runtime.tracking_uri={tracking_uri(cfg)}"])
    _, from_checkpoint = load_for_eval(str(out["checkpoint"]))
    clips = torch.randn(3, 3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    from_mlflow.eval()
    from_checkpoint.eval()
    with torch.no_grad():
        a, b = from_mlflow(clips), from_checkpoint(clips)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.policy, b.policy)

    # The served model takes the compute budget as a predict parameter; the calibration travels
    # with it (finish_run wrote it into the logged checkpoint), so loading does not recalibrate.
    import mlflow.pyfunc
    import numpy as np

    from pipeline.models.budget import set_budget

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(cfg))  # as a user of the served model would
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{out['run_id']}/model")
    assert "budget" in {p.name for p in pyfunc.metadata.get_params_schema().params}
    assert float(from_checkpoint.budget_table[:, 1].abs().sum()) > 0
    low = float(from_checkpoint.budget_table[:, 1].min())
    for budget in (1.0, max(0.8, low + 0.05)):
        served = pyfunc.predict(clips.numpy(), params={"budget": budget})
        set_budget(from_checkpoint, budget)
        with torch.no_grad():
            expected = from_checkpoint(clips).logits.numpy()
        set_budget(from_checkpoint, None)
        assert np.array_equal(served, expected), budget
    with pytest.raises(Exception, match="out of reach"):
        pyfunc.predict(clips.numpy(), params={"budget": low / 2})


@pytest.mark.parametrize("saved, refused", [("zeros", True), ("replicate", False), (None, True)])
def test_a_dynamic_run_from_a_static_model_of_the_other_padding_fails_on_the_driver(
        debug_shards, tmp_path, saved, refused):
    """`check_inputs` (before Ray starts) reads the static checkpoint's config: one trained with zero
    temporal padding (or from before the key, None) cannot start a replicate-padded dynamic run."""
    from jobs.train import check_inputs
    from pipeline.config import to_dict
    from pipeline.models import build_model
    from pipeline.train.checkpoint import save_checkpoint

    static_cfg = debug_config(debug_shards, tmp_path, "static", "model.dynamic=none",
                              f"model.temporal_padding={saved or 'zeros'}")
    config = to_dict(static_cfg)
    if saved is None:
        del config["model"]["temporal_padding"]
    save_checkpoint(tmp_path / "static", model=build_model(static_cfg.model), epoch=0, step=0, config=config)
    cfg = debug_config(debug_shards, tmp_path, "dyn", f"train.init_from={tmp_path / 'static'}")
    if refused:
        with pytest.raises(ValueError, match="model.temporal_padding=zeros"):
            check_inputs(cfg)
    else:
        check_inputs(cfg)


def test_a_dynamic_run_starts_from_a_static_checkpoint_on_the_workers(ray_local, debug_shards, tmp_path):
    """train.init_from through Ray: the workers load the static weights and calibrate the cheap ops
    (the demo's stage 3)."""
    from jobs.train import fit
    from pipeline.config import to_dict
    from pipeline.models import build_model
    from pipeline.train.checkpoint import save_checkpoint

    static_cfg = debug_config(debug_shards, tmp_path, "static", "model.dynamic=none")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "static", model=build_model(static_cfg.model), epoch=0, step=0,
                    config=to_dict(static_cfg))
    out = fit(debug_config(debug_shards, tmp_path, "from-static", f"train.init_from={tmp_path / 'static'}",
                           "runtime.num_workers=1", "train.epochs=1"))
    assert out["metrics"]["epoch"] == 1 and out["metrics"]["val/gflops_avg"] > 0
