"""Node loss on a real two-node Ray cluster on loopback: a head and a second node, each with one
CPU, each a `ray start --block` process of its own; the second node's raylet is SIGKILLed in the
middle of training, and a fresh node joins, as a cluster's autoscaler or operator would bring one."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`ray start` processes in their own sessions (process groups), stopped by group."""

    def __init__(self, state: Path):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
        self.env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1",  # more than one node on this host
                        RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
                        RAY_TRAIN_ENABLE_PRINT_PATCH="0", PYTHONUNBUFFERED="1")
        self.state = state
        self.nodes: list[subprocess.Popen] = []

    def _start(self, *args: str) -> subprocess.Popen:
        log = open(self.state / f"node-{len(self.nodes)}.log", "w")
        proc = subprocess.Popen([RAY, "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                                 "--disable-usage-stats", *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.nodes.append(proc)
        return proc

    def start_head(self) -> None:
        self._start("--head", f"--port={self.port}", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={_free_port()}", f"--temp-dir={self.state / 'tmp'}")
        self._wait_for_new_node(set())

    def add_node(self) -> subprocess.Popen:
        before = self.alive_node_ids()
        proc = self._start(f"--address={self.address}")
        self._wait_for_new_node(before)
        return proc

    def alive_node_ids(self) -> set[str]:
        out = subprocess.run([RAY, "list", "nodes", f"--address={self.address}", "--format=json",
                              "--filter", "state=ALIVE"], env=self.env, capture_output=True, text=True,
                             timeout=60)
        try:
            return {node["node_id"] for node in json.loads(out.stdout)}
        except (ValueError, KeyError, TypeError):
            return set()

    def _wait_for_new_node(self, before: set[str], timeout: float = 120) -> None:
        """Until a node that was not alive before is (a lost node may still count as alive for a
        while, so counting nodes would not tell)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_node_ids() - before:
                return
            time.sleep(1)
        raise AssertionError(f"no new node joined the cluster; logs in {self.state}")

    @staticmethod
    def raylet_of(node: subprocess.Popen):
        import psutil

        for child in psutil.Process(node.pid).children(recursive=True):
            if child.name() == "raylet" or "raylet/raylet" in " ".join(child.cmdline()[:1]):
                return child
        raise AssertionError(f"no raylet under pid {node.pid}")

    def stop(self) -> None:
        for proc in reversed(self.nodes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
        for proc in self.nodes:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever of that node is still there
            except ProcessLookupError:
                pass


@pytest.fixture
def cluster(tmp_path):
    state = Path(f"/tmp/v2nl-{os.getpid()}")  # short: Ray's Unix sockets live below it
    state.mkdir(exist_ok=True)
    c = Cluster(state)
    # `ray start --head` records its address for later `ray.init()`s of this machine: put back
    # what was there, so no later test joins this cluster once it is gone.
    recorded = Path("/tmp/ray/ray_current_cluster")
    before = recorded.read_bytes() if recorded.exists() else None
    try:
        c.start_head()
        c.add_node()
        yield c
    finally:
        c.stop()
        if before is None:
            recorded.unlink(missing_ok=True)
        else:
            recorded.write_bytes(before)
        import shutil

        shutil.rmtree(state, ignore_errors=True)


DRIVER = """
import json, sys
from jobs.train import fit
from pipeline.config import load_config
out = fit(load_config("debug", sys.argv[1:]))
print("RESULT " + json.dumps({k: out["metrics"][k] for k in ("train/loss", "val/clip_top1", "step", "epoch")}))
"""


def _driver(cluster, shards, tmp_path, name):
    args = [f"data.root={shards}", f"runtime.storage_path={tmp_path / 'runs'}",
            f"runtime.tracking_uri=sqlite:///{tmp_path / 'm.db'}", f"runtime.ray_address={cluster.address}",
            "runtime.num_workers=2", "runtime.max_failures=3", f"runtime.run_name={name}", "train.epochs=4"]
    return subprocess.Popen([sys.executable, "-c", DRIVER, *args], cwd=REPO, env=cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _result(lines):
    found = [json.loads(line.split("RESULT ", 1)[1]) for line in lines if line.startswith("RESULT ")]
    assert found, "".join(lines)[-4000:]
    return found[-1]


def test_a_node_lost_mid_training_is_replaced_and_the_run_ends_as_an_uninterrupted_one(
        cluster, debug_shards, tmp_path, interrupt_at):
    """Two data-parallel workers, one per node. After epoch 2's line (epoch 1's checkpoint is
    reported by then) the second node's raylet gets SIGKILL, which takes its worker with it; a new
    node joins; Ray Train restarts the worker group from the last checkpoint."""
    clean = _driver(cluster, debug_shards, tmp_path, "whole")
    clean_out, _ = clean.communicate(timeout=600)
    assert clean.returncode == 0, clean_out[-4000:]
    reference = _result(clean_out.splitlines())

    victim = cluster.nodes[1]
    proc = _driver(cluster, debug_shards, tmp_path, "node-lost")

    def lose_a_node():
        cluster.raylet_of(victim).send_signal(signal.SIGKILL)
        cluster.add_node()  # the replacement; the dead node is marked dead by then or soon after

    output, _ = interrupt_at(proc, "epoch 2/4", lose_a_node, 600)
    lines = output.splitlines(keepends=True)
    assert proc.returncode == 0, output[-4000:]
    assert "resuming from epoch" in output, "".join(l for l in lines if "epoch" in l or "rror" in l)[-6000:]  # from a checkpoint, not from scratch
    result = _result(lines)
    for key in ("train/loss", "val/clip_top1", "step", "epoch"):
        assert result[key] == pytest.approx(reference[key], rel=1e-5), key


def _sweep(cluster, shards, tmp_path, name):
    overrides = [f"data.root={shards}", f"runtime.storage_path={tmp_path / 'runs'}",
                 f"runtime.tracking_uri=sqlite:///{tmp_path / 'm.db'}", f"runtime.ray_address={cluster.address}",
                 "runtime.num_workers=2", "runtime.max_failures=3", "train.epochs=4",
                 "train.lambda_e_warmup_epochs=0", "tune.num_samples=1", "tune.scheduler=none"]
    cmd = [sys.executable, "-m", "jobs.cli", "tune", "--preset", "debug", "--name", name,
           "--param", "train.lambda_e=grid:1.0", "--param", "model.search_space=2", *overrides]
    return subprocess.Popen(cmd, cwd=REPO, env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _trial_metrics(tmp_path, sweep):
    from jobs.tracking import Tracker
    from pipeline.config import load_config

    tracker = Tracker(load_config("debug", [f"runtime.tracking_uri=sqlite:///{tmp_path / 'm.db'}"]).runtime)
    [run] = [r for r in tracker.client.search_runs([tracker.experiment_id],
                                                   filter_string=f"tags.`vared2.sweep` = '{sweep}'")
             if "vared2.trial_id" in r.data.tags]
    assert run.info.status == "FINISHED"
    return {k: run.data.metrics[k] for k in ("train/loss", "val/clip_top1", "test/clip_top1")}


def test_a_tune_trial_whose_node_is_lost_finishes_as_an_uninterrupted_one(cluster, debug_shards, tmp_path,
                                                                          interrupt_at):
    """The same on `vared2 tune`: a one-trial sweep whose TorchTrainer has a worker on the second
    node (the trial's own driver actor may be there too); the trial recovers and the sweep ends."""
    clean = _sweep(cluster, debug_shards, tmp_path, "whole")
    out, _ = clean.communicate(timeout=900)
    assert clean.returncode == 0, out[-4000:]
    reference = _trial_metrics(tmp_path, "whole")

    proc = _sweep(cluster, debug_shards, tmp_path, "node-lost")

    def lose_a_node():
        cluster.raylet_of(cluster.nodes[1]).send_signal(signal.SIGKILL)
        cluster.add_node()

    output, _ = interrupt_at(proc, "epoch 2/4", lose_a_node, 900)
    lines = output.splitlines(keepends=True)
    assert proc.returncode == 0, output[-4000:]
    assert "resuming from epoch" in output, "".join(l for l in lines if "epoch" in l)[-4000:]
    assert _trial_metrics(tmp_path, "node-lost") == pytest.approx(reference, rel=1e-5)
