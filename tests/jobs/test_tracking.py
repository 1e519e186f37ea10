"""The Tracker on a real SQLite store: one client per tracker, a model-training experiment, the
shards as dataset inputs, no process-wide MLflow state; and the run's close in jobs/run.py."""

import os

import pytest
from mlflow.tracking import MlflowClient

from jobs.tracking import EXPERIMENT_KIND, MODEL_TRAINING, NullTracker, Tracker, manifest_hash
from pipeline.config import load_config


def debug_config(tmp_path, *extra):
    return load_config("debug", [f"runtime.tracking_uri=sqlite:///{tmp_path}/m.db", *extra])


def test_a_tracker_makes_one_client_and_looks_its_experiment_up_once(tmp_path, monkeypatch):
    import jobs.tracking

    made = []

    class Counting(MlflowClient):
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get("tracking_uri"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(jobs.tracking, "MlflowClient", Counting)
    cfg = debug_config(tmp_path)
    tracker = Tracker(cfg.runtime)
    assert made == []  # nothing opened before the first call
    run_id = tracker.start_run(cfg, run_name="cached")
    assert tracker.find_run("cached") == run_id
    tracker.log_metrics(run_id, {"train/loss": 1.0}, step=1)
    tracker.log_json(run_id, {"a": 1}, "a.json")
    tracker.end_run(run_id)
    assert made == [f"sqlite:///{tmp_path}/m.db"]
    lookups = []
    monkeypatch.setattr(Counting, "get_experiment_by_name",
                        lambda self, name: lookups.append(name) or MlflowClient.get_experiment_by_name(self, name))
    fresh = Tracker(cfg.runtime)
    assert fresh.find_run("cached") == run_id and fresh.start_run(cfg, run_name="second")
    assert lookups == [cfg.runtime.experiment] and len(made) == 2


def test_the_experiment_is_a_model_training_one_new_or_already_there(tmp_path):
    cfg = debug_config(tmp_path)
    tracker = Tracker(cfg.runtime)
    exp = tracker.client.get_experiment(tracker.experiment_id)
    assert exp.tags[EXPERIMENT_KIND] == MODEL_TRAINING == "custom_model_development"
    plain = MlflowClient(tracker.uri).create_experiment("made-elsewhere")
    older = Tracker(debug_config(tmp_path, "runtime.experiment=made-elsewhere").runtime)
    assert older.experiment_id == plain
    assert older.client.get_experiment(plain).tags[EXPERIMENT_KIND] == MODEL_TRAINING
    chosen = MlflowClient(tracker.uri).create_experiment("genai", tags={EXPERIMENT_KIND: "genai_development"})
    Tracker(debug_config(tmp_path, "runtime.experiment=genai").runtime).experiment_id  # noqa: B018
    assert MlflowClient(tracker.uri).get_experiment(chosen).tags[EXPERIMENT_KIND] == "genai_development"


def test_a_run_logs_its_train_and_val_shards_as_dataset_inputs(tmp_path):
    shards = tmp_path / "demo" / "shards"
    shards.mkdir(parents=True)
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            (shards / f"{split}-{i:06d}.tar").write_bytes(b"")
        (shards / f"{split}-manifest.parquet").write_bytes(split.encode())
    cfg = debug_config(tmp_path, f"data.root={shards}")
    tracker = Tracker(cfg.runtime)
    run_id = tracker.start_run(cfg, run_name="data")
    tracker.log_datasets(run_id, cfg.data)
    tracker.log_datasets(run_id, cfg.data)  # a resumed run logs them again
    inputs = MlflowClient(tracker.uri).get_run(run_id).inputs.dataset_inputs
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}
    assert len(inputs) == 2 and set(by_context) == {"training", "validation"}
    train, val = by_context["training"], by_context["validation"]
    assert (train.name, val.name) == ("demo/shards/train", "demo/shards/val")
    assert train.digest == manifest_hash(shards, "train") != val.digest == manifest_hash(shards, "val")
    assert train.source_type == "local" and shards.as_uri() in train.source
    assert '"num_shards": 2' in train.profile and '"num_shards": 1' in val.profile


def test_logging_a_model_leaves_no_process_wide_tracking_uri(tmp_path, monkeypatch):
    import mlflow
    import torch

    from pipeline.config import to_dict
    from pipeline.models import build_model
    from pipeline.train.checkpoint import save_checkpoint

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/elsewhere.db")
    before = mlflow.get_tracking_uri()
    cfg = debug_config(tmp_path)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", model=build_model(cfg.model), epoch=0, step=0, config=to_dict(cfg))
    tracker = Tracker(cfg.runtime)
    run_id = tracker.start_run(cfg, run_name="model")
    tracker.log_model(cfg, run_id, tmp_path / "ckpt")
    loaded_cfg, _ = tracker.load_model(f"runs:/{run_id}/model")  # from this store, not $MLFLOW_TRACKING_URI's
    assert loaded_cfg.model == cfg.model
    assert mlflow.get_tracking_uri() == before
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path}/elsewhere.db"


def test_a_run_is_closed_finished_after_its_evaluation_and_failed_when_it_raises(monkeypatch):
    import jobs.evaluate
    from jobs.run import evaluate_and_close

    cfg = load_config("debug")
    tracker = NullTracker()
    monkeypatch.setattr(jobs.evaluate, "finish_run",
                        lambda cfg, run_id, ckpt, tracker: tracker.log_json(run_id, {}, "evaluation.json")
                        or {"metrics": {}})
    evaluate_and_close(cfg, "r1", "ckpt", tracker=tracker, params={"lambda_e": 1.0})
    assert [c[0] for c in tracker.calls] == ["log_params", "log_json", "end_run"]
    assert tracker.called("end_run") == [("r1", "FINISHED")]

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(jobs.evaluate, "finish_run", broken)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        evaluate_and_close(cfg, "r2", "ckpt", tracker=tracker)
    assert tracker.called("end_run")[-1] == ("r2", "FAILED")


def test_ctrl_c_during_the_evaluation_leaves_the_run_open_for_the_resume(monkeypatch):
    import jobs.evaluate
    from jobs.run import evaluate_and_close

    tracker = NullTracker()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs.evaluate, "finish_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_and_close(load_config("debug"), "r", "ckpt", tracker=tracker)
    assert tracker.called("end_run") == []
