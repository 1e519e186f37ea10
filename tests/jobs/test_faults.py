"""Faults a run meets, injected for real: an unreachable tracking server, undecodable videos."""

import shutil
import time

import pytest
import torch

from pipeline.config import load_config

pytestmark = [pytest.mark.chaos]


def test_an_unreachable_tracking_server_fails_fast_and_names_it(debug_shards, tmp_path):
    from jobs.train import fit

    cfg = load_config("debug", [f"data.root={debug_shards}", f"runtime.storage_path={tmp_path}",
                                "runtime.tracking_uri=http://127.0.0.1:9"])  # nothing listens on port 9
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"http://127\.0\.0\.1:9 is unreachable"):
        fit(cfg)
    assert time.monotonic() - started < 30


def _damage(shards, out, victims: int):
    """A copy of the val shards in which `victims` videos' bytes are overwritten in the middle."""
    import tarfile

    from pipeline.data.sharding import find_shards

    out.mkdir()
    for path in shards.iterdir():
        shutil.copy(path, out / path.name)
    damaged = []
    for shard in find_shards(str(out), "val"):
        with tarfile.open(shard) as tar:
            members = [(m.name, m.offset_data, m.size) for m in tar.getmembers() if m.name.endswith(".mp4")]
        with open(shard, "r+b") as f:
            for name, offset, size in members[: victims - len(damaged)]:
                f.seek(offset + 64)
                f.write(b"\xff" * (size - 128))  # every frame's bytes gone, container header kept
                damaged.append(name.rsplit(".", 1)[0])
        if len(damaged) >= victims:
            break
    return damaged


