"""The budget knob's calibration set: how many training clips `jobs.evaluate` calibrates on."""

import pytest
import torch

from pipeline.config import load_config


def test_the_calibration_uses_the_configured_number_of_training_clips(debug_shards, monkeypatch):
    import pipeline.models.budget as budget
    from jobs.evaluate import ensure_budget_calibration
    from pipeline.models import build_model

    cfg = load_config("debug", [f"data.root={debug_shards}", "model.dynamic=both", "data.eval_batch_size=2",
                                "train.budget_calibration_clips=6"])
    seen = []
    real = budget.calibrate_budget
    monkeypatch.setattr(budget, "calibrate_budget",
                        lambda model, clips, **kw: (seen.append(sum(x.shape[0] for x in clips)), real(model, clips, **kw)))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    ensure_budget_calibration(cfg, model, log=lambda line: None)
    assert seen == [6]  # 3 batches of 2 real training clips, then it stops
    assert float(model.budget_table[:, 1].abs().sum()) > 0
    ensure_budget_calibration(cfg, model, log=lambda line: None)  # calibrated already: no second pass
    assert seen == [6]


def test_a_calibration_set_of_no_clips_is_rejected_by_name():
    with pytest.raises(ValueError, match="train.budget_calibration_clips"):
        load_config("debug", ["train.budget_calibration_clips=0"])


@pytest.mark.parametrize("when", ["after_training", "on_demand"])
def test_finish_run_calibrates_the_logged_checkpoint_unless_asked_to_wait(debug_shards, tmp_path, monkeypatch, when):
    import jobs.evaluate
    from jobs.models import load_trained
    from jobs.tracking import NullTracker
    from pipeline.config import to_dict
    from pipeline.models import build_model
    from pipeline.models.budget import set_budget
    from pipeline.train.checkpoint import save_checkpoint

    cfg = load_config("debug", [f"data.root={debug_shards}", "model.dynamic=both", "data.eval_batch_size=2",
                                "train.budget_calibration_clips=4", f"train.budget_calibration={when}"])
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", model=build_model(cfg.model), epoch=1, step=1, config=to_dict(cfg))
    monkeypatch.setattr(jobs.evaluate, "evaluate_model", lambda cfg, model: {"metrics": {}})
    tracker = NullTracker()
    jobs.evaluate.finish_run(cfg, "r", tmp_path / "ckpt", tracker=tracker)
    assert tracker.called("log_model")  # the model is logged either way
    _, model = load_trained(str(tmp_path / "ckpt"))
    calibrated = float(model.budget_table[:, 1].abs().sum()) > 0
    assert calibrated == (when == "after_training")
    if not calibrated:  # a budget is refused with the way to calibrate, not run uncalibrated
        with pytest.raises(ValueError, match="vared2 evaluate --budget"):
            set_budget(model, 0.7)


def test_an_unknown_calibration_time_names_the_valid_ones():
    with pytest.raises(ValueError, match="after_training.*on_demand"):
        load_config("debug", ["train.budget_calibration=later"])
