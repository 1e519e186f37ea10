"""Preprocessing on Ray: one Ray task per planned shard, a local instance or an existing cluster.

The plan is made on the driver from the sorted rows before anything runs, and each task writes one
whole shard, so the output is the same for any number of workers. Shards whose resume marker is
consistent are skipped. On a cluster, the videos and `output` must be on storage every node sees.
"""

from __future__ import annotations

import os
import sys
import time

import ray
from tqdm import tqdm

from preprocessing.run import finalize, finished_stats, prepare, remove_stale_shards, run_shard


@ray.remote(num_cpus=1, max_retries=2)
def _run_shard_task(task):
    start = time.process_time()
    stats = run_shard(task)
    return {**stats, "cpu_s": time.process_time() - start}  # not in the marker: timing varies


def run_preprocess(cfg, *, ray_address: str = "", num_workers: int | None = None,
                   show_progress: bool = True) -> dict:
    """Preprocess `cfg` (a `PreprocessConfig`) with `num_workers` concurrent shard tasks.

    Starts a light local Ray instance (no dashboard, `num_workers` CPUs) unless `ray_address` (or
    $RAY_ADDRESS) is given or Ray is already initialised. Returns the dataset summary, plus `elapsed_s` and counts.
    """
    workers = num_workers or cfg.num_workers
    if workers < 1:
        raise ValueError(f"num_workers={workers}: must be at least 1")
    start = time.perf_counter()
    prepared = prepare(cfg)
    remove_stale_shards(prepared, cfg.output, cfg.split)
    done, todo = [], []
    for task in prepared.tasks:
        stats = finished_stats(task)
        (done.append(stats) if stats is not None else todo.append(task))
    started_ray = False
    ray_address = ray_address or os.environ.get("RAY_ADDRESS", "")  # set inside `ray job submit`
    if todo and not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        started_ray = True
    try:
        pending, queue = {}, list(reversed(todo))
        bar = tqdm(total=sum(len(t.rows) for t in prepared.tasks), unit="video",
                   desc=f"preprocess {cfg.split}", disable=not show_progress, smoothing=0.1)
        bar.update(sum(s["num_rows"] for s in done))
        while queue or pending:
            # At most `workers` tasks in flight: also caps them on a cluster with more CPUs.
            while queue and len(pending) < workers:
                task = queue.pop()
                pending[_run_shard_task.remote(task)] = task
            try:
                ready, _ = ray.wait(list(pending), num_returns=1)
            except KeyboardInterrupt:
                # A local instance goes, with its tasks, at ray.shutdown below; on a cluster the
                # tasks would run on, so they are cancelled. Not force-cancelled: racing a task's
                # completion, that crashed the driver in Ray's core (task_manager.cc check). A
                # cancelled task leaves only its `.tmp` file, which a rerun overwrites.
                if not started_ray:
                    for ref in pending:
                        ray.cancel(ref)
                raise
            for ref in ready:
                pending.pop(ref)
                stats = ray.get(ref)
                done.append(stats)
                bar.update(stats["num_rows"])
                bar.set_postfix(ok=sum(s["num_samples"] for s in done), refresh=False)
        bar.close()
    finally:
        if started_ray:
            ray.shutdown()
    summary = finalize(cfg, prepared, done)
    return {**summary, "elapsed_s": round(time.perf_counter() - start, 3),
            "task_cpu_s": round(sum(s.get("cpu_s", 0.0) for s in done), 3),
            "shards_skipped": len(prepared.tasks) - len(todo), "shards_written": len(todo)}


def main(argv: list[str] | None = None) -> int:
    """`python -m jobs.preprocess ...` = `vared2 preprocess ...`."""
    from jobs.cli import main as cli

    return cli(["preprocess", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
