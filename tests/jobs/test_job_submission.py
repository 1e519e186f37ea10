"""Jobs API end to end: a local Ray cluster on loopback (cluster/start-local-cluster.sh), the debug
training job submitted with `JobSubmissionClient`, its MLflow run and checkpoint, and the fast,
clear failure of a bad preset or an unknown override key. One head and one training job for the
module: each costs tens of seconds on 2 cores.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "start-local-cluster.sh"
JOB_TIMEOUT_S = 240
# What the cluster must not receive: the environment, data, results and VCS metadata.
EXCLUDES = [".venv", "data", "runs", "mlruns*", "mlartifacts", ".git", "*.egg-info", "__pycache__",
            ".pytest_cache", "outputs"]


def free_ports(n: int) -> list[int]:
    """`n` distinct free TCP ports on 127.0.0.1 (the kernel's ephemeral range: above Ray's
    default worker ports 10002-19999)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclasses.dataclass
class LocalCluster:
    address: str  # the Jobs API (dashboard) URL
    token: str
    state: Path
    env: dict
    head_pid: int

    def client(self):
        from ray.job_submission import JobSubmissionClient

        # The header rather than RAY_AUTH_MODE in this process: Ray caches its auth mode per process.
        return JobSubmissionClient(self.address, headers={"Authorization": f"Bearer {self.token}"})


