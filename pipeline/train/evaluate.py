"""The evaluation protocol of METHOD.md section 9, under the hard (argmax) policy.

clip-1 is the top-1 of each video's centre clip; video-1 / video-5 average the softmax over the K
clips of a video; GFLOPs avg / max / min are per-clip multiply-accumulates of the policy executed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Iterable

import torch
from torch import nn


@dataclass
class EvalResult:
    clip_top1: float
    video_top1: float
    video_top5: float
    gflops_avg: float
    gflops_max: float
    gflops_min: float
    num_videos: int
    num_clips: int
    per_class_top1: dict[int, float] = field(default_factory=dict)  # video-1 per class
    # Videos the loader could not decode ("key: error"); counted as wrong in clip-1 / video-1 /
    # video-5 (and in num_videos) unless the evaluation excluded them.
    num_failed: int = 0
    failed: list[str] = field(default_factory=list)

    def metrics(self, prefix: str = "val/") -> dict[str, float]:
        out = {k: float(v) for k, v in asdict(self).items() if k not in ("per_class_top1", "failed")}
        return {prefix + k: v for k, v in out.items()}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, *, num_clips: int,
             device: torch.device | str = "cpu", hard: bool = True, exclude_failed: bool = False) -> EvalResult:
    """`batches` yield `pipeline.data.Batch`-like objects: `clips` (B,C,T,H,W), `labels` (B,),
    `keys` (video keys), `clip_index` (B,) (position of the clip among the video's `num_clips`
    uniformly spaced clips) and optionally `valid` (B,) bool; invalid (padding) clips are dropped.
    Videos the loader reports as undecodable (`batches.stats.corrupt_keys`, after the pass) count as
    wrong, so accuracy is never silently computed on a subset; `exclude_failed` leaves them out."""
    model.eval()
    if hard and hasattr(model, "set_execution"):
        model.set_execution("hard")
    probs: dict[str, torch.Tensor] = {}
    labels: dict[str, int] = {}
    centre_correct: dict[str, bool] = {}
    macs: list[torch.Tensor] = []
    centre = num_clips // 2
    for batch in batches:
        valid = torch.as_tensor(getattr(batch, "valid", torch.ones(len(batch.keys), dtype=torch.bool)))
        if not bool(valid.any()):
            continue
        output = model(batch.clips[valid].to(device, non_blocking=True))
        p = output.logits.float().softmax(dim=1).cpu()
        macs.append(output.macs.detach().double().cpu())
        clip_index = torch.as_tensor(batch.clip_index)[valid].tolist()
        keys = [key for key, ok in zip(batch.keys, valid.tolist()) if ok]
        labels_b = torch.as_tensor(batch.labels)[valid]
        for k, key in enumerate(keys):
            probs[key] = probs[key] + p[k] if key in probs else p[k].clone()
            labels[key] = int(labels_b[k])
            if clip_index[k] == centre:
                centre_correct[key] = int(p[k].argmax()) == labels[key]
    if hasattr(model, "set_execution"):
        model.set_execution("auto")
    if not probs:
        raise ValueError("evaluation got no batches: is the validation split empty?")
    keys = sorted(probs)
    stacked = torch.stack([probs[k] for k in keys])  # (V, K)
    target = torch.tensor([labels[k] for k in keys])
    top5 = stacked.topk(min(5, stacked.shape[1]), dim=1).indices
    video_correct = top5[:, 0] == target
    per_class: dict[int, list[bool]] = defaultdict(list)
    for c, ok in zip(target.tolist(), video_correct.tolist()):
        per_class[c].append(ok)
    all_macs = torch.cat(macs) / 1e9
    stats = getattr(batches, "stats", None)
    failed = sorted(set(getattr(stats, "corrupt_keys", []) or []))
    wrong = 0 if exclude_failed else len(failed)
    return EvalResult(
        clip_top1=sum(centre_correct.values()) / max(1, len(centre_correct) + wrong),
        video_top1=float(video_correct.float().sum()) / (len(keys) + wrong),
        video_top5=float((top5 == target[:, None]).any(dim=1).float().sum()) / (len(keys) + wrong),
        gflops_avg=float(all_macs.mean()), gflops_max=float(all_macs.max()),
        gflops_min=float(all_macs.min()), num_videos=len(keys) + wrong, num_clips=int(all_macs.numel()),
        per_class_top1={c: sum(v) / len(v) for c, v in sorted(per_class.items())},
        num_failed=len(failed), failed=failed,
    )


@torch.no_grad()
def measure_throughput(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int,
                       iters: int = 5, warmup: int = 2, device: torch.device | str = "cpu",
                       inputs: torch.Tensor | None = None) -> float:
    """Clips/s of a hard-mode forward on `batch_size` clips of `input_shape` (C, T, H, W).

    Give real `inputs` for a dynamic model: its policy, hence its speed, depends on the content.
    """
    model.eval()
    if hasattr(model, "set_execution"):
        model.set_execution("hard")
    x = inputs if inputs is not None else torch.randn(batch_size, *input_shape)
    x = x.to(device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        model(x)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        model(x)
    sync()
    elapsed = time.perf_counter() - start
    if hasattr(model, "set_execution"):
        model.set_execution("auto")
    return iters * x.shape[0] / elapsed
