"""Training on Ray Train (V2): a TorchTrainer whose workers run `pipeline.train.loop.train_epochs`.

    python -m jobs.train --preset demo train.lambda_e=0.5        # also: vared2 train ...

The driver opens the MLflow run, the workers train data-parallel (DDP, gloo on CPU / NCCL on GPU)
and report metrics plus a checkpoint every epoch through `ray.train.report`; rank 0 logs the
per-epoch metrics to MLflow. A retried or resumed run continues from its last checkpoint. At the
end the driver evaluates the last checkpoint (hard policy) and logs the evaluation and the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import tempfile
from pathlib import Path

from pipeline.config import Config, from_dict, to_dict

# Ray, torch and MLflow are imported inside the functions: a job with a bad preset or override
# then fails in well under a second, before any of them loads.


def run_name(cfg: Config) -> str:
    if cfg.runtime.run_name:
        return cfg.runtime.run_name
    return f"{cfg.name}-{cfg.model.backbone}-{cfg.model.dynamic}"


def _maybe_fail(cfg: Config, epoch: int, storage: Path) -> None:
    """Fault injection for the recovery test: fail once, at the end of `runtime.fail_at_epoch`."""
    if cfg.runtime.fail_at_epoch != epoch + 1:
        return
    marker = storage / f".failed-once-{run_name(cfg)}"
    try:
        with open(marker, "x") as f:  # exactly one worker of one attempt fails
            f.write(f"injected failure ({cfg.runtime.fail_mode}) by pid {os.getpid()}")
    except FileExistsError:
        return
    if cfg.runtime.fail_mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected failure after epoch {epoch + 1} (runtime.fail_at_epoch)")


def spool_dir(cfg: Config, name: str) -> Path:
    """Where rank 0 keeps metrics a tracking outage could not send: the run's storage folder when
    it is a local or shared path, else a folder in this node's temp dir."""
    storage = cfg.runtime.storage_path
    if "://" in storage:
        return Path(tempfile.gettempdir()) / "vared2-spool" / name
    return Path(storage) / name


def quiet_worker_logs() -> None:
    """Keep a worker's console to our lines: Ray Train logs each report ("Reporting training result
    ... TrainingReport(...)") at INFO through a logger named by its file, outside `ray.train.*`,
    so RunConfig's LoggingConfig does not reach it. Its log files keep everything."""
    import logging

    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray version: its lines stay
        return
    context.logger.setLevel(logging.WARNING)


def train_loop_per_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch

    from jobs import run_folder
    from jobs.tracking import Tracker
    from pipeline.allocator import keep_freed_memory
    from pipeline.data import build_loader
    from pipeline.models import build_model
    from pipeline.train.checkpoint import load_checkpoint, save_checkpoint, unwrap
    from pipeline.train.evaluate import evaluate
    from pipeline.train.loop import train_epochs
    from pipeline.train.start import start_from_static

    quiet_worker_logs()
    cfg = from_dict(Config, loop_config["config"])
    storage = cfg.runtime.storage_path
    if cfg.runtime.keep_freed_memory:
        keep_freed_memory()
    run_id = loop_config["run_id"]
    tracker = Tracker(cfg.runtime)  # its client is made by rank 0's first log
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    model = build_model(cfg.model)
    resume, resume_size = _resume_state(ray.train.get_checkpoint(), storage, run_name(cfg))
    if rank == 0 and resume is not None:  # a retry on a full disk fails here, not an epoch later
        run_folder.check_space(storage, resume_size, what="the next checkpoint")

    device_id = ctx.get_local_rank() if cfg.runtime.use_gpu else None  # DALI decodes on it

    # Loaders are built once per run (a DALI pipeline or an FFCV reader is costly to make) and
    # moved to each epoch's sampling with set_epoch.
    train_loader = build_loader(cfg.data, split=cfg.data.train_split, train=True, rank=rank,
                                world_size=world, epoch=0, device_id=device_id)
    if cfg.train.init_from and resume is None:
        # A static model's checkpoint: its backbone weights; gates and cheap ops start from a
        # calibration on training clips (before DDP, which then broadcasts rank 0's state).
        model.to(device)
        static_state = load_checkpoint(cfg.train.init_from)  # a run folder reads as its newest
        quality = start_from_static(model, static_state, train_loader,
                                    calibrate_batches=cfg.train.calibrate_batches, device=device)
        if rank == 0:
            detail = (f"; cheap ops calibrated on {cfg.train.calibrate_batches} batches (mean R^2 of the "
                      f"rebuilt maps {sum(quality.values()) / len(quality):.2f})" if quality else "")
            print(f"initialised the backbone from {static_state['source']}{detail}")
    if cfg.train.sync_bn and world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # Temporal cheap ops of layers whose T_out is smaller than R get no gradient at that input
    # size (R is clamped), so DDP must look for unused parameters in dynamic models.
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={
        "find_unused_parameters": cfg.model.dynamic != "none"})

    val_loader = None

    def train_batches(epoch: int):
        train_loader.set_epoch(epoch)
        return train_loader

    def evaluate_fn(m, epoch):
        nonlocal val_loader
        if rank != 0 or (epoch + 1) % cfg.train.eval_every and epoch + 1 != cfg.train.epochs:
            return None
        if val_loader is None:
            val_loader = build_loader(cfg.data, split=cfg.data.val_split, train=False,
                                      device_id=device_id)
        return evaluate(unwrap(m), val_loader, num_clips=cfg.data.eval_clips, device=device)

    def on_epoch_end(report):
        if rank == 0:
            tracker.log_metrics(run_id, report.metrics, step=report.epoch + 1,
                                spool=spool_dir(cfg, run_name(cfg)))
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_checkpoint(tmp, model=report.model, optimizer=report.optimizer,
                                scheduler=report.scheduler, epoch=report.epoch, step=report.step,
                                config=to_dict(cfg), metrics=report.metrics)
                # Refuse before writing: a checkpoint or Ray snapshot cut short by a full disk
                # is worse than none (the previous checkpoint must stay the newest readable one).
                run_folder.check_space(storage, run_folder.size_of(tmp),
                                       what=f"epoch {report.epoch + 1}'s checkpoint")
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(report.metrics, checkpoint=ckpt)
        _maybe_fail(cfg, report.epoch, Path(storage))

    train_epochs(cfg, model=model, train_batches=train_batches, steps_per_epoch=len(train_loader),
                 evaluate_fn=evaluate_fn, on_epoch_end=on_epoch_end, resume_state=resume,
                 device=device, rank=rank)


