"""The MLflow model this project logs, as code (MLflow's models-from-code): loading a logged or
registered version runs this file, which imports the installed `vared2` package and reads the
weights with `torch.load(..., weights_only=True)`; nothing is unpickled.

Input: clips float32 (B, C, T, H, W), normalised like the loaders' output -> logits (B, K), hard
policy. Predict parameter `budget` (pipeline/models/budget.py): a fraction of the static model's
GFLOPs (0.6), 1.0 for the static model exactly, 0 (default) for the trained policy; the calibration
travels in the weights, so serving never recalibrates. `predict(clips, params={"budget": 0.6})`,
or `"params": {"budget": 0.6}` in a request to `mlflow models serve`.
"""

from __future__ import annotations

import mlflow
import mlflow.pyfunc


class VaredPyfunc(mlflow.pyfunc.PythonModel):
    """The VA-RED² (or static / baseline) model behind an MLflow pyfunc; see the module docstring."""

    # Clips are a 5D float array, which MLflow's type-hint schema cannot express: skip its
    # type-hint validation (and its warning); the model is logged with an explicit signature.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from jobs.models import load_trained

        self.config, self.model = load_trained(context.artifacts["checkpoint"])
        self.model.eval()

    def predict(self, context, model_input, params=None):
        import numpy as np
        import torch

        from pipeline.models.budget import set_budget

        budget = float((params or {}).get("budget", 0.0) or 0.0)
        dynamic = getattr(self.model, "dynamic", "none") != "none"
        if budget and not dynamic:
            raise ValueError("budget: this model has no dynamic layers, its cost is fixed")
        if dynamic:
            set_budget(self.model, budget or None)
        try:
            with torch.no_grad():
                out = self.model(torch.as_tensor(np.asarray(model_input, dtype=np.float32)))
        finally:
            if dynamic:
                set_budget(self.model, None)
        return out.logits.numpy()


mlflow.models.set_model(VaredPyfunc())
