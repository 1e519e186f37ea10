"""Config of where a run executes and where its results go: Ray resources, storage, MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config.base import Section


@dataclass(frozen=True)
class RuntimeConfig(Section):
    NAME = "runtime"

    ray_address: str = ""  # "" = start a local Ray instance; "auto" or "ray://host:10001" = a cluster
    num_workers: int = 2  # data-parallel training workers
    use_gpu: bool = False
    cpus_per_worker: int = 1
    # Checkpoints and Tune state. Multi-node runs need storage every node reaches (s3://, gs://, NFS).
    storage_path: str = "runs"
    run_name: str = ""  # "" = derived from the preset; reusing a name resumes that run
    max_failures: int = 1  # Ray Train retries from the last checkpoint
    fail_at_epoch: int = 0  # fault injection for recovery tests: fail once after this epoch (0 = off)
    # How it fails: a worker raises, or one worker process is killed with SIGKILL (no cleanup at all).
    fail_mode: Literal["raise", "sigkill"] = "raise"
    tracking_uri: str = ""  # "" = $MLFLOW_TRACKING_URI or the local sqlite:///mlruns.db
    # The folder relative paths (data.root, storage_path, a sqlite tracking file) resolve against;
    # "" = the working directory. Inside `ray job submit` that is a temporary copy of the code, so a
    # job passes the folder it was submitted from: `... -- python -m jobs.train runtime.base_dir=$PWD`.
    base_dir: str = ""
    experiment: str = "vared2"
    registered_model: str = "vared2"
    # glibc malloc keeps freed activation memory instead of unmapping it (pipeline/allocator.py):
    # 1.6-2x faster CPU forwards at batch 8, for a higher peak RSS (benchmarks/RESULTS.md section 1).
    keep_freed_memory: bool = True

    def validate(self) -> None:
        self._require(self.num_workers >= 1, "num_workers", "must be at least 1")
        self._require(self.cpus_per_worker >= 1, "cpus_per_worker", "must be at least 1")
        self._require(self.max_failures >= -1, "max_failures", "must be -1 (forever) or more")
        self._require(self.fail_at_epoch >= 0, "fail_at_epoch", "must be 0 (off) or an epoch number")
