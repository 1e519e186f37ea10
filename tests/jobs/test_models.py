"""jobs.models.load_trained: a model comes back from its checkpoint as it was trained."""

import torch


def test_checkpoint_of_a_pool_gate_model_loads_through_its_saved_config(tmp_path):
    """A model saved with the paper's "pool" gates (as every checkpoint before `gate_input` was)
    loads through `jobs.models.load_trained`, whose config lacks the key."""
    from jobs.models import load_trained
    from pipeline.config import apply_overrides, get_preset, to_dict
    from pipeline.models import build_model
    from pipeline.train.checkpoint import save_checkpoint

    cfg = apply_overrides(get_preset("debug"), ["model.gate_input=pool"])
    model = build_model(cfg.model)
    saved = to_dict(cfg)
    del saved["model"]["gate_input"]
    save_checkpoint(tmp_path, model=model, epoch=0, step=0, config=saved)
    loaded_cfg, loaded = load_trained(str(tmp_path))
    assert loaded_cfg.model.gate_input == "pool"
    x = torch.rand(2, 3, 4, 32, 32)
    model.eval(), loaded.eval()
    assert torch.equal(model(x).logits, loaded(x).logits)
