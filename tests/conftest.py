"""Shared test setup: skip GPU / DALI / FFCV tests where their hardware or package is missing."""

import importlib.util

import pytest


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    missing = {
        "gpu": None if _has_cuda() else "needs a CUDA GPU",
        "dali": None if importlib.util.find_spec("nvidia.dali") else "needs nvidia-dali",
        "ffcv": None if importlib.util.find_spec("ffcv") else "needs ffcv (make install-ffcv)",
    }
    for item in items:
        for marker, reason in missing.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
