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

    from jobs.train import LOCK, acquire_run_lock, fit, release_run_lock

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
    lock = acquire_run_lock(str(tmp_path), "shared")  # its process is gone: the lock is taken over
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release_run_lock(lock)
    assert not lock.exists()
