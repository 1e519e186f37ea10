"""The logged MLflow model: packaged from code (no pickled object), loaded with weights_only
weights, and taking the compute budget as a predict parameter."""

import numpy as np
import pytest
import torch

from pipeline.config import load_config


@pytest.fixture()
def logged(tmp_path, monkeypatch):
    from jobs.tracking import Tracker
    from pipeline.config import to_dict
    from pipeline.models import build_model
    from pipeline.models.budget import calibrate_budget
    from pipeline.models.convert import dynamic_layers
    from pipeline.train.checkpoint import save_checkpoint

    cfg = load_config("debug", [f"runtime.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}", "model.num_classes=3"])
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    with torch.no_grad():  # gates that decide per clip
        for _, layer in dynamic_layers(model):
            layer.gate.fc2.weight.normal_(std=1.0)
    shape = (3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    g = torch.Generator().manual_seed(1)
    calibrate_budget(model, [torch.randn(8, *shape, generator=g) * 2 for _ in range(4)])
    save_checkpoint(tmp_path / "ckpt", model=model, epoch=0, step=0, config=to_dict(cfg))
    tracker = Tracker(cfg.runtime)
    run_id = tracker.start_run(cfg, run_name="served")
    tracker.log_model(cfg, run_id, tmp_path / "ckpt")
    clips = torch.randn(4, *shape, generator=g)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.uri)  # for mlflow.pyfunc.load_model, as a user would
    return cfg, model, run_id, clips


def test_the_model_is_packaged_from_code_and_loads_weights_only(logged, tmp_path):
    from jobs.tracking import Tracker

    cfg, model, run_id, clips = logged
    tracker = Tracker(cfg.runtime)
    client = tracker.client
    files = {a.path for a in client.list_artifacts(run_id, "model")}
    assert not any(f.endswith(".pkl") for f in files), files  # no cloudpickled python model
    local = client.download_artifacts(run_id, "model", str(tmp_path / "dl"))
    mlmodel = open(f"{local}/MLmodel").read()
    assert "served_model.py" in mlmodel and "model_code_path" in mlmodel
    _, loaded = tracker.load_model(f"runs:/{run_id}/model")
    with torch.no_grad():
        assert torch.equal(loaded(clips).logits, model(clips).logits)  # bit-exact round trip


def test_the_served_model_takes_the_budget_as_a_predict_parameter(logged):
    import mlflow.pyfunc

    from pipeline.models.budget import reachable, set_budget

    cfg, model, run_id, clips = logged
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert [p.name for p in pyfunc.metadata.get_params_schema().params] == ["budget"]
    low, _ = reachable(model)
    for budget in (0.0, 1.0, (low + 1) / 2):
        got = pyfunc.predict(clips.numpy(), params={"budget": budget})
        set_budget(model, budget or None)
        with torch.no_grad():
            want = model(clips).logits.numpy()
        set_budget(model, None)
        assert np.array_equal(got, want), budget
    with pytest.raises(Exception, match="out of reach"):
        pyfunc.predict(clips.numpy(), params={"budget": low / 2})