def _resume_state(checkpoint, storage: str, name: str) -> tuple[dict | None, int]:
    """The state to continue from, and its size on disk: Ray Train's checkpoint of this run, or
    the newest one that reads back whole in the run's folder when that is newer. Ray's bookkeeping
    can lag a checkpoint already written: a Ctrl-C, or a node lost, between a report and the
    controller's next poll of every worker. Every rank reads the same folder before training."""
    from jobs import run_folder
    from pipeline.train.checkpoint import load_checkpoint

    state, size = None, 0
    found = run_folder.latest_state(storage, name)  # each checkpoint is read once
    if found is not None:
        state, size = found[1], run_folder.size_of(found[0])
    if checkpoint is not None and (found is None or not _same_folder(checkpoint.path, found[0])):
        with checkpoint.as_directory() as directory:
            theirs = load_checkpoint(directory)
            if state is None or theirs["epoch"] > state["epoch"]:
                state, size = theirs, run_folder.size_of(directory)
    return state, size


def _same_folder(path: str, folder: Path) -> bool:
    try:
        return Path(path).resolve() == folder.resolve()
    except (OSError, ValueError):
        return False


def pin_paths(cfg: Config) -> Config:
    """Workers run in another directory (or on another node): make every path absolute and pin
    the tracking store before the config leaves the driver."""
    from jobs import tracking
    from jobs.paths import resolve

    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, root=resolve(cfg, cfg.data.root, "data.root"),
                                 ffcv_cache=resolve(cfg, cfg.data.ffcv_cache, "data.ffcv_cache")),
        train=dataclasses.replace(cfg.train, init_from=resolve(cfg, cfg.train.init_from, "train.init_from")),
        runtime=dataclasses.replace(cfg.runtime, tracking_uri=tracking.tracking_uri(cfg),
                                    storage_path=resolve(cfg, cfg.runtime.storage_path, "runtime.storage_path")))


def check_inputs(cfg: Config) -> None:
    """Fail on the driver, before any worker starts, when the data or init checkpoint is missing."""
    from pipeline.data.sharding import find_shards
    from pipeline.train.checkpoint import load_checkpoint
    from pipeline.train.start import check_static_matches

    for split in (cfg.data.train_split, cfg.data.val_split):
        find_shards(cfg.data.root, split)  # ValueError naming the folder and the expected names
    if cfg.train.init_from and "://" not in cfg.train.init_from:
        if not Path(cfg.train.init_from).exists():
            raise ValueError(f"train.init_from={cfg.train.init_from!r}: no such checkpoint")
        check_static_matches(cfg.model, load_checkpoint(cfg.train.init_from)["config"])


