"""The epoch loop shared by the Ray Train workers and the plain single-process runs.

Pure torch: data, reporting and checkpoint persistence come in as callables, so the same loop runs
under Ray Train (jobs/train.py), in the overhead benchmark and in the tests. Under
`torch.distributed` the per-epoch train metrics are summed over ranks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from pipeline.config import Config
from pipeline.models.budget import set_offset
from pipeline.models.calibrate import recalibrate_batchnorm
from pipeline.train.checkpoint import restore, unwrap
from pipeline.train.evaluate import EvalResult
from pipeline.train.optim import build_optimizer, build_scheduler, lambda_e_at
from pipeline.train.step import EpochMeter, train_step


@dataclass
class EpochReport:
    epoch: int  # 0-based epoch just finished
    step: int
    metrics: dict[str, float]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object


def _all_reduce(meter: EpochMeter) -> EpochMeter:
    if not (dist.is_available() and dist.is_initialized()):
        return meter
    t = meter.as_tensor()
    dist.all_reduce(t)
    return EpochMeter.from_tensor(t)


def _clips(batches: Iterable, limit: int, device) -> Iterable[torch.Tensor]:
    """The clips of the first `limit` batches (rank padding dropped), on `device`."""
    for i, batch in enumerate(batches):
        if i >= limit:
            return
        clips = batch.clips if hasattr(batch, "clips") else batch[0]
        valid = getattr(batch, "valid", None)
        if valid is not None and 0 < int(valid.sum()) < len(valid):
            clips = clips[valid]
        yield clips.to(device, non_blocking=True)


def _budget_offset(tcfg, step: int) -> float:
    """The budget offset of training step `step` (train.budget_offsets): 0 on even steps, else uniform
    in [-x, x]; a function of (seed, step), so a resumed run draws the same ones."""
    if step % 2 == 0:
        return 0.0
    g = torch.Generator().manual_seed(tcfg.seed * 1_000_003 + step)
    return float((torch.rand((), generator=g) * 2 - 1) * tcfg.budget_offsets)


def train_epochs(cfg: Config, *, model: nn.Module,
                 train_batches: Callable[[int], Iterable],
                 steps_per_epoch: int,
                 evaluate_fn: Callable[[nn.Module, int], EvalResult | None] | None = None,
                 on_epoch_end: Callable[[EpochReport], None] | None = None,
                 resume_state: dict | None = None, device: torch.device | str = "cpu",
                 rank: int = 0, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train `cfg.train.epochs` epochs (from the resumed epoch on); returns the last epoch's metrics.

    `train_batches(epoch)` yields (clips, labels) pairs or objects with `.clips`/`.labels`.
    `on_epoch_end` persists/reports; it is called on every rank (Ray's report is a barrier).
    """
    tcfg = cfg.train
    optimizer = build_optimizer(model, tcfg)
    scheduler = build_scheduler(optimizer, tcfg, steps_per_epoch)
    start_epoch, step = 0, 0
    if resume_state is not None:
        restore(resume_state, model=model, optimizer=optimizer, scheduler=scheduler)
        start_epoch, step = resume_state["epoch"] + 1, resume_state["step"]
        if rank == 0:
            log(f"resuming from epoch {start_epoch} (step {step})")
    use_amp = torch.device(device).type == "cuda" and tcfg.amp
    dtype = torch.bfloat16 if use_amp else None
    metrics: dict[str, float] = {}
    dynamic = getattr(unwrap(model), "dynamic", "none") != "none"
    for epoch in range(start_epoch, tcfg.epochs):
        freeze = epoch >= tcfg.epochs - int(tcfg.gate_freeze_fraction * tcfg.epochs + 1e-9)
        shifting = ((freeze or tcfg.budget_offsets_epochs == "all") and tcfg.budget_offsets > 0
                    and dynamic)  # training across budgets
        for name, param in model.named_parameters():
            if ".gate." in name:
                param.requires_grad_(not freeze)
        meter, started = EpochMeter(), time.perf_counter()
        for i, batch in enumerate(train_batches(epoch)):
            clips, labels = (batch.clips, batch.labels) if hasattr(batch, "clips") else batch
            valid = getattr(batch, "valid", None)
            if valid is not None and 0 < int(valid.sum()) < len(valid):  # drop rank padding
                clips, labels = clips[valid], labels[valid]
            lam = lambda_e_at(tcfg, epoch, i / max(1, steps_per_epoch))
            sandwich = None
            if shifting and tcfg.budget_rule == "sandwich":
                sandwich = [_budget_offset(tcfg, 2 * step + 1)]  # an odd index: a drawn offset, never 0
            elif shifting:
                set_offset(model, _budget_offset(tcfg, step))
            result = train_step(model, clips.to(device, non_blocking=True),
                                labels.to(device, non_blocking=True), optimizer, lambda_e=lam, lambda_d=tcfg.lambda_d,
                                efficiency_form=tcfg.efficiency_form, scheduler=scheduler, autocast_dtype=dtype, grad_clip=tcfg.grad_clip,
                                sandwich_offsets=sandwich)
            meter.add(result)
            step += 1
            if rank == 0 and tcfg.log_every and (i + 1) % tcfg.log_every == 0:
                log(f"  epoch {epoch + 1} step {i + 1}/{steps_per_epoch} loss {result.loss:.4f} "
                    f"(eff {result.loss_eff:.4f}) lambda_e {lam:.3f}")
        if shifting:
            set_offset(model, 0.0)
        total = _all_reduce(meter)
        elapsed = time.perf_counter() - started
        if epoch + 1 == tcfg.epochs and tcfg.recalibrate_batches > 0 and cfg.model.gate_training == "soft" \
                and getattr(unwrap(model), "dynamic", "none") != "none":
            used = recalibrate_batchnorm(unwrap(model), _clips(train_batches(tcfg.epochs), tcfg.recalibrate_batches,
                                                                device))
            if rank == 0:
                log(f"BatchNorm statistics re-estimated under the hard policy on {used} batches")
        metrics = {**total.summary(), "train/clips_per_s": total.count / max(elapsed, 1e-9),
                   "train/lambda_e": lambda_e_at(tcfg, epoch, 1.0), "train/lr": scheduler.get_last_lr()[0],
                   "epoch": epoch + 1, "step": step}
        if evaluate_fn is not None:
            result = evaluate_fn(model, epoch)
            if result is not None:
                metrics.update(result.metrics("val/"))
        if rank == 0:
            val = (f" | val clip-1 {metrics['val/clip_top1']:.3f} video-1 {metrics['val/video_top1']:.3f}"
                   f" GFLOPs {metrics['val/gflops_avg']:.3f}" if "val/clip_top1" in metrics else "")
            log(f"epoch {epoch + 1}/{tcfg.epochs} loss {metrics['train/loss']:.4f} "
                f"top1 {metrics['train/top1']:.3f} GFLOPs {metrics['train/gflops']:.3f} "
                f"{metrics['train/clips_per_s']:.1f} clips/s{val}")
        if on_epoch_end is not None:
            on_epoch_end(EpochReport(epoch=epoch, step=step, metrics=metrics, model=model,
                                     optimizer=optimizer, scheduler=scheduler))
    return metrics
