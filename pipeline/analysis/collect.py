"""One hard-policy pass over an evaluation set that every analysis reads: per clip its label, key,
MACs and, per dynamic layer, the chosen variant as ratios of computed features; per class the
cheapest and costliest clips (kept as uint8 frames for the strips)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
from torch import nn

from pipeline.analysis.clip_redundancy import clip_redundancy
from pipeline.models import DynamicConvBase, dynamic_layers, temporal_factors


@dataclass
class LayerInfo:
    name: str  # dotted name inside the model, without the leading "backbone."
    block: str  # the residual block it belongs to (first two name parts, e.g. "layer1.0")
    full_macs: int  # per-clip MACs of the static conv at the analysed input size
    out_channels: int
    out_frames: int  # T_out of the static conv (1 for 2D layers)
    output_shape: tuple[int, ...]  # per-sample output of the static conv, (C, T, H, W) or (C, H, W)


@dataclass
class ExtremeClip:
    macs: int
    key: str
    label: int
    frames: np.ndarray  # uint8 (T, H, W, 3), de-normalised


@dataclass
class PolicyRecords:
    """Per-clip arrays (N clips, L dynamic layers). Ratios are computed / total features of a layer:
    channel m_i / C_out, temporal ceil(T_out / R_j) / T_out, combined their product (for a gated
    baseline layer: channel = its share of MACs computed, temporal = 1)."""

    layers: list[LayerInfo]
    static_macs: int  # per-clip MACs of the static model (every dynamic layer at full cost)
    keys: list[str] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,)
    macs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,) executed policy
    layer_macs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))  # (N, L)
    channel_ratio: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (N, L)
    temporal_ratio: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (N, L)
    redundancy: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) clip_redundancy of each clip
    cheapest: dict[int, list[ExtremeClip]] = field(default_factory=dict)  # class -> ascending cost
    costliest: dict[int, list[ExtremeClip]] = field(default_factory=dict)  # class -> descending cost

    @property
    def combined_ratio(self) -> np.ndarray:
        return self.channel_ratio * self.temporal_ratio

    @property
    def cost_ratio(self) -> np.ndarray:
        """(N,) per-clip MACs as a fraction of the static model's."""
        return self.macs / float(self.static_macs)

    @property
    def num_clips(self) -> int:
        return len(self.keys)


def block_of(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]


def _strip(name: str) -> str:
    return name[len("backbone."):] if name.startswith("backbone.") else name


