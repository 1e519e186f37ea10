"""Everything a run needs to resume exactly: weights, optimiser, scheduler, epoch, step, RNG state.

Saved with `torch.save` and read back with `torch.load(..., weights_only=True)`, so every value is
a tensor or a plain container (numpy's RNG state is converted to a tensor).
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_FILE = "checkpoint.pt"


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP / compile wrapper."""
    return getattr(model, "module", model)


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)}}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))


def save_checkpoint(directory: str | Path, *, model: nn.Module, optimizer=None, scheduler=None,
                    epoch: int, step: int, config: dict, metrics: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write `checkpoint.pt` (+ `config.json` for humans) into `directory`; returns the file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch, "step": step, "rng": rng_state(),
        "config": json.dumps(config, sort_keys=True), "metrics": metrics or {}, "extra": extra or {},
    }
    path = directory / CHECKPOINT_FILE
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["config"] = json.loads(state["config"])
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a readable vared2 checkpoint ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from err
    return state


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file, the `checkpoint.pt` inside a checkpoint folder, or, given a run's
    folder (`runs/<run name>`, holding Ray Train's `checkpoint_*` folders), its newest checkpoint
    that reads back whole; without running code. The state's `source` is the file read."""
    path = Path(path)
    if path.is_dir() and not (path / CHECKPOINT_FILE).exists():
        found = sorted((p for p in path.glob(f"checkpoint_*/{CHECKPOINT_FILE}")), reverse=True)
        if not found:
            raise ValueError(f"no checkpoint at {path}: give a checkpoint folder (holding "
                             f"{CHECKPOINT_FILE}), a checkpoint file, or a run folder holding checkpoint_* folders")
        errors = []
        for file in found:  # Ray Train names them by time: the newest first
            try:
                return {**_read(file), "source": str(file.parent)}
            except (ValueError, OSError) as err:  # a file cut short raises OSError in torch.load
                errors.append(f"{file}: {err}" if isinstance(err, OSError) else str(err))
        raise ValueError(f"no checkpoint in the run folder {path} reads back whole: {'; '.join(errors)}")
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}")
    return {**_read(path), "source": str(path.parent if path.name == CHECKPOINT_FILE else path)}


def update_weights(directory: str | Path, model: nn.Module) -> Path:
    """Rewrite the weights of the checkpoint in `directory` with `model`'s (same everything else),
    e.g. after a calibration that only fills buffers."""
    path = Path(directory)
    path = path / CHECKPOINT_FILE if path.is_dir() else path
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["model"] = unwrap(model).state_dict()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def restore(state: dict[str, Any], *, model: nn.Module, optimizer=None, scheduler=None,
            restore_rng: bool = True) -> None:
    unwrap(model).load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_state(state["rng"])