@pytest.fixture(scope="module")
def cluster():
    state = Path(tempfile.mkdtemp(prefix="v2r", dir="/tmp"))  # short: Ray's socket paths live below
    port, dashboard, client, agent, runtime_env, metrics = free_ports(6)
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_BIN=str(Path(sys.executable).parent / "ray"), VARED2_RAY_DIR=str(state),
               RAY_PORT=str(port), RAY_DASHBOARD_PORT=str(dashboard), RAY_CLIENT_PORT=str(client),
               RAY_AGENT_PORT=str(agent), RAY_RUNTIME_ENV_PORT=str(runtime_env),
               RAY_METRICS_PORT=str(metrics), RAY_NUM_CPUS="2", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=token)
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True,
                             text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    head_pid = int((state / "head.pid").read_text())
    try:
        yield LocalCluster(f"http://127.0.0.1:{dashboard}", token, state, env, head_pid)
    finally:
        stopped = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True,
                                 text=True, timeout=120)
        try:  # the script's stop failed or timed out: end the head's own process group
            os.killpg(head_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(state, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """8 train + 4 val tiny digit videos (32 px, 1 s) as debug-preset shards."""
    from pipeline.config import get_preset
    from preprocessing.demo_data import make_demo_dataset
    from preprocessing.run import preprocess

    root = tmp_path_factory.mktemp("jobdata")
    paths = make_demo_dataset(root, num_train_per_class=2, num_val_per_class=1, size=32, seconds=1.0)
    base = get_preset("debug").preprocess
    for split in ("train", "val"):
        summary = preprocess(dataclasses.replace(
            base, annotations=str(paths[f"{split}_csv"]), videos=str(paths["videos"]),
            output=str(root / "shards"), split=split))
        assert summary["num_ok"] == (8 if split == "train" else 4)
    return root / "shards"


def submit_and_wait(client, entrypoint: str) -> tuple[str, object]:

    job_id = client.submit_job(entrypoint=entrypoint,
                               runtime_env={"working_dir": str(REPO), "excludes": EXCLUDES})
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return job_id, status
        time.sleep(1)
    client.stop_job(job_id)
    pytest.fail(f"job {job_id} not finished after {JOB_TIMEOUT_S}s:\n{client.get_job_logs(job_id)}")


@pytest.fixture(scope="module")
def trained(cluster, dataset, tmp_path_factory):
    """The debug training job, 1 epoch, with its results under a fresh folder."""
    out = tmp_path_factory.mktemp("jobout")
    run_name = "job-submission-debug"
    entrypoint = (f"python -m jobs.train --preset debug data.root={dataset} "
                  f"runtime.storage_path={out / 'runs'} "
                  f"runtime.tracking_uri=sqlite:///{out / 'mlruns.db'} "
                  f"runtime.run_name={run_name} train.epochs=1")
    client = cluster.client()
    job_id, status = submit_and_wait(client, entrypoint)
    return {"job_id": job_id, "status": status, "out": out, "run_name": run_name,
            "data_root": str(dataset), "logs": client.get_job_logs(job_id)}


def test_debug_training_job_succeeds_with_an_mlflow_run_and_a_checkpoint(trained):
    from mlflow.tracking import MlflowClient
    from ray.job_submission import JobStatus

    from pipeline.train.checkpoint import load_checkpoint

    logs = trained["logs"]
    assert trained["status"] == JobStatus.SUCCEEDED, logs
    tracking = MlflowClient(tracking_uri=f"sqlite:///{trained['out'] / 'mlruns.db'}")
    experiment = tracking.get_experiment_by_name("vared2-debug")
    runs = tracking.search_runs([experiment.experiment_id],
                                filter_string=f"attributes.run_name = '{trained['run_name']}'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    history = tracking.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [1] and math.isfinite(history[0].value)
    assert "test/video_top1" in run.data.metrics  # the final evaluation ran too
    assert run.data.params["name"] == "debug"
    # The entrypoint says where its results went.
    storage = trained["out"] / "runs" / trained["run_name"]
    assert f"MLflow run {run.info.run_id}" in logs and str(storage) in logs

    checkpoints = sorted(p for p in storage.glob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == 1
    state = load_checkpoint(checkpoints[0])
    assert state["epoch"] == 0 and state["step"] > 0
    assert state["config"]["name"] == "debug" and state["config"]["train"]["epochs"] == 1
    assert state["config"]["data"]["root"] == trained["data_root"]
    assert math.isclose(state["metrics"]["train/loss"], history[0].value, rel_tol=1e-6)


def test_job_artifacts_are_stored_outside_the_job_working_dir(trained, cluster):
    from mlflow.tracking import MlflowClient

    tracking = MlflowClient(tracking_uri=f"sqlite:///{trained['out'] / 'mlruns.db'}")
    run = tracking.search_runs(
        [tracking.get_experiment_by_name("vared2-debug").experiment_id],
        filter_string=f"attributes.run_name = '{trained['run_name']}'")[0]
    assert str(cluster.state) not in run.info.artifact_uri


def test_local_cluster_listens_only_on_loopback(cluster):
    import psutil

    head = psutil.Process(cluster.head_pid)
    addresses = set()
    for proc in [head, *head.children(recursive=True)]:
        try:
            addresses.update(c.laddr.ip for c in proc.net_connections(kind="inet")
                             if c.status == psutil.CONN_LISTEN)
        except psutil.NoSuchProcess:
            continue
    assert addresses and all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip in addresses), \
        addresses


@pytest.mark.parametrize("args,message", [
    ("--preset nope", "error: unknown preset 'nope'; choose one of default"),
    ("--preset debug train.nope=1", "error: unknown config key 'train.nope'; valid keys under "
                                    "train: train.epochs"),
])
def test_bad_preset_or_unknown_key_fails_fast_with_a_clear_message(cluster, tmp_path, args,
                                                                   message):
    from ray.job_submission import JobStatus

    storage = tmp_path / "runs"
    client = cluster.client()
    job_id, status = submit_and_wait(
        client, f"python -m jobs.train {args} runtime.storage_path={storage} "
                f"runtime.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}")
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.FAILED, logs
    assert message in logs
    assert "exit code 2" in client.get_job_info(job_id).message
    # Failed before anything started: no tracking store, no storage, no Ray Train controller.
    assert not storage.exists() and not (tmp_path / "mlruns.db").exists()
    assert "TrainController" not in logs