def test_undecodable_videos_are_named_and_counted_as_wrong(debug_shards, tmp_path):
    from pipeline.config import apply_overrides
    from pipeline.data import build_loader
    from pipeline.models import build_model
    from pipeline.train.evaluate import evaluate

    bad = tmp_path / "shards"
    damaged = _damage(debug_shards, bad, victims=2)
    cfg = apply_overrides(load_config("debug", []), [f"data.root={bad}", "model.num_classes=4"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    counted = evaluate(model, build_loader(cfg.data, split="val", train=False), num_clips=cfg.data.eval_clips)
    excluded = evaluate(model, build_loader(cfg.data, split="val", train=False), num_clips=cfg.data.eval_clips,
                        exclude_failed=True)
    assert counted.num_failed == excluded.num_failed == 2
    assert sorted(line.split(":")[0] for line in counted.failed) == sorted(damaged)
    assert counted.num_videos == excluded.num_videos + 2 == 8
    assert counted.video_top1 == pytest.approx(excluded.video_top1 * excluded.num_videos / counted.num_videos)
    assert counted.metrics("test/")["test/num_failed"] == 2


def test_a_second_driver_for_a_run_name_in_training_is_refused(debug_shards, tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys

    from jobs.run_folder import LOCK, acquire_lock, release_lock
    from jobs.train import fit

    cfg = load_config("debug", [f"data.root={debug_shards}", f"runtime.storage_path={tmp_path}",
                                f"runtime.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}",
                                "runtime.run_name=shared"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live driver (another process on this host) holds the name
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": other.pid}))
        with pytest.raises(ValueError, match="already being trained"):
            fit(cfg)
        assert not (tmp_path / "mlruns.db").exists()  # refused before any MLflow run was written
        import ray
        assert not ray.is_initialized()  # and before Ray was started
    finally:
        other.kill()
        other.wait()
    lock = acquire_lock(str(tmp_path), "shared")  # its process is gone: the lock is taken over
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release_lock(lock)
    assert not lock.exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_mlflow_server(tmp_path, port: int):
    """A real `mlflow server` on loopback (SQLite store), returned once it answers /health."""
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / f"server-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen([str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--default-artifact-root", (tmp_path / "artifacts").as_uri(),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return proc
        except OSError:
            assert proc.poll() is None, "mlflow server exited"
            time.sleep(0.5)
    proc.kill()
    raise AssertionError("mlflow server did not start within 90 s")


def _stop(proc, port: int) -> None:
    """SIGKILL the server and its worker processes (no shutdown), then wait for the port to close."""
    import os
    import signal
    import socket

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.2)
        except OSError:
            return


def test_a_tracking_server_outage_neither_stops_nor_stalls_logging_and_loses_nothing(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from jobs import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # this test's store, not another's

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    cfg = load_config("debug", [f"runtime.tracking_uri={uri}", f"runtime.storage_path={tmp_path}"])
    server = _start_mlflow_server(tmp_path, port)
    try:
        tracker = tracking.Tracker(cfg.runtime)
        run_id = tracker.start_run(cfg, run_name="outage")
        tracker.log_metrics(run_id, {"train/loss": 3.0}, step=1, spool=tmp_path)
        _stop(server, port)  # the server goes away mid-run
        started = time.monotonic()
        tracker.log_metrics(run_id, {"train/loss": 2.0}, step=2, spool=tmp_path)
        assert time.monotonic() - started < 10  # no minutes of HTTP retries
        assert (tmp_path / tracking.SPOOL).exists()
        server = _start_mlflow_server(tmp_path, port)  # ... and comes back
        tracker.log_metrics(run_id, {"train/loss": 1.0}, step=3, spool=tmp_path)
        history = MlflowClient(uri).get_metric_history(run_id, "train/loss")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(1, 3.0), (2, 2.0), (3, 1.0)]
        assert not (tmp_path / tracking.SPOOL).exists()
        assert "[2]" in MlflowClient(uri).get_run(run_id).data.tags["vared2.tracking_outage"]
    finally:
        _stop(server, port)


def _tagged_env() -> tuple[dict, str]:
    """An environment for a command under test, tagged so that its processes (and only its, not a
    concurrent session's Ray) can be found afterwards by `_ray_processes_left`."""
    import os
    import uuid

    tag = uuid.uuid4().hex
    return {**os.environ, "PYTHONUNBUFFERED": "1", "VARED2_TEST_COMMAND": tag}, tag


def _ray_processes(tag: str) -> list[str]:
    """Ray processes (raylet, GCS, workers, dashboard, ...) started by the tagged command, alive."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        info = proc.info
        cmd = " ".join(info["cmdline"] or [])
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if not ("ray::" in cmd or "/ray/" in cmd or "raylet" in cmd or "gcs_server" in cmd):
            continue
        try:
            with open(f"/proc/{info['pid']}/environ", "rb") as f:
                if f"VARED2_TEST_COMMAND={tag}".encode() not in f.read().split(b"\0"):
                    continue
        except OSError:
            continue
        found.append(f"{info['pid']}: {cmd[:120]}")
    return found


def _ray_processes_left(tag: str, within_s: float = 20) -> list[str]:
    deadline = time.monotonic() + within_s
    left = _ray_processes(tag)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = _ray_processes(tag)
    return left


@pytest.mark.slow
@pytest.mark.ray
def test_ctrl_c_in_train_exits_quickly_leaves_no_ray_process_and_the_rerun_resumes(debug_shards, tmp_path,
                                                                                   interrupt_at):
    import os
    import re
    import signal
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cmd = [sys.executable, "-m", "jobs.cli", "train", "--preset", "debug", f"data.root={debug_shards}",
           f"runtime.storage_path={tmp_path / 'runs'}", f"runtime.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
           "runtime.num_workers=1", "runtime.run_name=ctrl-c", "train.epochs=5"]
    env, tag = _tagged_env()
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    # At epoch 2's line: epoch 1's checkpoint has been reported by then.
    output, waited = interrupt_at(proc, "epoch 2/5", lambda: proc.send_signal(signal.SIGINT), 60)
    assert proc.returncode == 130, output[-3000:]
    assert "resumes from the last checkpoint" in output
    assert waited < 30, f"{waited:.0f} s from Ctrl-C to exit"
    assert _ray_processes_left(tag) == []
    again = subprocess.run(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600, env=env)
    assert again.returncode == 0, again.stdout[-3000:]
    # Epoch 1's checkpoint was written before epoch 2's line; the rerun finds it in the run's
    # folder even when Ray Train's controller had not recorded it yet when the abort came. (The
    # abort takes a few seconds, in which short epochs may finish: the rerun starts after them.)
    resumed = re.search(r"resuming from epoch (\d+)", again.stdout)
    assert resumed and int(resumed.group(1)) >= 1, again.stdout[-3000:]
    assert "epoch 1/5" not in again.stdout  # a finished epoch is not trained again
    assert int(resumed.group(1)) == 5 or "epoch 5/5" in again.stdout, again.stdout[-3000:]
    assert _ray_processes_left(tag) == []  # and a normal exit leaves none either


def _copy(shards, out):
    out.mkdir()
    for path in shards.iterdir():
        shutil.copy(path, out / path.name)
    return out


def _verify(root, capsys, *extra):
    from jobs.cli import main

    code = main(["verify", str(root), *extra])
    return code, capsys.readouterr().out


def test_verify_lists_flipped_bits_truncated_shards_and_missing_or_stale_indices(debug_shards, tmp_path, capsys):
    import tarfile

    code, out = _verify(debug_shards, capsys)
    assert code == 0 and "train: 1 shards, 16 videos in the manifest (16 hashed): ok" in out

    # bit flips inside one video: same size, so only its hash tells; the video is named
    flipped = _copy(debug_shards, tmp_path / "flipped")
    shard = flipped / "val-000000.tar"
    with tarfile.open(shard) as tar:
        victim = next(m for m in tar.getmembers() if m.name.endswith(".mp4"))
    with open(shard, "r+b") as f:
        f.seek(victim.offset_data + victim.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    code, out = _verify(flipped, capsys)
    key = victim.name.rsplit(".", 1)[0]
    assert code == 1 and f"val-000000.tar: {key}" in out and "sha256" in out and "train: 1 shards" in out
    assert _verify(flipped, capsys, "--no-hashes")[0] == 0  # headers and indices are intact

    # a shard cut mid-member, a missing .idx, a stale .idx
    cut = _copy(debug_shards, tmp_path / "cut")
    size = (cut / "train-000000.tar").stat().st_size
    with open(cut / "train-000000.tar", "r+b") as f:
        f.truncate(size // 2)
    (cut / "val-000000.idx").unlink()
    code, out = _verify(cut, capsys, "--no-hashes")
    assert code == 1 and "train-000000.tar: truncated" in out and "val-000000.tar: missing .idx" in out
    from pipeline.data.sharding import index_split

    whole = index_split(str(debug_shards), "train")
    (cut / "train-000000.idx").unlink()  # a loader must scan the cut tar itself: its whole samples
    with pytest.warns(UserWarning, match=rf"train-000000.tar: the tar is cut short .* its \d+ of {len(whole)} "
                                         r"whole samples are read and the rest skipped; `vared2 verify"):
        kept = index_split(str(cut), "train")
    assert 0 < len(kept) < len(whole)
    assert [(r.key, r.fields) for r in kept] == [(r.key, r.fields) for r in whole[:len(kept)]]
    from pipeline.config import apply_overrides
    from pipeline.data import build_loader

    cfg = apply_overrides(load_config("debug", []), [f"data.root={cut}"])
    batches = list(build_loader(cfg.data, split="train", train=False))  # an epoch over what is left
    assert sorted({k for b in batches for k, ok in zip(b.keys, b.valid) if ok}) == sorted(r.key for r in kept)
    (cut / "train-000000.tar").write_bytes(b"")  # nothing left at all: a clear error
    with pytest.raises(ValueError, match=r"train-000000.tar: the shard has no .idx .*vared2 verify"):
        index_split(str(cut), "train")

    stale = _copy(debug_shards, tmp_path / "stale")
    idx = stale / "val-000000.idx"
    lines = idx.read_text().splitlines()
    parts = lines[1].split()
    parts[1] = str(int(parts[1]) + 512)  # the first member's data offset moved
    idx.write_text("\n".join([lines[0], " ".join(parts), *lines[2:]]) + "\n")
    code, out = _verify(stale, capsys, "--split", "val")
    assert code == 1 and ".idx does not match" in out and "train" not in out


def test_dali_loader_refuses_damaged_shards_up_front_naming_them(debug_shards, tmp_path):
    pytest.importorskip("nvidia.dali")
    from pipeline.data.dali_loader import DALILoader

    cut = _copy(debug_shards, tmp_path / "cut")
    (cut / "val-000000.idx").unlink()
    cfg = load_config("debug", [f"data.root={cut}", "data.backend=dali"]).data
    with pytest.raises(ValueError, match=r"(?s)val shards .* are damaged.*val-000000.tar: missing \.idx"):
        DALILoader(cfg, split="val", train=False)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mounted in tmp_path (root only): `resize(bytes)` changes its size in place."""
    import subprocess

    mount = tmp_path / "small-disk"
    mount.mkdir()

    def resize(size: int, first: bool = False):
        opts = f"size={size}" if first else f"remount,size={size}"
        args = ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mount)] if first else \
            ["mount", "-o", opts, str(mount)]
        return subprocess.run(args, capture_output=True, text=True)

    if resize(1 << 20, first=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount, resize
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
@pytest.mark.ray
def test_a_full_disk_while_checkpointing_stops_the_run_keeps_the_last_checkpoint_and_resumes(
        debug_shards, tmp_path, small_disk):
    import ray

    from jobs.run_folder import StorageFull, checkpoints, size_of
    from jobs.train import fit
    from pipeline.train.checkpoint import load_checkpoint

    mount, resize = small_disk

    def config(storage, epochs):
        return load_config("debug", [f"data.root={debug_shards}", f"runtime.storage_path={storage}",
                                     f"runtime.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
                                     "runtime.num_workers=1", "runtime.run_name=full",
                                     f"train.epochs={epochs}"])

    try:
        reference = fit(config(tmp_path / "roomy", 3))  # uninterrupted, on a disk with room
        one = size_of(reference["checkpoint"])
        # Room for one checkpoint and its headroom, not for a second one.
        assert resize(int(1.5 * one) + (1 << 20)).returncode == 0
        with pytest.raises(StorageFull, match=r"is full.*after epoch 1\), is intact.*rerun the same command"):
            fit(config(mount, 3))
        [kept] = checkpoints(str(mount), "full")
        assert load_checkpoint(kept)["epoch"] == 0  # the previous checkpoint reads back whole
        assert resize(8 * one).returncode == 0  # space freed
        resumed = fit(config(mount, 3))
        for key in ("train/loss", "val/clip_top1", "step", "epoch"):
            assert resumed["metrics"][key] == pytest.approx(reference["metrics"][key], rel=1e-5), key
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("runner", ["ray", "no-ray"])
def test_ctrl_c_in_preprocess_exits_quickly_keeps_finished_shards_and_the_rerun_completes_them(tmp_path, runner):
    """SIGINT while Ray shard tasks run (or, with --no-ray, while this process writes a shard): exit
    130 within seconds, no Ray process left, and the rerun skips the finished shards and writes the
    same bytes as an uninterrupted run."""
    import hashlib
    import os
    import signal
    import subprocess
    import sys

    from preprocessing.demo_data import make_demo_dataset

    # Large enough that sharding takes several seconds on two cores, so the signal lands mid-run.
    paths = make_demo_dataset(tmp_path / "videos", num_train_per_class=12, num_val_per_class=0,
                              seed=0, size=160, fps=15.0, seconds=4.0)

    def command(out):
        return [sys.executable, "-m", "jobs.cli", "preprocess", "--preset", "demo",
                "--annotations", str(paths["train_csv"]), "--videos", str(paths["videos"]),
                "--output", str(out), "--split", "train",
                *(["--no-ray"] if runner == "no-ray" else ["--workers", "2"]),
                "preprocess.max_shard_samples=2", "preprocess.short_side=160"]

    def digests(out):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    clean = subprocess.run(command(tmp_path / "clean"), cwd=repo, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stdout[-2000:] + clean.stderr[-2000:]
    out = tmp_path / "interrupted"
    env, tag = _tagged_env()
    proc = subprocess.Popen(command(out), cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "train-000000.stats.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        output, _ = proc.communicate(timeout=60)
        waited = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output[-3000:]
    assert "the same command resumes" in output and "Traceback" not in output, output[-3000:]
    assert waited < 15, f"{waited:.0f} s from Ctrl-C to exit"
    kept = len(list(out.glob("train-*.stats.json")))
    total = len(list((tmp_path / "clean").glob("train-*.stats.json")))
    assert 1 <= kept < total, (kept, total)  # it stopped part-way
    assert _ray_processes_left(tag) == []
    again = subprocess.run(command(out), cwd=repo, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    summary = __import__("json").loads((out / "train-summary.json").read_text())
    assert summary["num_ok"] == 48
    assert digests(out) == digests(tmp_path / "clean")  # byte-identical, nothing half-written left
