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
