"""Loaders that turn the shards into `Batch`es: PyAV on CPU, DALI on GPU, an FFCV clip cache.

`build_loader(cfg, split=..., train=...)` picks the backend named by `cfg.backend`; every backend
yields the same `Batch` (contract.py) with the same sampling rules (sampling.py). Call
`loader.set_epoch(epoch)` before each epoch and read `loader.stats` after it.
"""

from __future__ import annotations

from pipeline.data.contract import MEAN, STD, Batch, LoadStats

__all__ = ["Batch", "LoadStats", "MEAN", "STD", "build_loader"]


def build_loader(cfg, *, split: str, train: bool, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, device_id: int | None = None):
    """The loader of `cfg.backend` for one rank. `device_id` (the caller's LOCAL_RANK) is the GPU
    the DALI backend decodes on; None means decode on CPU (VP9 / MJPEG only)."""
    if cfg.backend == "pyav":
        from pipeline.data.pyav_loader import PyAVLoader
        return PyAVLoader(cfg, split=split, train=train, rank=rank, world_size=world_size, epoch=epoch)
    if cfg.backend == "dali":
        from pipeline.data.dali_loader import DALILoader
        return DALILoader(cfg, split=split, train=train, rank=rank, world_size=world_size,
                          epoch=epoch, device_id=device_id)
    if cfg.backend == "ffcv":
        from pipeline.data.ffcv_cache import FFCVLoader
        return FFCVLoader(cfg, split=split, train=train, rank=rank, world_size=world_size, epoch=epoch)
    raise ValueError(f"data.backend={cfg.backend!r}: choose one of 'pyav', 'dali', 'ffcv'")