def to_uint8_frames(clip: torch.Tensor, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225)) -> np.ndarray:
    """(C, T, H, W) normalised float -> (T, H, W, 3) uint8 (the loaders' MEAN / STD undone)."""
    c = clip.detach().float().cpu()
    c = c * torch.tensor(std)[:, None, None, None] + torch.tensor(mean)[:, None, None, None]
    return (c.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def _keep(pool: list[ExtremeClip], item: ExtremeClip, k: int, cheapest: bool) -> None:
    pool.append(item)
    pool.sort(key=lambda e: (e.macs, e.key), reverse=not cheapest)
    del pool[k:]


@torch.no_grad()
def collect_policies(model: nn.Module, batches: Iterable, *, device: torch.device | str = "cpu",
                     extremes_per_class: int = 1, max_clips: int | None = None) -> PolicyRecords:
    """Run `model` (a VaredModel or a baseline of pipeline.models.baselines) under the hard policy over `batches` (pipeline.data.Batch-like:
    clips, labels, keys, optionally valid) and record every clip's policy and cost."""
    if extremes_per_class < 0:
        raise ValueError(f"extremes_per_class={extremes_per_class} must be 0 or more")
    model.eval()
    model.set_execution("hard")
    named = [(_strip(n), layer) for n, layer in dynamic_layers(model)]
    if not named and hasattr(model, "gated_layers"):  # the channel-gating baseline
        named = list(model.gated_layers())
    layers: list[LayerInfo] | None = None
    records: PolicyRecords | None = None
    keys, labels, macs, layer_macs, ch, tm, red = [], [], [], [], [], [], []
    try:
        for batch in batches:
            valid = torch.as_tensor(getattr(batch, "valid", torch.ones(len(batch.keys), dtype=torch.bool)))
            if max_clips is not None:
                room = max_clips - len(keys)
                if room <= 0:
                    break
                valid = valid & (torch.cumsum(valid.long(), 0) <= room)
            if not bool(valid.any()):
                continue
            clips = batch.clips[valid]
            red.append(clip_redundancy(clips).numpy())
            out = model(clips.to(device))
            if layers is None:
                layers = [LayerInfo(name, block_of(name), r.full_macs, r.output_shape[1],
                                    r.output_shape[2] if len(r.output_shape) == 5 else 1,
                                    tuple(r.output_shape[1:]))
                          for (name, _), r in zip(named, out.records)]
                records = PolicyRecords(layers=layers, static_macs=model.static_macs(tuple(clips.shape[1:])))
            ch_b, tm_b = _ratios(named, out.records, len(clips))
            ch.append(ch_b)
            tm.append(tm_b)
            layer_macs.append(torch.stack([r.macs for r in out.records], 1).cpu().numpy()
                              if out.records else np.zeros((len(clips), 0), np.int64))
            batch_keys = [k for k, ok in zip(batch.keys, valid.tolist()) if ok]
            if getattr(batch, "clip_index", None) is not None:  # K eval clips share a video key
                batch_keys = [f"{k}@{int(c)}" for k, c in zip(batch_keys, torch.as_tensor(batch.clip_index)[valid])]
            batch_labels = torch.as_tensor(batch.labels)[valid].tolist()
            batch_macs = out.macs.cpu().tolist()
            keys += batch_keys
            labels += batch_labels
            macs += batch_macs
            if extremes_per_class:
                for b, (key, label, cost) in enumerate(zip(batch_keys, batch_labels, batch_macs)):
                    for pool, cheap in ((records.cheapest, True), (records.costliest, False)):
                        bucket = pool.setdefault(label, [])
                        worst = bucket[-1].macs if len(bucket) >= extremes_per_class else None
                        if worst is None or (cost < worst if cheap else cost > worst):
                            _keep(bucket, ExtremeClip(cost, key, label, to_uint8_frames(clips[b])),
                                  extremes_per_class, cheap)
    finally:
        model.set_execution("auto")
    if records is None:
        raise ValueError("the analysis got no clips: is the evaluation split empty?")
    records.keys = keys
    records.labels = np.asarray(labels, np.int64)
    records.macs = np.asarray(macs, np.int64)
    records.layer_macs = np.concatenate(layer_macs)
    records.channel_ratio = np.concatenate(ch)
    records.temporal_ratio = np.concatenate(tm)
    records.redundancy = np.concatenate(red)
    return records


def _ratios(named, records, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, L) channel and temporal ratios of computed features of the variants the clips chose."""
    ch = np.ones((batch, len(records)))
    tm = np.ones((batch, len(records)))
    for l, ((_, layer), rec) in enumerate(zip(named, records)):
        if not isinstance(layer, DynamicConvBase):  # a gated baseline layer: its share of MACs computed
            ch[:, l] = (rec.macs.double() / rec.full_macs).cpu().numpy()
            continue
        if layer.has_channel:
            computed = np.asarray(layer.computed_channels, dtype=np.float64) / layer.out_channels
            ch[:, l] = computed[rec.channel_index.cpu().numpy()]
        if layer.has_temporal:
            t_out = rec.output_shape[2]
            factors = temporal_factors(layer.search_space, t_out)
            computed = np.asarray([math.ceil(t_out / f) / t_out for f in factors])
            tm[:, l] = computed[rec.temporal_index.cpu().numpy()]
    return ch, tm