def fit(cfg: Config, *, run_id: str | None = None, parent_run_id: str | None = None,
        callbacks: list | None = None, tags: dict[str, str] | None = None) -> dict:
    """Run the TorchTrainer; returns {"run_id", "checkpoint" (local dir), "metrics", "storage",
    "config"}. `callbacks` go to the RunConfig (Tune passes its TuneReportCallback there);
    `parent_run_id` nests the MLflow run under a sweep's parent run."""
    from jobs import run_folder, tracking
    from jobs.ray_env import init_ray

    cfg = pin_paths(cfg)
    check_inputs(cfg)
    tracking.check_reachable(cfg.runtime.tracking_uri)  # before Ray starts: fail in seconds
    storage = cfg.runtime.storage_path
    name = run_name(cfg)
    resuming = run_folder.has_run(storage, name)
    lock = run_folder.acquire_lock(storage, name)  # before Ray starts too: a refusal leaves nothing running
    try:
        if resuming:  # what a crash or a full disk left unreadable, set aside before Ray reads it
            for note in run_folder.repair(storage, name):
                print(note)
        init_ray(cfg)
        return _fit(cfg, storage, name, resuming, run_id, parent_run_id, callbacks, tags)
    finally:
        run_folder.release_lock(lock)


def _fit(cfg: Config, storage: str, name: str, resuming: bool, run_id, parent_run_id, callbacks,
         tags) -> dict:
    import ray.train
    import ray.train.torch

    from jobs import run_folder
    from jobs.tracking import Tracker

    tracker = Tracker(cfg.runtime)
    if run_id is None:
        run_id = tracker.find_run(name) if resuming else None
        run_id = run_id or tracker.start_run(
            cfg, run_name=name, parent_run_id=parent_run_id,
            tags={"vared2.dynamic": cfg.model.dynamic, **(tags or {})})
        tracker.log_datasets(run_id, cfg.data)  # again on a resume: MLflow keeps one input per split
    print(f"MLflow run {run_id} ({tracker.uri}), storage {storage}/{name}")
    trainer = ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": to_dict(cfg), "run_id": run_id},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.runtime.num_workers, use_gpu=cfg.runtime.use_gpu,
            resources_per_worker={"CPU": cfg.runtime.cpus_per_worker,
                                  **({"GPU": 1} if cfg.runtime.use_gpu else {})}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cfg.runtime.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            # Ray Train's own INFO lines (checkpoint created, ...) stay in its log files.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            callbacks=callbacks or None),
    )
    error = None
    with _noticing_ctrl_c() as interrupted:
        try:
            result = trainer.fit()
            error = result.error
        except BaseException as err:  # Ray raises some run errors from fit() itself
            if interrupted:
                raise KeyboardInterrupt from None
            if not isinstance(err, Exception):
                raise
            error = err
    if interrupted:  # Ray Train aborted the run on Ctrl-C; its checkpoints stay for a resume
        raise KeyboardInterrupt
    tracker.flush_spool(spool_dir(cfg, name))  # what an outage kept from the workers
    if error is not None:
        tracker.end_run(run_id, "FAILED")
        if run_folder.is_full_error(error):
            raise run_folder.StorageFull(_full_disk_message(error, storage, name)) from error
        raise error
    local = Path(tempfile.mkdtemp(prefix="vared2-ckpt-"))
    result.checkpoint.to_directory(str(local))
    return {"run_id": run_id, "checkpoint": local, "metrics": result.metrics,
            "storage": f"{storage}/{name}", "config": cfg}


def _full_disk_message(error: BaseException, storage: str, name: str) -> str:
    import re

    from jobs import run_folder

    said = re.search(r"runtime\.storage_path=\S+ is full: [^\n]*? to spare", str(error))
    what = said.group(0) if said else f"runtime.storage_path={storage} is full (No space left on device)"
    latest = run_folder.latest_checkpoint(storage, name)
    kept = (f"its last checkpoint, {latest[0]} (after epoch {latest[1] + 1}), is intact" if latest
            else "no checkpoint was written")
    return (f"{what}; the run stopped and {kept}. Free space there (or set runtime.storage_path), "
            f"then rerun the same command: it resumes from the last checkpoint")


@contextlib.contextmanager
def _noticing_ctrl_c():
    """Ray Train's fit() installs its own SIGINT handler, which aborts the run and then exits the
    process with status 1 and no word. Wrap whatever handler it installs so that a Ctrl-C is
    noticed (the yielded list becomes truthy) and `fit` can say what happened and exit with 130."""
    noticed: list[bool] = []
    original = signal.signal

    def wrapping(signum, handler):
        if signum == signal.SIGINT and callable(handler):
            def noticing(sig, frame, _inner=handler):
                noticed.append(True)
                try:
                    _inner(sig, frame)
                except SystemExit:
                    raise KeyboardInterrupt from None
            return original(signum, noticing)
        return original(signum, handler)

    signal.signal = wrapping
    try:
        yield noticed
    finally:
        signal.signal = original


def main(argv: list[str] | None = None) -> int:
    """`python -m jobs.train ...` (the `ray job submit` entry point) = `vared2 train ...`."""
    from jobs.cli import main as cli

    return cli(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
