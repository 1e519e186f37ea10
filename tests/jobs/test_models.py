"""jobs.models.load_trained: a model comes back from its checkpoint as it was trained."""

import torch


def test_checkpoint_from_before_gate_input_and_temporal_padding_loads_as_it_was(tmp_path):
    """A model saved with the paper's "pool" gates and zero temporal padding (as every checkpoint
    before `gate_input` / `temporal_padding` was) loads through `jobs.models.load_trained`, whose
    config lacks both keys, and computes what it computed."""
    from jobs.models import load_trained
    from pipeline.config import apply_overrides, get_preset, to_dict
    from pipeline.models import build_model
    from pipeline.train.checkpoint import save_checkpoint

    cfg = apply_overrides(get_preset("debug"), ["model.gate_input=pool", "model.temporal_padding=zeros"])
    model = build_model(cfg.model)
    saved = to_dict(cfg)
    del saved["model"]["gate_input"], saved["model"]["temporal_padding"]
    save_checkpoint(tmp_path, model=model, epoch=0, step=0, config=saved)
    loaded_cfg, loaded = load_trained(str(tmp_path))
    assert loaded_cfg.model.gate_input == "pool" and loaded_cfg.model.temporal_padding == "zeros"
    x = torch.rand(2, 3, 4, 32, 32)  # not a still clip: the two paddings give different logits
    model.eval(), loaded.eval()
    assert torch.equal(model(x).logits, loaded(x).logits)
